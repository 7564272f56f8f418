"""The dead-man's switch: serve pings an external monitor's push URL (healthchecks.io,
Uptime Kuma) every ``[heartbeat] every_s``, but only while the scheduler, the delivery
worker and the store are healthy. The monitor alerts when the pings stop, so a dead host,
a hung event loop or a full disk is noticed: things no message from the host itself can
report. A failed ping is logged and shown in status, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from core.config.ops import HeartbeatConfig
from core.delivery.outbox import QUEUE_HEADS
from core.errors import StoreUnavailable
from core.store.base import Store
from core.store.times import utcnow_iso
from core.waits import wait_set

log = logging.getLogger("openclaw.heartbeat")
Checks = Callable[[], Awaitable[list[str]]]  # what is unhealthy now ([] = all well)


class Heartbeat:
    """Pings ``url`` while ``checks`` find nothing wrong; remembers what happened."""

    def __init__(
        self,
        config: HeartbeatConfig,
        url: str | None,
        session: Callable[[], aiohttp.ClientSession],
        checks: Checks,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.url = url  # a secret (whoever has it can fake the pings): never logged
        self.session = session
        self.checks = checks
        self.clock = clock
        # on several instances the leader pings (it runs the scheduler and Telegram): no
        # leader, no pings, and the monitor says so
        self.leading = leading
        self.last_ping: str | None = None  # when the monitor last took a ping
        self.last_error: str | None = None  # why the last ping failed (None: it went)
        self.withheld: list[str] = []  # why the last beat sent no ping

    async def beat(self) -> bool:
        """One beat: the checks, then the ping if they pass. True if the monitor took it."""
        if self.url is None or not self.leading():
            return False
        try:
            problems = await self.checks()
        except Exception as e:  # a check that cannot run is a problem in itself
            problems = [f"the health checks failed: {type(e).__name__}: {e}"]
        if problems != self.withheld:
            if problems:
                log.warning("heartbeat withheld: %s", "; ".join(problems))
            elif self.withheld:
                log.info("heartbeat resumed: all healthy again")
        self.withheld = problems
        if problems:
            return False
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
            async with self.session().get(self.url, timeout=timeout) as r:
                if r.status >= 300:
                    raise ValueError(f"the monitor answered HTTP {r.status}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            # the URL is a secret: say what failed, never where to
            why = str(e) if isinstance(e, ValueError) else type(e).__name__
            if why != self.last_error:
                log.warning("heartbeat ping failed: %s", why)
            self.last_error = why
            return False
        self.last_error = None
        self.last_ping = utcnow_iso(self.clock())
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every ``every_s`` until ``stop``: the first right away."""
        while not stop.is_set():
            await self.beat()
            await wait_set(stop, self.config.every_s)

    def describe(self) -> dict[str, Any]:
        """For status: the variable (never the URL), the last ping, what holds it back."""
        out: dict[str, Any] = {
            "url_env": self.config.url_env,
            "every_s": self.config.every_s,
            "last_ping": self.last_ping,
        }
        if self.url is None:
            out["state"] = f"off: {self.config.url_env} is not set"
        elif not self.leading():
            out["state"] = "follower: the leader pings"
        elif self.withheld:
            out["state"] = "withheld: " + "; ".join(self.withheld)
        elif self.last_error:
            out["state"] = f"failing: {self.last_error}"
        else:
            out["state"] = "ok" if self.last_ping else "starting"
        return out


STALLED_SQL = (
    # the oldest row a worker could take now (the head of its target's queue, due), and
    # the oldest send under way: a healthy worker takes the one and ends the other soon
    "SELECT (SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'"
    f" AND next_attempt_at <= ? AND id IN ({QUEUE_HEADS})),"
    " (SELECT MIN(claimed_at) FROM outbox WHERE status = 'sending')"
)
CHECK_TIMEOUT_S = 10.0  # a store that takes longer to answer is not healthy


def serve_checks(
    store: Store,
    disk: Path | None,
    scheduler_running: Callable[[], bool],
    delivery_running: Callable[[], bool],
    config: HeartbeatConfig,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    scheduler_stuck: Callable[[], str | None] = lambda: None,
) -> Checks:
    """serve's checks: the scheduler runs and its fires make their runs (``scheduler_stuck``
    says why not: APScheduler paused or hung still says it runs), the delivery worker runs
    and is not stalled, the store takes writes (and ``disk``, a SQLite file's folder, has
    room)."""

    async def checks() -> list[str]:
        problems = []
        if disk is not None:
            free_mb = (await asyncio.to_thread(shutil.disk_usage, disk)).free // 2**20
            if free_mb < config.min_free_mb:
                problems.append(f"the disk of {disk} has {free_mb} MB free")
        if not scheduler_running():
            problems.append("the scheduler is not running")
        elif (why := scheduler_stuck()) is not None:
            problems.append(why)
        if not delivery_running():
            problems.append("the delivery worker is not running")
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                if not await store.writable():
                    problems.append("the store does not take writes")
                now = clock()
                rows = await store.fetchall(STALLED_SQL, (utcnow_iso(now),))
        except (StoreUnavailable, TimeoutError) as e:
            problems.append(f"the store is unavailable: {e or 'no answer'}")
            return problems
        due, sending = rows[0][0], rows[0][1]
        for since in (due, sending):
            why = stalled_since(since, now, config.stall_after_s)
            if why:
                problems.append(why)
                break
        return problems

    return checks


def stalled_since(oldest_due: str | None, now: datetime, stall_after_s: float) -> str | None:
    """Why the delivery worker counts as hung: a row due since ``oldest_due`` (the store's
    time) waited longer than ``stall_after_s``; None if not."""
    if oldest_due is None:
        return None
    waited = now - datetime.fromisoformat(oldest_due)
    if waited <= timedelta(seconds=stall_after_s):
        return None
    return f"the delivery worker is stalled: a message waiting for {waited.total_seconds():.0f}s"
