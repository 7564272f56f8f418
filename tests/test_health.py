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


# -- billing and keys ----------------------------------------------------------------

H = 3600.0


def billing(retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        "billing",
        "deep",
        "deepseek-chat",
        "Insufficient Balance",
        status=402,
        retry_after_s=retry_after,
    )


def keyed_board(*envs: str, **routing: float) -> HealthBoard:
    hb = HealthBoard(RoutingConfig(**routing))  # type: ignore[arg-type]
    hb.set_keys("deep", envs)
    hb.watch([REF, "deep/deepseek-reasoner"])
    return hb


def test_billing_keeps_a_key_out_5h_doubling_to_24h_and_a_success_resets_it() -> None:
    hb = keyed_board("KEY_A")
    now = 0.0
    cooldowns = []
    for _ in range(5):
        cooldowns.append(hb.failure(REF, billing(), 10, now, key="KEY_A"))
        assert REF in hb.snapshot(now + 1).blocked
        now += cooldowns[-1]  # the probe after the cooldown is refused again
    assert cooldowns == [5 * H, 10 * H, 20 * H, 24 * H, 24 * H]
    hb.success(REF, 5, now, key="KEY_A")
    assert hb.snapshot(now).blocked == {}
    assert hb.failure(REF, billing(), 10, now, key="KEY_A") == 5 * H  # a new episode


def test_billing_cooldown_is_configurable_and_opens_under_any_threshold() -> None:
    hb = keyed_board("KEY_A", billing_cooldown_s=600, failure_threshold=5)
    assert hb.failure(REF, billing(), 1, 0, key="KEY_A") == 600
    assert hb.failure(REF, billing(), 1, 600, key="KEY_A") == 1200


def test_a_billing_key_blocks_every_model_of_the_provider_not_as_a_cooldown() -> None:
    hb = keyed_board("KEY_A")
    hb.failure(REF, billing(), 1, 0, key="KEY_A")
    snap = hb.snapshot(60)
    # the other model was never called: it sends the same spent key
    assert set(snap.blocked) == {REF, "deep/deepseek-reasoner"}
    assert "no credit or quota" in snap.blocked[REF] and "KEY_A" in snap.blocked[REF]
    assert "4h59m" in snap.blocked[REF]
    assert snap.cooling == frozenset()  # not a last resort: the key is spent, not slow


def test_one_alert_per_key_and_episode() -> None:
    hb = keyed_board("KEY_A", "KEY_B")
    assert not hb.billing_alert_due(REF, "KEY_A")  # nothing happened yet
    hb.failure(REF, billing(), 1, 0, key="KEY_A")
    assert hb.billing_alert_due(REF, "KEY_A")
    assert not hb.billing_alert_due(REF, "KEY_A")
    hb.failure(REF, billing(), 1, 5 * H, key="KEY_A")  # still spent after the cooldown
    assert not hb.billing_alert_due(REF, "KEY_A")
    hb.failure(REF, billing(), 1, 0, key="KEY_B")  # another key: its own episode
    assert hb.billing_alert_due(REF, "KEY_B")
    hb.success(REF, 1, 16 * H, key="KEY_A")
    hb.failure(REF, billing(), 1, 17 * H, key="KEY_A")
    assert hb.billing_alert_due(REF, "KEY_A")  # topped up, then spent again: a new episode


def test_breakers_are_per_key_and_the_model_is_out_only_when_all_keys_are() -> None:
    hb = keyed_board("KEY_A", "KEY_B")
    assert hb.failure(REF, billing(), 1, 0, key="KEY_A") == 5 * H
    assert hb.snapshot(1).blocked == {}  # KEY_B still works
    assert hb.pick_key("deep", 1) == "KEY_B"
    assert hb.failure(REF, err("rate_limited", 429, 20), 1, 1, key="KEY_B") == 30
    snap = hb.snapshot(2)
    assert "KEY_A no credit" in snap.blocked[REF] and "KEY_B cooling down" in snap.blocked[REF]
    assert REF in snap.cooling  # one key only cools: a plan with nothing left may try it
    assert hb.pick_key("deep", 2) == "KEY_B"  # only cooling: the last resort it would be
    assert hb.pick_key("deep", 40) == "KEY_B"  # its cooldown is over; KEY_A is still out


