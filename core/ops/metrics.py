"""Prometheus metrics: gateway requests, attempts, tokens, cost, breaker state.

One registry per process (not the global default), so tests can build many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.engine.health import HealthBoard
from core.engine.ledger import RequestMeta
from core.types import Attempt

BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2, "unavailable": 3}
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)


class _BreakerCollector(Collector):
    def __init__(self, health: HealthBoard, clock: Callable[[], float]) -> None:
        self._health = health
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "openclaw_breaker_state",
            "Breaker per model: 0 closed, 1 half-open, 2 open, 3 unavailable",
            labels=["model"],
        )
        for row in self._health.status(self._clock()):
            g.add_metric([row["model"]], BREAKER_VALUES[row["state"]])
        yield g


class Metrics:
    """Counters and histograms for one process; ``observe_attempt`` is an engine observer."""

    def __init__(self, health: HealthBoard, clock: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "openclaw_gateway_requests",
            "Gateway requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "openclaw_gateway_request_seconds",
            "Gateway request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "openclaw_attempts",
            "Model calls by outcome",
            ["provider", "model", "tier", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "openclaw_tokens", "Tokens by model and kind", ["model", "kind"], registry=r
        )
        self.cost = Counter("openclaw_cost_usd", "Cost in USD by model", ["model"], registry=r)
        r.register(_BreakerCollector(health, clock))
        # labels() takes a lock, validates and builds a tuple on every call: look each
        # series' child up once, then keep it (a handful of series per model)
        self._attempt_children: dict[tuple[str, str, int, str], Counter] = {}
        self._token_children: dict[tuple[str, str], Counter] = {}
        self._cost_children: dict[str, Counter] = {}
        self._request_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe_attempt(self, meta: RequestMeta, attempt: Attempt) -> None:
        """Count one attempt (called by the engine for every ledger row)."""
        key = (attempt.provider, attempt.model, attempt.tier, attempt.outcome)
        child = self._attempt_children.get(key)
        if child is None:
            child = self._attempt_children[key] = self.attempts.labels(
                attempt.provider, attempt.model, str(attempt.tier), attempt.outcome
            )
        child.inc()
        u = attempt.usage
        ref = attempt.ref
        if u.input_tokens:
            self._tokens(ref, "input").inc(u.input_tokens)
        if u.output_tokens:
            self._tokens(ref, "output").inc(u.output_tokens)
        if u.reasoning_tokens:
            self._tokens(ref, "reasoning").inc(u.reasoning_tokens)
        if attempt.cost_usd:
            cost = self._cost_children.get(ref)
            if cost is None:
                cost = self._cost_children[ref] = self.cost.labels(ref)
            cost.inc(attempt.cost_usd)

    def _tokens(self, ref: str, kind: str) -> Counter:
        child = self._token_children.get((ref, kind))
        if child is None:
            child = self._token_children[ref, kind] = self.tokens.labels(ref, kind)
        return child

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one gateway request."""
        key = (route, status)
        children = self._request_children.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: once per series
            children = self._request_children[key] = (
                self.requests.labels(route, str(status)),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
