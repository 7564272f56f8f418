"""How big the reliability suite runs.

`make test-reliability` sets ``OPENCLAW_RELIABILITY=full`` and gets the figures the issue
names (2,000 requests at c=100, 20 crash drills, ...); `make test` runs the same tests in a
short form that keeps the whole suite within a few minutes.
"""

from __future__ import annotations

import os

FULL = os.environ.get("OPENCLAW_RELIABILITY", "").strip().lower() == "full"


def scale(short: int, full: int) -> int:
    """``full`` under `make test-reliability`, ``short`` otherwise."""
    return full if FULL else short
