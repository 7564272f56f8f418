"""Times as the store keeps them: ISO-8601 UTC text, which sorts and compares as time."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow_iso(now: datetime | None = None) -> str:
    """A sortable UTC timestamp, as stored in every ``ts`` column."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    # isoformat is C code, several times cheaper than strftime on this per-row path
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
