"""A receiver's Retry-After is read by the providers' one parser, then capped for the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict

from core.delivery.channels import MAX_RETRY_AFTER_S, _retry_after
from core.providers.base import parse_retry_after

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Retry-After": "7"},
        {"retry-after": " 1.5 "},
        {"Retry-After": "Wed, 01 Jan 2025 12:00:30 GMT"},
        {"Retry-After": "Wed, 01 Jan 2025 11:00:00 GMT"},
        {"Retry-After": "soon"},
        {"Retry-After": "-3"},
        {"retry-after-ms": "250", "Retry-After": "9"},
    ],
)
def test_an_ordinary_value_reads_as_the_providers_read_it(headers: dict[str, str]) -> None:
    h = CIMultiDict(headers)
    assert _retry_after(h, NOW) == parse_retry_after(h, NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("inf", MAX_RETRY_AFTER_S),  # a timedelta this large would overflow
        ("1e30", MAX_RETRY_AFTER_S),
        ("Fri, 01 Jan 9999 00:00:00 GMT", MAX_RETRY_AFTER_S),
        (str(MAX_RETRY_AFTER_S - 1), MAX_RETRY_AFTER_S - 1),
    ],
)
def test_a_huge_value_is_capped(value: str, expected: float) -> None:
    assert _retry_after(CIMultiDict({"Retry-After": value}), NOW) == expected


def test_nan_is_no_wait() -> None:
    # the worker treats None and 0 alike (its backoff applies); neither may raise
    assert not _retry_after(CIMultiDict({"Retry-After": "nan"}), NOW)
