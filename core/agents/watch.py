"""The scheduler watching itself: expected fires joined with run rows (see
:mod:`core.agents.assurance`), an alert for a fire that made no run, and the daily
report to the admins. It runs where the scheduler runs (the leader), on its own jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from core.agents.assurance import (
    PROBLEMS,
    Fire,
    Outcome,
    RunFact,
    assess,
    problem_line,
    summary,
)
from core.agents.state import AgentState
from core.store.times import utcnow_iso

if TYPE_CHECKING:
    from core.agents.scheduler import Scheduler

log = logging.getLogger("openclaw.scheduler")
# a report holds at most this many problem lines; the summary counts them all
REPORT_LINES = 30
WINDOW = timedelta(hours=1)  # how far back each check looks
REPORT_GRACE = timedelta(hours=6)  # a report not sent by then waits for the next day
Alert = Callable[[str], Awaitable[None]]


class ScheduleWatch:
    """Expected vs actual for every scheduled agent; alerts and the daily report."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.config = scheduler.config
        self.store = scheduler.store
        self.clock = scheduler.clock
        self.alert: Alert | None = None  # set by the app: to [alerts] deliver
        self.watching_since: datetime | None = None  # fires before it are not alerted
        self._alerted: set[tuple[str, str]] = set()  # (agent, fire) alerted, in WINDOW
        self.unmade: list[Fire] = []  # see stuck()

    async def fires(self, since: datetime, now: datetime | None = None) -> list[Fire]:
        """Every fire expected after ``since`` up to ``now``, with its outcome, in time
        order. Two queries: the runs of the period and the agents' state.

        An agent's fires count from when the scheduler first started it with its
        current schedule (cron, timezone, offset): none from before it was added, before
        a fresh database, or of a cron it no longer has."""
        now = now or self.clock()
        rows = await self.store.fetchall(
            "SELECT id, agent, status, scheduled_for, quiet, error FROM runs"
            " WHERE scheduled_for IS NOT NULL AND scheduled_for > ? ORDER BY id",
            (utcnow_iso(since),),
        )
        facts = [RunFact.from_row(r) for r in rows]
        states = {
            str(r[0]): AgentState(str(r[0]), r[1], 0, bool(r[2]), None, r[3], r[4])
            for r in await self.store.fetchall(
                "SELECT agent, last_fire, disabled, schedule_key, schedule_since FROM agent_state"
            )
        }
        due_s = self.config.scheduler.alert_after_s or 300.0
        out: list[Fire] = []
        # (the scheduler imports this module)
        from core.agents.scheduler import expected_since, fires_between, schedule_key, seen_with

        for agent in self.scheduler.scheduled_agents():
            state = states.get(agent.name, AgentState(agent.name))
            if not seen_with(state, schedule_key(agent, self.config.scheduler.spread_s)):
                continue  # never started with this schedule: nothing expected yet
            start = expected_since(state)
            after = since if start is None else max(since, start)
            expected = fires_between(self.scheduler.trigger(agent), after, now)
            out += assess(agent.name, expected, facts, now, due_s=due_s, disabled=state.disabled)
        return sorted(out, key=lambda f: (f.at, f.agent))

    async def check(self) -> list[Fire]:
        """Alert once for each fire (since the watch began) that made no run within
        ``[scheduler] alert_after_s``; returns those newly found. Also keeps the fires of
        the last hour that made no run and that no later fire of their agent made up for,
        for :meth:`stuck`."""
        cfg = self.config.scheduler
        if cfg.alert_after_s <= 0:
            return []
        now = self.clock()
        if self.watching_since is None:
            self.watching_since = now
        # the fires of the last hour at most: older ones were looked at already
        since = max(self.watching_since, now - WINDOW)
        fires = await self.fires(since, now)
        self.unmade = unmade(fires)
        found = [
            f
            for f in fires
            if f.outcome == Outcome.NO_RUN and (f.agent, utcnow_iso(f.at)) not in self._alerted
        ]
        # what fell out of the window is never looked at again: forget it
        self._alerted = {(a, at) for a, at in self._alerted if at > utcnow_iso(now - WINDOW)}
        for f in found:
            self._alerted.add((f.agent, utcnow_iso(f.at)))
            late_s = (now - f.at).total_seconds()
            text = (
                f"⚠️ agent {f.agent}: its fire of {utcnow_iso(f.at)} made no run"
                f" ({late_s / 60:.0f} min ago). The scheduler may be stuck: see"
                " `openclaw schedule` and the serve log."
            )
            log.error("agent %s: fire %s made no run", f.agent, utcnow_iso(f.at))
            if self.alert is not None:
                await self.alert(text)
        return found

    def stuck(self) -> str | None:
        """Why the scheduler counts as stuck for the dead-man's switch: a fire of the last
        hour made no run (found by the last :meth:`check`) and no later fire of that agent
        made one since; None if not. A paused or hung APScheduler still says it runs."""
        recent = [f for f in self.unmade if self.clock() - f.at <= WINDOW]
        if not recent:
            return None
        f = recent[-1]
        more = f" and {len(recent) - 1} more" if len(recent) > 1 else ""
        return f"the scheduler made no run for agent {f.agent}'s fire of {utcnow_iso(f.at)}{more}"

    async def tick(self) -> None:
        """One look: fires with no run, then the daily report if it is due."""
        await self.check()
        daily = self.config.reports.daily
        if daily is None:
            return
        now = self.clock()
        zone = ZoneInfo(self.config.reports.timezone)
        local = now.astimezone(zone)
        at = datetime.combine(local.date(), report_time(daily), zone)
        # due from its time for REPORT_GRACE: a restart just after still sends it, a first
        # start in the evening does not send the morning's
        if not at <= local < at + REPORT_GRACE:
            return
        sent = await self.store.fetchall(
            "SELECT name FROM reports WHERE name = ?", (f"daily:{local.date().isoformat()}",)
        )
        if not sent:
            await self.daily(now)

    def report_text(self, fires: list[Fire], day: str) -> str:
        """The daily report: a summary line, then one line per problem."""
        zone = self.config.reports.timezone
        problems = [f for f in fires if f.outcome in PROBLEMS]
        lines = [f"📋 Schedule {day}: {summary(fires)}"]
        lines += [problem_line(f, zone) for f in problems[:REPORT_LINES]]
        if len(problems) > REPORT_LINES:
            lines.append(f"… and {len(problems) - REPORT_LINES} more: openclaw schedule")
        return "\n".join(lines)

    async def daily(self, now: datetime | None = None) -> bool:
        """The report of the 24 hours before ``now`` to ``[reports] deliver`` (default
        ``[alerts] deliver``), once per day however many instances or restarts try:
        the day is recorded with the outbox rows in one transaction. True if sent."""
        now = now or self.clock()
        day = now.astimezone(ZoneInfo(self.config.reports.timezone)).date().isoformat()
        fires = await self.fires(now - timedelta(days=1), now)
        text = self.report_text(fires, day)
        outbox = self.scheduler.runner.outbox
        targets = self.config.reports.deliver or self.config.alerts.deliver
        context = {"agent": "schedule", "run_id": None, "status": "report", "text": text}
        rows = await outbox.render_rows(None, "report", targets, context)
        async with self.store.transaction() as tx:
            taken = await tx.fetchall(
                "INSERT INTO reports (name, sent_at) VALUES (?, ?)"
                " ON CONFLICT (name) DO NOTHING RETURNING name",
                (f"daily:{day}", utcnow_iso(now)),
            )
            if taken:
                await outbox.add(tx, rows)
        if taken:
            outbox.notify()
            log.info("daily schedule report for %s sent", day)
        return bool(taken)


# a fire with one of these made its run (whatever became of it): the scheduler fires
MADE = frozenset(
    {Outcome.OK, Outcome.QUIET, Outcome.LATE, Outcome.FAILED, Outcome.INTERRUPTED, Outcome.RUNNING}
)


def unmade(fires: list[Fire]) -> list[Fire]:
    """Of ``fires`` (in time order), those that made no run and after which no fire of
    the same agent made one: once a later fire runs, the scheduler fires again."""
    out: list[Fire] = []
    for f in fires:
        if f.outcome == Outcome.NO_RUN:
            out.append(f)
        elif f.outcome in MADE:
            out = [g for g in out if g.agent != f.agent]
    return out


def report_time(daily: str) -> time:
    """``"08:00"`` as a time of day."""
    hours, minutes = daily.split(":")
    return time(int(hours), int(minutes))
