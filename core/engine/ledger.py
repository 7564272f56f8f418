"""The usage ledger: one row per attempt, with its cost; usage and savings reports.

The engine (the caller) records; adapters never touch the ledger.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from core.config.models import Config, Cost
from core.ops.owners import Liveness, host_liveness, owner_id
from core.store.base import Store
from core.store.times import utcnow_iso
from core.types import Attempt, Usage

Group = Literal["tier", "model", "agent", "day", "task"]
GROUPS: tuple[str, ...] = ("tier", "model", "agent", "day", "task")
_GROUP_SQL: dict[str, str] = {
    "tier": "CAST(tier AS TEXT)",
    "model": "provider || '/' || model",
    "agent": "COALESCE(agent, '-')",
    "day": "SUBSTR(ts, 1, 10)",
    "task": "COALESCE(task, '-')",
}


def price(config: Config, ref: str, usage: Usage) -> float:
    """USD cost of ``usage`` on model ``ref`` (reasoning is billed as output)."""
    model = config.models.get(ref)
    cost = model.cost if model else Cost()
    return cost.price(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What the ledger needs to know of the request an attempt belongs to."""

    request_id: str
    min_tier: int
    task: str | None = None
    run_id: str | None = None
    agent: str | None = None
    streamed: bool = False
    caller: str | None = None
    trial: bool = False  # started one tier lower by its task's trial


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str
    requests: int
    attempts: int
    answered: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class UsageReport:
    since: str
    group: str
    rows: list[UsageRow]
    requests: int
    answered: int
    tier_share: dict[int, float] = field(default_factory=dict)  # % of answered, per tier
    cost_usd: float = 0.0
    cloud_only_usd: float = 0.0
    all_top_tier_usd: float = 0.0

    @property
    def savings_vs_cloud_usd(self) -> float:
        return self.cloud_only_usd - self.cost_usd

    @property
    def savings_vs_top_usd(self) -> float:
        return self.all_top_tier_usd - self.cost_usd

    @property
    def savings_vs_cloud_pct(self) -> float:
        """Share of the cloud-only cost saved, in %."""
        return 100 * self.savings_vs_cloud_usd / self.cloud_only_usd if self.cloud_only_usd else 0.0

    @property
    def savings_vs_top_pct(self) -> float:
        """Share of the all-top-tier cost saved, in %."""
        return (
            100 * self.savings_vs_top_usd / self.all_top_tier_usd
            if (self.all_top_tier_usd)
            else 0.0
        )


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One day's answers and cost for one model (``day`` is the UTC date, YYYY-MM-DD)."""

    day: str
    tier: int
    ref: str
    answered: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class RecordedAttempt:
    """One attempt as the ledger holds it, for replaying on another pyramid (what-if)."""

    task: str | None
    min_tier: int
    tier: int
    ref: str
    outcome: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    # what the routing advisor (core/engine/advisor.py) reads besides
    request_id: str = ""
    reason: str = ""
    latency_ms: float = 0.0
    trial: bool = False


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One attempt of a run's route trace."""

    tier: int
    provider: str
    model: str
    outcome: str
    reason: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    tool_calls: int = 0  # the tool calls the model asked for


def _primary_cost(config: Config, at_least: int) -> Cost | None:
    """The price of the first model of the lowest tier at or above ``at_least``."""
    for tier in sorted(config.tiers, key=lambda t: t.level):
        if tier.level >= at_least:
            model = config.models.get(tier.models[0])
            return model.cost if model else Cost()
    return None


def baselines(
    config: Config, tokens_by_min_tier: dict[int, tuple[int, int]]
) -> tuple[float, float]:
    """What the answered requests would have cost cloud-only and all-top-tier.

    Cloud-only prices each request at the cheapest cloud tier (level ≥ 1) at or
    above its minimum tier — tier 0 work priced at tier 1. All-top-tier prices
    everything at the highest tier.
    """
    top = _primary_cost(config, max(config.levels)) or Cost()
    cloud = top_total = 0.0
    for min_tier, (tin, tout) in tokens_by_min_tier.items():
        c = _primary_cost(config, max(min_tier, 1)) or top
        cloud += c.price(tin, tout)
        top_total += top.price(tin, tout)
    return cloud, top_total


