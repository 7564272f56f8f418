"""Leader and follower in polling mode (issue 17): only the leader polls, registers the
commands and deletes the webhook; ``follow`` ends polling for good until ``lead`` again.

The real bot and aiogram Dispatcher against the fake Bot API, on a real SQLite store."""

from __future__ import annotations

import asyncio

from tests.bot.conftest import ADMIN, VIEWER, RigFactory
from tests.bot.test_stopping import aiogram_tasks

SETTINGS_CALLS = ("deleteWebhook", "setWebhook", "setMyCommands")
QUIET_S = 1.0  # a live poller asks again within milliseconds once an update is queued


async def test_follow_stops_polling_and_lead_resumes_it(make_rig: RigFactory) -> None:
    rig = await make_rig()
    assert rig.bot.status()["role"] == "leader"
    rig.tg.user_message(ADMIN, "/help")
    await rig.said(ADMIN, "OpenClaw")
    await rig.tg.wait_for(lambda tg: not tg.calls_of("getUpdates")[-1].done)  # a long poll
    await rig.bot.follow()
    assert aiogram_tasks() == []  # no poller is left to ask again
    polls = len(rig.tg.calls_of("getUpdates"))
    settings = len([c for c in rig.tg.calls if c.method in SETTINGS_CALLS])
    waiting = rig.tg.user_message(VIEWER, "/help")
    await rig.bot.follow()  # idempotent
    await asyncio.sleep(QUIET_S)
    assert len(rig.tg.calls_of("getUpdates")) == polls
    assert waiting in [u["update_id"] for u in rig.tg.pending_updates]
    assert rig.tg.sent(VIEWER) == []
    assert len([c for c in rig.tg.calls if c.method in SETTINGS_CALLS]) == settings
    status = rig.bot.status()
    assert (status["mode"], status["role"]) == ("polling", "follower")
    assert status["state"] == "follower (the leader polls)"
    # leading again: the update queued meanwhile is answered, by one poller
    await rig.bot.lead()
    await rig.bot.lead()  # idempotent: no second poller (the fake would answer 409)
    await rig.said(VIEWER, "OpenClaw")
    assert len(rig.tg.calls_of("deleteWebhook")) == 2  # once per time it took the lead
    assert [c for c in rig.tg.calls_of("getUpdates") if c.error_code == 409] == []
    assert rig.bot.status()["role"] == "leader"
    assert rig.bot.state == "ok"


async def test_a_follower_never_polls_nor_touches_telegrams_settings(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(lead=False)
    await rig.bot.follow()  # serve says so once it knows another instance leads
    await asyncio.sleep(QUIET_S)
    rig.tg.user_message(ADMIN, "/help")
    await asyncio.sleep(QUIET_S)
    assert rig.tg.calls_of("getUpdates") == []
    assert [c.method for c in rig.tg.calls if c.method in SETTINGS_CALLS] == []
    assert aiogram_tasks() == []
    assert rig.bot.status()["role"] == "follower"


async def test_stop_of_a_leader_and_of_a_follower(make_rig: RigFactory) -> None:
    leader = await make_rig()
    follower = await make_rig(lead=False)
    await leader.bot.stop()
    await follower.bot.stop()
    assert aiogram_tasks() == []
    assert (leader.bot.state, follower.bot.state) == ("stopped", "stopped")
