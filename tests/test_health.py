"""Circuit breakers: open, growing cooldowns, Retry-After, fatal, half-open probe."""

from __future__ import annotations

import pytest

from core.config.models import RoutingConfig
from core.engine.health import HealthBoard
from core.errors import ProviderError

REF = "deep/deepseek-chat"


def err(
    kind: str = "timeout", status: int | None = None, retry_after: float | None = None
) -> ProviderError:
    return ProviderError(
        kind,
        "deep",
        "deepseek-chat",
        status=status,  # type: ignore[arg-type]
        retry_after_s=retry_after,
    )


def test_a_failure_opens_the_breaker_and_cooldowns_grow() -> None:
    hb = HealthBoard(RoutingConfig())
    assert hb.failure(REF, err(), 10, now=0) == 30
    assert REF in hb.snapshot(10).blocked
    assert REF in hb.snapshot(10).cooling
    # cooldown over: half-open, one probe goes through
    assert REF not in hb.snapshot(31).blocked
    hb.begin(REF, 31)
    assert "probe" in hb.snapshot(31).blocked[REF]
    assert hb.failure(REF, err(), 10, now=32) == 60
    assert hb.failure(REF, err(), 10, now=100) == 300
    assert hb.failure(REF, err(), 10, now=500) == 300  # stays at the last step
    hb.success(REF, 5, now=900)
    assert hb.snapshot(900).blocked == {}
    assert hb.failure(REF, err(), 10, now=901) == 30  # reset after success


def test_threshold_counts_consecutive_failures() -> None:
    hb = HealthBoard(RoutingConfig(failure_threshold=3))
    assert hb.failure(REF, err(), 1, now=0) == 0
    hb.success(REF, 1, now=1)
    assert hb.failure(REF, err(), 1, now=2) == 0
    assert hb.failure(REF, err(), 1, now=3) == 0
    assert hb.failure(REF, err(), 1, now=4) == 30


@pytest.mark.parametrize(("retry_after", "expected"), [(None, 30), (5, 30), (120, 120)])
def test_retry_after_is_honoured(retry_after: float | None, expected: float) -> None:
    hb = HealthBoard(RoutingConfig(failure_threshold=5))
    # a 429 with Retry-After opens at once, even under the threshold
    cooldown = hb.failure(REF, err("rate_limited", 429, retry_after), 1, now=0)
    assert cooldown == (0 if retry_after is None else expected)


def test_fatal_opens_long() -> None:
    hb = HealthBoard(RoutingConfig(failure_threshold=5))
    assert hb.failure(REF, err("auth", 401), 1, now=0) == 900
    assert hb.status(10)[0]["state"] == "open"
    assert hb.status(10)[0]["last_error"] == "auth HTTP 401"


def test_unavailable_is_permanent_and_not_cooling() -> None:
    hb = HealthBoard(RoutingConfig())
    hb.mark_unavailable(REF, "DEEPSEEK_API_KEY is not set")
    snap = hb.snapshot(10**9)
    assert snap.blocked[REF] == "DEEPSEEK_API_KEY is not set"
    assert REF not in snap.cooling
