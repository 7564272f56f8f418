"""The PostgreSQL server goes away under a running `openclaw serve`, then comes back
(README, "When the database is unreachable"): what was decided, checked on a real server
stopped with ``pg_ctl stop -m immediate`` (a crash of the server: every session cut) and
started again on the same data.

While it is down:
- the process stays up and ``/health`` answers 200; ``/readyz`` answers 503;
- a chat completion is refused with 503 ``store_unavailable`` before any upstream call
  (nothing is paid whose record could not be kept), and so is starting a run;
- the leader stops leading, and ``/api/status`` still answers, saying so and that the
  store is unavailable;
- a run whose model call was under way when the server went down waits to record its
  outcome; the model's answer could not be recorded (the engine's ledger write failed), so
  the outcome is ``interrupted``.

Once it is back: the instance leads again, the interrupted run is recorded and retried by
recovery exactly once (ok, delivered), new runs and chat completions are served, and the
instance is still one instance (nothing of its own was taken for a dead one's).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.fakes.llm import FakeLLM, Reply
from tests.fakes.receiver import FakeReceiver
from tests.fakes.wait import until
from tests.pg import Cluster, start_cluster
from tests.procs import Served, clean_env, start_serve
from tests.reliability import secrets

CONFIG = """
[gateway]
port = 0

[serve]
shutdown_grace_s = 0.5

[cluster]
heartbeat_s = 0.2
leader_timeout_s = 1.0
recover_every_s = 0.5

[routing]
default_task = "chat"
probe_interval_s = 0

[delivery]
poll_interval_s = 0.2
backoff_s = [0.2]

[channels.webhook.hook]
url = "HOOK"
timeout_s = 5

[providers.local]
api = "ollama"
base_url = "OLLAMA"
timeout_s = 30

[models."local/m"]

[[tiers]]
level = 0
models = ["local/m"]

[tasks]
chat = 0

[[agents]]
name = "digest"
message = "digest {{ message }}"
deliver = ["webhook:hook"]
"""
CHAT = {"model": "task:chat", "messages": [{"role": "user", "content": "hi"}]}
DOWN_S = 4.0  # the outage: longer than leader_timeout_s, so every heartbeat is stale


@pytest.fixture
def own_pg() -> Iterator[Cluster]:
    """A cluster of this test's own: it is stopped and started under the app."""
    cluster = start_cluster(durable=True)
    try:
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # a failed test may leave it stopped
            cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)  # that exact temp dir


@pytest.fixture
async def hook() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as rx:
        yield rx


