"""Stopping the bot (serve's SIGTERM path) ends polling quietly."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.bot.conftest import ADMIN, RigFactory


def aiogram_tasks() -> list[str]:
    """Tasks of this loop still running aiogram code (its pollers), by coroutine name.

    Cancelling ``start_polling`` instead of stopping it leaves the inner poller task
    running: it goes on polling and, once the API is gone, logs an ERROR every backoff
    step. No such task once the bot stopped means nothing of it can poll or log later.
    """
    left = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        code = getattr(coro, "cr_code", None)
        if not task.done() and code is not None and "/aiogram/" in code.co_filename:
            left.append(code.co_qualname)
    return left


async def test_stop_ends_polling_without_an_error_line(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig()
    rig.tg.user_message(ADMIN, "/help")
    await rig.said(ADMIN, "OpenClaw")
    # a long poll is in flight when serve stops
    await rig.tg.wait_for(lambda tg: not tg.calls_of("getUpdates")[-1].done)
    assert aiogram_tasks()  # the check sees the pollers while they run
    polls = len(rig.tg.calls_of("getUpdates"))
    with caplog.at_level(logging.INFO):
        await rig.bot.stop()
        assert aiogram_tasks() == []  # no orphaned poller goes on
        await rig.tg.close()  # the API goes away too
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert len(rig.tg.calls_of("getUpdates")) == polls
    assert rig.bot.state == "stopped"


async def test_the_watchdog_leaves_no_poller_behind(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig(telegram={"polling_timeout_s": 1, "watchdog_margin_s": 0.5})
    rig.tg.hang_get_updates = True
    await rig.tg.wait_for(lambda tg: rig.bot.reconnects >= 1, timeout_s=20)
    rig.tg.hang_get_updates = False
    rig.tg.user_message(ADMIN, "/help")
    await rig.said(ADMIN, "OpenClaw")  # the new poller works
    with caplog.at_level(logging.INFO):
        await rig.bot.stop()
        # neither the poller the watchdog replaced nor its successor is left
        assert aiogram_tasks() == []
        await rig.tg.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
