"""What would the recorded usage have cost under another tier map and price table?

Each answered request is replayed on the other pyramid using only what was
recorded: it starts at its task's tier there and climbs past tiers where it was
recorded failing; it is priced where it was recorded answering. A request that
would have started on a tier it never ran on cannot be priced without guessing:
it is counted as unknown, with the tier, and left out of both sides.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.config.models import Config, Cost
from core.engine.ledger import RecordedAttempt


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


def what_if(requests: Iterable[list[RecordedAttempt]], other: Config) -> WhatIf:
    """Replay recorded requests (the ledger's :meth:`~core.engine.ledger.Ledger.requests_since`)
    on ``other``: a pure function of what was recorded and the other config."""
    result = WhatIf()
    levels = sorted(t.level for t in other.tiers)
    for attempts in requests:
        if not any(a.outcome == "ok" for a in attempts):
            continue  # never answered: nothing to compare
        result.requests += 1
        first = attempts[0]
        task = first.task
        new_min = (
            other.task_tier(task) if task is not None and task in other.tasks else (first.min_tier)
        )
        at: dict[int, list[RecordedAttempt]] = defaultdict(list)
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