def _rows(url: str, sql: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return list(conn.execute(sql.encode()).fetchall())


last_status: list[Any] = []  # what the status said last, for a failure's message


async def _status(client: httpx.AsyncClient, served: Served) -> dict[str, Any]:
    r = await client.get(f"{served.url}/api/status")
    body: dict[str, Any] = r.json() if r.status_code == 200 else {}
    last_status.append(body.get("cluster", r.text))
    return body


@pytest.mark.timeout(240)
async def test_serve_rides_out_a_database_outage(
    own_pg: Cluster, fake_llm: FakeLLM, hook: FakeReceiver, tmp_path: Path, log_dir: Path
) -> None:
    db = own_pg.new_database()
    url = own_pg.url(db)
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(
        CONFIG.replace("HOOK", hook.url + "/hook").replace("OLLAMA", fake_llm.base_url("ollama")),
        encoding="utf-8",
    )
    env = clean_env(cfg, tmp_path / "unused.db", OPENCLAW_GATEWAY_TOKEN=secrets.GATEWAY_TOKEN)
    env["OPENCLAW_DB"] = url
    headers = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
    served = await start_serve(env, stderr_path=log_dir / "db_outage.serve.log")
    try:
        async with httpx.AsyncClient(timeout=30, headers=headers) as c:
            await until(lambda: _status(c, served), what="serve's status")
            assert (await _status(c, served))["cluster"]["role"] == "leader"

            # a run whose model call is under way when the server goes down
            fake_llm.script(
                "m", Reply(text="the digest", delay_s=DOWN_S + 2), Reply(text="the digest")
            )
            r = await c.post(f"{served.url}/api/agents/digest/run", json={"message": "one"})
            assert r.status_code == 202, r.text
            waiting = r.json()["run_id"]
            await fake_llm.wait_for_requests(1)

            await asyncio.to_thread(own_pg.stop)
            asked = len(fake_llm.requests)

            # -- down --------------------------------------------------------------------
            health = await c.get(f"{served.url}/health")
            assert health.status_code == 200 and health.json()["ok"] is True
            ready = await c.get(f"{served.url}/readyz")
            assert ready.status_code == 503, ready.text
            chat = await c.post(f"{served.url}/v1/chat/completions", json=CHAT)
            assert chat.status_code == 503, chat.text
            assert chat.json()["error"]["code"] == "store_unavailable"
            assert "Traceback" not in chat.text
            started = await c.post(f"{served.url}/api/agents/digest/run", json={})
            assert started.status_code == 503, started.text
            assert len(fake_llm.requests) == asked  # nothing sent that could not be recorded

            async def stepped_down() -> bool:
                cluster = (await _status(c, served)).get("cluster", {})
                return cluster.get("role") == "follower" and bool(cluster.get("last_error"))

            await until(stepped_down, timeout_s=20, what="the leader stepping down")
            status = await _status(c, served)  # the status answers without the store
            assert status["store"].startswith("unavailable: "), status
            assert status["queues"]["outbox_pending"] is None
            assert served.proc.returncode is None  # it rides the outage out

            await asyncio.sleep(max(0.0, DOWN_S - 2))
            await asyncio.to_thread(own_pg.start)

            # -- back --------------------------------------------------------------------
            async def leads() -> bool:
                return (await _status(c, served)).get("cluster", {}).get("role") == "leader"

            await until(leads, timeout_s=30, what=lambda: f"leading again; {last_status[-1:]}")

            async def recorded() -> dict[str, Any] | None:
                rows = _rows(url, f"SELECT * FROM runs WHERE id = {int(waiting)}")
                return rows[0] if rows and rows[0]["status"] not in ("queued", "running") else None

            run = await until(recorded, timeout_s=60, what="the waiting run's record")
            # its answer came while the store was down: the record of it could not be
            # kept, so the run is interrupted, and recovery retries it exactly once
            assert run["status"] == "interrupted", run
            assert "the store was unavailable" in run["error"], run

            async def retried() -> dict[str, Any] | None:
                rows = _rows(url, f"SELECT * FROM runs WHERE parent_run = {int(waiting)}")
                return rows[0] if rows and rows[0]["status"] not in ("queued", "running") else None

            retry = await until(retried, timeout_s=60, what="the recovery of the waiting run")
            assert (retry["trigger"], retry["status"]) == ("recovery", "ok"), retry
            assert retry["output"] == "the digest"
            await until(lambda: hook.at("/hook"), timeout_s=30, what="its delivery")
            assert [rec.body["run_id"] for rec in hook.at("/hook")] == [retry["id"]]

            chat = await c.post(f"{served.url}/v1/chat/completions", json=CHAT)
            assert chat.status_code == 200, chat.text
            r = await c.post(f"{served.url}/api/agents/digest/run", json={"message": "two"})
            assert r.status_code == 202, r.text
            second = r.json()["run_id"]
            await until(lambda: len(hook.at("/hook")) == 2, timeout_s=30, what="a new run")
            assert hook.at("/hook")[1].body["run_id"] == second
            ready = await c.get(f"{served.url}/readyz")
            assert ready.status_code == 200, ready.text
    finally:
        code = await served.stop()
    assert code == 0
    runs = _rows(url, "SELECT id, trigger, status FROM runs ORDER BY id")
    # one interruption, one retry, nothing run twice, nothing of its own taken for a dead
    # instance's (no second recovery)
    assert [(r["trigger"], r["status"]) for r in runs] == [
        ("api", "interrupted"),
        ("recovery", "ok"),
        ("api", "ok"),
    ], runs
