"""The tier targets: the one table of them (``TARGET_SHARE``), and the same as numbers.

The table is written for people ("60–70", "~5"); a chart needs one number per tier. Deriving
it here keeps the chart from drifting when the table changes.
"""

from __future__ import annotations

import re

# the pyramid an operator aims for: share of answered requests per tier, in %
TARGET_SHARE: dict[int, str] = {0: "60–70", 1: "15–20", 2: "10–15", 3: "~5"}

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def middle_pct(share: str) -> float:
    """The middle of a target share written as a range ("60–70" → 65.0) or a value ("~5")."""
    numbers = [float(n) for n in _NUMBER.findall(share)]
    if not numbers:
        raise ValueError(f"tier target {share!r} has no number")
    return (min(numbers) + max(numbers)) / 2


TARGET_MID_PCT: dict[int, float] = {tier: middle_pct(s) for tier, s in TARGET_SHARE.items()}
