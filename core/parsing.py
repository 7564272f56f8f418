"""Parsing the numbers people type: ids, counts and periods, from the CLI, the API and the chat.

``str.isdigit`` accepts "²" and ``int`` accepts "٣" and any length, so a careless or hostile
value ends as a crash or an overflow deep inside (SQLite takes 64-bit integers, datetime
years 1–9999). Here a value is ASCII digits within a stated range, or a ``ValueError``
whose message says what is accepted and quotes at most a short piece of what was given.
"""

from __future__ import annotations

import re
from datetime import timedelta

MAX_ID = 2**63 - 1  # SQLite's INTEGER (and PostgreSQL's BIGINT)
MAX_PERIOD_DAYS = 36_500  # a hundred years: longer than any ledger, far from datetime's edge
_ASCII_INT = re.compile(r"[0-9]{1,19}")
_SINCE = re.compile(r"([0-9]{1,12})\s*(m|h|d|w)")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def shown(text: str, limit: int = 40) -> str:
    """``text`` as quoted in an error: repr, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def parse_int(text: str, what: str, lo: int = 0, hi: int = MAX_ID) -> int:
    """``text`` as a whole number in ``lo..hi`` (ASCII digits only), else ``ValueError``."""
    raw = text.strip()
    if not _ASCII_INT.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}, got {shown(text)}")
    return int(raw)


def parse_id(text: str, what: str = "run id") -> int:
    """A row id: 1 up to the largest 64-bit integer."""
    return parse_int(text, what, 1, MAX_ID)


def parse_since(text: str) -> timedelta:
    """``"7d"`` → 7 days. Units: m (minutes), h, d, w; at most a hundred years."""
    m = _SINCE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"invalid period {shown(text)}: use a number and a unit m/h/d/w, e.g. 7d")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds > MAX_PERIOD_DAYS * 86400:
        raise ValueError(f"period {shown(text)} is too long: at most {MAX_PERIOD_DAYS}d")
    return timedelta(seconds=seconds)
