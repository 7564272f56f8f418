"""The PostgreSQL server goes away under a running `openclaw serve`, then comes back
(README, "When the database is unreachable"): what was decided, checked on a real server
stopped with ``pg_ctl stop -m immediate`` (a crash of the server: every session cut) and
started again on the same data.

While it is down:
- the process stays up and ``/health`` answers 200; ``/readyz`` answers 503;
- a chat completion is refused with 503 ``store_unavailable`` before any upstream call
  (nothing is paid whose record could not be kept), and so is starting a run;
- the leader stops leading, and ``/api/status`` and ``openclaw status`` still answer
  quickly, saying so and that the store is unavailable (``?`` for the queue counts);
- a run whose model call was under way when the server went down waits to record its
  outcome; the model's answer could not be recorded (the engine's ledger write failed), so
  the outcome is ``interrupted``; a run queued behind it (``[concurrency] agents = 1``)
  waits;
- a scheduled fire falls inside the outage (the outage is stretched past the next minute).

Once it is back: the instance leads again, the missed fire is caught up (one late run of
that fire), the queued run runs, the interrupted run is recorded and retried by recovery
exactly once (ok, delivered), new runs and chat completions are served, and the instance is
still one instance (nothing of its own was taken for a dead one's). The database role has
a password (``scram-sha-256``, checked by the server): no reconnect, warning or status
output shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
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
from tests.procs import Served, clean_env, run_cli, start_serve
from tests.reliability import secrets
from tests.reliability.conftest import find_leaks
from tests.reliability.sec_util import free_port

CONFIG = """
[gateway]
port = PORT

[serve]
shutdown_grace_s = 0.5

[cluster]
heartbeat_s = 0.2
leader_timeout_s = 1.0
recover_every_s = 0.5

[routing]
default_task = "chat"
probe_interval_s = 0

[concurrency]
agents = 1  # a second run waits for the first one's slot: a queued run

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
[models."local/t"]

[[tiers]]
level = 0
models = ["local/m"]

[[tiers]]
level = 1
models = ["local/t"]

[tasks]
chat = 0
tick = 1

[[agents]]
name = "digest"
message = "digest {{ message }}"
deliver = ["webhook:hook"]

