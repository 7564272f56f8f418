"""``approve_tool_call`` over the policy and the broker on a real SQLite store, without the
bot (its side is tests/bot/test_tool_approvals.py)."""

from __future__ import annotations

import asyncio

import pytest

from core.agents.tool_approval import TOOL_TIER, approve_tool_call
from core.config.models import ApprovalsConfig
from core.engine.approvals import (
    ApprovalBroker,
    ApprovalRecord,
    ApprovalRequest,
    Approver,
    CopyShown,
    Decision,
    PolicyApprover,
)
from core.store.base import Store

ARGS = '{"service": "web"}'


def config(default: str = "deny", timeout_s: float = 600) -> ApprovalsConfig:
    return ApprovalsConfig.model_validate({"default": default, "timeout_s": timeout_s})


async def ask(approver: Approver) -> Decision:
    return await asyncio.wait_for(
        approve_tool_call(
            approver, agent="ops", run_id=7, tool="deploy", arguments=ARGS, request_id="r-7"
        ),
        10,
    )


class Broken:
    async def decide(self, request: ApprovalRequest) -> Decision:
        raise RuntimeError("boom")


@pytest.mark.parametrize(("default", "approved"), [("approve", True), ("deny", False)])
async def test_without_a_bot_the_default_decides(default: str, approved: bool) -> None:
    decision = await ask(PolicyApprover(config(default)))
    assert decision == Decision(approved, "policy", f"[approvals] default = {default!r}")


async def test_an_approver_that_fails_denies() -> None:
    assert await ask(Broken()) == Decision(False, "error", "the approver failed: RuntimeError")


async def test_the_request_round_trips_through_the_store(store: Store) -> None:
    b = ApprovalBroker(store, config())
    seen: list[ApprovalRecord] = []
    asked = asyncio.Event()

    async def notify(record: ApprovalRecord, shown: CopyShown) -> list[str]:
        seen.append(record)
        await shown(1, 10)
        asked.set()
        return []

    b.notifiers.append(notify)
    asking = asyncio.create_task(ask(b))
    await asyncio.wait_for(asked.wait(), 10)
    req = seen[0].request
    assert (req.tool, req.arguments, req.tier, req.model, req.task) == (
        "deploy",
        ARGS,
        TOOL_TIER,
        "",
        None,
    )
    assert (req.agent, req.run_id, req.preview, req.estimated_cost_usd) == ("ops", "7", ARGS, 0.0)
    assert req.subject == "tool deploy"
    assert await b.resolve(1, True, "@op") == (True, "approved — thanks")
    assert await asking == Decision(True, "@op")
    await b.drain()


async def test_reaching_nobody_alerts_about_the_tool_not_a_tier(store: Store) -> None:
    b = ApprovalBroker(store, config())
    alerts: list[str] = []

    async def nobody(record: ApprovalRecord, shown: CopyShown) -> list[str]:
        return ["admin 1: Forbidden"]

    async def alert(text: str) -> None:
        alerts.append(text)

    b.notifiers.append(nobody)
    b.alerts.append(alert)
    decision = await ask(b)
    assert not decision.approved and decision.by == "policy"
    await b.drain()  # the alert goes out after the run was woken
    (text,) = alerts
    assert text.startswith("Approval #1 for tool deploy from ops (run #7): no admin could be")
    assert "tier" not in text


def test_an_escalation_still_reads_as_its_tier() -> None:
    req = ApprovalRequest("r", "strategy", 3, "opus/claude-opus", "starts at tier 3", 0.01)
    assert req.tool is None and req.arguments == ""
    assert req.subject == "tier 3 (opus/claude-opus)"
