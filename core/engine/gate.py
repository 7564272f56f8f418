"""May this candidate be called now? One gate per request, asked before every call.

The plan (core/engine/routing.py) leaves out the models blocked when the request began.
The gate asks again at call time: a breaker that opened since (another request's
failures, while this one waited for an approval or on a lower tier) refuses the call,
unless the plan chose the model only because everything was cooling down. A prompt
estimated over a model's ``context`` is not sent to it either, nor a request it cannot
serve (tools, JSON output: core/engine/structured.py). It adds spend
caps (a read-only check before an admin is asked, a reservation of the worst case before
each call) and approval for tiers that require it (asked once per tier and request). A
refusal comes back as the attempt to record; the engine's policy (core/engine/policy.py)
decides where the request goes from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from core.config.models import Config
from core.engine.approvals import ApprovalRequest, Approver, Decision
from core.engine.budget import BudgetGuard, estimate_input_tokens
from core.engine.ledger import price
from core.engine.routing import Candidate, Plan
from core.engine.structured import unfit
from core.types import Attempt, ChatRequest, Usage
from core.waits import within

log = logging.getLogger("openclaw.engine")


def asked_for(p: Plan) -> str:
    """How messages name what a request asked for: its task, or else its tier."""
    return f"task {p.task!r}" if p.task else f"tier {p.min_tier}"


@dataclass(frozen=True, slots=True)
class Ticket:
    """The gate's answer: ``refused`` (the attempt to record instead of a call), or leave
    to call, holding ``reservation`` until ``Gate.leave`` settles it."""

    refused: Attempt | None = None
    reservation: int | None = None
    unfit: bool = False  # refused because the model cannot serve this request at all


_FREE = Ticket()  # most calls: no approval to ask, no cap to reserve against


class Gate:
    """Budget and approval checks for the candidates of one request."""

    def __init__(
        self,
        config: Config,
        request: ChatRequest,
        plan: Plan,
        request_id: str,
        *,
        approver: Approver,
        budget: BudgetGuard | None,
        blocked_now: Callable[[str], str | None] | None = None,
        planned_blocked: Collection[str] = (),
    ) -> None:
        self.config = config
        self.request = request
        self.plan = plan
        self.request_id = request_id
        self.approver = approver
        self.budget = budget
        self._decisions: dict[int, Decision] = {}  # by tier: one question per tier
        self._blocked_now = blocked_now  # why a model may not be called at this moment
        # blocked when planned, yet planned (everything was cooling down): not re-checked
        self._last_resort = frozenset(planned_blocked)
        self._prompt_tokens = estimate_input_tokens(request.messages)  # the same for each call

    async def enter(
        self, cand: Candidate, max_tokens: int, *, retry: bool, tried: Sequence[Attempt]
    ) -> Ticket:
        """Admit a call of ``cand`` with ``max_tokens``, or refuse it.

        The first call of a candidate may need approval; a retry of it (double budget)
        was approved already and only reserves its new worst case. ``tried``: the
        attempts so far, which an admin is shown as the reason for the escalation.
        """
        # first: a model that could never serve the request says so, healthy or not
        why = self.unfit(cand)
        if why is not None:
            return Ticket(Attempt(cand.tier, cand.provider, cand.model, "skipped", why), unfit=True)
        if not retry and self._blocked_now is not None and cand.ref not in self._last_resort:
            why = self._blocked_now(cand.ref)
            if why is not None:
                return Ticket(Attempt(cand.tier, cand.provider, cand.model, "skipped", why))
        if not retry and cand.requires_approval:
            refused = await self._admit(cand, tried)
            if refused is not None:
                return Ticket(refused)
        if self.budget is None:
            return _FREE
        reservation, over = await self.budget.reserve(
            cand.tier, cand.ref, self.request.agent, self._worst(cand, max_tokens)
        )
        if over:
            return Ticket(Attempt(cand.tier, cand.provider, cand.model, "skipped", over))
        return Ticket(reservation=reservation)

    def unfit(self, cand: Candidate) -> str | None:
        """Why ``cand`` cannot serve this request whatever its health: over its context,
        or without the tools or JSON mode the request needs."""
        if cand.context is not None and self._prompt_tokens > cand.context:
            return (
                f"the prompt (~{self._prompt_tokens} tokens) is over the model's context of "
                f"{cand.context}"
            )
        return unfit(cand, self.request)

    async def leave(self, cand: Candidate, ticket: Ticket) -> None:
        """The call ended and its cost is in the ledger: drop its reservation."""
        if ticket.reservation is not None and self.budget is not None:
            # shielded: a caller that goes away must not leave the reservation behind
            await asyncio.shield(
                self.budget.settle(ticket.reservation, cand.tier, cand.ref, self.request.agent)
            )

    async def _admit(self, cand: Candidate, tried: Sequence[Attempt]) -> Attempt | None:
        if self.budget is not None:
            # no admin is asked to approve a call the budget would refuse anyway
            over = await self.budget.check(
                cand.tier, cand.ref, self.request.agent, self._worst(cand, cand.max_tokens)
            )
            if over:
                return Attempt(cand.tier, cand.provider, cand.model, "skipped", over)
        if cand.tier not in self._decisions:
            self._decisions[cand.tier] = await self._approve(cand, tried)
        d = self._decisions[cand.tier]
        if d.approved:
            return None
        why = f"approval denied by {d.by}: {d.note}".rstrip(": ")
        return Attempt(cand.tier, cand.provider, cand.model, "denied", why)

    def _worst(self, cand: Candidate, max_tokens: int) -> float:
        tokens = estimate_input_tokens(self.request.messages)
        return price(self.config, cand.ref, Usage(tokens, max_tokens))

    async def _approve(self, cand: Candidate, tried: Sequence[Attempt]) -> Decision:
        req, p = self.request, self.plan
        why = "; ".join(
            f"tier {a.tier} {a.ref} {a.outcome}" + (f" ({a.reason})" if a.reason else "")
            for a in tried
            if a.outcome != "skipped"
        )
        preview = next((m.content for m in reversed(req.messages) if m.role == "user"), "")
        areq = ApprovalRequest(
            self.request_id,
            p.task,
            cand.tier,
            cand.ref,
            why or f"{asked_for(p)} starts at tier {p.min_tier}",
            self._worst(cand, cand.max_tokens),
            req.agent,
            req.run_id,
            req.caller,
            preview[:500],
        )
        timeout_s = self.config.approvals.timeout_s
        try:  # the approver times out itself; this only guards against one that hangs
            return await within(self.approver.decide(areq), timeout_s + 10)
        except TimeoutError:
            return Decision(False, "timeout", f"no decision within {timeout_s:.0f}s")
        except Exception as e:  # an approver that breaks must deny, not crash the request
            log.exception("the approver failed")
            return Decision(False, "error", f"the approver failed: {type(e).__name__}")
