"""An admin approves an agent's operator tool call from Telegram, through the approval
broker the Tier-3 escalations use (issue 16).

The real bot (aiogram Dispatcher, polling) against the fake Bot API and a real SQLite
store; the tool loop's side is ``approve_tool_call``, called here as the loop calls it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.callbacks import ApprovalCb
from bot.views import approval_text
from core.agents.tool_approval import TOOL_TIER, approve_tool_call
from core.engine.approvals import ApprovalRecord, ApprovalRequest, Decision
from tests.bot.conftest import ADMIN, VIEWER, BotRig, RigFactory

ARGS = json.dumps({"service": "web", "env": "prod"})
WAIT_S = 20  # far below [approvals] timeout_s unless a test sets it short


@pytest.fixture
async def rig(make_rig: RigFactory) -> AsyncIterator[Callable[..., Awaitable[BotRig]]]:
    made: list[BotRig] = []

    async def make(timeout_s: float = 600) -> BotRig:
        r = await make_rig(approvals={"default": "deny", "timeout_s": timeout_s})
        made.append(r)
        return r

    yield make
    for r in made:  # copies still being closed must not outlive the loop
        await r.app.approvals.drain()


def ask(rig: BotRig, arguments: str = ARGS, tool: str = "deploy") -> asyncio.Task[Decision]:
    """The tool loop asking, as a task (the answer comes from a press)."""
    call = approve_tool_call(
        rig.app.approvals,
        agent="ops",
        run_id=7,
        tool=tool,
        arguments=arguments,
        request_id="run-7-step-2",
        timeout_note="the agent is told the call was not run",
    )
    return asyncio.create_task(asyncio.wait_for(call, WAIT_S))


def buttons(message: dict[str, Any]) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
    return {b["text"]: b["callback_data"] for row in rows for b in row}


async def test_the_card_names_agent_run_tool_and_arguments_and_approve_runs_it(
    rig: Callable[..., Awaitable[BotRig]],
) -> None:
    r = await rig()
    asking = ask(r)
    card = await r.said(ADMIN, "wants to run")
    assert card["text"] == (
        "🔐 <b>Approval needed</b> #1\n"
        "🔧 Agent <b>ops</b> (run #7) wants to run <code>deploy</code>\n"
        'Arguments: <pre>{"service": "web", "env": "prod"}</pre>'
    )
    assert set(buttons(card)) == {"✅ Approve", "❌ Deny"}
    r.tg.user_press(ADMIN, card, buttons(card)["✅ Approve"])
    decision = await asking
    assert decision.approved and decision.by == "@user1001"
    closed = await r.said(ADMIN, "✅ Approved by @user1001")
    assert "wants to run <code>deploy</code>" in closed["text"]
    assert buttons(r.tg.message(ADMIN, card["message_id"]) or {}) == {}
    (row,) = await r.app.store.fetchall("SELECT * FROM approvals")
    assert (row["status"], row["tool"], row["arguments"]) == ("approved", "deploy", ARGS)
    assert (row["tier"], row["agent"], row["run_id"], row["task"]) == (TOOL_TIER, "ops", "7", None)
    assert row["estimated_cost_usd"] == 0.0 and row["reason"] == "agent ops wants to run deploy"


async def test_deny_denies_the_call(rig: Callable[..., Awaitable[BotRig]]) -> None:
    r = await rig()
    asking = ask(r)
    card = await r.said(ADMIN, "wants to run")
    r.tg.user_press(ADMIN, card, buttons(card)["❌ Deny"])
    decision = await asking
    assert not decision.approved and decision.by == "@user1001"
    await r.said(ADMIN, "❌ Denied by @user1001")
    (row,) = await r.app.store.fetchall("SELECT status FROM approvals")
    assert row["status"] == "denied"


async def test_an_unanswered_call_expires_denied_and_its_card_says_so(
    rig: Callable[..., Awaitable[BotRig]],
) -> None:
    r = await rig(timeout_s=0.5)
    asking = ask(r)
    card = await r.said(ADMIN, "wants to run")
    decision = await asking
    assert not decision.approved and decision.by == "timeout"
    assert decision.note == (
        "expired after 0.5s without a decision; the agent is told the call was not run"
    )
    await r.said(ADMIN, "⌛ Expired")
    assert buttons(r.tg.message(ADMIN, card["message_id"]) or {}) == {}
    (row,) = await r.app.store.fetchall("SELECT status FROM approvals")
    assert row["status"] == "expired"


async def test_a_non_admin_pressing_approve_is_refused(
    rig: Callable[..., Awaitable[BotRig]],
) -> None:
    r = await rig()
    asking = ask(r)
    card = await r.said(ADMIN, "wants to run")
    r.tg.user_press(VIEWER, card, buttons(card)["✅ Approve"])
    await r.tg.wait_for(lambda t: any(c.get("user_id") == VIEWER for c in t.answered_callbacks()))
    (answer,) = [c for c in r.tg.answered_callbacks() if c.get("user_id") == VIEWER]
    assert answer["text"] == "Only admins can approve or deny."
    assert not asking.done()
    (row,) = await r.app.store.fetchall("SELECT status FROM approvals")
    assert row["status"] == "pending"
    r.tg.user_press(ADMIN, card, buttons(card)["❌ Deny"])
    assert not (await asking).approved


async def test_arguments_are_escaped_and_shortened(rig: Callable[..., Awaitable[BotRig]]) -> None:
    r = await rig()
    arguments = json.dumps({"html": "<script>alert(1)</script> & more", "pad": "x" * 2000})
    asking = ask(r, arguments, tool="run<b>")
    card = await r.said(ADMIN, "wants to run")
    text = card["text"]
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in text
    assert "<code>run&lt;b&gt;</code>" in text
    assert len(text) < 1000 and "…</pre>" in text
    r.tg.user_press(ADMIN, card, ApprovalCb(action="deny", approval_id=1).pack())
    await asking
    (row,) = await r.app.store.fetchall("SELECT arguments FROM approvals")
    assert row["arguments"] == arguments  # stored whole (up to 4000 characters)


async def test_approvals_lists_a_pending_tool_call_as_one(
    rig: Callable[..., Awaitable[BotRig]],
) -> None:
    r = await rig()
    asking = ask(r)
    card = await r.said(ADMIN, "wants to run")
    r.tg.user_message(ADMIN, "/approvals")
    await r.tg.wait_for(lambda t: len(t.sent(ADMIN)) == 2)
    listed = r.tg.sent(ADMIN)[1]
    assert listed["text"] == card["text"] and set(buttons(listed)) == {"✅ Approve", "❌ Deny"}
    r.tg.user_press(ADMIN, listed, buttons(listed)["✅ Approve"])
    assert (await asking).approved
    for copy in (card, listed):  # the decision closes both copies
        await r.tg.wait_for(
            lambda t, c=copy: "✅ Approved" in (t.message(ADMIN, c["message_id"]) or {})["text"]
        )


def test_an_escalation_card_is_unchanged() -> None:
    req = ApprovalRequest("r", "strategy", 3, "opus/claude-opus", "starts at tier 3", 0.0123)
    rec = ApprovalRecord(1, req, "pending", None, "", "", [])
    text = approval_text(rec)
    assert "→ tier 3 opus/claude-opus" in text and "Estimated cost: $0.0123" in text
    assert "🔧" not in text
