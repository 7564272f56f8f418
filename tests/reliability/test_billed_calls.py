"""Nothing billed goes unrecorded: `serve` killed with SIGKILL while chats are at the
upstream leaves a ledger row for each (recorded before the call left), and the next
start prices them at their worst case, so usage and budgets count every call a provider
may bill (issue 13: before, the fake upstream saw 20 calls and the ledger had 0 rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from core.engine.ledger import INTERRUPTED
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.procs import clean_env, start_serve
from tests.reliability import secrets

IN_FLIGHT = 20
CONFIG = """
[gateway]
port = 0

[routing]
default_task = "chat"
probe_interval_s = 0

[providers.flash]
api = "openai-completions"
base_url = "{url}"
api_key_env = "OPENCLAW_TEST_KEY"
timeout_s = 60

[models."flash/m"]
max_tokens = 1000
cost = {{ input = 1.0, output = 10.0 }}

[[tiers]]
level = 0
models = ["flash/m"]

[tasks]
chat = 0
"""


def _chat(request: RecordedRequest) -> bool:
    return request.path.endswith("/chat/completions")  # not the start-up probe


def _rows(db: Path) -> list[sqlite3.Row]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute("SELECT * FROM attempts ORDER BY id"))


@pytest.mark.timeout(180)
async def test_calls_in_flight_at_a_kill_are_recorded_and_priced(
    fake_llm: FakeLLM, tmp_path: Path, log_dir: Path
) -> None:
    fake_llm.default = Reply(hang=True)  # every call is at the upstream when the kill lands
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(CONFIG.format(url=fake_llm.base_url("openai")), encoding="utf-8")
    db = tmp_path / "billed.db"
    env = clean_env(
        cfg,
        db,
        OPENCLAW_GATEWAY_TOKEN=secrets.GATEWAY_TOKEN,
        OPENCLAW_TEST_KEY="sk-test-billed",
    )
    stderr = log_dir / "billed_calls.serve.log"
    served = await start_serve(env, stderr_path=stderr)
    try:
        async with httpx.AsyncClient(
            base_url=served.url,
            timeout=30,
            headers={"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"},
        ) as client:
            body = {"model": "auto", "messages": [{"role": "user", "content": "x " * 400}]}
            chats = [
                asyncio.create_task(client.post("/v1/chat/completions", json=body))
                for _ in range(IN_FLIGHT)
            ]
            await fake_llm.wait_for_requests(IN_FLIGHT, timeout_s=60, where=_chat)
            assert await served.stop(signal.SIGKILL) == -signal.SIGKILL
            await asyncio.gather(*chats, return_exceptions=True)
    finally:
        await served.stop(signal.SIGKILL)
    rows = _rows(db)
    assert len(rows) == IN_FLIGHT == sum(map(_chat, fake_llm.requests))
    assert {r["outcome"] for r in rows} == {"pending"}

    served = await start_serve(env, stderr_path=stderr)
    try:
        recovered = "".join(served.lines)
        assert f"{IN_FLIGHT} calls cut off mid-flight" in recovered, recovered
        async with httpx.AsyncClient(
            base_url=served.url,
            timeout=30,
            headers={"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"},
        ) as client:
            usage = (await client.get("/api/usage", params={"since": "1d"})).json()
    finally:
        assert await served.stop() == 0
    rows = _rows(db)
    assert {(r["outcome"], r["reason"]) for r in rows} == {("interrupted", INTERRUPTED)}
    worst = rows[0]["input_tokens"] * 1.0e-6 + 1000 * 10.0e-6
    assert rows[0]["output_tokens"] == 1000 and rows[0]["input_tokens"] > 0
    assert all(r["cost_usd"] == pytest.approx(worst) for r in rows)
    assert usage["cost_usd"] == pytest.approx(IN_FLIGHT * worst)
