"""kill -9 in the middle of a tool loop: the restarted serve marks the run interrupted,
keeps the steps it took for audit, and retries it as a fresh loop (no old tool results)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from core.store.path import DbLocation
from tests.fakes.llm import FakeLLM, FakeToolCall, RecordedRequest, Reply
from tests.fakes.wait import until
from tests.procs import start_serve
from tests.stores import location_env, run_sql

CONFIG = """
[gateway]
port = 0

[routing]
default_task = "chat"

[providers.local]
api = "ollama"
base_url = "{ollama}"
timeout_s = 60

[models."local/qwen3:14b"]

[[tiers]]
level = 0
models = ["local/qwen3:14b"]

[tasks]
chat = 0

[[agents]]
name = "looper"
message = "check and report"
tools = ["notify"]
deliver = ["log"]
"""


def chat(r: RecordedRequest) -> bool:
    return r.path.startswith("/api/chat")


def rows(db: DbLocation, sql: str) -> list[tuple[object, ...]]:
    return run_sql(db, sql)


@pytest.mark.timeout(180)
async def test_kill_9_mid_loop_then_a_fresh_loop_and_the_old_steps_kept(
    fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation
) -> None:
    call = Reply(text="", tool_calls=[FakeToolCall("notify", {"text": "OLD-RUN-NOTICE"})])
    fake_llm.script(
        "qwen3:14b",
        call,  # the first run's turn 1
        Reply(hang=True),  # its turn 2: in flight when serve is killed
        Reply(text="", tool_calls=[FakeToolCall("notify", {"text": "new notice"})]),
        Reply(text="all checked"),
    )
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(CONFIG.format(ollama=fake_llm.base_url("ollama")), encoding="utf-8")
    db = store_location
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")} | {
        "OPENCLAW_CONFIG": str(cfg),
        "OPENCLAW_DB": location_env(db),
        "OPENCLAW_GATEWAY_TOKEN": "tok-123",
    }
    import httpx

    served = await start_serve(env)
    try:
        async with httpx.AsyncClient(
            base_url=served.url, timeout=10, headers={"Authorization": "Bearer tok-123"}
        ) as c:
            r = await c.post("/api/agents/looper/run")
            assert r.status_code == 202
            first = r.json()["run_id"]
        # the second turn is in flight: the first turn's steps were written before it left
        await fake_llm.wait_for_requests(2, timeout_s=30, where=chat)
    finally:
        await served.stop(signal.SIGKILL)
    steps = rows(db, f"SELECT kind, tool, outcome FROM run_steps WHERE run_id = {first}")
    assert steps == [("model", None, "ok"), ("tool", "notify", "ok")]

    served = await start_serve(env)
    try:

        async def retried() -> list[tuple[object, ...]] | None:
            got = rows(
                db,
                "SELECT id, status, output FROM runs WHERE trigger = 'recovery'"
                f" AND parent_run = {first}",
            )
            return got if got and got[0][1] not in ("queued", "running") else None

        (again, status, output), *_ = await until(retried, 60, "the recovery run finishing")
        assert (status, output) == ("ok", "all checked")
    finally:
        await served.stop()
    assert rows(db, f"SELECT status FROM runs WHERE id = {first}") == [("interrupted",)]
    # the old run's steps stay; the retry has its own, from step 1
    assert rows(db, f"SELECT kind, step FROM run_steps WHERE run_id = {first} ORDER BY id") == [
        ("model", 1),
        ("tool", 1),
    ]
    assert rows(db, f"SELECT kind, step FROM run_steps WHERE run_id = {again} ORDER BY id") == [
        ("model", 1),
        ("tool", 1),
        ("model", 2),
    ]
    # the retry's first turn is a fresh loop: nothing of the interrupted run's calls
    retry_first = [r for r in fake_llm.requests if chat(r)][2]
    assert "OLD-RUN-NOTICE" not in json.dumps(retry_first.body)
    assert [m["role"] for m in retry_first.body["messages"]] == ["user"]
