"""An unwritable store under a running gateway (issue 13): chat called the upstream and
then answered 500, a stream ended with neither a finish nor an error event, starting a
run answered 500. Now every route answers 503 with Retry-After before anything is sent
upstream, and a stream that began always ends with a finish or an error event.

The store is made unwritable for real, on each engine: SQLite refuses every write with
SQLITE_READONLY, PostgreSQL with SQLSTATE 25006 (:func:`tests.stores.set_read_only`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.configs import pyramid_urls
from tests.fakes.llm import FakeLLM, Reply
from tests.gateway.conftest import GatewayFactory, Running
from tests.gateway.test_http import CHAT, assert_openai_error
from tests.stores import run_sql, set_read_only

AGENTS = [{"name": "a", "message": "hello", "task": "chat", "deliver": ["log"]}]


async def make_read_only(gw: Running) -> None:
    await set_read_only(gw.app.store, gw.location, True)


async def make_writable(gw: Running) -> None:
    await set_read_only(gw.app.store, gw.location, False)


def assert_503(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    err = assert_openai_error(r.json(), "store_unavailable")
    assert err["type"] == "server_error"
    assert int(r.headers["Retry-After"]) > 0


@pytest.fixture
async def gw(start_gateway: GatewayFactory) -> Running:
    return await start_gateway(agents=AGENTS)


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_is_503_before_any_upstream_call(gw: Running, stream: bool) -> None:
    await make_read_only(gw)
    async with gw.http() as c:
        r = await c.post("/v1/chat/completions", json=CHAT | {"stream": stream})
    assert_503(r)
    assert gw.fake.requests == []  # nothing billed that could not be recorded
    await make_writable(gw)
    async with gw.http() as c:  # and it serves again once the store takes writes
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_starting_or_rerunning_a_run_is_503(gw: Running) -> None:
    async with gw.http() as c:
        r = await c.post("/api/agents/a/run", json={})
        assert r.status_code == 202, r.text
        old = r.json()["run_id"]
        await make_read_only(gw)
        assert_503(await c.post("/api/agents/a/run", json={}))
        assert_503(await c.post(f"/api/runs/{old}/rerun"))


async def test_no_route_answers_500_on_an_unwritable_store(gw: Running) -> None:
    await make_read_only(gw)
    routes = sorted(
        {
            (route.method, route.resource.canonical.replace("{name}", "a").replace("{run_id}", "1"))
            for route in gw.gateway.web_app.router.routes()
            if route.resource is not None
        }
    )
    async with gw.http() as c:
        for method, path in routes:
            r = await c.request(method, path, json=CHAT if method == "POST" else None)
            assert r.status_code < 500 or r.status_code == 503, (method, path, r.text)
            if r.status_code == 503 and path != "/readyz":
                assert_503(r)
    assert gw.fake.requests == []


@pytest.mark.parametrize(
    ("breakage", "code"),
    [
        ("read-only", "store_unavailable"),  # the disk went read-only
        ("ALTER TABLE attempts RENAME TO attempts_gone", "internal_error"),  # any other fault
    ],
)
async def test_a_stream_the_store_fails_under_ends_with_an_error_event(
    start_gateway: GatewayFactory, fake_llm: FakeLLM, breakage: str, code: str
) -> None:
    gw = await start_gateway(pyramid_urls(fake_llm.base_url))
    # a slow answer: the store breaks while it streams, so its ledger row cannot be finished
    fake_llm.script("qwen3:14b", Reply(text="one two three four five six", frame_delay_s=0.2))
    events: list[dict[str, Any] | str] = []
    async with (
        gw.http() as c,
        c.stream(
            "POST", "/v1/chat/completions", json=CHAT | {"stream": True, "model": "tier:0"}
        ) as r,
    ):
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
                if len(events) == 1:
                    if breakage == "read-only":
                        await make_read_only(gw)
                    else:
                        await asyncio.to_thread(run_sql, gw.location, breakage)
    chunks = [e for e in events if isinstance(e, dict) and "choices" in e]
    assert chunks and chunks[0]["choices"][0]["delta"]["content"]
    last = events[-1]
    if last == "[DONE]":  # a finish is an acceptable end too, if it says how it finished
        assert chunks[-1]["choices"][0]["finish_reason"], events
    else:
        assert isinstance(last, dict) and last["error"]["code"] == code, events
        assert last["error"]["message"] and "Traceback" not in json.dumps(last)
