"""Cron scheduling (APScheduler 3.11) and the catch-up of fires missed while down.

The timing is APScheduler's; what to do about missed fires is a pure function of
the stored last fire, the trigger and ``now``, so it is tested with plain tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from core.agents.runner import AgentRunner
from core.agents.runs import AlreadyExists, Status, Trigger
from core.agents.state import AgentState, AgentStates
from core.agents.watch import ScheduleWatch
from core.config.agents import AgentConfig
from core.config.models import Config
from core.errors import StoreUnavailable
from core.store.base import Store, Transaction
from core.store.times import utcnow_iso

log = logging.getLogger("openclaw.scheduler")
TICK = timedelta(microseconds=1)
MAX_FIRES = 100_000  # a minutely agent down for ~70 days; beyond that we only count


class Shifted(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no types
    """A cron trigger whose every fire comes ``offset`` later. APScheduler's own ``jitter``
    is random at each fire; a stable offset keeps an agent's fire times (and so its
    ``fire:AGENT@TIME`` keys and the expected fires of the schedule report) the same on
    every instance and after every restart."""

    __slots__ = ("inner", "offset")

    def __init__(self, inner: CronTrigger, offset: timedelta) -> None:
        self.inner = inner
        self.offset = offset

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # in UTC: an aware local time plus a timedelta is wall-clock arithmetic
        back = (previous_fire_time.astimezone(UTC) - self.offset) if previous_fire_time else None
        t: datetime | None = self.inner.get_next_fire_time(back, now.astimezone(UTC) - self.offset)
        return None if t is None else (t.astimezone(UTC) + self.offset).astimezone(t.tzinfo)

    def __str__(self) -> str:
        return f"{self.inner} + {self.offset.total_seconds():g}s"


def spread_offset(agent: AgentConfig, spread_s: int) -> timedelta:
    """The agent's stable offset within ``spread_s`` seconds if its cron fires on the hour
    (minute field ``0``) and it does not opt out; else none. From a hash of its name, so
    it is the same on every instance and after every restart."""
    if spread_s <= 0 or not agent.spread or not agent.schedule:
        return timedelta(0)
    if agent.schedule.split()[0] != "0":
        return timedelta(0)
    digest = hashlib.sha256(agent.name.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:4], "big") % spread_s)


def trigger_for(agent: AgentConfig, spread_s: int = 0) -> BaseTrigger:
    """The agent's cron trigger in its timezone (DST follows the zone), shifted by its
    :func:`spread_offset`."""
    assert agent.schedule is not None
    cron = CronTrigger.from_crontab(agent.schedule, timezone=ZoneInfo(agent.timezone))
    offset = spread_offset(agent, spread_s)
    return Shifted(cron, offset) if offset else cron


def schedule_key(agent: AgentConfig, spread_s: int = 0) -> str:
    """What the agent's fire times follow: cron, timezone and top-of-hour offset
    (``0 * * * * Europe/Berlin +46s``). When it changes, the fires of the old schedule are
    no longer expected."""
    offset = spread_offset(agent, spread_s).total_seconds()
    return f"{agent.schedule} {agent.timezone} +{offset:g}s"


def seen_with(state: AgentState, key: str) -> bool:
    """The scheduler has started the agent with schedule ``key`` (or, a row from before
    it kept the schedule, has fired it): else no fire of it is expected yet."""
    if state.schedule_key is None:
        return state.last_fire is not None  # fired before migration 019 kept the schedule
    return state.schedule_key == key


def expected_since(state: AgentState) -> datetime | None:
    """Since when an agent :func:`seen_with` its schedule has had it (None: no bound)."""
    return datetime.fromisoformat(state.schedule_since) if state.schedule_since else None


def fires_between(trigger: BaseTrigger, after: datetime, until: datetime) -> list[datetime]:
    """Scheduled fire times ``t`` with ``after < t <= until``, once per wall-clock time.

    Arithmetic is done in UTC: adding a microsecond to an aware local time is wall-clock
    arithmetic and, in the repeated hour after a DST fall-back, steps backwards. A
    wall-clock time that occurs twice (02:30 on fall-back night) fires once, as cron does.
    """
    out: list[datetime] = []
    until_utc = until.astimezone(UTC)
    t: datetime | None = trigger.get_next_fire_time(None, after.astimezone(UTC) + TICK)
    while t is not None and t.astimezone(UTC) <= until_utc and len(out) < MAX_FIRES:
        if not out or out[-1].replace(tzinfo=None) != t.replace(tzinfo=None):
            out.append(t)
        t = trigger.get_next_fire_time(t, t.astimezone(UTC) + TICK)
    return out


# how far back to look for the fire a job runs for: near first (nearly always enough), a
# day at most; walking a whole day of a minutely cron takes ~1,440 trigger steps
LOOK_BACK = (timedelta(minutes=2), timedelta(hours=1), timedelta(days=1))


def latest_fire(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The last scheduled fire at or before ``now`` within a day (None: none in that day).

    Every agent asks this at every fire, so the look-back widens only when the narrower
    window holds no fire: a thousand minutely agents must not walk a day each.
    """
    for span in LOOK_BACK:
        due = fires_between(trigger, now - span, now)
        if due:
            return due[-1]
    return None