_INSERT = (
    "INSERT INTO attempts (ts, request_id, run_id, agent, task, min_tier, tier, provider,"
    " model, streamed, caller, owner, outcome, reason, status, latency_ms, input_tokens,"
    " output_tokens, reasoning_tokens, cost_usd, cached_tokens, tool_calls, trial, drill)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# a request has at most one call in flight, so its pending row is found by request id
_FINISH = (
    "UPDATE attempts SET owner = NULL, outcome = ?, reason = ?, status = ?, latency_ms = ?,"
    " input_tokens = ?, output_tokens = ?, reasoning_tokens = ?, cost_usd = ?,"
    " cached_tokens = ?, tool_calls = ? WHERE request_id = ? AND outcome = 'pending'"
)


def _outcome(attempt: Attempt) -> tuple[Any, ...]:
    """The columns an attempt's end sets, in the order _INSERT and _FINISH name them."""
    u = attempt.usage
    return (
        attempt.outcome,
        attempt.reason[:500],
        attempt.status,
        round(attempt.latency_ms, 3),
        u.input_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        attempt.cost_usd,
        u.cached_input_tokens,
        attempt.tool_calls,
    )


# real traffic only: an attempt a failure drill faulted (``drill`` set) never reached its
# provider, so usage, cost, savings, budgets, what-if and the routing advisor leave it out
REAL = "drill IS NULL"

# every attempt of the period, for what-if replays and the routing advisor: the one query
# both read (a filter on which rows count belongs here, once)
_RECORDED = (
    "SELECT request_id, task, min_tier, tier, provider || '/' || model, outcome, input_tokens,"
    " output_tokens, cost_usd, reason, latency_ms, trial FROM attempts WHERE ts >= ?"
    f" AND outcome <> 'pending' AND {REAL} ORDER BY id"
)

INTERRUPTED = "the process stopped during the call; cost counted at the worst case"


class Ledger:
    """Records attempts and answers usage questions."""

    def __init__(
        self,
        store: Store,
        config: Config,
        owner: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock  # an attempt row's time when the engine gives none; report periods
        self.owner = owner or owner_id()  # whose pending rows these are, for recovery
        self.alive: Liveness | None = None  # set by the app on a shared database

    def _row(
        self,
        meta: RequestMeta,
        attempt: Attempt,
        when: datetime | None,
        owner: str | None,
        drill: int | None = None,
    ) -> tuple[Any, ...]:
        return (
            utcnow_iso(when or self.clock()),
            meta.request_id,
            meta.run_id,
            meta.agent,
            meta.task,
            meta.min_tier,
            attempt.tier,
            attempt.provider,
            attempt.model,
            int(meta.streamed),
            meta.caller,
            owner,
            *_outcome(attempt),
            int(meta.trial),
            drill,
        )

    async def record(
        self,
        meta: RequestMeta,
        attempt: Attempt,
        when: datetime | None = None,
        drill: int | None = None,
    ) -> None:
        """Write one finished attempt row (committed when this returns); ``drill``: the
        failure drill that faulted it, if one did."""
        await self.store.insert(_INSERT, self._row(meta, attempt, when, None, drill))

    async def begin(self, meta: RequestMeta, attempt: Attempt, drill: int | None = None) -> None:
        """Write the row of a call about to leave: outcome ``pending``, the estimated usage
        (prompt and the whole token budget) and no cost yet: a live call's worst case is
        held by its budget reservation, and :meth:`recover` prices it if we die.

        Raises (StoreUnavailable) when the row cannot be written: then nothing is sent.
        ``drill``: the failure drill this call is diverted to (it is never billed)."""
        await self.store.insert(_INSERT, self._row(meta, attempt, None, self.owner, drill))

    async def finish(self, meta: RequestMeta, attempt: Attempt) -> None:
        """Turn the request's pending row into the attempt's outcome."""
        await self.store.insert(_FINISH, (*_outcome(attempt), meta.request_id))

    async def recover(self) -> int:
        """Price the calls a dead process left in flight at their worst case (the estimate
        written before they left) and mark them ``interrupted``; returns how many.

        The upstream may have billed them: usage and budgets count them rather than
        under-count. Rows of live owners (another instance, this process) are left alone."""
        rows = await self.store.fetchall(
            "SELECT id, provider, model, input_tokens, output_tokens, owner, drill FROM attempts"
            " WHERE outcome = 'pending'"
        )
        owners = {r["owner"] for r in rows if r["owner"]}
        alive = await (self.alive or host_liveness(self.owner))(owners)
        dead = [r for r in rows if r["owner"] not in alive]
        for r in dead:
            ref = f"{r['provider']}/{r['model']}"
            # a drilled call went to the drill server, never to the provider: nothing billed
            usage = Usage(r["input_tokens"], r["output_tokens"])
            cost = 0.0 if r["drill"] is not None else price(self.config, ref, usage)
            await self.store.insert(
                "UPDATE attempts SET outcome = 'interrupted', reason = ?, cost_usd = ?,"
                " owner = NULL WHERE id = ? AND outcome = 'pending'",
                (INTERRUPTED, cost, r["id"]),
            )
        return len(dead)

    async def trace(self, run_id: int) -> list[TraceStep]:
        """A run's route trace: every attempt of it, in the order they were made."""
        rows = await self.store.fetchall(
            "SELECT tier, provider, model, outcome, reason, latency_ms, input_tokens,"
            " output_tokens, cost_usd, tool_calls FROM attempts WHERE run_id = ? ORDER BY id",
            (str(run_id),),
        )
        return [TraceStep(*r) for r in rows]

    async def report(
        self, since: timedelta, group: str = "tier", now: datetime | None = None
    ) -> UsageReport:
        """Usage over the last ``since``, grouped by tier, model, agent, day or task."""
        if group not in _GROUP_SQL:
            raise ValueError(f"invalid group {group!r}: use one of {', '.join(GROUPS)}")
        start = utcnow_iso((now or self.clock()) - since)
        key = _GROUP_SQL[group]
        rows = await self.store.fetchall(
            f"SELECT {key} AS k, COUNT(DISTINCT request_id), COUNT(*),"
            " SUM(CASE WHEN outcome = 'ok' THEN 1 ELSE 0 END), SUM(input_tokens),"
            " SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_usd)"
            f" FROM attempts WHERE ts >= ? AND {REAL} GROUP BY {key}",
            (start,),
        )
        usage_rows = [UsageRow(str(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]
        # sorted here, not by ORDER BY: PostgreSQL orders text by the database's collation
        # (en_US ignores the "-" of agent "-"), SQLite by code point, as Python does
        usage_rows.sort(key=lambda r: int(r.key) if group == "tier" else r.key)
        (total,) = (
            await self.store.fetchall(
                f"SELECT COUNT(DISTINCT request_id) FROM attempts WHERE ts >= ? AND {REAL}",
                (start,),
            )
        )[0]
        ok_rows = await self.store.fetchall(
            "SELECT tier, COUNT(*) FROM attempts WHERE ts >= ? AND outcome = 'ok'"
            f" AND {REAL} GROUP BY tier",
            (start,),
        )
        answered = sum(r[1] for r in ok_rows)
        share = {int(r[0]): 100.0 * r[1] / answered for r in ok_rows} if answered else {}
        tok_rows = await self.store.fetchall(
            "SELECT min_tier, SUM(input_tokens), SUM(output_tokens) FROM attempts"
            f" WHERE ts >= ? AND outcome = 'ok' AND {REAL} GROUP BY min_tier",
            (start,),
        )
        cloud, top = baselines(self.config, {int(r[0]): (r[1], r[2]) for r in tok_rows})
        cost = sum(r.cost_usd for r in usage_rows)
        return UsageReport(
            start, group, usage_rows, total, answered, dict(sorted(share.items())), cost, cloud, top
        )

    async def requests_since(
        self, since: timedelta, now: datetime | None = None
    ) -> list[list[RecordedAttempt]]:
        """The attempts of each request recorded in the last ``since``, in order."""
        start = utcnow_iso((now or self.clock()) - since)
        rows = await self.store.fetchall(_RECORDED, (start,))
        by_request: dict[str, list[RecordedAttempt]] = defaultdict(list)
        for r in rows:
            by_request[r[0]].append(
                RecordedAttempt(
                    r[1],
                    int(r[2]),
                    int(r[3]),
                    r[4],
                    r[5],
                    int(r[6]),
                    int(r[7]),
                    float(r[8]),
                    r[0],
                    r[9] or "",
                    float(r[10]),
                    bool(r[11]),
                )
            )
        return list(by_request.values())

    async def denials_since(
        self, since: timedelta, now: datetime | None = None
    ) -> dict[str, set[int]]:
        """Escalations an admin denied (or let expire) in the last ``since``: request id →
        the tiers denied. The gate's refusals are no attempt rows; the approvals are."""
        start = utcnow_iso((now or self.clock()) - since)
        rows = await self.store.fetchall(
            "SELECT request_id, tier FROM approvals WHERE created_at >= ? AND tool IS NULL"
            " AND status IN ('denied', 'expired')",
            (start,),
        )
        out: dict[str, set[int]] = defaultdict(set)
        for r in rows:
            out[str(r[0])].add(int(r[1]))
        return dict(out)

    async def daily(self, since: timedelta, now: datetime | None = None) -> list[DayUsage]:
        """Answers and cost per UTC day and model over the last ``since``, in one query:
        the console's charts of tier share and cost over time."""
        start = utcnow_iso((now or self.clock()) - since)
        rows = await self.store.fetchall(
            "SELECT SUBSTR(ts, 1, 10), tier, provider || '/' || model,"
            " SUM(CASE WHEN outcome = 'ok' THEN 1 ELSE 0 END), SUM(cost_usd)"
            f" FROM attempts WHERE ts >= ? AND {REAL}"
            " GROUP BY SUBSTR(ts, 1, 10), tier, provider, model",
            (start,),
        )
        out = [DayUsage(str(r[0]), int(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]
        return sorted(out, key=lambda d: (d.day, d.tier, d.ref))
