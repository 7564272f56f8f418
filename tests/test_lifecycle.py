"""`openclaw serve` as a real process: readiness, SIGTERM mid-run, kill -9 mid-run and
mid-delivery, a taken port. Upstreams are the loopback fakes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.store.path import DbLocation
from tests.fakes.llm import FakeLLM, Reply, echo
from tests.fakes.receiver import Answer, FakeReceiver
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wait import until
from tests.procs import Served, start_serve
from tests.stores import NewLocation, location_env

CONFIG = """
[gateway]
port = {port}

[serve]
shutdown_grace_s = 0.5

[routing]
default_task = "chat"
probe_interval_s = 0

[cluster]
heartbeat_s = 0.2
leader_timeout_s = 1.0
recover_every_s = 0.5

[delivery]
claim_timeout_s = 1
poll_interval_s = 0.2

[channels.webhook.hook]
url = "{hook}"

[providers.local]
api = "ollama"
base_url = "{ollama}"
timeout_s = 30

[models."local/m"]

[[tiers]]
level = 0
models = ["local/m"]

[tasks]
chat = 0

[[agents]]
name = "slow"
message = "slow work"
deliver = ["webhook:hook"]

[[agents]]
name = "quick"
message = "quick {{{{ message }}}}"
deliver = ["webhook:hook"]
"""
TOKEN = "tok-life"


@pytest.fixture
async def hook() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as rx:
        yield rx


@pytest.fixture
def env(
    fake_llm: FakeLLM, hook: FakeReceiver, tmp_path: Path, store_location: DbLocation
) -> dict[str, str]:
    """serve's environment, its database on this test's engine (both, in turn)."""
    return write_env(fake_llm, hook, tmp_path, 0, location_env(store_location))


def write_env(
    fake_llm: FakeLLM, hook: FakeReceiver, tmp_path: Path, port: int, db: str | None = None
) -> dict[str, str]:
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(
        CONFIG.format(port=port, hook=hook.url + "/hook", ollama=fake_llm.base_url("ollama")),
        encoding="utf-8",
    )
    out = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    return out | {
        "OPENCLAW_CONFIG": str(cfg),
        "OPENCLAW_DB": db or str(tmp_path / "life.db"),
        "OPENCLAW_GATEWAY_TOKEN": TOKEN,
    }


class Serve(Served):
    """A served process with the API calls these tests need."""

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
        )

    async def run(self, agent: str, message: str | None = None) -> int:
        async with self.client() as c:
            r = await c.post(f"/api/agents/{agent}/run", json={"message": message})
            assert r.status_code == 202, r.text
            return int(r.json()["run_id"])

    async def wait_run(self, run_id: int, statuses: tuple[str, ...]) -> dict[str, Any]:
        async with self.client() as c:

            async def reached() -> dict[str, Any] | None:
                run: dict[str, Any] = (await c.get(f"/api/runs/{run_id}")).json()
                return run if run.get("status") in statuses else None

            return await until(reached, timeout_s=20, what=f"run {run_id} reaching {statuses}")


async def start(env: dict[str, str]) -> Serve:
    served = await start_serve(env)
    return Serve(served.proc, served.url, served.lines, served._drain)


async def test_ready_and_clean_stop(env: dict[str, str]) -> None:
    serve = await start(env)
    try:
        async with httpx.AsyncClient(base_url=serve.url) as c:

            async def ready() -> httpx.Response | None:
                r = await c.get("/readyz")
                return r if r.status_code == 200 else None

            r = await until(ready, timeout_s=5, what="/readyz answering 200")
            assert r.json()["ready"] is True
    finally:
        assert await serve.stop() == 0


async def test_sigterm_mid_run_interrupts_then_requeues(
    fake_llm: FakeLLM, env: dict[str, str]
) -> None:
    fake_llm.script("m", Reply(hang=True))
    serve = await start(env)
    rid = await serve.run("slow")
    await serve.wait_run(rid, ("running",))
    assert await serve.stop() == 0  # graceful: exits 0 after the grace period
    fake_llm.default = echo
    serve = await start(env)
    try:
        assert any("1 interrupted runs queued again" in line for line in serve.lines)
        old = await serve.wait_run(rid, ("interrupted",))
        assert "stopped before it finished" in old["error"]
        async with serve.client() as c:
            runs = (await c.get("/api/runs", params={"agent": "slow"})).json()["runs"]
        retry = next(r for r in runs if r["parent_run"] == rid)
        done = await serve.wait_run(retry["id"], ("ok",))
        assert done["trigger"] == "recovery" and done["output"] == "slow work"
    finally:
        await serve.stop()


async def test_kill_9_mid_run_and_mid_delivery_loses_nothing(
    fake_llm: FakeLLM, hook: FakeReceiver, env: dict[str, str], store_engine: str
) -> None:
    fake_llm.default = echo
    serve = await start(env)
    first = await serve.run("quick", "one")  # delivered before the crash
    await until(lambda: hook.at("/hook"), what="the first digest delivered")
    assert len(hook.at("/hook")) == 1
    hook.script("/hook", Answer(delay_s=30))  # the next delivery hangs: killed mid-send
    second = await serve.run("quick", "two")
    await until(lambda: len(hook.at("/hook")) == 2, what="the second digest on its way")
    fake_llm.script("m", Reply(hang=True))
    third = await serve.run("slow")  # killed mid-run
    await serve.wait_run(third, ("running",))
    assert await serve.stop(signal.SIGKILL) == -signal.SIGKILL
    fake_llm.default = echo
    serve = await start(env)
    try:
        if store_engine == "sqlite":  # one process: what it left is recovered at start
            assert any("1 interrupted runs queued again" in line for line in serve.lines)
        # on PostgreSQL the dead instance counts as dead once its heartbeat is older than
        # [cluster] leader_timeout_s: the leader's next sweep recovers it (checked below)
        # the claim of the half-sent row expires (1 s): its outcome is unknown, and a
        # webhook ([delivery] on_unknown default "resend") is sent again at once
        await until(lambda: len(hook.at("/hook")) >= 4, what="both sent after the restart")
        bodies = [r.body["text"] for r in hook.at("/hook")]
        assert bodies.count("quick one") == 1  # confirmed before the crash: never again
        assert bodies.count("quick two") == 2  # the documented window: sent, not confirmed
        assert bodies.count("slow work") == 1  # the interrupted run, retried and delivered
        # with the same Idempotency-Key both times: the receiver can drop the repeat
        keys = {r.body["text"]: set() for r in hook.at("/hook")}
        for r in hook.at("/hook"):
            keys[r.body["text"]].add(r.headers["idempotency-key"])
        assert len(keys["quick two"]) == 1 and keys["quick two"] != keys["quick one"]
        assert all(k.startswith("outbox-") for ks in keys.values() for k in ks)
        async with serve.client() as c:
            status = (await c.get("/api/status")).json()
            runs = (await c.get("/api/runs")).json()["runs"]
        assert status["queues"]["outbox_pending"] == status["queues"]["outbox_unknown"] == 0
        by_id = {r["id"]: r for r in runs}
        assert by_id[first]["status"] == by_id[second]["status"] == "ok"
        assert by_id[third]["status"] == "interrupted"
    finally:
        await serve.stop()


TG_CHAT, TG_ADMIN = 4242, 1001
TG_CONFIG = f"""
[telegram]
admins = [{TG_ADMIN}]
polling_timeout_s = 1

