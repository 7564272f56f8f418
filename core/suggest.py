"""Did you mean …: the configured names closest to a mistyped one.

One matcher for every interface (CLI, gateway, bot) so a typo gets the same suggestions
wherever it is made; each interface words the hint its own way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

MAX_SUGGESTIONS = 3
# difflib's ratio below this suggests names that share little more than a letter or two
CUTOFF = 0.4
# difflib compares every pair of characters: a 5,000-character name against a few hundred
# agents takes seconds, and no real name is this long, so only its start is compared
PROBE_CHARS = 80


def close_matches(name: str, choices: Iterable[str], n: int = MAX_SUGGESTIONS) -> list[str]:
    """Up to ``n`` of ``choices`` closest to ``name``, best first; [] for an empty name."""
    probe = name[:PROBE_CHARS]
    if not probe:
        return []
    return difflib.get_close_matches(probe, list(choices), n=n, cutoff=CUTOFF)
