"""The dead-man's switch: pings to a real loopback monitor only while serve is healthy;
withheld when the delivery worker stalls, the scheduler stops, the store or the disk
fails; a failed ping logged and shown, never fatal; the URL never shown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from core.config.ops import HeartbeatConfig
from core.ops.heartbeat import Heartbeat, serve_checks
from core.store.base import Store
from core.store.path import DbLocation
from core.store.times import utcnow_iso
from tests.fakes.llm import FakeLLM
from tests.fakes.receiver import Answer, FakeReceiver
from tests.fakes.wait import until
from tests.procs import clean_env, run_cli, start_serve
from tests.stores import location_env

SECRET_PATH = "/ping/5f0c-secret-uuid"


@pytest.fixture
async def monitor() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as rx:
        yield rx


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _cfg(**kw: object) -> HeartbeatConfig:
    return HeartbeatConfig(url_env="HEARTBEAT_URL", **kw)  # type: ignore[arg-type]


async def test_pings_only_while_healthy_and_says_why_not(
    monitor: FakeReceiver, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    problems: list[str] = []

    async def checks() -> list[str]:
        return list(problems)

    now = datetime(2026, 12, 1, 8, tzinfo=UTC)
    hb = Heartbeat(_cfg(), monitor.url + SECRET_PATH, lambda: session, checks, lambda: now)
    assert hb.describe()["state"] == "starting"
    assert await hb.beat() is True
    assert len(monitor.at(SECRET_PATH)) == 1
    assert hb.describe() | {} == {
        "url_env": "HEARTBEAT_URL",
        "every_s": 60.0,
        "last_ping": utcnow_iso(now),
        "state": "ok",
    }
    problems.append("the delivery worker is stalled: a message waiting for 400s")
    assert await hb.beat() is False
    assert len(monitor.at(SECRET_PATH)) == 1  # nothing sent while unhealthy
    assert hb.describe()["state"].startswith("withheld: the delivery worker is stalled")
    assert hb.describe()["last_ping"] == utcnow_iso(now)  # the last good one
    problems.clear()
    monitor.script(SECRET_PATH, Answer(status=503))
    assert await hb.beat() is False
    assert hb.describe()["state"] == "failing: the monitor answered HTTP 503"
    assert await hb.beat() is True and hb.describe()["state"] == "ok"
    text = caplog.text + str(hb.describe())
    assert "heartbeat withheld" in caplog.text and "heartbeat ping failed" in caplog.text
    assert SECRET_PATH not in text and "5f0c-secret" not in text


async def test_a_follower_does_not_ping(
    monitor: FakeReceiver, session: aiohttp.ClientSession
) -> None:
    async def checks() -> list[str]:
        return []

    hb = Heartbeat(
        _cfg(), monitor.url + SECRET_PATH, lambda: session, checks, leading=lambda: False
    )
    assert await hb.beat() is False and monitor.at(SECRET_PATH) == []
    assert hb.describe()["state"] == "follower: the leader pings"


async def test_an_unreachable_monitor_is_a_failure_not_a_crash(
    session: aiohttp.ClientSession, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    async def checks() -> list[str]:
        return []

    url = f"http://127.0.0.1:{closed_port}{SECRET_PATH}"
    hb = Heartbeat(_cfg(), url, lambda: session, checks)
    assert await hb.beat() is False
    assert hb.describe()["state"].startswith("failing: Client")
    assert SECRET_PATH not in caplog.text


async def _add_outbox(store: Store, status: str, at: datetime) -> None:
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO outbox (kind, target, body, status, next_attempt_at, created_at,"
            " claimed_at) VALUES ('result', 'webhook:x', 'b', ?, ?, ?, ?)",
            (status, utcnow_iso(at), utcnow_iso(at), utcnow_iso(at)),
        )


async def test_serve_checks_on_a_real_store(store: Store, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cfg = _cfg(stall_after_s=300)
    running = {"scheduler": True, "delivery": True}
    checks = serve_checks(
        store, None, lambda: running["scheduler"], lambda: running["delivery"], cfg, lambda: now
    )
    assert await checks() == []
    await _add_outbox(store, "pending", now - timedelta(seconds=60))  # due a minute: fine
    assert await checks() == []
    running["scheduler"] = False
    assert await checks() == ["the scheduler is not running"]
    running |= {"scheduler": True, "delivery": False}
    assert await checks() == ["the delivery worker is not running"]
    running["delivery"] = True
    later = serve_checks(
        store, None, lambda: True, lambda: True, cfg, lambda: now + timedelta(minutes=5)
    )
    assert await later() == ["the delivery worker is stalled: a message waiting for 360s"]
    full = serve_checks(store, tmp_path, lambda: True, lambda: True, _cfg(min_free_mb=10**9))
    (why,) = await full()
    assert why.startswith(f"the disk of {tmp_path} has ") and why.endswith(" MB free")


async def test_a_send_that_hangs_stalls_the_worker(store: Store) -> None:
    now = datetime.now(UTC)
    await _add_outbox(store, "sending", now - timedelta(seconds=400))
    checks = serve_checks(store, None, lambda: True, lambda: True, _cfg(), lambda: now)
    assert await checks() == ["the delivery worker is stalled: a message waiting for 400s"]


SERVE_CONFIG = """
[gateway]
port = 0

