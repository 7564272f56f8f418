"""Stopping the bot (serve's SIGTERM path) ends polling quietly."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.bot.conftest import ADMIN, RigFactory


async def test_stop_ends_polling_without_an_error_line(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig()
    rig.tg.user_message(ADMIN, "/help")
    await rig.said(ADMIN, "OpenClaw")
    # a long poll is in flight when serve stops
    await rig.tg.wait_for(lambda tg: not tg.calls_of("getUpdates")[-1].done)
    polls = len(rig.tg.calls_of("getUpdates"))
    with caplog.at_level(logging.INFO):
        await rig.bot.stop()
        await rig.tg.close()  # the API goes away too: nothing may be polling it still
        await asyncio.sleep(1.5)  # longer than aiogram's first backoff step
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert len(rig.tg.calls_of("getUpdates")) == polls  # no orphaned poller goes on
    assert rig.bot.state == "stopped"


async def test_the_watchdog_leaves_no_poller_behind(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig(telegram={"polling_timeout_s": 1, "watchdog_margin_s": 0.5})
    rig.tg.hang_get_updates = True
    await rig.tg.wait_for(lambda tg: rig.bot.reconnects >= 1, timeout_s=20)
    rig.tg.hang_get_updates = False
    rig.tg.user_message(ADMIN, "/help")
    await rig.said(ADMIN, "OpenClaw")
    with caplog.at_level(logging.INFO):
        await rig.bot.stop()
        await rig.tg.close()
        await asyncio.sleep(1.5)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
