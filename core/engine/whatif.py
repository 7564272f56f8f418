"""What would the recorded usage have cost under another tier map and price table?

Each answered request is replayed on the other pyramid using only what was
recorded: it starts at its task's tier there and climbs past tiers where it was
recorded failing; it is priced where it was recorded answering. A request that
would have started on a tier it never ran on cannot be priced without guessing:
it is counted as unknown, with the tier, and left out of both sides.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.config.models import Config, Cost
from core.store.base import Store
from core.store.times import utcnow_iso


@dataclass
class WhatIf:
    requests: int = 0
    known: int = 0
    actual_usd: float = 0.0  # what the known requests cost
    what_if_usd: float = 0.0  # what they would have cost
    unknown: Counter[int] = field(default_factory=Counter)  # tier never run on → requests
    moved: int = 0  # known requests whose starting tier changes

    @property
    def difference_usd(self) -> float:
        return self.what_if_usd - self.actual_usd


def _cost(config: Config, ref: str, tier_level: int) -> Cost:
    model = config.models.get(ref)
    if model is not None:
        return model.cost
    tier = config.tier(tier_level)  # the model is gone there: the tier's first model
    first = config.models.get(tier.models[0]) if tier else None
    return first.cost if first else Cost()


@dataclass(frozen=True, slots=True)
class _Row:
    task: str | None
    min_tier: int
    tier: int
    ref: str
    outcome: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


async def what_if(
    store: Store, other: Config, since: timedelta, now: datetime | None = None
) -> WhatIf:
    """Replay the answered requests of the period on ``other``."""
    start = utcnow_iso((now or datetime.now(UTC)) - since)
    rows = await store.fetchall(
        "SELECT request_id, task, min_tier, tier, provider || '/' || model, outcome,"
        " input_tokens, output_tokens, cost_usd FROM attempts WHERE ts >= ? ORDER BY id",
        (start,),
    )
    by_request: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        by_request[r[0]].append(
            _Row(r[1], int(r[2]), int(r[3]), r[4], r[5], int(r[6]), int(r[7]), float(r[8]))
        )
    result = WhatIf()
    levels = sorted(t.level for t in other.tiers)
    for attempts in by_request.values():
        if not any(a.outcome == "ok" for a in attempts):
            continue  # never answered: nothing to compare
        result.requests += 1
        first = attempts[0]
        task = first.task
        new_min = (
            other.task_tier(task) if task is not None and task in other.tasks else (first.min_tier)
        )
        at: dict[int, list[_Row]] = defaultdict(list)
        for a in attempts:
            at[a.tier].append(a)
        cost = 0.0
        priced = False
        for level in [lv for lv in levels if lv >= new_min]:
            if not at[level]:
                result.unknown[level] += 1
                break
            cost += sum(
                _cost(other, a.ref, level).price(a.input_tokens, a.output_tokens) for a in at[level]
            )
            if any(a.outcome == "ok" for a in at[level]):
                priced = True
                break
        if priced:
            result.known += 1
            result.moved += new_min != first.min_tier
            result.what_if_usd += cost
            result.actual_usd += sum(a.cost_usd for a in attempts)
    return result