[serve]
shutdown_grace_s = 0.5

[heartbeat]
url_env = "HEARTBEAT_URL"
every_s = 1
stall_after_s = 1

[delivery]
poll_interval_s = 0.2

[channels.webhook.hook]
url = "HOOK"
timeout_s = 60

[providers.local]
api = "ollama"
base_url = "OLLAMA"

[models."local/m"]

[[tiers]]
level = 0
models = ["local/m"]

[tasks]
chat = 0

[[agents]]
name = "a"
task = "chat"
message = "x"
deliver = ["webhook:hook"]
"""


async def test_serve_pings_and_stops_when_a_delivery_hangs(
    monitor: FakeReceiver, fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation
) -> None:
    cfg = tmp_path / "openclaw.toml"
    text = SERVE_CONFIG.replace("HOOK", monitor.url + "/hook")
    cfg.write_text(text.replace("OLLAMA", fake_llm.base_url("ollama")), encoding="utf-8")
    env = clean_env(
        cfg,
        location_env(store_location),
        OPENCLAW_GATEWAY_TOKEN="tok-hb",
        HEARTBEAT_URL=monitor.url + SECRET_PATH,
    )
    served = await start_serve(env)
    headers = {"Authorization": "Bearer tok-hb"}
    try:
        async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=10) as c:

            async def heartbeat() -> dict[str, Any]:
                hb: dict[str, Any] = (await c.get("/api/status")).json()["heartbeat"]
                return hb

            await until(lambda: len(monitor.at(SECRET_PATH)) >= 2, what="two pings")
            hb = await heartbeat()
            assert hb["state"] == "ok" and hb["last_ping"] and hb["url_env"] == "HEARTBEAT_URL"
            # a webhook that never answers: its row stays `sending`, the worker is stuck
            monitor.script("/hook", Answer(delay_s=10))
            r = await c.post("/api/agents/a/run", json={})
            assert r.status_code == 202, r.text

            async def withheld() -> bool:
                return (await heartbeat())["state"].startswith(
                    "withheld: the delivery worker is stalled"
                )

            await until(withheld, what="the heartbeat withheld")
            pings = len(monitor.at(SECRET_PATH))
            await asyncio.sleep(2.5)  # two and a half beats: none goes out
            assert len(monitor.at(SECRET_PATH)) == pings
            port = served.url.rsplit(":", 1)[1]
            cfg.write_text(cfg.read_text("utf-8").replace("port = 0", f"port = {port}"), "utf-8")
            code, out, _ = await run_cli(env, "status")
            assert code == 0 and "heartbeat (HEARTBEAT_URL): withheld: the delivery" in out
    finally:
        await served.stop()
    assert SECRET_PATH not in "".join(served.lines)
