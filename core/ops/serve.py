"""`openclaw serve`: one process, one loop — gateway, scheduler, delivery, run adoption."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from core import __version__
from core.app import App, missing_keys
from core.errors import StoreUnavailable
from core.gateway import Gateway, PortInUse
from core.ops.backoff import Backoff
from core.ops.heartbeat import Heartbeat, serve_checks
from core.ops.probes import Prober
from core.store.sqlite import SQLiteStore
from core.waits import wait_set, within

log = logging.getLogger("openclaw.serve")
ADOPT_INTERVAL_S = 1.0
DRAIN_ON_STOP_S = 5.0  # the last delivery pass at shutdown (inside launchd's ExitTimeOut)
GC_YOUNG_THRESHOLD = 10_000  # objects allocated between young collections (default 700)


def route_table(app: App, verdicts: dict[str, str] | None = None) -> str:
    """Tiers with each model's state after the start-up probe — and, for each one that is
    down, how to bring it up — then the task map."""
    cfg = app.config
    verdicts = verdicts or {}
    lines = ["Tiers:"]
    for t in sorted(cfg.tiers, key=lambda t: t.level):
        flag = "  (requires approval)" if t.requires_approval else ""
        lines.append(f"  tier {t.level}{flag}")
        up = 0
        for ref in t.models:
            verdict = verdicts.get(ref.split("/", 1)[0], "not probed")
            up += verdict == "ok"
            state = "ready" if verdict == "ok" else f"unavailable: {verdict}"
            lines.append(f"    {ref:<40} {state}")
        if not up:
            lines.append(f"    → tier {t.level} is unavailable until one of these is fixed")
    lines.append("Tasks:")
    for name in sorted(cfg.tasks, key=lambda n: (cfg.task_tier(n), n)):
        lines.append(f"  {name:<16} → tier {cfg.task_tier(name)}")
    return "\n".join(lines)


async def _adopt_forever(app: App, stop: asyncio.Event) -> None:
    """Runs queued by other processes (the CLI) are taken here; a failing store is retried
    after a growing wait, with one warning per step."""
    backoff = Backoff("adopting queued runs", log)
    while not stop.is_set():
        wait_s = ADOPT_INTERVAL_S
        app.runner.queued.clear()  # before claiming: a run queued meanwhile wakes the wait
        try:
            await app.runner.adopt_unclaimed()
            backoff.succeeded()
        except Exception as e:
            wait_s = backoff.failed(e)  # the store raises StoreUnavailable itself
        await _wait_any(stop, app.runner.queued, wait_s)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout_s: float) -> None:
    """Until ``stop`` or ``wake`` is set, or ``timeout_s`` passed (polling stays the fallback
    of every wake-up)."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def recover(app: App) -> tuple[list[int], int, int, int]:
    """What a dead process left behind: its runs queued again, its outbox claims given
    back, its pending approvals expired, its calls in flight priced at the worst case."""
    requeued = await app.runner.recover()
    released = await app.outbox.release_stale()
    expired = await app.approvals.expire_abandoned()
    priced = await app.ledger.recover()  # calls a kill left in flight: billed, maybe
    return requeued, released, expired, priced


