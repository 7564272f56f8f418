"""The tracing helper sees what the constant-time test relies on (else that test is empty)."""

from __future__ import annotations

import hmac
import sys

from tests.tracing import traced


def early_exit_equal(a: bytes, b: bytes) -> bool:
    """The check a constant-time test must catch: it stops at the first differing byte."""
    if len(a) != len(b):
        return False
    return all(x == y for x, y in zip(a, b, strict=True))


def digest_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def test_an_early_exit_shows_in_the_opcode_count() -> None:
    counts = []
    for given in (b"aaaa", b"baaa", b"aaab", b"aa"):
        with traced() as trace:
            early_exit_equal(given, b"aaaa")
        counts.append(trace.opcodes)
    assert len(set(counts)) == len(counts) and min(counts) > 0


def test_compare_digest_is_seen_and_takes_one_path() -> None:
    counts = []
    for given in (b"aaaa", b"baaa", b"aaab", b"aa"):
        with traced() as trace:
            digest_equal(given, b"aaaa")
        assert trace.count(hmac.compare_digest) == 1
        counts.append(trace.opcodes)
    assert len(set(counts)) == 1 and counts[0] > 0
    with traced() as trace:
        early_exit_equal(b"aaaa", b"aaaa")
    assert trace.count(hmac.compare_digest) == 0


def test_the_previous_tracer_and_profiler_are_put_back() -> None:
    def tracer(frame: object, event: str, arg: object) -> None:
        return None

    old_trace, old_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(tracer)
    sys.setprofile(tracer)
    try:
        with traced():
            pass
        assert sys.gettrace() is tracer and sys.getprofile() is tracer
    finally:
        sys.settrace(old_trace)
        sys.setprofile(old_profile)
