"""Approvals reach every admin, and a decision closes every copy (issue 13, part A2).

The real bot (aiogram Dispatcher, polling) against the fake Bot API and the fake LLM.
Where a test needs one admin's copy to be still in flight, a request middleware on the
bot's own session holds that one sendMessage back until the test lets it go: the request
then reaches the fake server as any slow request would.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType

from bot.service import TelegramBot
from core.agents.runs import Run
from core.app import App
from core.config.settings import Settings
from tests.bot.conftest import BotRig
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, Reply
from tests.fakes.telegram import FakeTelegram
from tests.stores import NewLocation

ADMIN, ADMIN2 = 1001, 1005
WAIT_S = 20  # far below [approvals] timeout_s: a run still waiting then waited for it

Rig = Callable[..., Awaitable[BotRig]]


@pytest.fixture
async def make_rig(
    tg: FakeTelegram, fake_llm: FakeLLM, tmp_path: Path, new_location: NewLocation
) -> AsyncIterator[Rig]:
    """A bot whose one agent needs Tier 3 (approval); the approval timeout is long, so a
    run that ends within the test did not wait for it."""
    made: list[BotRig] = []
    HoldSends.installed.clear()

    async def make(admins: list[int], default: str = "deny") -> BotRig:
        telegram = {"admins": admins, "allowed_users": [], "polling_timeout_s": 1}
        cfg = make_config(
            pyramid_urls(fake_llm.base_url),
            agents=[{"name": "deep", "message": "hello from deep", "task": "strategy"}],
            telegram=telegram,
            approvals={"default": default, "timeout_s": 600},
        )
        app = await App.open(
            cfg,
            Settings(_env_file=None),  # type: ignore[call-arg]
            new_location(),
            base_dir=tmp_path,
        )
        bot = TelegramBot(app.facade, tg.token, tg.url)
        rig = BotRig(app, bot, tg, fake_llm)
        made.append(rig)
        await bot.start()
        await bot.lead()
        fake_llm.script("claude-opus", Reply(text="the opus answer"))
        return rig

    yield make
    for hold in HoldSends.installed:  # a failed test must not leave a request held
        hold.release.set()
    for rig in made:
        await rig.bot.stop()
        await rig.app.runner.shutdown(5)
        await rig.app.approvals.drain()
        await rig.app.close()


class HoldSends(BaseRequestMiddleware):
    """Holds the bot's sendMessage calls to one chat until ``release`` is set."""

    installed: ClassVar[list[HoldSends]] = []  # released when the test ends

    def __init__(self, chat_id: int) -> None:
        self.chat_id = chat_id
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    @classmethod
    def install(cls, rig: BotRig, chat_id: int) -> HoldSends:
        hold = cls(chat_id)
        rig.bot.bot.session.middleware(hold)
        cls.installed.append(hold)
        return hold

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        if isinstance(method, SendMessage) and method.chat_id == self.chat_id:
            self.held.set()
            await self.release.wait()
        return await make_request(bot, method)


def buttons(message: dict[str, Any]) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
    return {b["text"]: b["callback_data"] for row in rows for b in row}


def live_buttons(tg: FakeTelegram, chat_id: int, message_id: int) -> dict[str, str]:
    """The buttons the message shows now (after edits)."""
    return buttons(tg.message(chat_id, message_id) or {})


async def run_deep(rig: BotRig) -> asyncio.Task[Run]:
    """Start the agent from outside the chat (so the approval is the only sendMessage)."""
    run_id = await rig.app.runner.start("deep", "cli")
    return asyncio.create_task(asyncio.wait_for(rig.app.runner.wait(run_id, 0.05), WAIT_S))


async def outbox_alerts(rig: BotRig) -> list[str]:
    rows = await rig.app.store.fetchall("SELECT * FROM outbox WHERE kind = 'alert'")
    return [str(dict(r)) for r in rows]


# ---------------------------------------------------------------- reaching the admins


