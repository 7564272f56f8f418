"""The chart's tier targets come from the one table, tier_targets.TARGET_SHARE."""

from __future__ import annotations

import pytest

from core.engine.tier_targets import TARGET_MID_PCT, TARGET_SHARE, middle_pct


def test_the_middles_of_the_pyramid() -> None:
    # the values the /usage chart drew before it derived them
    assert TARGET_MID_PCT == {0: 65.0, 1: 17.5, 2: 12.5, 3: 5.0}
    assert set(TARGET_MID_PCT) == set(TARGET_SHARE)


@pytest.mark.parametrize(
    ("share", "middle"),
    [("60–70", 65.0), ("10-15", 12.5), ("~5", 5.0), ("2.5–7.5", 5.0), ("40", 40.0)],
)
def test_middle_pct(share: str, middle: float) -> None:
    assert middle_pct(share) == middle


def test_a_share_without_a_number_is_an_error() -> None:
    with pytest.raises(ValueError, match="no number"):
        middle_pct("most")
