"""Circuit breakers per (provider, model), so an outage costs its timeout once.

A breaker opens after ``failure_threshold`` consecutive failures. Cooldowns grow
with each re-opening (30 s → 1 min → 5 min by default) and honour ``Retry-After``;
a fatal error (bad key, unknown model) opens it for ``fatal_cooldown_s``. When the
cooldown ends, one request is let through as a probe (half-open); its success
closes the breaker, its failure opens it again for longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.config.models import RoutingConfig
from core.engine.routing import HealthSnapshot
from core.errors import ProviderError

State = Literal["closed", "open", "half_open", "unavailable"]


@dataclass(slots=True)
class Breaker:
    failures: int = 0  # consecutive
    level: int = 0  # how many times it opened in a row
    open_until: float = 0.0
    probing: bool = False
    unavailable: str = ""  # permanent reason (no key): not a cooldown
    last_error: str = ""
    last_outcome: str = ""
    last_latency_ms: float | None = None
    last_change: float = 0.0

    def state(self, now: float) -> State:
        if self.unavailable:
            return "unavailable"
        if self.open_until == 0.0:
            return "closed"
        return "open" if now < self.open_until else "half_open"


class HealthBoard:
    """The live health of every model; turns into a routing HealthSnapshot."""

    def __init__(self, routing: RoutingConfig) -> None:
        self._cfg = routing
        self._breakers: dict[str, Breaker] = {}

    def _get(self, ref: str) -> Breaker:
        return self._breakers.setdefault(ref, Breaker())

    def state(self, ref: str, now: float) -> State:
        """The breaker state of one model (closed if never touched)."""
        b = self._breakers.get(ref)
        return b.state(now) if b else "closed"

    def last_outcome(self, ref: str) -> str:
        """The outcome of the last call or probe ("" if none)."""
        b = self._breakers.get(ref)
        return b.last_outcome if b else ""

    def mark_unavailable(self, ref: str, reason: str) -> None:
        """Take a model out of routing for good (e.g. its API key is not set)."""
        self._get(ref).unavailable = reason

    def snapshot(self, now: float) -> HealthSnapshot:
        """What the planner must skip at ``now``."""
        blocked: dict[str, str] = {}
        cooling: set[str] = set()
        for ref, b in self._breakers.items():
            why = _why_blocked(b, now)
            if why is not None:
                blocked[ref], cools = why
                if cools:
                    cooling.add(ref)
        return HealthSnapshot(blocked, frozenset(cooling))

    def blocked(self, ref: str, now: float) -> str | None:
        """Why ``ref`` must not be called at ``now`` (as in :meth:`snapshot`), or None."""
        b = self._breakers.get(ref)
        why = _why_blocked(b, now) if b is not None else None
        return why[0] if why is not None else None

    def begin(self, ref: str, now: float) -> None:
        """Note that a call to ``ref`` starts; a half-open breaker lets only this one through."""
        b = self._get(ref)
        if b.state(now) == "half_open":
            b.probing = True

    def abandon(self, ref: str) -> None:
        """A call ended without a verdict (cancelled): let another request probe."""
        self._get(ref).probing = False

    def success(self, ref: str, latency_ms: float, now: float) -> None:
        """The model answered (even if the answer was unusable: the provider works)."""
        b = self._get(ref)
        b.failures = 0
        b.level = 0
        b.open_until = 0.0
        b.probing = False
        b.last_outcome = "ok"
        b.last_latency_ms = latency_ms
        b.last_change = now

    def failure(self, ref: str, error: ProviderError, latency_ms: float, now: float) -> float:
        """Count a failure; returns the cooldown started (0 if the breaker stays closed)."""
        b = self._get(ref)
        was_probe = b.probing or b.state(now) == "half_open"
        b.probing = False
        b.failures += 1
        b.last_error = f"{error.kind}" + (f" HTTP {error.status}" if error.status else "")
        b.last_outcome = error.outcome
        b.last_latency_ms = latency_ms
        b.last_change = now
        fatal = error.outcome == "fatal"
        retry_after = error.retry_after_s or 0.0
        if not (fatal or was_probe or retry_after or b.failures >= self._cfg.failure_threshold):
            return 0.0
        if fatal:
            cooldown = self._cfg.fatal_cooldown_s
        else:
            steps = self._cfg.cooldowns_s
            cooldown = steps[min(b.level, len(steps) - 1)]
            b.level += 1
        cooldown = max(cooldown, retry_after)
        b.open_until = now + cooldown
        return cooldown

    def status(self, now: float) -> list[dict[str, Any]]:
        """One row per known model, for `doctor`, `/api/status` and the bot."""
        rows = []
        for ref, b in sorted(self._breakers.items()):
            rows.append(
                {
                    "model": ref,
                    "state": b.state(now),
                    "cooldown_left_s": round(max(0.0, b.open_until - now), 1),
                    "consecutive_failures": b.failures,
                    "last_outcome": b.last_outcome,
                    "last_error": b.unavailable or b.last_error,
                    "last_latency_ms": b.last_latency_ms,
                }
            )
        return rows


def _why_blocked(b: Breaker, now: float) -> tuple[str, bool] | None:
    """Why a breaker keeps its model from being called now, and whether that is only a
    cooldown (which a plan with nothing else left may try anyway); None when it may be."""
    st = b.state(now)
    if st == "unavailable":
        return b.unavailable, False
    if st == "open":
        return f"cooling down {b.open_until - now:.0f}s after {b.last_error}", True
    if st == "half_open" and b.probing:
        return "a probe request is already testing it", True
    return None