async def test_an_approval_that_reaches_no_admin_applies_the_default_at_once(
    make_rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig([ADMIN])  # App wires the approvals alert to [alerts] deliver
    rig.tg.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    run = await (await run_deep(rig))  # today: waits the whole timeout_s
    assert run.status == "failed"
    assert "no admin could be reached" in (run.error or "")
    assert "bot was blocked by the user" in (run.error or "")
    (row,) = await rig.app.store.fetchall("SELECT status, decided_by FROM approvals")
    assert row["status"] == "denied"
    assert row["decided_by"].startswith("policy (no admin could be reached: admin 1001: ")
    assert not [r for r in rig.llm.requests if r.model == "claude-opus"]
    assert any("no admin could be reached" in a for a in await outbox_alerts(rig))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("no admin could be reached" in e and "'deny' applied" in e for e in errors)
    assert rig.tg.token not in caplog.text


async def test_reaching_no_admin_with_default_approve_approves_at_once(make_rig: Rig) -> None:
    rig = await make_rig([ADMIN], default="approve")
    rig.tg.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    run = await (await run_deep(rig))
    assert run.status == "ok" and "the opus answer" in (run.output or "")
    (row,) = await rig.app.store.fetchall("SELECT status, decided_by FROM approvals")
    assert row["status"] == "approved" and "no admin could be reached" in row["decided_by"]


async def test_a_copy_that_fails_for_one_admin_is_logged_and_the_other_decides(
    make_rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig([ADMIN, ADMIN2])
    hold = HoldSends.install(rig, ADMIN)  # so the one injected fault lands on ADMIN2's copy
    rig.tg.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    running = await run_deep(rig)
    await hold.held.wait()
    await rig.tg.wait_for(lambda t: bool(t.calls_of("sendMessage")))
    await rig.tg.wait_for(lambda t: t.calls_of("sendMessage")[0].done)
    hold.release.set()
    ask = await rig.said(ADMIN, "Approval needed")
    rig.tg.user_press(ADMIN, ask, buttons(ask)["✅ Approve"])
    run = await running
    assert run.status == "ok"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not be sent to admin 1005" in w and "bot was blocked" in w for w in warnings)


async def test_an_admin_id_that_is_a_group_is_never_sent_a_preview(make_rig: Rig) -> None:
    group = -1001234567890
    rig = await make_rig([group, ADMIN])
    running = await run_deep(rig)
    ask = await rig.said(ADMIN, "Approval needed")
    rig.tg.user_press(ADMIN, ask, buttons(ask)["❌ Deny"])
    assert (await running).status == "failed"
    assert rig.tg.sent(group) == []


async def test_a_429_on_the_only_admin_is_waited_out_and_he_is_asked(make_rig: Rig) -> None:
    """Relies on the bot's one send path (a session middleware) waiting out retry_after."""
    rig = await make_rig([ADMIN])
    rig.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    running = await run_deep(rig)
    ask = await rig.said(ADMIN, "Approval needed")
    rig.tg.user_press(ADMIN, ask, buttons(ask)["✅ Approve"])
    assert (await running).status == "ok"


# ---------------------------------------------------------------- closing every copy


async def test_a_decision_while_another_copy_is_in_flight_closes_every_copy(
    make_rig: Rig,
) -> None:
    rig = await make_rig([ADMIN, ADMIN2])
    hold = HoldSends.install(rig, ADMIN2)
    running = await run_deep(rig)
    ask = await rig.said(ADMIN, "Approval needed")
    await hold.held.wait()  # ADMIN2's copy is on its way, not yet sent
    rig.tg.user_press(ADMIN, ask, buttons(ask)["✅ Approve"])
    await rig.said(ADMIN, "✅ Approved by @user1001")  # today: nothing is edited
    assert live_buttons(rig.tg, ADMIN, ask["message_id"]) == {}
    run = await running  # the run goes on without waiting for the late copy
    assert run.status == "ok" and "the opus answer" in (run.output or "")
    hold.release.set()
    late = await rig.said(ADMIN2, "Approval needed")
    await rig.said(ADMIN2, "✅ Approved by @user1001")  # the late copy is closed once it lands
    assert live_buttons(rig.tg, ADMIN2, late["message_id"]) == {}
    (row,) = await rig.app.store.fetchall("SELECT messages FROM approvals")
    assert sorted(map(tuple, json.loads(row["messages"]))) == sorted(
        [(ADMIN, ask["message_id"]), (ADMIN2, late["message_id"])]
    )


async def test_a_decision_closes_the_copies_approvals_posted(make_rig: Rig) -> None:
    rig = await make_rig([ADMIN])
    running = await run_deep(rig)
    ask = await rig.said(ADMIN, "Approval needed")
    rig.tg.user_message(ADMIN, "/approvals")
    await rig.tg.wait_for(lambda t: len(t.sent(ADMIN)) == 2)
    listed = rig.tg.sent(ADMIN)[1]
    assert "Approval needed" in listed["text"] and buttons(listed)
    rig.tg.user_press(ADMIN, ask, buttons(ask)["❌ Deny"])
    assert (await running).status == "failed"
    for copy in (ask, listed):  # today: the /approvals copy keeps its buttons
        await rig.tg.wait_for(
            lambda t, c=copy: (
                "❌ Denied by @op" in (t.message(ADMIN, c["message_id"]) or {})["text"]
            )
        )
        assert live_buttons(rig.tg, ADMIN, copy["message_id"]) == {}


async def test_a_press_on_a_copy_left_open_closes_it_and_says_what_happened(
    make_rig: Rig,
) -> None:
    rig = await make_rig([ADMIN])
    running = await run_deep(rig)
    ask = await rig.said(ADMIN, "Approval needed")
    rig.tg.fail_next("editMessageText", 400, "Bad Request: message can't be edited")
    rig.tg.user_press(ADMIN, ask, buttons(ask)["✅ Approve"])
    assert (await running).status == "ok"
    await rig.tg.wait_for(lambda t: bool(t.calls_of("editMessageText")))
    assert buttons(ask)  # the closing edit failed: still live
    rig.tg.user_press(ADMIN, ask, buttons(ask)["❌ Deny"])
    await rig.tg.wait_for(
        lambda t: any(
            "already approved by @user1001" in (c.get("text") or "") for c in t.answered_callbacks()
        )
    )
    await rig.said(ADMIN, "✅ Approved by @user1001")
    assert live_buttons(rig.tg, ADMIN, ask["message_id"]) == {}
    (row,) = await rig.app.store.fetchall("SELECT status FROM approvals")
    assert row["status"] == "approved"
