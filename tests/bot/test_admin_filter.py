"""One filter guards every admin-only handler; whoever else asks gets that handler's answer."""

from __future__ import annotations

from typing import Any

from aiogram import Router

from bot.callbacks import AgentCb, ApprovalCb, RunCb
from bot.middlewares import IS_ADMIN
from tests.bot.conftest import ADMIN, VIEWER, RigFactory

ADMIN_HANDLERS = {
    "run_agent",
    "pending",
    "decide",
    "admin_action",
    "rerun",
    "list_deliveries",
    "turn_deliveries_page",
    "delivery_button",
    "drill",
}


def _handlers(router: Router) -> list[Any]:
    found = list(router.message.handlers) + list(router.callback_query.handlers)
    for sub in router.sub_routers:
        found += _handlers(sub)
    return found


async def test_every_admin_only_handler_is_behind_the_one_filter(make_rig: RigFactory) -> None:
    rig = await make_rig()
    guarded = {
        h.callback.__name__
        for h in _handlers(rig.bot.dp)
        if any(f.callback is IS_ADMIN for f in h.filters or [])
    }
    assert guarded == ADMIN_HANDLERS


async def test_a_viewer_gets_each_refusal_and_nothing_happens(make_rig: RigFactory) -> None:
    rig = await make_rig([{"name": "a", "task": "chat", "message": "hi", "deliver": ["log"]}])

    def answers() -> list[tuple[str, bool]]:
        return [
            (c.get("text") or "", bool(c.get("show_alert")))
            for c in rig.tg.answered_callbacks()
            if c.get("user_id") == VIEWER
        ]

    rig.tg.user_message(VIEWER, "/approvals")
    await rig.said(VIEWER, "Only admins can see and decide approvals.")
    assert rig.texts(VIEWER) == ["Only admins can see and decide approvals."]
    rig.tg.user_message(VIEWER, "/help")
    msg = await rig.said(VIEWER, "OpenClaw")
    presses = [
        (AgentCb(action="disable", idx=0), "Only admins can do that."),
        (RunCb(action="rerun", run_id=1), "Only admins can rerun."),
        (ApprovalCb(action="approve", approval_id=1), "Only admins can approve or deny."),
    ]
    for n, (data, _) in enumerate(presses, start=1):
        rig.tg.user_press(VIEWER, msg, data.pack())
        await rig.tg.wait_for(lambda tg, n=n: len(answers()) == n)
    assert answers() == [(text, True) for _, text in presses]
    assert not (await rig.app.runner.states.get("a")).disabled
    # the admin, in a private chat, passes the same filter
    rig.tg.user_message(ADMIN, "/approvals")
    await rig.said(ADMIN, "No approvals are pending.")
