"""Pure route planning: (request, config, health) → ordered candidates.

No I/O and no clock: everything that changes over time arrives as data, so the
whole routing table is tested with plain parametrized cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.config.models import (
    DROPPED_BY_API,
    Config,
    JsonMode,
    ModelConfig,
    TaskConfig,
    split_model_ref,
)
from core.errors import RoutingError


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """Models that must not be called now, with why (cooldown, missing key…)."""

    blocked: Mapping[str, str] = field(default_factory=dict)
    # blocked only by a cooldown: these may still be tried when nothing else is left
    cooling: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Candidate:
    tier: int
    provider: str
    model: str
    max_tokens: int
    reasoning: bool
    requires_approval: bool
    output_limit: int | None = None  # the model's max_output_tokens: no budget goes over it
    drops: frozenset[str] = frozenset()  # sampling parameters never sent to this model
    context: int | None = None  # the model's context window in tokens
    no_think: bool = False  # a thinking model told not to think (its task's think = false)
    tools: bool = True  # the model can call tools ([models."…"] tools)
    json: JsonMode = "schema"  # [models."…"] json

    @property
    def ref(self) -> str:
        return f"{self.provider}/{self.model}"

    def budget(self, tokens: int) -> int:
        """``tokens`` capped at the model's output limit (the double-budget retry too)."""
        return tokens if self.output_limit is None else min(tokens, self.output_limit)


@dataclass(frozen=True, slots=True)
class Skip:
    tier: int
    ref: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The ordered candidates for one request, and the reasons behind them."""

    task: str | None
    min_tier: int
    rules: TaskConfig
    candidates: tuple[Candidate, ...]
    skipped: tuple[Skip, ...]
    reasons: tuple[str, ...]
    trial: bool = False  # a [tasks] trial moved this request's start one tier lower

    def explain(self) -> str:
        """A human-readable account of the plan."""
        lines = list(self.reasons)
        for i, c in enumerate(self.candidates, 1):
            extra = " (needs approval)" if c.requires_approval else ""
            think = ", thinking model" if c.reasoning else ""
            lines.append(f"  {i}. tier {c.tier} {c.ref} max_tokens={c.max_tokens}{think}{extra}")
        for s in self.skipped:
            lines.append(f"  -  tier {s.tier} {s.ref} skipped: {s.reason}")
        if not self.candidates:
            lines.append("  (no model can be called)")
        return "\n".join(lines)


def resolve_start(
    config: Config, task: str | None, tier: int | None
) -> tuple[str | None, int, TaskConfig, str]:
    """Which task and minimum tier a request starts at, and why."""
    if tier is not None:
        if config.tier(tier) is None:
            valid = ", ".join(str(lv) for lv in config.levels)
            raise RoutingError(f"tier {tier} does not exist; configured tiers: {valid}")
        rules = config.task(task) if task else None
        return task, tier, rules or TaskConfig(tier=tier), f"tier {tier} requested explicitly"
    name = task or config.default_task
    if name is None:
        raise RoutingError("no task given and [tasks] is empty; name a task or a tier")
    rules = config.task(name)
    if rules is None:
        valid = ", ".join(sorted(config.tasks))
        raise RoutingError(f"unknown task {name!r}; configured tasks: {valid}")
    how = "task" if task else "default task"
    return name, rules.tier, rules, f"{how} {name!r} → minimum tier {rules.tier} (from [tasks])"


def trial_point(request_id: str) -> float:
    """Where a request id falls in [0, 1): the first 8 bytes of its SHA-256. The same id
    always falls at the same point, so a request (and its retries) route one way."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def trial_start(
    config: Config, task: str | None, min_tier: int, rules: TaskConfig, request_id: str | None
) -> tuple[int, str | None]:
    """The tier a request starts at under its task's ``trial``, and the reason to show.

    A request whose id falls under the share starts at the next configured tier below;
    without an id (``openclaw route``) the reason says how requests are split."""
    share = rules.trial
    lower = [lv for lv in config.levels if lv < min_tier]
    if task is None or not share or not lower:
        return min_tier, None
    if request_id is None:
        return min_tier, (
            f"trial: {share:.0%} of requests start at tier {lower[-1]}, chosen by request id"
        )
    if trial_point(request_id) < share:
        return lower[-1], f"trial: this request starts at tier {lower[-1]} (share {share:.0%})"
    return min_tier, f"trial: this request is not in the {share:.0%} that start at tier {lower[-1]}"


def plan(
    config: Config,
    *,
    task: str | None = None,
    tier: int | None = None,
    max_tokens: int | None = None,
    health: HealthSnapshot | None = None,
    request_id: str | None = None,
) -> Plan:
    """Plan a request: tiers from the minimum upward, each tier's models in order,
    minus those in cooldown or unavailable (spend caps are checked per attempt by
    the engine's budget guard, which must reserve as it checks).

    A task with a ``trial`` starts the share of its requests that ``request_id`` picks one
    tier lower (never a request that names its tier); they escalate as any other.

    If every model is blocked only by cooldowns, those are planned anyway (last
    resort): a brief blip must not turn into a full outage until a timer runs out.
    """
    health = health or HealthSnapshot()
    name, min_tier, rules, why = resolve_start(config, task, tier)
    configured = min_tier
    trial_why: str | None = None
    if tier is None:
        min_tier, trial_why = trial_start(config, name, min_tier, rules, request_id)
    floor = config.routing.reasoning_floor
    think = config.task_think(name) if name is not None and name in config.tasks else None
    candidates: list[Candidate] = []
    cooling: list[Candidate] = []
    skipped: list[Skip] = []
    for t in sorted(config.tiers, key=lambda t: t.level):
        if t.level < min_tier:
            continue
        for ref in t.models:
            provider, model = split_model_ref(ref)
            mcfg = config.models[ref]
            tokens = max_tokens or mcfg.max_tokens
            reasoning = mcfg.reasoning and think is not False
            if reasoning:
                tokens = max(tokens, floor)
            limit = mcfg.max_output_tokens
            if limit is not None:  # the model's own limit beats the floor: over it is a 400
                tokens = min(tokens, limit)
            cand = Candidate(
                t.level,
                provider,
                model,
                tokens,
                reasoning,
                t.requires_approval,
                limit,
                _drops(config, provider, mcfg),
                mcfg.context,
                mcfg.reasoning and not reasoning,
                mcfg.tools,
                mcfg.json_,
            )
            if ref in health.blocked:
                skipped.append(Skip(t.level, ref, health.blocked[ref]))
                if ref in health.cooling:
                    cooling.append(cand)
            else:
                candidates.append(cand)
    reasons = [why] + ([trial_why] if trial_why else [])
    if not candidates and cooling:
        candidates = cooling
        retried = {c.ref for c in cooling}
        skipped = [s for s in skipped if s.ref not in retried]
        reasons.append("every model is cooling down; trying them anyway")
    return Plan(
        name,
        min_tier,
        rules,
        tuple(candidates),
        tuple(skipped),
        tuple(reasons),
        min_tier != configured,
    )


def _drops(config: Config, provider: str, model: ModelConfig) -> frozenset[str]:
    """The sampling parameters never sent to ``model``: its own list, else its API's."""
    if model.drop_params is not None:
        return frozenset(model.drop_params)
    return frozenset(DROPPED_BY_API.get(config.providers[provider].api, ()))