[[agents]]
name = "tick"
message = "tick"
task = "tick"
schedule = "* * * * *"
deliver = ["log"]
"""
CHAT = {"model": "task:chat", "messages": [{"role": "user", "content": "hi"}]}
DOWN_S = 4.0  # the outage: longer than leader_timeout_s, so every heartbeat is stale


ROLE = "claw"  # the app's role: a password the server checks (scram-sha-256)


@pytest.fixture
def own_pg() -> Iterator[Cluster]:
    """A cluster of this test's own: it is stopped and started under the app. Role
    ``claw`` logs in over the socket with its password only (the rest stays trusted)."""
    cluster = start_cluster(durable=True)
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{secrets.DB_PASSWORD}'".encode())
        hba = cluster.data / "pg_hba.conf"
        hba.write_text(f"local all {ROLE} scram-sha-256\n" + hba.read_text())
        cluster.run("pg_ctl", "reload", "-D", str(cluster.data))
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # a failed test may leave it stopped
            cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)  # that exact temp dir


def app_database(cluster: Cluster) -> str:
    """A new database owned by ``claw``; its URL, with the password."""
    db = cluster.new_database()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db}" OWNER TO {ROLE}'.encode())
    with psycopg.connect(cluster.url(db), autocommit=True) as conn:
        conn.execute(f"ALTER SCHEMA public OWNER TO {ROLE}".encode())
    return f"postgresql://{ROLE}:{secrets.DB_PASSWORD}@/{db}?host={cluster.root}"


def asked_m(fake: FakeLLM) -> int:
    """Requests to model ``m`` (the digest's and chat's; the scheduled agent has its own)."""
    return sum(1 for r in fake.requests if r.model == "m")


def next_minute(after: datetime) -> datetime:
    """The first whole minute (a ``* * * * *`` fire) after ``after``."""
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


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


@pytest.mark.timeout(300)
async def test_serve_rides_out_a_database_outage(
    own_pg: Cluster, fake_llm: FakeLLM, hook: FakeReceiver, tmp_path: Path, log_dir: Path
) -> None:
    url = app_database(own_pg)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url.replace(secrets.DB_PASSWORD, "wrong"), connect_timeout=5).close()
    cfg = tmp_path / "openclaw.toml"
    port = free_port()
    cfg.write_text(
        CONFIG.replace("HOOK", hook.url + "/hook")
        .replace("OLLAMA", fake_llm.base_url("ollama"))
        .replace("PORT", str(port)),
        encoding="utf-8",
    )
    env = clean_env(cfg, url, OPENCLAW_GATEWAY_TOKEN=secrets.GATEWAY_TOKEN)
    headers = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
    serve_log = log_dir / "db_outage.serve.log"
    said: dict[str, str] = {}  # what the CLI printed, for the password scan
    served = await start_serve(env, stderr_path=serve_log)
    try:
        async with httpx.AsyncClient(timeout=30, headers=headers) as c:
            await until(lambda: _status(c, served), what="serve's status")
            assert (await _status(c, served))["cluster"]["role"] == "leader"

            # a run whose model call is under way when the server goes down, and one
            # queued behind it (one agent slot)
            fake_llm.script(
                "m",
                Reply(text="the digest", delay_s=DOWN_S + 2),
                Reply(text="the digest"),
                Reply(text="the digest"),
            )
            r = await c.post(f"{served.url}/api/agents/digest/run", json={"message": "one"})
            assert r.status_code == 202, r.text
            waiting = r.json()["run_id"]
            await until(lambda: asked_m(fake_llm), what="the model call of the first run")
            r = await c.post(f"{served.url}/api/agents/digest/run", json={"message": "queued"})
            assert r.status_code == 202, r.text
            queued = r.json()["run_id"]
            assert _rows(url, f"SELECT status FROM runs WHERE id = {int(queued)}") == [
                {"status": "queued"}
            ]

            await asyncio.to_thread(own_pg.stop)
            down_at = datetime.now(UTC)
            # the scheduled fire inside the outage: one at least 1.5 s away, so that it
            # cannot have fired before the server stopped
            fire = next_minute(down_at + timedelta(seconds=1.5))
            asked = asked_m(fake_llm)

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
            assert asked_m(fake_llm) == asked  # nothing sent that could not be recorded

            async def stepped_down() -> bool:
                cluster = (await _status(c, served)).get("cluster", {})
                return cluster.get("role") == "follower" and bool(cluster.get("last_error"))

            await until(stepped_down, timeout_s=20, what="the leader stepping down")
            began = time.monotonic()
            status = await _status(c, served)  # the status answers without the store
            assert time.monotonic() - began < 5, "/api/status took too long"
            assert status["store"].startswith("unavailable: "), status
            assert status["queues"]["outbox_pending"] is None
            began = time.monotonic()
            code, out, err = await run_cli(env, "status", timeout_s=30)
            took = time.monotonic() - began  # the CLI's own start included
            said["status"] = out + err
            saved = f"exit {code} in {took:.2f} s\n{out}{err}"
            (log_dir / "db_outage.status.log").write_text(saved)
            assert code == 0, err
            assert took < 10, f"openclaw status took {took:.1f} s"
            assert "store: unavailable: " in out and "outbox ? pending" in out, out
            assert served.proc.returncode is None  # it rides the outage out

            # down past the fire (and at least DOWN_S), then back
            back_at = max(down_at + timedelta(seconds=DOWN_S), fire + timedelta(seconds=1.5))
            await asyncio.sleep(max(0.0, (back_at - datetime.now(UTC)).total_seconds()))
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
            # the queued run waited and ran once the database was back
            (after,) = _rows(url, f"SELECT * FROM runs WHERE id = {int(queued)}")
            assert (after["status"], after["output"]) == ("ok", "the digest"), after
            assert after["started_at"] > utc_iso(down_at), after
            await until(lambda: len(hook.at("/hook")) == 2, timeout_s=30, what="deliveries")
            assert sorted(rec.body["run_id"] for rec in hook.at("/hook")) == sorted(
                [queued, retry["id"]]
            )

            # the fire that fell in the outage: caught up once, a late run of that fire
            async def caught_up() -> list[dict[str, Any]] | None:
                rows = _rows(url, "SELECT * FROM runs WHERE agent = 'tick' ORDER BY id")
                mine = [r for r in rows if _at(r["scheduled_for"]) == fire]
                return mine if mine and mine[0]["status"] not in ("queued", "running") else None

            (late,) = await until(caught_up, timeout_s=30, what=f"the catch-up of {fire}")
            # "late": it ran after its fire (caught up); "missed" only if a later fire fell
            # in the outage too (a slow host), the newest being the one that runs late
            assert late["trigger"] == "schedule" and late["status"] in ("late", "missed"), late
            assert late["status"] == "missed" or late["output"], late
            assert late["created_at"] > utc_iso(fire), late  # created after the outage

            chat = await c.post(f"{served.url}/v1/chat/completions", json=CHAT)
            assert chat.status_code == 200, chat.text
            r = await c.post(f"{served.url}/api/agents/digest/run", json={"message": "two"})
            assert r.status_code == 202, r.text
            second = r.json()["run_id"]
            await until(lambda: len(hook.at("/hook")) == 3, timeout_s=30, what="a new run")
            assert hook.at("/hook")[2].body["run_id"] == second
            ready = await c.get(f"{served.url}/readyz")
            assert ready.status_code == 200, ready.text
    finally:
        code = await served.stop()
    assert code == 0
    runs = _rows(url, "SELECT id, trigger, status FROM runs WHERE agent = 'digest' ORDER BY id")
    # one interruption, one retry, nothing run twice, nothing of its own taken for a dead
    # instance's (no second recovery)
    assert [(r["trigger"], r["status"]) for r in runs] == [
        ("api", "interrupted"),
        ("api", "ok"),
        ("recovery", "ok"),
        ("api", "ok"),
    ], runs
    ticks = _rows(url, "SELECT scheduled_for, status FROM runs WHERE agent = 'tick'")
    fires = [_at(r["scheduled_for"]) for r in ticks]
    assert len(fires) == len(set(fires)), ticks  # no fire run twice
    # the password: in no log line of the reconnects, no status output
    log_text = serve_log.read_text(errors="replace")
    assert "error connecting in 'openclaw-store'" in log_text, log_text[-3000:]  # reconnects
    said["serve log"] = log_text
    said["serve stdout"] = "".join(served.lines)
    for name, text in said.items():
        assert find_leaks(text, name, [secrets.DB_PASSWORD]) == [], (name, text[-2000:])


def utc_iso(t: datetime) -> str:
    from core.store.times import utcnow_iso

    return utcnow_iso(t)


def _at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


WRONG_PASSWORD = "RELIABILITY-wrong-pg-password-4d5e"


@pytest.mark.timeout(180)
async def test_a_password_from_pgpassword_or_pgpass_is_never_printed(
    own_pg: Cluster, fake_llm: FakeLLM, hook: FakeReceiver, tmp_path: Path, log_dir: Path
) -> None:
    """The URL without a password; libpq takes it from ``PGPASSWORD`` or a ``.pgpass``
    (``PGPASSFILE``), and the server checks it (scram-sha-256). Whatever happens (the
    right password, a wrong one, the server going away under serve and coming back), no
    output, error or log line holds either password."""
    with_password = app_database(own_pg)
    url = with_password.replace(f":{secrets.DB_PASSWORD}@", "@")
    assert secrets.DB_PASSWORD not in url
    cfg = tmp_path / "openclaw.toml"
    port = free_port()
    cfg.write_text(
        CONFIG.replace("HOOK", hook.url + "/hook")
        .replace("OLLAMA", fake_llm.base_url("ollama"))
        .replace("PORT", str(port))
        .replace('schedule = "* * * * *"\n', ""),
        encoding="utf-8",
    )
    base = clean_env(cfg, url, OPENCLAW_GATEWAY_TOKEN=secrets.GATEWAY_TOKEN)
    env = base | {"PGPASSWORD": secrets.DB_PASSWORD}
    out_dir = log_dir / "pgpassword"
    out_dir.mkdir()
    said: dict[str, str] = {}

    async def cli(name: str, environ: dict[str, str], *args: str) -> tuple[int, str, str]:
        code, out, err = await run_cli(environ, *args, timeout_s=60)
        said[name] = out + err
        (out_dir / f"{name}.log").write_text(f"exit {code}\n{out}\n{err}")
        assert "Traceback" not in err, (name, err)
        return code, out, err

    # PGPASSWORD: the store opens (the server checked it)
    code, _, err = await cli("runs", env, "--log-level", "DEBUG", "runs")
    assert code == 0, err
    # a .pgpass: the same
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:*:{ROLE}:{secrets.DB_PASSWORD}\n")
    pgpass.chmod(0o600)
    code, _, err = await cli("runs-pgpass", base | {"PGPASSFILE": str(pgpass)}, "runs")
    assert code == 0, err
    # a wrong one: refused, saying why, with neither password
    wrong = base | {"PGPASSWORD": WRONG_PASSWORD}
    code, _, err = await cli("runs-wrong", wrong, "--log-level", "DEBUG", "runs")
    assert code != 0 and "password authentication failed" in err, err
    code, _, err = await cli("serve-wrong", wrong, "serve")
    assert code == 78 and "password authentication failed" in err, err

    # serve on PGPASSWORD, the server going away under it and coming back
    serve_log = out_dir / "serve.log"
    served = await start_serve(env, stderr_path=serve_log)
    try:
        async with httpx.AsyncClient(
            timeout=30, headers={"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
        ) as c:
            await until(lambda: _status(c, served), what="serve's status")
            code, _, err = await cli("status", env, "status")
            assert code == 0, err
            await asyncio.to_thread(own_pg.stop)

            async def unavailable() -> bool:
                return str((await _status(c, served)).get("store", "")).startswith("unavail")

            await until(unavailable, timeout_s=30, what="the store unavailable")
            code, _, err = await cli("status-down", env, "status")
            assert code == 0, err
            code, _, err = await cli("runs-down", env, "runs")
            assert code != 0 and "cannot connect" in err, err
            await asyncio.to_thread(own_pg.start)

            async def ready() -> bool:
                return (await c.get(f"{served.url}/readyz")).status_code == 200

            await until(ready, timeout_s=30, what="ready again")
    finally:
        assert await served.stop() == 0
    said["serve log"] = serve_log.read_text(errors="replace")
    said["serve stdout"] = "".join(served.lines)
    assert "error connecting in 'openclaw-store'" in said["serve log"]  # it reconnected
    for name, text in said.items():
        leaks = find_leaks(text, name, [secrets.DB_PASSWORD, WRONG_PASSWORD])
        assert leaks == [], (name, text[-2000:])
