"""One "did you mean" matcher for the CLI, the gateway and the bot."""

from __future__ import annotations

import pytest

from core.suggest import PROBE_CHARS, close_matches

NAMES = ["morning-digest", "evening-digest", "news-watch", "cost-report"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("morning-digst", ["morning-digest", "evening-digest"]),  # best first
        ("news_watch", ["news-watch"]),
        ("costreport", ["cost-report"]),
        ("zzzzzz", []),  # nothing alike: no suggestion rather than a random one
        ("", []),
    ],
)
def test_close_matches(name: str, expected: list[str]) -> None:
    assert close_matches(name, NAMES) == expected


def test_at_most_three_unless_asked() -> None:
    names = [f"agent-{i}" for i in range(10)]
    assert len(close_matches("agent-", names)) == 3
    assert len(close_matches("agent-", names, n=5)) == 5


def test_a_huge_name_is_compared_by_its_start() -> None:
    # what the gateway or the bot may be sent; only the start is worth comparing
    name = "news-watch" + "x" * 5000
    assert close_matches(name, ["news-watch" + "x" * (PROBE_CHARS - 10)]) != []
    assert close_matches(name, NAMES) == close_matches(name[:PROBE_CHARS], NAMES)
