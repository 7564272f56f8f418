"""The routing advisor: are the task → tier mappings right?

Pure over what the ledger recorded (each request's attempts, the denied escalations) and
the config: per task, how its requests climbed the pyramid, why, and what that cost; then
the mappings the evidence says to change, each priced by replaying the period on a copy
of the config with that one change (:func:`core.engine.whatif.what_if`), scaled to a
month. No I/O and no clock: ``core.engine.tuning`` gathers the data.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from core.config.models import Config, TaskConfig
from core.engine.ledger import RecordedAttempt
from core.engine.whatif import what_if
from core.parsing import parse_since

# a suggestion needs this many requests that started at the task's tier: fewer is noise
MIN_REQUESTS = 20
# raise a task's tier when more than this share of its attempts there were unusable
RAISE_UNUSABLE_SHARE = 0.5
# a trial of MIN_REQUESTS or more that answered at most this share at the lower tier has
# measured that the lower tier will not do: no try-lower then, whatever the regular traffic
TRIAL_MIN_SUCCESS = 0.5
MONTH = timedelta(days=30)  # suggestions' effects are per 30 days
MAX_PERIOD = timedelta(days=365)


class Why(enum.StrEnum):
    """Why an attempt did not answer, as the operator acts on it."""

    UNUSABLE = "unusable"  # an empty answer, or the reasoning spent the whole budget
    VALIDATOR = "validator"  # an answer that failed the task's checks (or the JSON asked for)
    UNAVAILABLE = "unavailable"  # down, timed out, refused, out of credit, cut off
    DENIED = "denied"  # an admin denied the escalation (or let it expire)


# the engine's outcomes of a model that could not serve (see core/engine/engine.py): a
# fatal config error, a spent key, an unsupported request and a crash mid-call count as
# unavailable too; "rejected" and "cancelled" are the caller's doing and explain nothing
_UNAVAILABLE = frozenset({"unavailable", "fatal", "billing", "skipped", "interrupted"})


def why(attempt: RecordedAttempt) -> Why | None:
    """The reason group of a failed attempt; None for an answer or a caller's end."""
    if attempt.outcome == "unusable":
        # the two reasons the engine writes for no answer at all; any other is a check
        empty = attempt.reason == "empty answer" or attempt.reason.startswith(
            "reasoning used the budget"
        )
        return Why.UNUSABLE if empty else Why.VALIDATOR
    return Why.UNAVAILABLE if attempt.outcome in _UNAVAILABLE else None


@dataclass(frozen=True, slots=True)
class Projection:
    """A change replayed on the period by the what-if engine, per 30 days."""

    tier: int  # the task's tier after the change
    known: int  # requests of the period the replay could price
    monthly_usd: float  # the cost difference per 30 days (negative: saved)
    unpriced_per_month: float  # requests per 30 days that would start where none ran
    monthly_latency_s: float = 0.0  # time spent on attempts the change skips, per 30 days

    def line(self) -> str:
        """``what-if: -0.0300 USD per month (20 requests priced), …; 150 requests per month
        would start on tier 1, where they never ran: not priced``"""
        if not self.known:
            text = "what-if: nothing to price"
        else:
            text = f"what-if: {self.monthly_usd:+.4f} USD per month ({self.known} requests priced)"
        if self.monthly_latency_s:
            text += f", {self.monthly_latency_s:.0f} s of failed attempts saved per month"
        if self.unpriced_per_month:
            text += (
                f"; {self.unpriced_per_month:.0f} requests per month would start on tier"
                f" {self.tier}, where they never ran: not priced"
            )
        return text


@dataclass(frozen=True, slots=True)
class TrialStats:
    """The requests a ``trial`` started one tier lower, measured apart from the others."""

    tier: int  # the lower tier they started at
    requests: int
    answered_there: int  # answered at that lower tier
    cost_usd: float  # all their attempts, escalations included
    latency_ms: float

    @property
    def success_pct(self) -> float:
        """Share of the trial's requests answered at the lower tier, in %."""
        return 100.0 * self.answered_there / self.requests if self.requests else 0.0

    @property
    def cost_per_request(self) -> float:
        return self.cost_usd / self.requests if self.requests else 0.0

    def line(self, base_tier: int, base_cost_per_request: float) -> str:
        """``trial: 40 requests started at tier 0, 85% answered there; $… per request …``"""
        return (
            f"trial: {self.requests} requests started at tier {self.tier},"
            f" {self.success_pct:.0f}% answered there; ${self.cost_per_request:.6f} per request"
            f" vs ${base_cost_per_request:.6f} at tier {base_tier}"
        )


