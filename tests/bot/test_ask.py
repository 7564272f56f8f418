"""/ask, /new, plain text and replies to a run's message (issue 16): the real bot against
the fake Bot API and the fake LLM."""

from __future__ import annotations

import asyncio

from core.agents.runs import Trigger
from tests.bot.conftest import ADMIN, STRANGER, VIEWER, BotRig, RigFactory
from tests.bot.test_bot import agent, buttons
from tests.bot.test_interactive import delivering
from tests.fakes.llm import RecordedRequest, Reply

GROUP = -100555


def answering(request: RecordedRequest) -> Reply:
    return Reply(text=f"answer to {request.last_user_text}")


def request_texts(rig: BotRig, index: int) -> str:
    return "\n".join(rig.llm.requests[index].texts())


async def test_ask_keeps_the_chat_conversation_and_new_drops_it(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.llm.default = answering
    rig.tg.user_message(ADMIN, "/ask what is a pyramid")
    await rig.said(ADMIN, "answer to what is a pyramid")
    rig.tg.user_message(ADMIN, "/ask and a tier")
    await rig.said(ADMIN, "answer to and a tier")
    second = request_texts(rig, 1)
    assert "what is a pyramid" in second and "answer to what is a pyramid" in second
    assert rig.llm.requests[1].last_user_text == "and a tier"
    rig.tg.user_message(ADMIN, "/new")
    await rig.said(ADMIN, "New conversation started")
    rig.tg.user_message(ADMIN, "/ask fresh start")
    await rig.said(ADMIN, "answer to fresh start")
    assert rig.llm.requests[2].texts() == ["fresh start"]
    # the conversation is in the store: the newest session of the chat is the current one
    assert await rig.app.facade.sessions.newest(f"chat:{ADMIN}:") == 2
    caller = await rig.app.store.fetchall("SELECT DISTINCT caller FROM attempts")
    assert [c[0] for c in caller] == [f"telegram:{ADMIN}"]


async def test_task_and_tier_prefixes_route(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.tg.user_message(ADMIN, "/ask tier:1 hello")
    await rig.llm.wait_for_requests(1)
    rig.tg.user_message(ADMIN, "/ask task:analysis think hard")
    await rig.llm.wait_for_requests(2)
    rig.tg.user_message(ADMIN, "/ask plain")
    await rig.llm.wait_for_requests(3)
    assert [r.model for r in rig.llm.requests] == ["gemini-flash", "deepseek-chat", "qwen3:14b"]
    assert rig.llm.requests[0].last_user_text == "hello"
    assert rig.llm.requests[1].last_user_text == "think hard"


async def test_plain_text_in_a_private_chat_is_an_ask(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.llm.default = answering
    rig.tg.user_message(VIEWER, "hello bot")
    await rig.said(VIEWER, "answer to hello bot")
    rig.tg.user_message(VIEWER, "/ask again")
    await rig.said(VIEWER, "answer to again")
    assert "hello bot" in request_texts(rig, 1)  # one conversation for both ways of asking


async def test_strangers_and_group_chatter_are_ignored(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.tg.user_message(STRANGER, "/ask who are you")
    rig.tg.user_message(STRANGER, "hello")
    rig.tg.user_message(VIEWER, "just chatting", chat_id=GROUP)
    rig.tg.user_message(VIEWER, "/ask in the group", chat_id=GROUP)  # a command works there
    await rig.said(GROUP, "ok")
    await asyncio.sleep(0.5)  # the other updates were taken before the group's command
    assert rig.tg.sent(STRANGER) == []
    assert [r.last_user_text for r in rig.llm.requests] == ["in the group"]
    assert len(rig.tg.sent(GROUP)) == 1


async def test_wrong_arguments_answer_with_the_usage(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.tg.user_message(ADMIN, "/ask")
    await rig.said(ADMIN, "Usage: /ask [task:&lt;task&gt;|tier:&lt;n&gt;]")
    rig.tg.user_message(ADMIN, "/ask tier:9 x")
    msg = await rig.said(ADMIN, "No tier <code>9</code>")
    assert "Tiers: 0, 1, 2, 3" in msg["text"]
    rig.tg.user_message(ADMIN, "/ask task:nope x")
    msg = await rig.said(ADMIN, "No task named <code>nope</code>")
    assert "analysis" in msg["text"] and "Usage: /ask" in msg["text"]
    rig.tg.user_message(ADMIN, "/ask tier:1")
    await rig.tg.wait_for(lambda tg: sum("Usage" in t for t in rig.texts(ADMIN)) == 4)
    assert rig.llm.requests == []


async def test_an_engine_failure_and_a_denied_approval_answer_with_the_reason(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(approvals={"default": "deny", "timeout_s": 30})
    rig.tg.user_message(ADMIN, "/ask tier:3 big question")
    ask = await rig.said(ADMIN, "Approval needed")
    rig.tg.user_press(ADMIN, ask, buttons(ask)["❌ Deny"])
    msg = await rig.said(ADMIN, "No answer:")
    assert "denied" in msg["text"]
    rig.llm.default = Reply(status=500, error_message="boom")
    rig.tg.user_message(ADMIN, "/ask tier:2 again")
    await rig.tg.wait_for(  # tiers 2 fail, so it climbs to tier 3
        lambda tg: sum("Approval needed" in t for t in rig.texts(ADMIN)) == 2, 20
    )
    ask = [m for m in rig.tg.sent(ADMIN) if "Approval needed" in (m.get("text") or "")][-1]
    rig.tg.user_press(ADMIN, ask, buttons(ask)["❌ Deny"])
    await rig.tg.wait_for(lambda tg: sum("No answer:" in t for t in rig.texts(ADMIN)) == 2)
    failed = [t for t in rig.texts(ADMIN) if "No answer:" in t][-1]
    assert "tier 2 deep/deepseek-chat" in failed and "tier 3 opus/claude-opus: denied" in failed
    # nothing of a failed exchange is kept in the conversation
    assert await rig.app.facade.sessions.history(f"chat:{ADMIN}:1") == []


async def test_a_reply_to_a_delivered_run_continues_that_runs_session_only(
    make_rig: RigFactory,
) -> None:
    target = f"telegram:{ADMIN}"
    rig = await make_rig(
        [
            agent("alpha", message="alpha prompt", deliver=[target, "log"]),
            agent("beta", message="beta prompt", deliver=[target]),
        ]
    )
    rig.llm.default = answering
    runner = rig.app.facade.runner
    async with delivering(rig):
        alpha = await runner.run("alpha", Trigger.CLI)
        await rig.said(ADMIN, "answer to alpha prompt")
        beta = await runner.run("beta", Trigger.CLI)
        await rig.said(ADMIN, "answer to beta prompt")
        rows = await rig.app.store.fetchall(
            "SELECT external_id FROM outbox WHERE run_id = ? AND target = ?", (alpha.id, target)
        )
        rig.tg.user_message(ADMIN, "tell me more", reply_to=int(rows[0][0]))
        await rig.said(ADMIN, "answer to tell me more")
        child = (await rig.app.facade.runs.recent("alpha", limit=1))[0]
        assert (child.trigger, child.parent_run, child.status) == (Trigger.REPLY, alpha.id, "ok")
        assert child.reply_to == target  # in the row: a run recovered after a restart too
        sent = rig.llm.requests[-1].texts()
        assert sent == ["alpha prompt", "answer to alpha prompt", "tell me more"]
        assert not any("beta" in t for t in sent)
        # answered in the chat the reply came from, not at the agent's other targets
        targets = await rig.app.store.fetchall(
            "SELECT target FROM outbox WHERE run_id = ?", (child.id,)
        )
        assert [t[0] for t in targets] == [target]
        # a reply to the reply's answer carries the whole exchange on
        rows = await rig.app.store.fetchall(
            "SELECT external_id FROM outbox WHERE run_id = ? AND status = 'delivered'",
            (child.id,),
        )
        rig.tg.user_message(ADMIN, "and then", reply_to=int(rows[0][0]))
        await rig.said(ADMIN, "answer to and then")
    assert rig.llm.requests[-1].texts() == [
        "alpha prompt",
        "answer to alpha prompt",
        "tell me more",
        "answer to tell me more",
        "and then",
    ]
    assert beta.id not in {r.parent_run for r in await rig.app.facade.runs.recent("beta")}


async def test_a_reply_to_another_message_is_an_ask(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.llm.default = answering
    rig.tg.user_message(ADMIN, "/ask first")
    first = await rig.said(ADMIN, "answer to first")
    rig.tg.user_message(ADMIN, "second", reply_to=int(first["message_id"]))
    await rig.said(ADMIN, "answer to second")
    assert await rig.app.facade.runs.recent() == []
