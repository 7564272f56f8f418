"""An admin approves each call of an operator command tool marked ``approval = true``.

The tool loop asks the same Approver as Tier-3 escalations: with the bot on, the
``ApprovalBroker`` (Approve / Deny to the admins, first decision wins, expiry denies,
every copy is closed); without it, ``PolicyApprover`` applies ``[approvals] default``.

A tool call has no tier, but ``approvals.tier`` is NOT NULL, so its request carries
``TOOL_TIER`` (-1) and an empty model. That is safe because the only readers of an
approval's tier are texts (the bot's card and progress note, the broker's "nobody could be
reached" alert), and each says ``tool <name>`` when ``tool`` is set; budgets, metrics and
the gate read the candidate's tier, never an approval's. -1 is outside the configured
levels (``level >= 0``), so it can never be taken for, or looked up as, a real tier.
"""

from __future__ import annotations

import logging

from core.engine.approvals import ApprovalRequest, Approver, Decision

log = logging.getLogger("openclaw.agents")

TOOL_TIER = -1  # an approval's tier when it is a tool call (see the module docstring)
MAX_PREVIEW = 500  # as much of the arguments as an escalation's prompt preview


async def approve_tool_call(
    approver: Approver,
    *,
    agent: str,
    run_id: int,
    tool: str,
    arguments: str,
    request_id: str,
    timeout_note: str = "",
) -> Decision:
    """Ask ``approver`` whether ``agent``'s run ``run_id`` may call ``tool`` with
    ``arguments`` (JSON text the caller has already redacted: admins see it as given).

    Returns the decision; the tool runs only if it is approved. A request nobody decided
    in time is denied by ``"timeout"`` (the broker marks it expired); ``timeout_note``,
    if given, is added to that decision's note (e.g. what the agent is told). An approver
    that fails denies, so a broken bot never lets a call through.
    """
    request = ApprovalRequest(
        request_id,
        None,
        TOOL_TIER,
        "",
        f"agent {agent} wants to run {tool}",
        0.0,
        agent=agent,
        run_id=str(run_id),
        preview=arguments[:MAX_PREVIEW],
        tool=tool,
        arguments=arguments,
    )
    try:
        decision = await approver.decide(request)
    except Exception as e:
        log.exception("run %s: the approver failed on tool %s", run_id, tool)
        return Decision(False, "error", f"the approver failed: {type(e).__name__}")
    if timeout_note and not decision.approved and decision.by == "timeout":
        note = f"{decision.note}; {timeout_note}" if decision.note else timeout_note
        return Decision(False, decision.by, note)
    return decision
