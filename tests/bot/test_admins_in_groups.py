"""Admins in group chats (issue 13, part A2): admin rights hold only in a private chat.

In a group, members who are on no list read everything the bot posts, so there admins
are read-only users: /run, /approvals and the admin buttons (Run now, Enable/Disable,
Rerun, Approve/Deny) are refused with a pointer to the private chat, read-only commands
still answer, and approval requests go only to admins' private chats.
"""

from __future__ import annotations

from typing import Any

from bot.callbacks import AgentCb, ApprovalCb, RunCb
from tests.bot.conftest import ADMIN, STRANGER, VIEWER, BotRig, RigFactory
from tests.fakes.llm import Reply, echo

GROUP, SUPERGROUP = -4242, -1009876543210
PRIVATE_ONLY = "only in a private chat"


def agent(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "message": f"hello from {name}", "task": "chat", "deliver": ["log"], **kw}


def texts(rig: BotRig, chat_id: int) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in rig.tg.sent(chat_id)]


def answers(rig: BotRig, user_id: int) -> list[str]:
    return [c.get("text") or "" for c in rig.tg.answered_callbacks() if c["user_id"] == user_id]


async def settled(rig: BotRig) -> None:
    """Every queued update taken and a marker from the admin's private chat answered."""
    before = len(rig.tg.sent(ADMIN))
    rig.tg.user_message(ADMIN, "/help")
    await rig.tg.wait_for(lambda t: not t.pending_updates and len(t.sent(ADMIN)) > before)


async def test_admin_commands_in_a_group_are_refused_with_a_pointer(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a")])
    rig.llm.default = echo
    for chat in (GROUP, SUPERGROUP):
        rig.tg.user_message(ADMIN, "/run a", chat_id=chat)
        rig.tg.user_message(ADMIN, "/run@openclaw_test_bot a", chat_id=chat)
        rig.tg.user_message(ADMIN, "/approvals", chat_id=chat)
    # a group gets about one message every 3 s (20 a minute)
    await rig.tg.wait_for(lambda t: all(len(t.sent(c)) >= 3 for c in (GROUP, SUPERGROUP)), 20)
    await settled(rig)
    for chat in (GROUP, SUPERGROUP):
        said = texts(rig, chat)
        assert len(said) == 3 and all(PRIVATE_ONLY in t for t in said), said
        assert all("@openclaw_test_bot" in t for t in said)
    assert await rig.app.runner.runs.recent() == []  # no run was started from a group
    assert rig.llm.requests == []


async def test_a_command_for_another_bot_in_a_group_gets_no_answer(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a")])
    rig.tg.user_message(ADMIN, "/run@some_other_bot a", chat_id=GROUP)
    await settled(rig)
    assert rig.tg.sent(GROUP) == []
    assert await rig.app.runner.runs.recent() == []


async def test_read_only_commands_still_work_in_a_group(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a")])
    rig.tg.user_message(VIEWER, "/status", chat_id=GROUP)
    await rig.said(GROUP, "Pending:")
    rig.tg.user_message(ADMIN, "/agents", chat_id=GROUP)
    await rig.said(GROUP, "Agents</b>")
    rig.tg.user_message(ADMIN, "/help", chat_id=GROUP)
    help_msg = await rig.said(GROUP, "OpenClaw")
    assert "/run" not in help_msg["text"]  # the group is shown what works there
    rig.tg.user_message(STRANGER, "/status", chat_id=GROUP)  # the allowlist still holds
    await settled(rig)
    assert sum("Pending:" in t for t in texts(rig, GROUP)) == 1


async def test_admin_buttons_pressed_in_a_group_do_nothing(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a")])
    rig.llm.default = echo
    run = await rig.app.runner.run("a", "cli")
    rig.tg.user_message(ADMIN, "/agents", chat_id=GROUP)
    page = await rig.said(GROUP, "Agents</b>")
    presses = [
        AgentCb(action="run", idx=0).pack(),
        AgentCb(action="disable", idx=0).pack(),
        AgentCb(action="enable", idx=0).pack(),
        RunCb(action="rerun", run_id=run.id).pack(),
    ]
    for data in presses:
        rig.tg.user_press(ADMIN, page, data, chat_id=GROUP)
    await rig.tg.wait_for(lambda t: len(answers(rig, ADMIN)) == len(presses))
    assert all(PRIVATE_ONLY in a for a in answers(rig, ADMIN))
    assert [r.id for r in await rig.app.runner.runs.recent()] == [run.id]  # no new run
    assert not (await rig.app.runner.states.get("a")).disabled


async def test_an_admin_in_a_group_cannot_decide_an_approval(make_rig: RigFactory) -> None:
    rig = await make_rig(
        [agent("deep", task="strategy")], approvals={"default": "deny", "timeout_s": 60}
    )
    rig.llm.script("claude-opus", Reply(text="the opus answer"))
    rig.tg.user_message(ADMIN, "/help", chat_id=GROUP)  # the bot is in the group
    await rig.said(GROUP, "OpenClaw")
    run_id = await rig.app.runner.start("deep", "cli")
    ask = await rig.said(ADMIN, "Approval needed")
    assert not any("Approval needed" in t for t in texts(rig, GROUP))  # private chats only
    rig.tg.user_press(ADMIN, ask, ApprovalCb(action="approve", approval_id=1).pack(), GROUP)
    rig.tg.user_press(ADMIN, ask, "ap:approve:1:extra", chat_id=GROUP)  # crafted
    rig.tg.user_press(VIEWER, ask, ApprovalCb(action="approve", approval_id=1).pack(), GROUP)
    await rig.tg.wait_for(lambda t: len(answers(rig, ADMIN)) == 2 and answers(rig, VIEWER))
    assert all(PRIVATE_ONLY in a for a in answers(rig, ADMIN))
    assert "Only admins" in answers(rig, VIEWER)[0]
    (row,) = await rig.app.store.fetchall("SELECT status FROM approvals")
    assert row["status"] == "pending"
    rig.tg.user_press(ADMIN, ask, ApprovalCb(action="deny", approval_id=1).pack())  # private
    run = await rig.app.runner.wait(run_id, 0.05)
    assert run.status == "failed" and "denied by @" in (run.error or "")