def test_a_429_of_a_provider_with_several_keys_counts_against_the_key() -> None:
    hb = keyed_board("KEY_A", "KEY_B")
    hb.failure(REF, err("rate_limited", 429, 10), 1, 0, key="KEY_A")
    assert hb.state(REF, 1) == "closed"  # the model is fine
    assert hb.pick_key("deep", 1) == "KEY_B"
    single = keyed_board("KEY_A")
    single.failure(REF, err("rate_limited", 429, 10), 1, 0, key="KEY_A")
    assert single.state(REF, 1) == "open"  # one key: the model's breaker, as before keys


def test_pick_key_order_preference_and_tried() -> None:
    hb = keyed_board("KEY_A", "KEY_B", "KEY_C")
    assert hb.pick_key("deep", 0) == "KEY_A"
    assert hb.pick_key("deep", 0, prefer="KEY_B") == "KEY_B"
    assert hb.pick_key("deep", 0, prefer="KEY_B", tried=("KEY_B",)) == "KEY_A"
    assert hb.pick_key("deep", 0, tried=("KEY_A", "KEY_B", "KEY_C")) is None
    hb.failure(REF, billing(), 1, 0, key="KEY_B")
    assert hb.pick_key("deep", 1, prefer="KEY_B") == "KEY_A"  # its key is out: the next
    assert hb.pick_key("other", 0) is None  # a provider without keys


def test_key_status_names_variables() -> None:
    hb = keyed_board("KEY_A", "KEY_B")
    hb.failure(REF, billing(), 1, 0, key="KEY_A")
    rows = {r["key"]: r for r in hb.key_status(60)}
    assert set(rows) == {"KEY_A", "KEY_B"}
    assert rows["KEY_A"]["state"] == "open"
    assert rows["KEY_A"]["last_outcome"] == "billing"
    assert rows["KEY_A"]["last_error"] == "billing HTTP 402"
    assert rows["KEY_A"]["cooldown_left_s"] == 5 * H - 60
    assert rows["KEY_B"]["state"] == "closed"


def test_billing_of_a_provider_without_a_key_opens_the_model() -> None:
    hb = HealthBoard(RoutingConfig())
    assert hb.failure(REF, billing(), 1, 0) == 5 * H
    assert hb.billing_alert_due(REF, None)
    assert REF in hb.snapshot(1).blocked and REF not in hb.snapshot(1).cooling


def test_status_shows_a_model_out_when_all_its_keys_are() -> None:
    hb = keyed_board("KEY_A")
    hb.failure(REF, billing(), 1, 0, key="KEY_A")
    rows = {r["model"]: r for r in hb.status(60)}
    # the model that answered 402 and the one never called: both out while the key is
    for ref in (REF, "deep/deepseek-reasoner"):
        assert rows[ref]["state"] == "open"
        assert rows[ref]["cooldown_left_s"] == 5 * H - 60
        assert rows[ref]["last_error"].startswith("key KEY_A no credit or quota")
    hb.success(REF, 1, 5 * H + 1, key="KEY_A")
    assert {r["state"] for r in hb.status(5 * H + 2)} == {"closed"}


def test_a_drilled_billing_fault_is_the_models_alone_and_ends_with_the_drill() -> None:
    hb = keyed_board("KEY_A")
    now = 0.0
    # the drill server answered "no credit": the key was never sent, nor is it spent
    assert hb.failure(REF, billing(), 10, now, key="KEY_A", drill=True) >= 5 * H
    assert hb.billing_alert_due(REF, "KEY_A", drill=True)  # one alert, of the model
    assert not hb.billing_alert_due(REF, "KEY_A", drill=True)
    assert [k["state"] for k in hb.key_status(now)] == ["closed"]
    assert hb.blocked("deep/deepseek-reasoner", now) is None  # the provider's other model
    assert hb.state(REF, now) == "open"
    # the drill ends: its fault said nothing of the real model, which is probed next
    hb.drill_over(REF, now + 60)
    assert hb.state(REF, now + 60) == "half_open"
    hb.success(REF, 100.0, now + 61, key="KEY_A")
    assert hb.state(REF, now + 61) == "closed"