class Leadership:
    """Several instances on one database: a heartbeat each ``[cluster] heartbeat_s``; the
    leader runs the scheduler, the Telegram side of the extensions, the approvals' sweep
    (each heartbeat) and, every ``recover_every_s``, the recovery of what dead instances
    left."""

    def __init__(self, app: App, extensions: list[Extension], leading: bool) -> None:
        self.app = app
        self.extensions = extensions
        self.leading = leading
        self.last_sweep = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.app.config.cluster
        while not stop.is_set():
            if await wait_set(stop, cfg.heartbeat_s):
                return
            try:
                await self.step()
            except StoreUnavailable as e:  # an outage: the next heartbeat tries again
                log.warning("the leader's recovery sweep: %s", e)
            except Exception:  # the loop must not die: the next heartbeat tries again
                log.exception("cluster heartbeat")

    async def step(self) -> None:
        now_leading = await self.app.cluster.campaign()
        if now_leading and not self.leading:
            self.leading = True
            await self._gain()
        elif self.leading and not now_leading:
            self.leading = False
            await self._lose()
        elif now_leading and time.monotonic() - self.last_sweep >= (
            self.app.config.cluster.recover_every_s
        ):
            self.last_sweep = time.monotonic()
            requeued, released, expired, priced = await recover(self.app)
            if requeued or released or expired or priced:
                log.warning(
                    "recovered what a stopped instance left: %d runs queued again, %d outbox"
                    " rows resumed, %d approvals expired, %d calls priced",
                    len(requeued),
                    released,
                    expired,
                    priced,
                )
            # a drill of an instance that stopped: on PostgreSQL its owner is alive until
            # its heartbeat is stale, so the sweep ends it, not only a start
            if ended := await self.app.drills.end_orphans():
                log.warning("%d failure drills of a stopped instance: ended (restart)", ended)
        if self.leading:
            # approvals a missed notification or a leader change left unshown or open
            await self.app.approvals.sweep()

    async def _gain(self) -> None:
        # no recovery yet: after an outage of the database every instance's heartbeat is
        # stale and its liveness lock gone until it reconnects; one ``leader_timeout_s``
        # gives each live one its heartbeats, so only the dead look dead (a sweep sooner
        # would hand live instances' running runs to recovery)
        cfg = self.app.config.cluster
        self.last_sweep = time.monotonic() - cfg.recover_every_s + cfg.leader_timeout_s
        await self.app.scheduler.start()
        for ext in self.extensions:
            try:
                await ext.lead()
            except Exception:
                log.exception("an extension failed to take the lead")
        self.app.outbox.wakeup.set()  # Telegram rows are this one's now

    async def _lose(self) -> None:
        self.app.scheduler.stop()
        for ext in self.extensions:
            try:
                await ext.follow()
            except Exception:
                log.exception("an extension failed to step down")


def _heartbeat(app: App, delivery_running: Callable[[], bool]) -> Heartbeat | None:
    """The dead-man's switch if ``[heartbeat] url_env`` names one (its URL unset: status
    and the log say so, and the monitor, getting nothing, alerts)."""
    cfg = app.config.heartbeat
    if cfg.url_env is None:
        return None
    secret = app.settings.secret(cfg.url_env)
    if secret is None:
        log.warning("[heartbeat] url_env: %s is not set: no pings", cfg.url_env)
    checks = serve_checks(
        app.store,
        app.store.path.parent if isinstance(app.store, SQLiteStore) else None,
        lambda: not app.cluster.is_leader() or app.scheduler.running,
        delivery_running,
        cfg,
        app.runner.clock,
        lambda: app.scheduler.watch.stuck() if app.cluster.is_leader() else None,
    )
    return Heartbeat(
        cfg,
        secret.get_secret_value() if secret else None,
        app.http,
        checks,
        app.runner.clock,
        leading=app.cluster.is_leader,
    )


class Extension(Protocol):
    """Something that plugs into serve (the Telegram bot); core never imports it."""

    def routes(self) -> dict[str, Any]:
        """POST endpoints to mount on the gateway (they check their own credentials)."""
        ...

    async def start(self) -> None:
        """Start once the gateway, scheduler and delivery run."""
        ...

    async def stop(self) -> None:
        """Stop before the app closes."""
        ...

    async def lead(self) -> None:
        """This instance leads (alone, right after start): poll Telegram, set its webhook."""
        ...

    async def follow(self) -> None:
        """Another instance leads now: stop what only the leader does."""
        ...

    def summary(self) -> str:
        """One line for the start-up summary."""
        ...