Kind = Literal["raise", "lower"]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One change of a task's tier, the evidence for it, and its effect."""

    task: str
    kind: Kind
    from_tier: int
    to_tier: int
    evidence: str
    projection: Projection
    trial: str | None = None  # the trial's measurement, when one ran
    trial_monthly_usd: float | None = None  # the change at the trial's measured cost

    @property
    def title(self) -> str:
        verb = "raise" if self.kind == "raise" else "try lower"
        return f"{verb} {self.task}: tier {self.from_tier} → {self.to_tier}"

    def lines(self) -> list[str]:
        out = [f"{self.title}: {self.evidence}", f"  {self.projection.line()}"]
        if self.trial:
            out.append(f"  {self.trial}")
        if self.trial_monthly_usd is not None:
            out.append(f"  at the trial's cost: {self.trial_monthly_usd:+.4f} USD per month")
        elif self.kind == "lower" and self.projection.unpriced_per_month:
            out.append(
                f"  measure it first: trial = 0.1 in [tasks.{self.task}] sends 10% of its"
                f" requests to tier {self.to_tier}"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        p = self.projection
        return {
            "task": self.task,
            "kind": self.kind,
            "from_tier": self.from_tier,
            "to_tier": self.to_tier,
            "evidence": self.evidence,
            "monthly_usd": round(p.monthly_usd, 6),
            "monthly_latency_s": round(p.monthly_latency_s, 3),
            "priced_requests": p.known,
            "unpriced_requests_per_month": round(p.unpriced_per_month, 1),
            "trial": self.trial,
            "trial_monthly_usd": (
                None if self.trial_monthly_usd is None else round(self.trial_monthly_usd, 6)
            ),
        }


@dataclass(slots=True)
class TaskTune:
    """One task over the period: how its requests climbed, why, and what that cost."""

    task: str
    tier: int | None  # configured now; None: no longer in [tasks]
    requests: int = 0
    answered: int = 0
    by_tier: Counter[int] = field(default_factory=Counter)  # answered at each tier
    escalated: int = 0  # not answered at the tier they started at
    why: Counter[Why] = field(default_factory=Counter)  # failed attempts below the answer
    wasted_usd: float = 0.0  # attempts that failed before the answering tier
    wasted_latency_ms: float = 0.0
    cost_usd: float = 0.0  # every attempt of the task's requests
    trial: TrialStats | None = None
    suggestion: Suggestion | None = None

    def share_pct(self, tier: int) -> float:
        """Share of the answered requests answered at ``tier``, in %."""
        return 100.0 * self.by_tier[tier] / self.answered if self.answered else 0.0

    @property
    def escalation_pct(self) -> float:
        return 100.0 * self.escalated / self.requests if self.requests else 0.0

    @property
    def cost_per_answer(self) -> float:
        return self.cost_usd / self.answered if self.answered else 0.0

    def why_text(self) -> str:
        """``unusable 20, unavailable 2`` (in the order of :class:`Why`), or ``-``."""
        return ", ".join(f"{w} {self.why[w]}" for w in Why if self.why[w]) or "-"

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "tier": self.tier,
            "requests": self.requests,
            "answered": self.answered,
            "answered_by_tier": {str(t): n for t, n in sorted(self.by_tier.items())},
            "share_by_tier_pct": {
                str(t): round(self.share_pct(t), 1) for t in sorted(self.by_tier)
            },
            "escalated": self.escalated,
            "escalation_pct": round(self.escalation_pct, 1),
            "why": {str(w): self.why[w] for w in Why},
            "wasted_usd": round(self.wasted_usd, 6),
            "wasted_latency_s": round(self.wasted_latency_ms / 1000, 3),
            "cost_usd": round(self.cost_usd, 6),
            "cost_per_answer_usd": round(self.cost_per_answer, 6),
            "trial": None
            if self.trial is None
            else {
                "tier": self.trial.tier,
                "requests": self.trial.requests,
                "answered_there": self.trial.answered_there,
                "success_pct": round(self.trial.success_pct, 1),
                "cost_usd": round(self.trial.cost_usd, 6),
                "cost_per_request_usd": round(self.trial.cost_per_request, 6),
            },
            "suggestion": None if self.suggestion is None else self.suggestion.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class TuneReport:
    period: timedelta
    tasks: list[TaskTune]
    levels: list[int]

    @property
    def suggestions(self) -> list[Suggestion]:
        return [t.suggestion for t in self.tasks if t.suggestion is not None]

    def suggestion(self, task: str) -> Suggestion | None:
        return next((s for s in self.suggestions if s.task == task), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period_s": int(self.period.total_seconds()),
            "thresholds": {
                "min_requests": MIN_REQUESTS,
                "raise_unusable_share": RAISE_UNUSABLE_SHARE,
                "trial_min_success": TRIAL_MIN_SUCCESS,
            },
            "tasks": [t.as_dict() for t in self.tasks],
            "suggestions": [s.as_dict() for s in self.suggestions],
        }


def parse_period(text: str) -> timedelta:
    """The advisor's period (``30d``): as ``--since`` everywhere, at most a year."""
    period = parse_since(text)
    if period <= timedelta(0):
        raise ValueError(f"period {text.strip()!r} is empty: use e.g. 7d or 30d")
    if period > MAX_PERIOD:
        raise ValueError(f"period {text.strip()!r} is too long for tune: at most 365d")
    return period


def advise(
    requests: Iterable[Sequence[RecordedAttempt]],
    config: Config,
    period: timedelta,
    denials: Mapping[str, set[int]] | None = None,
) -> TuneReport:
    """Each task's report over ``period`` and the changes the evidence supports.

    ``requests``: each request's attempts in order (the ledger's ``requests_since``);
    ``denials``: request id → tiers whose escalation was denied. Requests that named a
    tier rather than a task tell nothing about a task's mapping and are left out.
    """
    denials = denials or {}
    by_task: dict[str, list[Sequence[RecordedAttempt]]] = defaultdict(list)
    for attempts in requests:
        if attempts and attempts[0].task is not None:
            by_task[attempts[0].task].append(attempts)
    tasks = []
    for name in sorted(by_task):
        tune = _task(name, by_task[name], config, denials)
        tune.suggestion = _suggest(tune, by_task[name], config, period)
        tasks.append(tune)
    return TuneReport(period, tasks, config.levels)


def _answered_at(attempts: Sequence[RecordedAttempt]) -> int | None:
    return next((a.tier for a in attempts if a.outcome == "ok"), None)


def _task(
    name: str,
    reqs: Sequence[Sequence[RecordedAttempt]],
    config: Config,
    denials: Mapping[str, set[int]],
) -> TaskTune:
    tune = TaskTune(name, config.task_tier(name) if name in config.tasks else None)
    trial: list[Sequence[RecordedAttempt]] = []
    for attempts in reqs:
        tune.requests += 1
        tune.cost_usd += sum(a.cost_usd for a in attempts)
        answered = _answered_at(attempts)
        start = attempts[0].min_tier
        if answered is not None:
            tune.answered += 1
            tune.by_tier[answered] += 1
        if answered != start:
            tune.escalated += 1
        for a in attempts:
            if answered is not None and a.tier >= answered:
                continue
            reason = why(a)
            if reason is not None:
                tune.why[reason] += 1
                if answered is not None:
                    tune.wasted_usd += a.cost_usd
                    tune.wasted_latency_ms += a.latency_ms
        denied = len(denials.get(attempts[0].request_id, ()))
        if denied:
            tune.why[Why.DENIED] += denied
        if any(a.trial for a in attempts):
            trial.append(attempts)
    if trial:
        tune.trial = TrialStats(
            min(r[0].min_tier for r in trial),
            len(trial),
            sum(1 for r in trial if _answered_at(r) == r[0].min_tier),
            sum(a.cost_usd for r in trial for a in r),
            sum(a.latency_ms for r in trial for a in r),
        )
    return tune


def _suggest(
    tune: TaskTune, reqs: Sequence[Sequence[RecordedAttempt]], config: Config, period: timedelta
) -> Suggestion | None:
    """Raise a task most of whose attempts at its tier were unusable; try one lower a task
    always answered at its tier at the first attempt, unless a big enough trial measured
    that the lower tier answers too few. Judged on the requests that started at the
    configured tier (not the trial's), and only with enough of them."""
    tier = tune.tier
    if tier is None:
        return None
    base = [r for r in reqs if not any(a.trial for a in r) and r[0].min_tier == tier]
    if len(base) < MIN_REQUESTS:
        return None
    levels = config.levels
    at_tier = [a for r in base for a in r if a.tier == tier]
    unusable = sum(1 for a in at_tier if a.outcome == "unusable")
    higher = [lv for lv in levels if lv > tier]
    lower = [lv for lv in levels if lv < tier]
    if at_tier and unusable / len(at_tier) > RAISE_UNUSABLE_SHARE and higher:
        evidence = (
            f"{unusable} of {len(at_tier)} attempts at tier {tier}"
            f" ({100 * unusable / len(at_tier):.0f}%) were unusable, over {len(base)} requests"
        )
        return _priced(tune.task, "raise", tier, higher[0], evidence, reqs, base, config, period)
    if tier >= 1 and lower and all(len(r) == 1 and r[0].outcome == "ok" for r in base):
        t = tune.trial
        if (
            t is not None
            and t.requests >= MIN_REQUESTS
            and t.success_pct <= 100 * TRIAL_MIN_SUCCESS
        ):
            return None  # measured: the lower tier answered too few of the trial's requests
        evidence = f"all {len(base)} requests were answered at tier {tier} at the first attempt"
        s = _priced(tune.task, "lower", tier, lower[-1], evidence, reqs, base, config, period)
        if tune.trial is not None and tune.trial.tier == lower[-1]:
            base_cost = sum(a.cost_usd for r in base for a in r) / len(base)
            per_month = len(base) * (MONTH / period)
            s = _with_trial(s, tune.trial, base_cost, per_month)
        return s
    return None


def _priced(
    task: str,
    kind: Kind,
    tier: int,
    to_tier: int,
    evidence: str,
    reqs: Sequence[Sequence[RecordedAttempt]],
    base: Sequence[Sequence[RecordedAttempt]],
    config: Config,
    period: timedelta,
) -> Suggestion:
    """The suggestion with its effect: the task's requests replayed on a copy of the config
    where only this task's tier differs, scaled from the period to 30 days."""
    # a trial's requests ran where they started: replaying them tells nothing new
    regular = [list(r) for r in reqs if not any(a.trial for a in r)]
    w = what_if(regular, with_tier(config, task, to_tier))
    scale = MONTH / period
    skipped_ms = sum(a.latency_ms for r in base for a in r if a.tier < to_tier and why(a))
    projection = Projection(
        to_tier,
        w.known,
        w.difference_usd * scale,
        sum(w.unknown.values()) * scale,
        skipped_ms / 1000 * scale if kind == "raise" else 0.0,
    )
    return Suggestion(task, kind, tier, to_tier, evidence, projection)


def _with_trial(s: Suggestion, trial: TrialStats, base_cost: float, per_month: float) -> Suggestion:
    return Suggestion(
        s.task,
        s.kind,
        s.from_tier,
        s.to_tier,
        s.evidence,
        s.projection,
        trial.line(s.from_tier, base_cost),
        (trial.cost_per_request - base_cost) * per_month,
    )


def with_tier(config: Config, task: str, tier: int) -> Config:
    """A copy of ``config`` where ``task`` has minimum tier ``tier`` and no trial."""
    value = config.tasks[task]
    new: int | TaskConfig = (
        tier if isinstance(value, int) else value.model_copy(update={"tier": tier, "trial": None})
    )
    copied = config.model_copy(update={"tasks": {**config.tasks, task: new}})
    # model_copy copies the instance dict, cached views of the old tasks with it
    for name, attr in vars(Config).items():
        if isinstance(attr, functools.cached_property):
            copied.__dict__.pop(name, None)
    return copied


def tune_lines(report: TuneReport, period: str) -> list[str]:
    """What ``openclaw tune`` and ``/tune`` show: a row per task, then the suggestions."""
    if not report.tasks:
        return [f"No task requests in the last {period}."]
    width = max(len(t.task) for t in report.tasks)
    shares = "".join(f" {'t' + str(lv):>5}" for lv in report.levels)
    lines = [
        f"Routing over the last {period}: share answered at each tier, escalations, waste",
        f"{'task'.ljust(width)} tier  reqs{shares}   esc  $/answer   wasted $ wasted s  why",
    ]
    for t in report.tasks:
        tier = "-" if t.tier is None else str(t.tier)
        cells = "".join(
            f" {t.share_pct(lv):>4.0f}%" if t.by_tier[lv] else f" {'-':>5}" for lv in report.levels
        )
        lines.append(
            f"{t.task.ljust(width)} {tier:>4} {t.requests:>5}{cells} {t.escalation_pct:>4.0f}%"
            f" {t.cost_per_answer:>9.6f} {t.wasted_usd:>10.6f} {t.wasted_latency_ms / 1000:>8.1f}"
            f"  {t.why_text()}"
        )
        if t.trial is not None and (t.suggestion is None or t.suggestion.trial is None):
            lines.append(f"{''.ljust(width)}   {t.trial.line(t.tier or 0, _regular_cost(t))}")
    suggestions = report.suggestions
    if not suggestions:
        lines.append(
            f"No suggestions: a change needs {MIN_REQUESTS} requests at the task's tier and"
            f" more than {RAISE_UNUSABLE_SHARE:.0%} of its attempts there unusable (raise),"
            " or every one answered there at the first attempt (try lower)."
        )
        return lines
    lines.append("Suggestions (apply one with `openclaw tune --apply TASK`):")
    for s in suggestions:
        lines += [f"  {line}" for line in s.lines()]
    return lines


def _regular_cost(t: TaskTune) -> float:
    """Cost per request of the task's requests outside its trial."""
    trial = t.trial
    if trial is None:
        return t.cost_usd / t.requests if t.requests else 0.0
    n = t.requests - trial.requests
    return (t.cost_usd - trial.cost_usd) / n if n else 0.0
