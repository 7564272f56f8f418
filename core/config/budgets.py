"""Config models for spend caps: per day and month, overall, per agent and per tier."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from core.config.common import (
    FiniteFloat,
    StrictModel,
    zone_problem,
)
from core.errors import ConfigProblem


class Caps(StrictModel):
    """USD caps for one scope; None = no cap for that period."""

    day: float | None = Field(default=None, ge=0)
    month: float | None = Field(default=None, ge=0)


class BudgetsConfig(StrictModel):
    """Spend caps per calendar day and month, in ``timezone``."""

    timezone: str = "UTC"
    alert_at: list[Annotated[FiniteFloat, Field(gt=0)]] = Field(
        default_factory=lambda: [0.8, 1.0]
    )  # fractions of a cap
    total: Caps = Field(default_factory=Caps)
    tier: dict[str, Caps] = Field(default_factory=dict)  # "3" → caps
    model: dict[str, Caps] = Field(default_factory=dict)  # "provider/model" → caps
    agent: dict[str, Caps] = Field(default_factory=dict)  # agent name → caps

    @property
    def any(self) -> bool:
        scopes = [self.total, *self.tier.values(), *self.model.values(), *self.agent.values()]
        return any(c.day is not None or c.month is not None for c in scopes)


def check_budgets(
    b: BudgetsConfig, levels: set[int], models: set[str], agents: set[str]
) -> list[ConfigProblem]:
    """Budget scopes must name tiers, models and agents that exist."""
    zone = zone_problem("budgets.timezone", b.timezone)
    problems = [zone] if zone else []
    for key in b.tier:
        if not key.isdigit() or int(key) not in levels:
            problems.append(
                ConfigProblem(
                    f"budgets.tier.{key}",
                    "no such tier",
                    f"use one of: {', '.join(map(str, sorted(levels)))}",
                )
            )
    for key in b.model:
        if key not in models:
            problems.append(
                ConfigProblem(f'budgets.model."{key}"', "no such model", "use a key of [models]")
            )
    for key in b.agent:
        if key not in agents:
            problems.append(
                ConfigProblem(
                    f"budgets.agent.{key}", "no such agent", "use the name of an [[agents]] entry"
                )
            )
    return problems