async def serve(
    app: App,
    token: str,
    token_source: str,
    host: str,
    port: int,
    config_path: Path,
    extensions: list[Extension] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    extensions = extensions or []
    routes: dict[str, Any] = {}
    for ext in extensions:
        routes.update(ext.routes())
    gateway = Gateway(app.facade, token, host, port, routes)
    stop = asyncio.Event()  # handlers first: a SIGTERM right after start-up still stops cleanly
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    intake: list[asyncio.Task[None]] = []  # taking new work: adopting queued runs, probes
    delivering = asyncio.Event()  # set: the delivery worker stops
    delivery: asyncio.Task[None] | None = None
    started: list[Extension] = []
    try:
        try:
            await gateway.start()
        except PortInUse as e:
            print(f"openclaw serve: {e}", file=sys.stderr)
            return 1
        await app.start_embedded()
        # only the leader schedules and sends Telegram rows; alone, this one leads
        app.scheduler.may_fire = app.cluster.is_leader
        app.outbox.is_leader = app.cluster.is_leader
        if app.cluster.shared:  # alone it shows approvals even while shutting down
            app.approvals.is_leader = app.cluster.is_leader
        leading = await app.cluster.campaign()
        # recovery: what a crash left behind (the leader's job)
        requeued, released, expired, priced = await recover(app) if leading else ([], 0, 0, 0)
        # a restart ends a drill: rows a stopped process left running say so
        if ended := await app.drills.end_orphans():
            log.warning("%d failure drills were running when serve stopped: ended (restart)", ended)
        prober = Prober(
            app.config,
            app.providers,
            app.health,
            missing_keys(app.config, app.settings),
            app.drills.drilled,
        )
        verdicts = await prober.probe_all()
        if leading:
            await app.scheduler.start()
        delivery = asyncio.create_task(app.delivery.run(delivering))
        intake.append(asyncio.create_task(_adopt_forever(app, stop)))
        intake.append(asyncio.create_task(prober.run(stop)))
        for ext in extensions:
            try:
                await ext.start()
                if leading:
                    await ext.lead()
            except Exception:  # serve keeps running without it; the log says why
                log.exception("an extension failed to start")
                continue
            started.append(ext)
        if app.cluster.shared:
            leader = Leadership(app, started, leading)
            intake.append(asyncio.create_task(leader.run(stop)))
        heartbeat = _heartbeat(app, lambda: delivery is not None and not delivery.done())
        if heartbeat is not None:
            app.overview.add_status_hook("heartbeat", heartbeat.describe)
            intake.append(asyncio.create_task(heartbeat.run(stop)))
        print(
            f"openclaw {__version__} serving; config {config_path}; db {app.store.location}",
            flush=True,
        )
        print(f"gateway {gateway.url} (token from {token_source})", flush=True)
        print(f"console {gateway.url}/ui/ (log in with the same token)", flush=True)
        if app.cluster.shared:
            role = "the leader" if leading else "a follower"
            print(
                f"Cluster: this instance ({app.owner}) is {role}; "
                f"{len(await app.cluster.instances())} instances on the database",
                flush=True,
            )
        print(route_table(app, verdicts), flush=True)
        if requeued or released or expired or priced:
            print(
                f"Recovered: {len(requeued)} interrupted runs queued again, {released} "
                f"outbox rows resumed, {expired} abandoned approvals expired, {priced} calls "
                "cut off mid-flight recorded at their worst-case cost",
                flush=True,
            )
        for model in app.embedded.values():
            d = model.describe()
            print(
                f"Embedded model {d['provider']}: {d['state']} on port {d['port']} "
                f"({model.gguf.name}, {d['threads']} threads)",
                flush=True,
            )
        agents = app.scheduler.scheduled_agents()
        print(f"Agents: {len(app.config.agents)} configured, {len(agents)} scheduled", flush=True)
        for agent in agents:
            print(
                f"  {agent.name:<24} {agent.schedule} ({agent.timezone}) next "
                f"{app.scheduler.next_fire(agent)}",
                flush=True,
            )
        for ext in started:
            print(ext.summary(), flush=True)
        if not extensions:
            print("Telegram bot: off (TELEGRAM_BOT_TOKEN is not set)", flush=True)
        # what start-up built lives as long as the process: keep it out of every
        # later collection, which shortens the pauses that show in tail latency
        gc.collect()
        gc.freeze()
        # a request's objects die by reference counting, not by the cycle collector, but
        # at the default threshold (700) it still ran ~960 times per 10 000 gateway
        # requests (bench/gateway_overhead.py, c=64), ~17 µs of CPU per request, and
        # found nothing to free; at 10 000 it ran once
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
        await stop.wait()
        print("openclaw: shutting down", flush=True)
    finally:
        # 1. stop taking new work: schedules, the gateway, adoption and probes; another
        # instance takes over the leadership (this one stays alive: its runs finish)
        stop.set()
        app.scheduler.stop()
        await app.cluster.resign()
        await gateway.stop()
        for task in intake:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # 2. running runs finish within the grace period (the bot can still approve them
        # and report them), then the rest are interrupted
        await app.runner.shutdown(app.config.serve.shutdown_grace_s)
        # 3. a last delivery pass for what they produced, then the worker and the bot stop.
        # A send still waiting for its answer then is cut off: its row is not resent at
        # the next start but becomes unknown (the admins decide), or pending again where
        # [delivery] on_unknown resends (webhooks, with the same Idempotency-Key)
        deadline = loop.time() + DRAIN_ON_STOP_S
        with contextlib.suppress(Exception):
            await within(app.delivery.drain(), DRAIN_ON_STOP_S)
        delivering.set()
        if delivery is not None:
            await asyncio.wait({delivery}, timeout=max(0.0, deadline - loop.time()))
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery
        for ext in reversed(started):
            try:
                await ext.stop()
            except Exception:
                log.exception("stopping an extension failed")
    return 0
