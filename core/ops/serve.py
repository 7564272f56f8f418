"""`openclaw serve`: one process, one loop — gateway, scheduler, delivery, run adoption."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Protocol

from core import __version__
from core.app import App, missing_keys
from core.gateway import Gateway, PortInUse
from core.ops.backoff import Backoff
from core.ops.probes import Prober

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
        try:
            await app.runner.adopt_unclaimed()
            backoff.succeeded()
        except Exception as e:
            wait_s = backoff.failed(e)  # the store raises StoreUnavailable itself
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait_s)


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
        # recovery: what a crash left behind
        requeued = await app.runner.recover()
        released = await app.outbox.release_stale()
        expired = await app.approvals.expire_abandoned()
        priced = await app.ledger.recover()  # calls a kill left in flight: billed, maybe
        prober = Prober(
            app.config, app.providers, app.health, missing_keys(app.config, app.settings)
        )
        verdicts = await prober.probe_all()
        await app.scheduler.start()
        delivery = asyncio.create_task(app.delivery.run(delivering))
        intake.append(asyncio.create_task(_adopt_forever(app, stop)))
        intake.append(asyncio.create_task(prober.run(stop)))
        for ext in extensions:
            try:
                await ext.start()
            except Exception:  # serve keeps running without it; the log says why
                log.exception("an extension failed to start")
                continue
            started.append(ext)
        print(
            f"openclaw {__version__} serving; config {config_path}; db {app.store.location}",
            flush=True,
        )
        print(f"gateway {gateway.url} (token from {token_source})", flush=True)
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
        # 1. stop taking new work: schedules, the gateway, adoption and probes
        stop.set()
        app.scheduler.stop()
        await gateway.stop()
        for task in intake:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # 2. running runs finish within the grace period (the bot can still approve them
        # and report them), then the rest are interrupted
        await app.runner.shutdown(app.config.serve.shutdown_grace_s)
        # 3. a last delivery pass for what they produced, then the worker and the bot stop
        with contextlib.suppress(Exception):
            await asyncio.wait_for(app.delivery.drain(), DRAIN_ON_STOP_S)
        delivering.set()
        if delivery is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await delivery
        for ext in reversed(started):
            try:
                await ext.stop()
            except Exception:
                log.exception("stopping an extension failed")
    return 0
