"""What the engine does after an attempt: a pure function of how the attempt ended.

The attempt loop asks ``next_step`` once per attempt (called, or refused at the gate)
and does what it says; no branch of the failover and escalation table lives in the
loop, so the table is tested as plain data (tests/test_engine_policy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.engine.routing import Candidate
from core.types import Outcome


class Next(StrEnum):
    """Where the request goes after an attempt."""

    ANSWER = "answer"  # the attempt's answer is the result
    RETRY = "retry"  # the same model once more, with a larger token budget
    NEXT_MODEL = "next_model"  # the next candidate, same tier first
    NEXT_TIER = "next_tier"  # skip the rest of this tier: climb
    REJECT = "reject"  # the request's own fault: fail it (RequestRejected)
    RERAISE = "reraise"  # a stream broke after its first byte went out: raise its error


@dataclass(frozen=True, slots=True)
class Ended:
    """What the policy needs to know of one attempt.

    ``outcome`` is the attempt's ledger outcome, or the gate's refusal (``skipped``
    over budget, ``denied`` by an approver).
    """

    outcome: Outcome
    committed: bool = False  # streaming: content already reached the caller
    content: bool = False  # the answer has visible (non-blank) content
    reasoned: bool = False  # the model reasoned (text or counted tokens)


@dataclass(frozen=True, slots=True)
class Step:
    """The policy's answer. ``max_tokens``: the budget of a RETRY. ``keep``: NEXT_TIER
    keeps this attempt's answer, in case a denial higher up ends the climb."""

    next: Next
    max_tokens: int | None = None
    keep: bool = False


# the steps that carry nothing: built once, since the engine asks after every attempt
_ANSWER = Step(Next.ANSWER)
_NEXT_MODEL = Step(Next.NEXT_MODEL)
_NEXT_TIER = Step(Next.NEXT_TIER)
_CLIMB_KEEPING = Step(Next.NEXT_TIER, keep=True)
_REJECT = Step(Next.REJECT)
_RERAISE = Step(Next.RERAISE)


def next_step(ended: Ended, cand: Candidate, max_tokens: int, retried: bool) -> Step:
    """What follows an attempt of ``cand`` with ``max_tokens`` (``retried``: it already was
    the doubled-budget retry).

    A thinking model that spent its whole budget on reasoning gets one more call with
    double the budget (capped at the model's output limit); every other unusable answer
    climbs. Failures of the model try the next one; the request's own (``rejected``)
    fails it, so one careless caller cannot push everyone to pricier tiers.
    """
    if ended.committed and ended.outcome != "ok":
        return _RERAISE  # bytes went out: no failover can take them back
    match ended.outcome:
        case "ok":
            return _ANSWER
        case "rejected":
            return _REJECT
        case "denied":
            return _NEXT_TIER  # the approval was for the tier, not the model
        case "unusable":
            if not retried and not ended.content and ended.reasoned:
                doubled = cand.budget(max_tokens * 2)
                if doubled > max_tokens:  # at the output limit already: doubling is moot
                    return Step(Next.RETRY, max_tokens=doubled)
            return _CLIMB_KEEPING if ended.content else _NEXT_TIER
        case _:  # unavailable, fatal, skipped (over budget)
            return _NEXT_MODEL
