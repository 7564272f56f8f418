"""Provider fault matrix: every wire format × every upstream fault × JSON and streaming.

Faults: connection refused, a hang past the read timeout, a stall mid-answer, HTTP
500/502/503, 429 with and without Retry-After, malformed JSON, a stream cut (JSON: a body
cut short), a dropped connection, an error inside a 200, a redirect, a wrong
content-type, 401 and 404 (config problems), empty content, reasoning-only content.

Each case runs the real composition (``App.open``: store, ledger, health board, engine)
against the fake LLM server on 127.0.0.1. A first model (tier 0) speaks the format under
test and suffers the fault; a later model (tier 1, same format) answers. Checked for
each case:

- the answer comes from the later model, and nothing of the faulty one reached a stream;
- the ledger holds exactly one row per call made, with the right outcomes, and the total
  cost is what the calls legitimately cost: answers priced by their usage, an unusable
  answer (empty, reasoning only) priced by the usage it reported, a failed call free —
  except a stream that broke after it began generating (reasoning or answer), billed
  at the engine's estimate of what had arrived;
- the breaker opens on a failure (``failure_threshold`` defaults to 1; a fatal one for
  ``fatal_cooldown_s``), stays closed on an unusable answer (the provider works),
  honours Retry-After, and spares the next request the faulty model;
- when every model suffers the fault: a clear all-failed error listing every attempt,
  in-process and (for a sample) through the gateway as an OpenAI-shaped 503.

Apart: streams that break after their first byte (no failover possible: a clear error,
billed for what was sent), and clients that hang up mid-stream.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import httpx
import pytest

from core.app import App
from core.config.load import parse_config
from core.config.models import Config
from core.config.settings import Settings
from core.engine.budget import estimate_input_tokens
from core.engine.engine import Engine, Result, Started
from core.engine.ledger import price
from core.errors import AllAttemptsFailed, ProviderError
from core.gateway import Gateway
from core.gateway.handlers import STATE
from core.types import Attempt, ChatRequest, Message, StreamDelta, Usage
from tests.fakes.llm import ANTHROPIC, APIS, GOOGLE, OLLAMA, OPENAI, FakeLLM, Reply
from tests.fakes.wait import until
from tests.reliability import secrets
from tests.reliability.scale import scale
from tests.stores import NewLocation

TIMEOUT_S = 0.5  # the faulted provider's read timeout: what a hang costs
# the answering provider's: it answers at once, but a loaded CI box may take a moment
LATER_TIMEOUT_S = 30.0
FIRST, LATER = "first/fault-model", "later/answer-model"
FIRST_COST = {"input": 1.0, "output": 4.0}
LATER_COST = {"input": 2.0, "output": 8.0}
ANSWER = Reply(text="the answer from the later model", input_tokens=11, output_tokens=5)
# each format carries one of the configured secret keys, so the log scan would see a leak
KEY_ENV = {
    OPENAI: "DEEPSEEK_API_KEY",
    ANTHROPIC: "ANTHROPIC_API_KEY",
    GOOGLE: "GEMINI_API_KEY",
    OLLAMA: "DEEPSEEK_API_KEY",
}
SHORT_API = {OPENAI: "openai", ANTHROPIC: "anthropic", GOOGLE: "google", OLLAMA: "ollama"}
MESSAGES = (Message("system", "answer briefly"), Message("user", "what is the answer?"))


@dataclass(frozen=True)
class Fault:
    """One upstream fault and what the engine must make of it."""

    name: str
    reply: Reply | None  # None: the connection is refused (nothing listens)
    outcome: str  # of each call to the faulty model
    reason: str  # the attempt's reason starts with this
    calls: int = 1  # calls the faulty model gets (reasoning only: retried with double budget)
    cooldown_at_least_s: float = 0.0  # 0: the breaker stays closed

    @property
    def usage(self) -> Usage:
        """What one call to the faulty model reports (and is billed for)."""
        if self.outcome != "unusable" or self.reply is None:
            return Usage()
        r = self.reply
        out = (r.output_tokens or 0) + (r.reasoning_tokens or 0)
        return Usage(r.input_tokens or 0, out, r.reasoning_tokens or 0)


# reasoning streams first where the fault strikes mid-answer: a stream broken before any
# visible byte can still fail over (after one, see test_a_stream_broken_after_its_first_byte)
THINKING = Reply(text="a partial answer", reasoning="pondering the question at length")
FAULTS = [
    Fault("refused", None, "unavailable", "refused", cooldown_at_least_s=30),
    Fault("hang", Reply(hang=True), "unavailable", "timeout", cooldown_at_least_s=30),
    Fault(
        "stall-mid-answer",
        replace(THINKING, stall=True),
        "unavailable",
        "timeout",
        cooldown_at_least_s=30,
    ),
    Fault("500", Reply(status=500), "unavailable", "server_error HTTP 500", cooldown_at_least_s=30),
    Fault("502", Reply(status=502), "unavailable", "server_error HTTP 502", cooldown_at_least_s=30),
    Fault("503", Reply(status=503), "unavailable", "server_error HTTP 503", cooldown_at_least_s=30),
    Fault("429", Reply(status=429), "unavailable", "rate_limited HTTP 429", cooldown_at_least_s=30),
    Fault(
        "429-retry-after",
        Reply(status=429, retry_after=120),
        "unavailable",
        "rate_limited HTTP 429",
        cooldown_at_least_s=119,
    ),
    Fault(
        "malformed-json",
        Reply(text="", malformed=True),
        "unavailable",
        "malformed",
        cooldown_at_least_s=30,
    ),
    Fault(
        "stream-cut",
        replace(THINKING, cut_stream=True, cut_body=True),
        "unavailable",
        "stream_cut",
        cooldown_at_least_s=30,
    ),
    Fault(
        "connection-dropped",
        replace(THINKING, abort_stream=True, cut_body=True),
        "unavailable",
        "stream_cut",
        cooldown_at_least_s=30,
    ),
    Fault(
        "error-inside-a-200",
        replace(THINKING, error_body=True, stream_error="api_error"),
        "unavailable",
        "server_error",
        cooldown_at_least_s=30,
    ),
    # a redirect is not followed: the base_url is off, and the key must not travel elsewhere
    Fault(
        "redirect",
        Reply(redirect=True),
        "unavailable",
        "malformed HTTP 307",
        cooldown_at_least_s=30,
    ),
    Fault(
        "wrong-content-type",
        Reply(content_type="text/html"),
        "unavailable",
        "malformed",
        cooldown_at_least_s=30,
    ),
    # a config problem (bad key, unknown model): next model, the breaker open for long
    Fault("401", Reply(status=401), "fatal", "auth HTTP 401", cooldown_at_least_s=899),
    Fault("404", Reply(status=404), "fatal", "not_found HTTP 404", cooldown_at_least_s=899),
    Fault("empty", Reply(text="", input_tokens=20, output_tokens=0), "unusable", "empty answer"),
    Fault(
        "reasoning-only",
        Reply(
            text="",
            reasoning="thinking and thinking",
            input_tokens=20,
            output_tokens=0,
            reasoning_tokens=30,
        ),
        "unusable",
        "reasoning used the budget",
        calls=2,
    ),
]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def config_doc(
    api: str, first_url: str, later_url: str, later_timeout_s: float = LATER_TIMEOUT_S
) -> dict[str, Any]:
    """Two tiers, one model each, both speaking ``api``."""

    def provider(url: str, timeout_s: float) -> dict[str, Any]:
        return {"api": api, "base_url": url, "timeout_s": timeout_s, "api_key_env": KEY_ENV[api]}

    return {
        "routing": {"default_task": "chat"},
        "approvals": {"default": "deny"},
        "providers": {
            "first": provider(first_url, TIMEOUT_S),
            "later": provider(later_url, later_timeout_s),
        },
        "models": {
            FIRST: {"max_tokens": 256, "cost": FIRST_COST},
            LATER: {"max_tokens": 256, "cost": LATER_COST},
        },
        "tiers": [{"level": 0, "models": [FIRST]}, {"level": 1, "models": [LATER]}],
        "tasks": {"chat": 0},
    }


@dataclass
class Rig:
    app: App
    fake: FakeLLM
    config: Config
    gateway: Gateway | None = None
    _seen: set[int] = field(default_factory=set)

    @property
    def engine(self) -> Engine:
        return self.app.engine

    async def rows(self) -> list[dict[str, Any]]:
        return [
            dict(r) for r in await self.app.store.fetchall("SELECT * FROM attempts ORDER BY id")
        ]

    def calls(self, ref: str) -> int:
        model = ref.split("/", 1)[1]
        return sum(1 for r in self.fake.requests if r.model == model)

    def breaker(self, ref: str) -> dict[str, Any]:
        rows = self.app.health.status(time.monotonic())
        return next(r for r in rows if r["model"] == ref)


RigFactory = Callable[..., Any]


@pytest.fixture
async def rig(
    fake_llm: FakeLLM, new_location: NewLocation, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RigFactory]:
    for var, value in secrets.PROVIDER_KEYS.items():
        monkeypatch.setenv(var, value)
    made: list[Rig] = []

    async def make(
        api: str, *, refused: tuple[str, ...] = (), gateway: bool = False, both_fail: bool = False
    ) -> Rig:
        urls = {
            name: closed_port_url() if name in refused else fake_llm.base_url(api)
            for name in ("first", "later")
        }
        # when the later model fails too, a hang there must cost no more than the first's
        later_timeout_s = TIMEOUT_S if both_fail else LATER_TIMEOUT_S
        doc = config_doc(api, urls["first"], urls["later"], later_timeout_s)
        cfg = parse_config(doc, warnings=[])
        app = await App.open(cfg, Settings(_env_file=None), new_location())
        r = Rig(app, fake_llm, cfg)
        made.append(r)
        if gateway:
            r.gateway = Gateway(app.facade, secrets.GATEWAY_TOKEN, "127.0.0.1", 0)
            await r.gateway.start()
        return r

    yield make
    for r in made:
        if r.gateway is not None:
            await r.gateway.stop()
        await r.app.close()


def script(rig: Rig, fault: Fault, ref: str) -> None:
    if fault.reply is not None:
        rig.fake.script(ref.split("/", 1)[1], *[fault.reply] * fault.calls)


async def ask(engine: Engine, stream: bool) -> tuple[Result, str | None]:
    """One request; for a stream also the text the caller received.

    Checks the stream's contract: one Started, right before the first delta.
    """
    req = ChatRequest(MESSAGES)
    if not stream:
        return await engine.complete(req), None
    deltas: list[str] = []
    started: list[Started] = []
    result: Result | None = None
    async for item in engine.stream(req):
        if isinstance(item, Started):
            assert not deltas and not started, "Started twice, or after a delta"
            started.append(item)
        elif isinstance(item, StreamDelta):
            assert started, "a delta before Started"
            deltas.append(item.content)
        else:
            result = item
    assert result is not None and started
    assert started[0].ref == result.answered_by.ref
    return result, "".join(deltas)


def called(attempts: list[Attempt] | tuple[Attempt, ...]) -> list[Attempt]:
    return [a for a in attempts if a.outcome not in ("skipped", "denied")]


def assert_rows_match(rows: list[dict[str, Any]], attempts: list[Attempt], rid: str) -> None:
    """One ledger row per call, in order, with the same outcome, usage and cost."""
    assert len(rows) == len(attempts)
    for row, a in zip(rows, attempts, strict=True):
        assert row["request_id"] == rid
        assert (row["provider"], row["model"], row["tier"]) == (a.provider, a.model, a.tier)
        assert row["outcome"] == a.outcome
        assert (row["input_tokens"], row["output_tokens"]) == (
            a.usage.input_tokens,
            a.usage.output_tokens,
        )
        assert row["cost_usd"] == pytest.approx(a.cost_usd)


def began_generating(fault: Fault, stream: bool) -> bool:
    """Did each faulty call stream reasoning before it broke? Then it is billed for it."""
    reply = fault.reply
    return stream and reply is not None and bool(reply.reasoning) and fault.outcome == "unavailable"


def billed_for_what_arrived(r: Rig, fault: Fault, rows: list[dict[str, Any]]) -> float:
    """Each row of a call that broke mid-stream is billed at the engine's estimate of what
    had arrived: the prompt, and a token per 4 characters. Returns their total."""
    assert fault.reply is not None
    most = (len(fault.reply.reasoning) + len(fault.reply.text)) // 4 + 1
    for x in rows:
        assert x["input_tokens"] == estimate_input_tokens(MESSAGES)
        assert 0 < x["output_tokens"] <= most
        billed = Usage(x["input_tokens"], x["output_tokens"])
        ref = f"{x['provider']}/{x['model']}"
        assert x["cost_usd"] == pytest.approx(price(r.config, ref, billed)) and x["cost_usd"] > 0
    return sum(float(x["cost_usd"]) for x in rows)


# a hang costs its timeout on every call: the short run tries each slow fault on one
# format (taking turns), the full run (OPENCLAW_RELIABILITY=full) on all four
SLOW = {"hang", "stall-mid-answer"}
CASES = [
    pytest.param(api, fault, id=f"{SHORT_API[api]}-{fault.name}")
    for i, fault in enumerate(FAULTS)
    for j, api in enumerate(APIS)
    if fault.name not in SLOW or (i + j) % len(APIS) < scale(1, len(APIS))
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("api", "fault"), CASES)
async def test_a_fault_fails_over_to_the_later_model(
    rig: RigFactory, api: str, fault: Fault, stream: bool
) -> None:
    r: Rig = await rig(api, refused=("first",) if fault.reply is None else ())
    script(r, fault, FIRST)
    r.fake.script("answer-model", ANSWER)

    res, streamed = await ask(r.engine, stream)

    # answered by the later model, and only its words reached the caller
    assert res.content == ANSWER.text
    assert res.answered_by.ref == LATER and res.answered_by.outcome == "ok"
    if stream:
        assert streamed == ANSWER.text
    tried = called(res.attempts)
    assert [(a.ref, a.outcome) for a in tried] == [(FIRST, fault.outcome)] * fault.calls + [
        (LATER, "ok")
    ]
    for a in tried[:-1]:
        assert a.reason.startswith(fault.reason), a.reason
        if fault.reply is not None and fault.reply.status != 200:
            assert a.status == fault.reply.status
    assert r.calls(FIRST) == (fault.calls if fault.reply is not None else 0)
    assert r.calls(LATER) == 1
    assert all(req.headers["host"].startswith("127.0.0.1") for req in r.fake.requests)

    # one row per call, nothing charged twice, a failed call free unless it had begun
    # generating: a stream that broke after its reasoning came is billed for that
    rows = await r.rows()
    assert_rows_match(rows, tried, res.request_id)
    answer_cost = price(r.config, LATER, Usage(11, 5))
    fault_cost = price(r.config, FIRST, fault.usage) * fault.calls
    broke_mid_stream = began_generating(fault, stream)
    if broke_mid_stream:
        fault_cost = billed_for_what_arrived(r, fault, rows[:-1])
    assert rows[-1]["cost_usd"] == pytest.approx(answer_cost) and answer_cost > 0
    assert sum(x["cost_usd"] for x in rows) == pytest.approx(answer_cost + fault_cost)
    assert res.cost_usd == pytest.approx(answer_cost + fault_cost)
    if fault.outcome in ("unavailable", "fatal") and not broke_mid_stream:
        assert all(x["cost_usd"] == 0 and x["output_tokens"] == 0 for x in rows[:-1])
    assert all(x["streamed"] == int(stream) for x in rows)

    # the breaker: open after a failure, closed after an unusable answer
    first, later = r.breaker(FIRST), r.breaker(LATER)
    assert later["state"] == "closed" and later["last_outcome"] == "ok"
    if not fault.cooldown_at_least_s:
        assert first["state"] == "closed" and first["consecutive_failures"] == 0
        return
    assert first["state"] == "open" and first["last_outcome"] == fault.outcome
    assert first["cooldown_left_s"] >= fault.cooldown_at_least_s - 1

    # ... so the next request skips the faulty model without paying for it again
    r.fake.script("answer-model", ANSWER)
    again, _ = await ask(r.engine, stream)
    assert [(a.ref, a.outcome) for a in again.attempts] == [(FIRST, "skipped"), (LATER, "ok")]
    assert "cooling down" in again.attempts[0].reason
    assert r.calls(FIRST) == (fault.calls if fault.reply is not None else 0)
    rows = await r.rows()
    assert len(rows) == len(tried) + 1  # a skip is no call, and no row
    assert sum(x["cost_usd"] for x in rows) == pytest.approx(2 * answer_cost + fault_cost)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("api", "fault"), CASES)
async def test_every_model_failing_is_a_clear_all_failed_error(
    rig: RigFactory, api: str, fault: Fault, stream: bool
) -> None:
    refused = ("first", "later") if fault.reply is None else ()
    r: Rig = await rig(api, refused=refused, both_fail=True)
    script(r, fault, FIRST)
    script(r, fault, LATER)

    with pytest.raises(AllAttemptsFailed) as info:
        await ask(r.engine, stream)

    err = info.value
    msg = str(err)
    assert msg.startswith("no model could answer task 'chat':")
    tried = called(err.attempts)
    assert [(a.ref, a.outcome) for a in tried] == [(FIRST, fault.outcome)] * fault.calls + [
        (LATER, fault.outcome)
    ] * fault.calls
    for a in tried:
        assert a.reason.startswith(fault.reason), a.reason
        assert f"tier {a.tier} {a.ref}: {a.outcome} ({a.reason})" in msg
    rows = await r.rows()
    assert len({x["request_id"] for x in rows}) == 1
    assert_rows_match(rows, tried, rows[0]["request_id"])
    charged = fault.calls * (
        price(r.config, FIRST, fault.usage) + price(r.config, LATER, fault.usage)
    )
    if began_generating(fault, stream):
        charged = billed_for_what_arrived(r, fault, rows)
    assert sum(x["cost_usd"] for x in rows) == pytest.approx(charged)
    for ref in (FIRST, LATER):
        state = r.breaker(ref)["state"]
        assert state == ("open" if fault.cooldown_at_least_s else "closed")


# a sample through the gateway: each fault once, the formats taking turns
GATEWAY_SAMPLE = [(APIS[i % len(APIS)], f) for i, f in enumerate(FAULTS)]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("api", "fault"), GATEWAY_SAMPLE, ids=[f"{SHORT_API[a]}-{f.name}" for a, f in GATEWAY_SAMPLE]
)
async def test_all_failed_through_the_gateway_is_an_openai_503(
    rig: RigFactory, api: str, fault: Fault, stream: bool
) -> None:
    refused = ("first", "later") if fault.reply is None else ()
    r: Rig = await rig(api, refused=refused, gateway=True, both_fail=True)
    script(r, fault, FIRST)
    script(r, fault, LATER)
    assert r.gateway is not None
    headers = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": stream}
    async with httpx.AsyncClient(base_url=r.gateway.url, headers=headers, timeout=30) as c:
        resp = await c.post("/v1/chat/completions", json=body)

    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["x-should-retry"] == "false"
    assert resp.headers["x-openclaw-route"] == f"failed; attempts={2 * fault.calls}"
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["code"]) == ("server_error", "all_models_failed")
    assert f"tier 0 {FIRST}: {fault.outcome} ({fault.reason}" in err["message"]
    assert f"tier 1 {LATER}: {fault.outcome} ({fault.reason}" in err["message"]
    assert "Traceback" not in resp.text
    rows = await r.rows()
    assert len(rows) == 2 * fault.calls
    assert {x["request_id"] for x in rows} == {resp.headers["x-openclaw-request-id"]}


BROKEN_AFTER_FIRST_BYTE = [
    Reply(text="a visible partial answer", cut_stream=True),
    Reply(text="a visible partial answer", abort_stream=True),
    Reply(text="a visible partial answer", stall=True),
]


@pytest.mark.parametrize(
    ("reply", "kind"),
    list(zip(BROKEN_AFTER_FIRST_BYTE, ["stream_cut", "stream_cut", "timeout"], strict=True)),
    ids=["cut", "dropped", "stall"],
)
@pytest.mark.parametrize("api", APIS, ids=[SHORT_API[a] for a in APIS])
async def test_a_stream_broken_after_its_first_byte(
    rig: RigFactory, api: str, reply: Reply, kind: str
) -> None:
    """Content went out, so there is no failover: a clear error, and the call is billed
    for what it sent (the engine's floor: the prompt estimate and a token per 4 chars)."""
    r: Rig = await rig(api)
    r.fake.script("fault-model", reply)
    r.fake.script("answer-model", ANSWER)
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for item in r.engine.stream(ChatRequest(MESSAGES)):
            if isinstance(item, StreamDelta):
                got.append(item.content)
    assert info.value.kind == kind
    sent = "".join(got)
    assert sent and reply.text.startswith(sent)
    assert r.calls(LATER) == 0  # no second model after the first byte
    (row,) = await r.rows()
    assert row["outcome"] == "unavailable" and row["model"] == "fault-model"
    billed = Usage(estimate_input_tokens(MESSAGES), len(sent) // 4 + 1)
    assert (row["input_tokens"], row["output_tokens"]) == (
        billed.input_tokens,
        billed.output_tokens,
    )
    assert row["cost_usd"] == pytest.approx(price(r.config, FIRST, billed)) and row["cost_usd"] > 0
    assert r.breaker(FIRST)["state"] == "open"


async def test_a_stream_broken_after_its_first_byte_through_the_gateway(rig: RigFactory) -> None:
    r: Rig = await rig(OPENAI, gateway=True)
    r.fake.script("fault-model", Reply(text="a visible partial answer", abort_stream=True))
    assert r.gateway is not None
    headers = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with httpx.AsyncClient(base_url=r.gateway.url, headers=headers, timeout=30) as c:
        resp = await c.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200
    events = [line.removeprefix("data: ") for line in resp.text.split("\n\n") if line]
    last = json.loads(events[-1])
    assert last["error"]["code"] == "stream_interrupted"
    assert "stream_cut" in last["error"]["message"]
    assert json.loads(events[0])["choices"][0]["delta"]["content"]
    (row,) = await r.rows()
    assert row["outcome"] == "unavailable" and row["cost_usd"] > 0


async def _leave_after_first_chunk(r: Rig) -> bytes:
    """A streaming client that reads the first chunk, then hangs up."""
    assert r.gateway is not None
    headers = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with aiohttp.ClientSession(headers=headers) as s:
        resp = await s.post(r.gateway.url + "/v1/chat/completions", json=body)
        first = await resp.content.readany()
        resp.close()  # drops the connection mid-stream
    return first


async def _wait_rows(r: Rig, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows once they are settled (a call is 'pending' while in flight)."""

    async def settled() -> list[dict[str, Any]] | None:
        rows = await r.rows()
        return rows if len(rows) >= n and all(x["outcome"] != "pending" for x in rows) else None

    # the gateway notices the hang-up on its next write
    return await until(settled, what=f"{n} attempt rows settled")


@pytest.mark.parametrize("api", APIS, ids=[SHORT_API[a] for a in APIS])
async def test_a_client_gone_before_the_upstream_breaks_is_no_server_error(
    rig: RigFactory, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The upstream stalls after the first byte, the client leaves, then the read times
    out: the stream's error event has nobody to go to, which is not a gateway failure."""
    r: Rig = await rig(api, gateway=True)
    r.fake.script("fault-model", Reply(text="a visible partial answer", stall=True))
    assert b"data: " in await _leave_after_first_chunk(r)
    (row,) = await _wait_rows(r, 1)
    assert row["outcome"] == "unavailable" and row["reason"].startswith("timeout")
    assert r.gateway is not None
    state = r.gateway.web_app[STATE]
    # the handler finishes right after the row
    await until(lambda: state.in_flight == 0, what="the gateway's handler finished")
    errors = [x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR]
    assert not [e for e in errors if "unexpected error" in e], errors


@pytest.mark.parametrize("api", APIS, ids=[SHORT_API[a] for a in APIS])
async def test_a_client_gone_mid_stream_is_recorded_as_cancelled(
    rig: RigFactory, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine stops the upstream call and keeps its row, priced at the worst case."""
    r: Rig = await rig(api, gateway=True)
    r.fake.script("fault-model", Reply(text="word " * 40, frame_delay_s=0.02))
    await _leave_after_first_chunk(r)
    (row,) = await _wait_rows(r, 1)
    assert row["outcome"] == "cancelled" and row["model"] == "fault-model"
    worst = Usage(estimate_input_tokens((Message("user", "x"),)), 256)
    assert (row["input_tokens"], row["output_tokens"]) == (worst.input_tokens, 256)
    assert row["cost_usd"] == pytest.approx(price(r.config, FIRST, worst))
    assert r.calls(LATER) == 0
    assert r.breaker(FIRST)["state"] == "closed"  # a caller leaving says nothing of the model
    errors = [x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR]
    assert not [e for e in errors if "unexpected error" in e], errors
