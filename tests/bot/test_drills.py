"""/drill in Telegram: admins only, usage on wrong arguments, and the report in the chat
when the drill ends; the breaker's alert reaches the admin through the fake Bot API."""

from __future__ import annotations

import asyncio

from core.types import ChatRequest, Message
from tests.bot.conftest import ADMIN, VIEWER, RigFactory


async def test_drill_is_for_admins_and_wrong_arguments_get_the_usage(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    rig.tg.user_message(VIEWER, "/drill deep/deepseek-chat 500")
    await rig.said(VIEWER, "Only admins can start drills.")
    assert not rig.app.drills.drilled("deep/deepseek-chat")
    rig.tg.user_message(ADMIN, "/drill")
    await rig.said(ADMIN, "Usage: /drill &lt;provider/model&gt; &lt;fault&gt;")
    rig.tg.user_message(ADMIN, "/drill deep/nope 500")
    await rig.said(ADMIN, "unknown model 'deep/nope': use one of deep/deepseek-chat")
    rig.tg.user_message(ADMIN, "/drill deep/deepseek-chat fire")
    await rig.said(ADMIN, "unknown fault 'fire': use one of refused, timeout, 429, 500")
    rig.tg.user_message(ADMIN, "/drill deep/deepseek-chat 500 forever")
    await rig.said(ADMIN, "invalid duration 'forever'")
    rig.tg.user_message(ADMIN, "/drill deep/deepseek-chat 500 20m")
    await rig.said(ADMIN, "out of range: more than 0, at most 15m")
    assert not rig.app.drills.drilled("deep/deepseek-chat")
    rig.tg.user_message(VIEWER, "/drills")
    await rig.said(VIEWER, "No drills yet.")


async def test_a_drill_from_the_chat_reports_failover_and_the_alert(make_rig: RigFactory) -> None:
    rig = await make_rig(alerts={"deliver": [f"telegram:{ADMIN}"]})
    stop = asyncio.Event()
    worker = asyncio.create_task(rig.app.delivery.run(stop))
    try:
        rig.tg.user_message(ADMIN, "/drill deep/deepseek-chat 500 1")
        await rig.said(ADMIN, "Drill 1: <code>deep/deepseek-chat</code> faulted with <b>500</b>")
        ask = ChatRequest((Message("user", "why"),), task="analysis")
        result = await rig.app.engine.complete(ask)
        assert result.answered_by.ref == "deep2/deepseek-backup"
        alert = await rig.said(ADMIN, "deep/deepseek-chat is failing (server_error HTTP 500")
        assert "breaker opened" in alert["text"]
        report = await rig.said(ADMIN, "drill 1: deep/deepseek-chat fault 500")
    finally:
        stop.set()
        await worker
    text = report["text"]
    assert "ended (requests)" in text and "1 requests hit the fault" in text
    assert "failed over to   deep2/deepseek-backup ×1" in text
    assert "breaker opened   +" in text
    rig.tg.user_message(VIEWER, "/drills 1")
    await rig.said(VIEWER, "drill 1: deep/deepseek-chat fault 500 for 60s or 1 requests")
