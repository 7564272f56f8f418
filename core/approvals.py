"""Approval of calls to tiers marked ``requires_approval`` (Tier 3 by default).

The engine asks an Approver before calling such a tier. The default approver
applies the policy from ``[approvals] default``; the Telegram bot plugs in one
that asks the admins with inline buttons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.config import ApprovalsConfig


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    request_id: str
    task: str | None
    tier: int
    model: str
    reason: str  # why the request climbed this far
    estimated_cost_usd: float
    agent: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    approved: bool
    by: str
    note: str = ""


class Approver(Protocol):
    async def decide(self, request: ApprovalRequest) -> Decision:
        """Approve or deny one escalation. Must return within the configured timeout."""
        ...


class PolicyApprover:
    """Decides by the configured default policy, without asking anyone."""

    def __init__(self, config: ApprovalsConfig) -> None:
        self.config = config

    async def decide(self, request: ApprovalRequest) -> Decision:
        """Apply ``[approvals] default``."""
        approved = self.config.default == "approve"
        return Decision(approved, "policy", f"[approvals] default = {self.config.default!r}")
