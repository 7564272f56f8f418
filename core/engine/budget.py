"""Spend caps that hold under concurrency: reserve the worst case, check, then settle.

Before a paid attempt the engine reserves its worst-case cost (estimated input plus
``max_tokens`` at the model's prices) in the same transaction that reads what each
applicable cap has spent and reserved, holding each cap's lock
(:meth:`core.store.base.Transaction.lock`); after the call the ledger holds the
actual cost and the reservation is dropped. So concurrent requests — in this process
or another on the same database — cannot together pass a cap.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.config.budgets import Caps
from core.config.models import Config
from core.store.base import Params, Row, Store
from core.store.times import utcnow_iso
from core.types import Message

log = logging.getLogger("openclaw.budget")
RESERVATION_TTL = timedelta(minutes=15)  # older ones belong to a call that crashed


def estimate_input_tokens(messages: Sequence[Message]) -> int:
    """A generous token estimate for a prompt: a token per four characters, plus one."""
    return sum(len(m.content) for m in messages) // 4 + 1


def period_start(period: str, now: datetime, zone: ZoneInfo) -> datetime:
    """Start of the calendar day or month containing ``now`` in ``zone``, as UTC."""
    local = now.astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.astimezone(UTC)


def period_end(period: str, now: datetime, zone: ZoneInfo) -> datetime:
    """Start of the next day or month, as UTC."""
    start = period_start(period, now, zone).astimezone(zone)
    if period == "day":
        nxt = (start + timedelta(days=1, hours=3)).replace(hour=0)  # safe across DST
    else:
        nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return nxt.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Scope:
    kind: str  # total | tier | model | agent
    key: str
    period: str  # day | month
    cap: float

    @property
    def label(self) -> str:
        name = "total" if self.kind == "total" else f"{self.kind} {self.key}"
        return f"{name} {self.period} cap ${self.cap:.2f}"

    @property
    def ident(self) -> str:
        return f"{self.kind}:{self.key}:{self.period}"

    def where(self) -> tuple[str, tuple[Any, ...]]:
        """SQL condition on attempts/reservations rows (same column names in both)."""
        match self.kind:
            case "tier":
                return "tier = ?", (int(self.key),)
            case "model":
                return "model_ref = ?", (self.key,)
            case "agent":
                return "agent = ?", (self.key,)
            case _:
                return "1 = 1", ()


def _caps(kind: str, key: str, caps: Caps) -> list[Scope]:
    return [
        Scope(kind, key, period, cap)
        for period, cap in (("day", caps.day), ("month", caps.month))
        if cap is not None
    ]


def all_scopes(config: Config) -> list[Scope]:
    """Every configured cap."""
    b = config.budgets
    out = _caps("total", "", b.total)
    for kind, table in (("tier", b.tier), ("model", b.model), ("agent", b.agent)):
        for key, caps in table.items():
            out += _caps(kind, key, caps)
    return out


def scopes_for(config: Config, tier: int, ref: str, agent: str | None) -> list[Scope]:
    """The caps an attempt on ``ref`` (tier ``tier``, for ``agent``) counts against."""
    return [
        s
        for s in all_scopes(config)
        if s.kind == "total"
        or (s.kind == "tier" and s.key == str(tier))
        or (s.kind == "model" and s.key == ref)
        or (s.kind == "agent" and agent is not None and s.key == agent)
    ]


# attempts keep provider and model apart; reservations keep the ref: one view for both.
# An attempt a failure drill faulted (``drill`` set) never reached its provider: not spent
_SPENT = (
    "SELECT COALESCE(SUM(cost_usd), 0) FROM (SELECT ts, tier, provider || '/' || model"
    " AS model_ref, agent, cost_usd FROM attempts WHERE drill IS NULL) a"
    " WHERE ts >= ? AND {where}"
)
_RESERVED = (
    "SELECT COALESCE(SUM(amount_usd), 0) FROM (SELECT ts, tier, model AS model_ref,"
    " agent, amount_usd FROM reservations) r WHERE ts >= ? AND ts >= ? AND {where}"
)

Alert = Callable[[str], Awaitable[None]]
Read = Callable[[str, Params], Awaitable[list[Row]]]


class BudgetGuard:
    """Reserves, refuses and settles; raises alerts once per cap, period and threshold."""

    def __init__(
        self,
        store: Store,
        config: Config,
        alert: Alert | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.zone = ZoneInfo(config.budgets.timezone)
        self.alert = alert
        self.clock = clock

    async def _sums(self, read: Read, scope: Scope, now: datetime) -> tuple[float, float]:
        """(spent, reserved) in the scope's period, through ``read``: the store's, or a
        transaction's when the sums decide what it writes."""
        start = utcnow_iso(period_start(scope.period, now, self.zone))
        where, args = scope.where()
        spent = float((await read(_SPENT.format(where=where), (start, *args)))[0][0])
        fresh = utcnow_iso(now - RESERVATION_TTL)
        reserved = float((await read(_RESERVED.format(where=where), (start, fresh, *args)))[0][0])
        return spent, reserved

    async def reserve(
        self, tier: int, ref: str, agent: str | None, worst_usd: float
    ) -> tuple[int | None, str | None]:
        """(reservation id, None), or (None, why) when a cap would be passed. Free calls
        and calls no cap covers need no reservation: (None, None)."""
        scopes = scopes_for(self.config, tier, ref, agent)
        if not scopes or worst_usd <= 0:
            return None, None
        now = self.clock()
        refused: tuple[Scope, float] | None = None
        # serialized per cap, not with every write: on PostgreSQL at READ COMMITTED two
        # reservations that read the sums at once would both fit (40 concurrent $1 calls
        # against a $10 cap reserved $40); each cap's lock, taken in one order by all,
        # makes the second read what the first wrote
        async with self.store.transaction(serialized=False) as tx:
            for ident in sorted({scope.ident for scope in scopes}):
                await tx.lock(f"budget:{ident}")
            for scope in scopes:
                spent, reserved = await self._sums(tx.fetchall, scope, now)
                if spent + reserved + worst_usd > scope.cap + 1e-12:
                    refused = (scope, spent + reserved)
                    break
            else:
                return await tx.insert_id(
                    "INSERT INTO reservations (ts, tier, model, agent, amount_usd)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (utcnow_iso(now), tier, ref, agent, worst_usd),
                ), None
        scope, used = refused
        await self._alert_once(scope, used, now, full=True)
        return None, f"over budget: {scope.label}, spent ${used:.2f}"

    async def check(self, tier: int, ref: str, agent: str | None, worst_usd: float) -> str | None:
        """Why a call would be refused now (read-only; reserve() decides for real)."""
        now = self.clock()
        for scope in scopes_for(self.config, tier, ref, agent):
            spent, reserved = await self._sums(self.store.fetchall, scope, now)
            if worst_usd > 0 and spent + reserved + worst_usd > scope.cap + 1e-12:
                return f"over budget: {scope.label}, spent ${spent + reserved:.2f}"
        return None

    async def settle(self, reservation_id: int, tier: int, ref: str, agent: str | None) -> None:
        """The ledger has the actual cost now: drop the reservation, then check alerts."""
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
        now = self.clock()
        for scope in scopes_for(self.config, tier, ref, agent):
            spent, _ = await self._sums(self.store.fetchall, scope, now)
            await self._alert_once(scope, spent, now)

    async def _alert_once(
        self, scope: Scope, spent: float, now: datetime, full: bool = False
    ) -> None:
        """Alert once per cap, period and threshold. ``full``: a call was just refused — the
        cap is exhausted even if reservations, not yet spending, filled it."""
        period = utcnow_iso(period_start(scope.period, now, self.zone))[:10]
        for threshold in sorted(self.config.budgets.alert_at):
            reached = spent >= threshold * scope.cap - 1e-12 or (full and threshold >= 1.0)
            if not reached:
                continue
            async with self.store.transaction() as tx:
                changed = await tx.execute(
                    "INSERT INTO budget_alerts (scope, period, threshold, ts) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (scope, period, threshold) DO NOTHING",
                    (scope.ident, period, threshold, utcnow_iso(now)),
                )
            if changed and self.alert is not None:
                if full and threshold >= 1.0:
                    text = (
                        f"budget: {scope.label} is exhausted: calls are refused "
                        f"(${spent:.2f} spent or reserved)"
                    )
                else:
                    text = f"budget: {scope.label} reached {threshold:.0%} (${spent:.2f} spent)"
                log.warning("%s", text)
                await self.alert(text)

    async def report(self) -> list[dict[str, Any]]:
        """Caps, spent, reserved, remaining, and a month-end forecast from the burn rate."""
        now = self.clock()
        rows = []
        for scope in all_scopes(self.config):
            spent, reserved = await self._sums(self.store.fetchall, scope, now)
            start = period_start(scope.period, now, self.zone)
            end = period_end(scope.period, now, self.zone)
            elapsed = max((now - start).total_seconds(), 60.0)
            forecast = spent * (end - start).total_seconds() / elapsed
            rows.append(
                {
                    "scope": scope.kind,
                    "key": scope.key,
                    "period": scope.period,
                    "cap_usd": scope.cap,
                    "spent_usd": round(spent, 6),
                    "reserved_usd": round(reserved, 6),
                    "remaining_usd": round(max(scope.cap - spent - reserved, 0.0), 6),
                    "used_pct": round(100 * (spent + reserved) / scope.cap, 1)
                    if scope.cap
                    else 100.0,
                    "forecast_usd": round(forecast, 4),
                    "period_ends": utcnow_iso(end),
                    "label": scope.label,
                }
            )
        return rows