def same_wall_time(a: datetime, b: datetime, zone: ZoneInfo) -> bool:
    """True when two instants show the same local time (the repeated DST hour)."""
    return a.astimezone(zone).replace(tzinfo=None) == b.astimezone(zone).replace(tzinfo=None)


def next_fire(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The first fire strictly after ``now``."""
    t: datetime | None = trigger.get_next_fire_time(None, now.astimezone(UTC) + TICK)
    return t


@dataclass(frozen=True, slots=True)
class CatchUp:
    late: datetime | None = None  # run this one now, marked late
    missed: list[datetime] = field(default_factory=list)  # record these as missed


def plan_catch_up(fires: list[datetime], now: datetime, catch_up_s: float) -> CatchUp:
    """Of the fires missed while down: the newest runs late if within ``catch_up_s``
    (0 = never); every other one is recorded as missed."""
    if not fires:
        return CatchUp()
    newest = fires[-1]
    if catch_up_s > 0 and (now - newest).total_seconds() <= catch_up_s:
        return CatchUp(newest, fires[:-1])
    return CatchUp(None, list(fires))


class Scheduler:
    """One APScheduler job per enabled, scheduled agent; catch-up on start."""

    def __init__(
        self,
        config: Config,
        runner: AgentRunner,
        states: AgentStates,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.runner = runner
        self.states = states
        self.store = store
        self.clock = clock
        self.aps = AsyncIOScheduler(timezone=UTC)
        # False: another instance leads (or this one's lease ran out): a job that fires
        # now does nothing; the leader's scheduler records that fire
        self.may_fire: Callable[[], bool] = lambda: True
        self.watch = ScheduleWatch(self)
        self._watching: asyncio.Task[None] | None = None

    def trigger(self, agent: AgentConfig) -> BaseTrigger:
        """The agent's trigger as this scheduler fires it (with its top-of-hour offset)."""
        return trigger_for(agent, self.config.scheduler.spread_s)

    def scheduled_agents(self) -> list[AgentConfig]:
        """Agents with a schedule that the config enables."""
        return [a for a in self.config.agents if a.enabled and a.schedule]

    async def start(self) -> None:
        """Catch up on what was missed, then schedule every agent (again after a
        :meth:`stop`: an instance that leads a second time)."""
        if self.aps.running:
            return
        self.aps = AsyncIOScheduler(timezone=UTC)
        await self.catch_up(self.clock())
        for agent in self.scheduled_agents():
            self.aps.add_job(
                self.fire,
                self.trigger(agent),
                args=[agent.name],
                id=agent.name,
                name=f"agent {agent.name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=300,
                replace_existing=True,
            )
        self.aps.start()
        self.watch.watching_since = self.clock()
        self._watching = asyncio.create_task(self._watch_forever(), name="schedule watch")

    @property
    def running(self) -> bool:
        """It fires (APScheduler runs) and its watch is alive."""
        watching = self._watching is not None and not self._watching.done()
        return bool(self.aps.running) and watching

    def stop(self) -> None:
        """Stop firing (running runs are the runner's to finish)."""
        if self.aps.running:
            self.aps.shutdown(wait=False)
        if self._watching is not None:
            self._watching.cancel()
            self._watching = None

    async def _watch_forever(self) -> None:
        """The watch and the daily report on a task of their own, not APScheduler jobs:
        a scheduler that stopped firing must not silence what watches it."""
        while True:
            await asyncio.sleep(self.config.scheduler.watch_every_s)
            try:
                await self.watch.tick()
            except StoreUnavailable as e:
                log.warning("schedule watch: %s", e)
            except Exception:  # the watch must not die: it looks again next time
                log.exception("schedule watch")

    def next_fire(self, agent: AgentConfig) -> datetime | None:
        """When the agent fires next (None: not scheduled)."""
        if not agent.schedule or not agent.enabled:
            return None
        job = self.aps.get_job(agent.name) if self.aps.running else None
        if job is not None:
            when: datetime | None = job.next_run_time
            return when
        return next_fire(self.trigger(agent), self.clock())

    async def fire(self, name: str, scheduled_for: datetime | None = None) -> None:
        """A scheduled fire: remember it, then run the agent unless it is disabled."""
        agent_cfg = self.config.agent(name)
        if scheduled_for is None and agent_cfg is not None and agent_cfg.schedule:
            # APScheduler does not say which fire this is: the latest one due by now (a
            # late start of the job must not shift the recorded fire time)
            scheduled_for = latest_fire(self.trigger(agent_cfg), self.clock())
        when = scheduled_for or self.clock().replace(second=0, microsecond=0)
        state = await self.states.get(name)
        agent = self.config.agent(name)
        if (
            agent is not None
            and state.last_fire is not None
            and same_wall_time(
                datetime.fromisoformat(state.last_fire), when, ZoneInfo(agent.timezone)
            )
        ):
            log.info("agent %s: %s already fired (repeated DST hour); skipped", name, when)
            return
        fire = utcnow_iso(when)
        if state.disabled:
            async with self.store.transaction() as tx:
                await self.states.set_last_fire(tx, name, fire)
            log.info("agent %s is disabled (%s); fire skipped", name, state.disabled_reason)
            return

        # the fire is recorded with its run row, in one transaction: a crash between the
        # two would otherwise lose the fire (recorded, so catch-up skips it; no run). Its
        # key makes it one run however many schedulers see it (a leader and one it fenced)
        async def record(tx: Transaction) -> int:
            await self.states.set_last_fire(tx, name, fire)
            return await self.runner.add(
                tx, name, Trigger.SCHEDULE, scheduled_for=fire, dedupe_key=f"fire:{name}@{fire}"
            )

        if not self.may_fire():
            log.info("agent %s: %s left to the leader", name, fire)
            return
        try:
            _, task = await self.runner.commit_then_launch(record)
        except AlreadyExists:
            log.info("agent %s: %s was already fired by another instance", name, fire)
            return
        await asyncio.shield(task)

    async def catch_up(self, now: datetime) -> list[int]:
        """Handle fires missed while no process was running; returns the late runs started."""
        started = []
        for agent in self.scheduled_agents():
            state = await self.states.get(agent.name)
            key = schedule_key(agent, self.config.scheduler.spread_s)
            if state.last_fire is None:  # first start with this agent: nothing was missed
                async with self.store.transaction() as tx:
                    await self.states.set_last_fire(tx, agent.name, utcnow_iso(now))
                    await self.states.set_schedule(tx, agent.name, key, utcnow_iso(now))
                continue
            if state.schedule_key != key:
                # a row from before the schedule was kept: its history stands; a changed
                # schedule: its fires count from the last one handled (those after it
                # are the catch-up's to run or record missed, just below)
                since = None if state.schedule_key is None else state.last_fire
                async with self.store.transaction() as tx:
                    await self.states.set_schedule(tx, agent.name, key, since)
            if state.disabled:
                continue
            fires = fires_between(self.trigger(agent), datetime.fromisoformat(state.last_fire), now)
            plan = plan_catch_up(fires, now, agent.catch_up_s)
            if not fires:
                continue
            # the missed record, the new last fire and the late run commit together: a
            # crash in between must neither lose the late run nor record the misses twice
            try:
                late_run = await self._record_catch_up(agent, fires, plan)
            except AlreadyExists:  # another instance caught up on these fires
                continue
            if late_run is not None:
                self.runner.launch(late_run, late=True)
                started.append(late_run)
        return started

    async def _record_catch_up(
        self, agent: AgentConfig, fires: list[datetime], plan: CatchUp
    ) -> int | None:
        """The missed record, the new last fire and the late run (its id), in one
        transaction (AlreadyExists: another instance recorded them)."""
        late_run = None
        async with self.store.transaction() as tx:
            if plan.missed:
                first, last = plan.missed[0], plan.missed[-1]
                span = (
                    utcnow_iso(first)
                    if first == last
                    else (f"{utcnow_iso(first)} … {utcnow_iso(last)}")
                )
                await self.runner.runs.create(
                    tx,
                    agent.name,
                    Trigger.SCHEDULE,
                    status=Status.MISSED,
                    scheduled_for=utcnow_iso(last),
                    error=f"{len(plan.missed)} scheduled fire(s) missed while OpenClaw was "
                    f"not running ({span}); catch_up_s = {agent.catch_up_s:g}",
                    dedupe_key=f"missed:{agent.name}@{utcnow_iso(last)}",
                )
            await self.states.set_last_fire(tx, agent.name, utcnow_iso(fires[-1]))
            if plan.late is not None:
                late = utcnow_iso(plan.late)
                late_run = await self.runner.add(
                    tx,
                    agent.name,
                    Trigger.SCHEDULE,
                    scheduled_for=late,
                    dedupe_key=f"fire:{agent.name}@{late}",
                )
        return late_run
