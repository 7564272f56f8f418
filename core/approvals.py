"""Approval of calls to tiers marked ``requires_approval`` (Tier 3 by default).

The engine asks an Approver before calling such a tier. ``PolicyApprover`` applies
``[approvals] default`` without asking anyone. ``ApprovalBroker`` asks people: it
stores a pending row, lets notifiers (the Telegram bot) show it to the admins, and
waits for the first decision or the timeout (then denied, marked expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.config import ApprovalsConfig
from core.store import Store, utcnow_iso

log = logging.getLogger("openclaw.approvals")


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
    caller: str | None = None
    preview: str = ""  # the start of the prompt


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


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    id: int
    request: ApprovalRequest
    status: str  # pending | approved | denied | expired
    decided_by: str | None
    created_at: str
    expires_at: str
    messages: list[tuple[int, int]]  # (chat id, message id) shown to admins

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> ApprovalRecord:
        req = ApprovalRequest(
            r["request_id"],
            r["task"],
            r["tier"],
            r["model"],
            r["reason"],
            r["estimated_cost_usd"],
            r["agent"],
            r["run_id"],
            r["caller"],
            r["preview"],
        )
        return cls(
            r["id"],
            req,
            r["status"],
            r["decided_by"],
            r["created_at"],
            r["expires_at"],
            [(int(m[0]), int(m[1])) for m in json.loads(r["messages"])],
        )


Notifier = Callable[[ApprovalRecord], Awaitable[list[tuple[int, int]]]]
Closer = Callable[[ApprovalRecord], Awaitable[None]]


class ApprovalBroker:
    """Asks people, waits for the first decision or the timeout; every decision is a row.

    Without a notifier (no bot) it falls back to the policy, since nobody could answer.
    """

    def __init__(self, store: Store, config: ApprovalsConfig) -> None:
        self.store = store
        self.config = config
        self.notifiers: list[Notifier] = []  # show a pending approval; return its messages
        self.closers: list[Closer] = []  # an approval was decided or expired: update them
        self._waiting: dict[int, asyncio.Future[Decision]] = {}

    async def decide(self, request: ApprovalRequest) -> Decision:
        """Store a pending approval, notify, wait; expired → denied."""
        if not self.notifiers:
            return await PolicyApprover(self.config).decide(request)
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.config.timeout_s)
        _, aid = await self.store.write(
            "INSERT INTO approvals (request_id, run_id, agent, caller, task, tier, model, reason,"
            " estimated_cost_usd, preview, status, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (
                request.request_id,
                request.run_id,
                request.agent,
                request.caller,
                request.task,
                request.tier,
                request.model,
                request.reason[:1000],
                request.estimated_cost_usd,
                request.preview[:1000],
                utcnow_iso(now),
                utcnow_iso(expires),
            ),
        )
        assert aid is not None
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting[aid] = fut
        try:
            record = await self.get(aid)
            assert record is not None
            shown: list[tuple[int, int]] = []
            for notify in self.notifiers:
                try:
                    shown += await notify(record)
                except Exception:
                    log.exception("approval %s: a notifier failed", aid)
            await self.store.execute(
                "UPDATE approvals SET messages = ? WHERE id = ?", (json.dumps(shown), aid)
            )
            try:
                return await asyncio.wait_for(asyncio.shield(fut), self.config.timeout_s)
            except TimeoutError:
                if not await self._close(aid, "expired", "timeout"):
                    # a decision landed just as time ran out: the row is the truth
                    record = await self.get(aid)
                    if record is not None and record.status in ("approved", "denied"):
                        return Decision(record.status == "approved", record.decided_by or "")
                return Decision(
                    False, "timeout", f"expired after {self.config.timeout_s:g}s without a decision"
                )
        finally:
            self._waiting.pop(aid, None)
            if not fut.done():  # the run went away (timeout, shutdown): nobody waits now
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._close(aid, "expired", "abandoned"))

    async def resolve(self, approval_id: int, approved: bool, by: str) -> tuple[bool, str]:
        """Record a decision; the first one wins. Returns (taken, what to tell the person)."""
        status = "approved" if approved else "denied"
        if await self._close(approval_id, status, by, wake=Decision(approved, by)):
            return True, f"{status} — thanks"
        record = await self.get(approval_id)
        if record is None:
            return False, "no such approval"
        if record.status == "expired":
            return False, "this approval has expired"
        return False, f"already {record.status} by {record.decided_by}"

    async def _close(
        self, approval_id: int, status: str, by: str, wake: Decision | None = None
    ) -> bool:
        changed, _ = await self.store.write(
            "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ? WHERE id = ?"
            " AND status = 'pending'",
            (status, by, utcnow_iso(), approval_id),
        )
        if changed != 1:
            return False
        fut = self._waiting.get(approval_id)
        if wake is not None and fut is not None and not fut.done():
            fut.set_result(wake)  # the waiting run goes on before the messages are edited
        record = await self.get(approval_id)
        if record is not None:
            for close in self.closers:
                try:
                    await close(record)
                except Exception:
                    log.exception("approval %s: a closer failed", approval_id)
        return True

    async def get(self, approval_id: int) -> ApprovalRecord | None:
        """One approval."""
        rows = await self.store.fetchall("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return ApprovalRecord.from_row(dict(rows[0])) if rows else None

    async def pending(self) -> list[ApprovalRecord]:
        """Approvals still waiting for a decision, oldest first."""
        rows = await self.store.fetchall(
            "SELECT * FROM approvals WHERE status = 'pending' ORDER BY id"
        )
        return [ApprovalRecord.from_row(dict(r)) for r in rows]

    async def expire_abandoned(self) -> int:
        """Pending approvals nobody waits for any more (their process ended) are expired."""
        count = 0
        for record in await self.pending():
            if record.id not in self._waiting and await self._close(
                record.id, "expired", "restart"
            ):
                count += 1
        return count