[[agents]]
name = "digest"
message = "digest {{{{ message }}}}"
deliver = ["telegram:{TG_CHAT}"]
"""


async def unknown_card(tg: FakeTelegram) -> dict[str, Any]:
    """The unknown-delivery card, once it reached the admin."""
    card: dict[str, Any] = await until(
        lambda: next((m for m in tg.sent(TG_ADMIN) if "may not have arrived" in m["text"]), None),
        timeout_s=20,
        what="the unknown-delivery card reaching the admin",
    )
    return card


async def test_kill_9_between_a_telegram_send_and_its_confirmation_asks_the_admin(
    fake_llm: FakeLLM, hook: FakeReceiver, env: dict[str, str], tmp_path: Path
) -> None:
    """Telegram has no idempotency key: the half-sent row is not sent again, it becomes
    unknown and the admin gets a card; Mark delivered settles it, still sent once."""
    cfg = Path(env["OPENCLAW_CONFIG"])
    with cfg.open("a", encoding="utf-8") as f:  # noqa: ASYNC230  (a small file, once)
        f.write(TG_CONFIG)
    fake_llm.default = echo
    async with FakeTelegram() as tg:
        env = env | {"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE": tg.url}
        serve = await start(env)
        tg.delay_next("sendMessage", 30)  # Telegram takes it; the answer comes too late
        rid = await serve.run("digest", "one")
        await tg.wait_for(lambda t: len(t.sent(TG_CHAT)) == 1, timeout_s=20)
        assert await serve.stop(signal.SIGKILL) == -signal.SIGKILL
        serve = await start(env)
        try:
            card = await unknown_card(tg)
            assert "digest one" in card["text"]
            async with serve.client() as c:
                status = (await c.get("/api/status")).json()
                run = (await c.get(f"/api/runs/{rid}")).json()
            assert status["queues"]["outbox_unknown"] == 1
            assert [(d["target"], d["status"]) for d in run["deliveries"]] == [
                (f"telegram:{TG_CHAT}", "unknown")
            ]
            keys = {
                b["text"]: b["callback_data"]
                for row in card["reply_markup"]["inline_keyboard"]
                for b in row
            }
            tg.user_press(TG_ADMIN, card, keys["✅ Mark delivered"])
            await tg.wait_for(lambda t: any("Marked delivered" in e["text"] for e in t.edits()))
            async with serve.client() as c:
                run = (await c.get(f"/api/runs/{rid}")).json()
            (delivery,) = run["deliveries"]
            assert delivery["status"] == "delivered" and "confirmed by admin" in delivery["note"]
            assert len(tg.sent(TG_CHAT)) == 1  # never sent a second time
        finally:
            await serve.stop()


async def test_sigterm_while_telegram_holds_the_answer_asks_the_admin_instead_of_resending(
    fake_llm: FakeLLM, hook: FakeReceiver, env: dict[str, str], tmp_path: Path
) -> None:
    """A clean stop cuts off a Telegram send still waiting for Telegram's answer: the
    message may have arrived, so the row becomes unknown and the admin gets a card at the
    next start — it is not sent a second time."""
    cfg = Path(env["OPENCLAW_CONFIG"])
    with cfg.open("a", encoding="utf-8") as f:  # noqa: ASYNC230  (a small file, once)
        f.write(TG_CONFIG)
    fake_llm.default = echo
    async with FakeTelegram() as tg:
        env = env | {"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE": tg.url}
        serve = await start(env)
        tg.delay_next("sendMessage", 60)  # Telegram takes it; the answer comes too late
        rid = await serve.run("digest", "one")
        await tg.wait_for(lambda t: len(t.sent(TG_CHAT)) == 1, timeout_s=20)
        assert await serve.stop(signal.SIGTERM) == 0
        serve = await start(env)
        try:
            card = await unknown_card(tg)
            assert "digest one" in card["text"]
            async with serve.client() as c:
                run = (await c.get(f"/api/runs/{rid}")).json()
            assert [(d["target"], d["status"]) for d in run["deliveries"]] == [
                (f"telegram:{TG_CHAT}", "unknown")
            ]
            await asyncio.sleep(1.5)  # several poll intervals: nothing resends it
            assert len(tg.sent(TG_CHAT)) == 1
        finally:
            await serve.stop()


async def test_port_in_use_is_named(
    fake_llm: FakeLLM, hook: FakeReceiver, tmp_path: Path, new_location: NewLocation
) -> None:
    serve = await start(write_env(fake_llm, hook, tmp_path, 0, location_env(new_location())))
    try:
        port = int(serve.url.rsplit(":", 1)[1])
        other = tmp_path / "other"
        other.mkdir()
        env2 = write_env(fake_llm, hook, other, port, location_env(new_location()))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core.cli",
            "serve",
            env=env2,
            cwd=other,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1
        assert f"port {port} on 127.0.0.1 is already in use" in err.decode()
        assert "--port" in err.decode()
    finally:
        await serve.stop()
