"""What an agent's final answer says about its run, beyond its text.

Prompt writers get two words (README *Agents*): an answer whose first line is exactly
``NO_REPLY`` delivers nothing — the run is ``ok`` and marked quiet (a digest with nothing
new, a check that found nothing); an answer whose first line starts with
``AUTOMATION_FAILED:`` makes the run ``failed`` with the reason after it, so failure
streaks, alerts and auto-disable work for agents that check something. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_REPLY = "NO_REPLY"
FAILED = "AUTOMATION_FAILED:"


@dataclass(frozen=True, slots=True)
class Verdict:
    quiet: bool = False  # deliver nothing; the run is still ok
    failure: str | None = None  # the run failed, for this reason


def verdict(answer: str) -> Verdict:
    """Read the first line of ``answer`` (leading blank lines and spaces aside)."""
    first = answer.lstrip().split("\n", 1)[0].strip()
    if first == NO_REPLY:
        return Verdict(quiet=True)
    if first.startswith(FAILED):
        reason = first.removeprefix(FAILED).strip()
        return Verdict(failure=f"the agent reported a failure: {reason or '(no reason given)'}")
    return Verdict()
