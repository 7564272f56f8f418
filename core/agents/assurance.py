"""Schedule assurance: the fires each agent's cron expected over a period, joined with
what happened to each.

A job scheduler's own bookkeeping (APScheduler's next-run time) moves on whether or not a
run was made; this looks at the other side, the run rows, so a fire that produced no
run shows as such. Pure over data (the fires and the rows), with ``now`` handed in.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.parsing import parse_since
from core.store.times import utcnow_iso

MAX_PERIOD = timedelta(days=31)  # a month of a minutely agent is 44,640 fires to join


class Outcome(enum.StrEnum):
    """What became of one expected fire."""

    OK = "ok"
    QUIET = "quiet"  # ok, and it said NO_REPLY: nothing delivered on purpose
    LATE = "late"  # run late by the catch-up after a downtime
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # cut off by a crash or shutdown, not retried to the end
    MISSED = "missed"  # while OpenClaw was not running (recorded by the catch-up)
    RUNNING = "running"  # queued or running now
    DUE = "due"  # just fired: its run may not exist yet
    DISABLED = "disabled"  # the agent is disabled: the fire was skipped on purpose
    NO_RUN = "no run"  # should have made a run and did not: the silent failure


# what the operator must look at; the others are fine or not yet decided
PROBLEMS = frozenset({Outcome.FAILED, Outcome.INTERRUPTED, Outcome.MISSED, Outcome.NO_RUN})
_BY_STATUS = {
    "ok": Outcome.OK,
    "late": Outcome.LATE,
    "failed": Outcome.FAILED,
    "interrupted": Outcome.INTERRUPTED,
    "missed": Outcome.MISSED,
    "queued": Outcome.RUNNING,
    "running": Outcome.RUNNING,
}


@dataclass(frozen=True, slots=True)
class RunFact:
    """What the join needs of a run row made for a fire (scheduled, late or a retry)."""

    id: int
    agent: str
    status: str
    scheduled_for: str  # the fire, as the store writes times
    quiet: bool = False
    error: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> RunFact:
        """From a ``runs`` row with these columns."""
        return cls(
            int(row["id"]),
            str(row["agent"]),
            str(row["status"]),
            str(row["scheduled_for"]),
            bool(row["quiet"]),
            row["error"],
        )


@dataclass(frozen=True, slots=True)
class Fire:
    """One expected fire and what became of it."""

    agent: str
    at: datetime
    outcome: Outcome
    run_id: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "at": utcnow_iso(self.at),
            "outcome": str(self.outcome),
            "run_id": self.run_id,
            "error": self.error,
        }


def assess(
    agent: str,
    expected: Sequence[datetime],
    runs: Iterable[RunFact],
    now: datetime,
    *,
    due_s: float,
    disabled: bool = False,
) -> list[Fire]:
    """Each expected fire of ``agent`` with its outcome, in time order.

    A fire's runs are those whose ``scheduled_for`` is that fire (the scheduled run, a
    late catch-up, a retry after an interruption): the newest decides. The catch-up
    records a downtime's missed fires as one row at the last of them, so a fire with no
    run of its own is ``missed`` when the next row after it is a missed row; otherwise
    it is ``due`` for ``due_s`` after its time, then ``no run`` (``disabled`` if the agent
    is disabled now and it came after the agent's last row).
    """
    mine = sorted((r for r in runs if r.agent == agent), key=lambda r: (r.scheduled_for, r.id))
    by_fire: dict[str, RunFact] = {}
    for r in mine:
        by_fire[r.scheduled_for] = r  # the newest of a fire's runs wins
    rows_at = sorted(by_fire)
    out = []
    for at in expected:
        key = utcnow_iso(at)
        run = by_fire.get(key)
        if run is not None:
            outcome = _BY_STATUS.get(run.status, Outcome.FAILED)
            # only an on-time run shows quiet: a late one that said NO_REPLY stays late,
            # as the lateness (a downtime the catch-up made up for) is the news about the
            # schedule; that nothing was delivered is the agent's everyday choice
            if outcome == Outcome.OK and run.quiet:
                outcome = Outcome.QUIET
            out.append(Fire(agent, at, outcome, run.id, run.error if outcome in PROBLEMS else None))
            continue
        later = next((k for k in rows_at if k > key), None)
        if later is not None and by_fire[later].status == "missed":
            missed = by_fire[later]
            out.append(Fire(agent, at, Outcome.MISSED, missed.id, missed.error))
        elif (now - at).total_seconds() < due_s:
            out.append(Fire(agent, at, Outcome.DUE))
        elif disabled and later is None:
            out.append(Fire(agent, at, Outcome.DISABLED))
        else:
            out.append(Fire(agent, at, Outcome.NO_RUN, error="the fire made no run"))
    return out


def summary(fires: Sequence[Fire]) -> str:
    """``42 expected · 40 ok · 1 quiet · 1 failed (deepseek 402)``: counts in a fixed
    order, the first failure's reason shortened."""
    counts = Counter(f.outcome for f in fires)
    parts = [f"{len(fires)} expected"]
    for outcome in Outcome:
        n = counts.get(outcome, 0)
        if not n:
            continue
        part = f"{n} {outcome}"
        if outcome == Outcome.FAILED:
            why = next((f.error for f in fires if f.outcome == outcome and f.error), None)
            if why:
                part += f" ({short_reason(why)})"
        parts.append(part)
    return " · ".join(parts)


# one attempt line of :class:`core.errors.AllAttemptsFailed`, which a failed run stores
# as its error: "  tier 2 deep/deepseek-chat: billing (billing HTTP 402: …)"
_ATTEMPT = re.compile(r"^\s*tier \d+ (?P<ref>\S+): (?P<outcome>\S+)(?: \((?P<reason>.*)\))?$")
# a ProviderError's own text: "deep/deepseek-chat: billing HTTP 402: …"
_PROVIDER = re.compile(r"^(?P<ref>\S+): \w+ HTTP (?P<status>\d{3})\b")
_HTTP = re.compile(r"\bHTTP (\d{3})\b")


def _decisive(error: str) -> tuple[re.Match[str], int] | None:
    """The attempt line that says why a run failed, and how many other attempts failed.

    The first model that was really tried decides (a ``skipped`` one, in its cooldown,
    was never asked): it is the one the task routes to, and the rest are its fallbacks.
    None when the error is not an attempt list."""
    tried = [m for m in map(_ATTEMPT.match, error.splitlines()) if m is not None]
    if not tried:
        return None
    asked = [m for m in tried if m["outcome"] != "skipped"] or tried
    return asked[0], len(tried) - 1


def short_reason(error: str, limit: int = 60) -> str:
    """Why a run failed, in a few words: ``deep/deepseek-chat 402 and 2 more`` for a run
    every model of which failed (the first line of such an error is only ``all models
    failed:``), ``deep/deepseek-chat 402`` for one provider error, else the error's first
    line; cut to ``limit`` characters."""
    text = error.strip()
    found = _decisive(text)
    if found is not None:
        m, others = found
        code = _HTTP.search(m["reason"] or "")
        line = f"{m['ref']} {code[1] if code else m['outcome']}"
        line += f" and {others} more" if others else ""
    elif (p := _PROVIDER.match(text)) is not None:
        line = f"{p['ref']} {p['status']}"
    else:
        line = text.splitlines()[0] if text else ""
    return _cut(line, limit)


def reason_line(error: str, limit: int = 120) -> str:
    """A problem line's reason: the decisive attempt in full (``deep/deepseek-chat:
    billing (billing HTTP 402: Insufficient Balance …)``) and how many others failed,
    else the error's first line; cut to ``limit`` characters."""
    text = error.strip()
    found = _decisive(text)
    if found is None:
        return _cut(text.splitlines()[0] if text else "", limit)
    m, others = found
    line = m[0].strip().split(" ", 2)[2]  # without "tier N "
    more = f" (+{others} more)" if others else ""
    return _cut(line, limit - len(more)) + more


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def problem_line(fire: Fire, zone_name: str = "UTC") -> str:
    """One line of the daily report for a problem fire."""
    from zoneinfo import ZoneInfo

    local = fire.at.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%d %H:%M")
    run = f" run {fire.run_id}" if fire.run_id is not None else ""
    why = f": {reason_line(fire.error)}" if fire.error else ""
    return f"{fire.agent} {local} {fire.outcome}{run}{why}"


def schedule_lines(fires: Sequence[Fire], zone_name: str = "UTC", limit: int = 30) -> list[str]:
    """What ``openclaw schedule`` and ``/schedule`` show: one summary line per agent
    (in name order), then up to ``limit`` problem fires, newest first."""
    agents = sorted({f.agent for f in fires})
    width = max((len(a) for a in agents), default=0)
    lines = [f"{a.ljust(width)}  {summary([f for f in fires if f.agent == a])}" for a in agents]
    problems = [f for f in fires if f.outcome in PROBLEMS]
    if problems:
        lines.append(f"problems ({len(problems)}, newest first):")
        lines += [f"  {problem_line(f, zone_name)}" for f in reversed(problems[-limit:])]
        if len(problems) > limit:
            lines.append(f"  … and {len(problems) - limit} older")
    return lines


def parse_period(text: str) -> timedelta:
    """A report period (``24h``, ``7d``): as ``--since`` everywhere, at most a month."""
    period = parse_since(text)
    if period > MAX_PERIOD:
        raise ValueError(f"period {text.strip()!r} is too long for the schedule: at most 31d")
    if period <= timedelta(0):
        raise ValueError(f"period {text.strip()!r} is empty: use e.g. 24h or 7d")
    return period
