"""Approval cards with several instances on one PostgreSQL (issue 17): only the leader sends
them and closes their copies (Telegram's rate limit is the whole cluster's), while a run
waiting on a follower gets the decision at once, whichever instance the press reached.

Two real instances (App, bot, gateway, serve's own Leadership heartbeat) in webhook mode
share a throwaway PostgreSQL; the fake Bot API gets every call, and each bot's session
records the methods it called itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType

from bot.service import TelegramBot
from core.app import App
from core.config.settings import Settings
from core.gateway import Gateway
from core.ops.serve import Leadership
from core.store.path import PostgresURL
from tests.bot.test_approvals_delivery import buttons, live_buttons
from tests.bot.test_webhook_dedupe import HOOK, SECRET, WEBHOOK_URL
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, Reply
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wait import until

ADMIN, ADMIN2 = 1001, 1005
CARD_CALLS = ("sendMessage", "editMessageText")
WAIT_S = 20  # far below [approvals] timeout_s: a run done by then did not wait it out


class Calls(BaseRequestMiddleware):
    """The Bot API methods one instance's bot called."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        self.methods.append(method.__api_method__)
        return await make_request(bot, method)

    def cards(self) -> list[str]:
        return [m for m in self.methods if m in CARD_CALLS]


@dataclass
class Instance:
    app: App
    bot: TelegramBot
    gateway: Gateway
    calls: Calls
    heartbeat: asyncio.Task[None] | None = field(default=None)

    async def post(self, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.gateway.url) as c:
            return await c.post("/telegram/webhook", json=body, headers=HOOK)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def make_instance(
    tg: FakeTelegram,
    fake_llm: FakeLLM,
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[[], Awaitable[Instance]]]:
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    made: list[Instance] = []
    stop = asyncio.Event()

    async def make() -> Instance:
        """The first one made leads; serve's wiring and heartbeat, without its gateway
        token or probes."""
        telegram = {"admins": [ADMIN, ADMIN2], "allowed_users": [], "webhook_url": WEBHOOK_URL}
        cfg = make_config(
            pyramid_urls(fake_llm.base_url),
            agents=[{"name": "deep", "message": "hello from deep", "task": "strategy"}],
            telegram=telegram,
            approvals={"default": "deny", "timeout_s": 600},
        )
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        app = await App.open(cfg, settings, PostgresURL(pg_url), base_dir=tmp_path)
        app.outbox.is_leader = app.approvals.is_leader = app.cluster.is_leader  # as serve
        leading = await app.cluster.campaign()
        assert leading == (not made)
        bot = TelegramBot(app.facade, tg.token, tg.url)
        calls = Calls()
        bot.bot.session.middleware(calls)
        gateway = Gateway(app.facade, "gateway-token", "127.0.0.1", 0, bot.routes())
        await gateway.start()
        one = Instance(app, bot, gateway, calls)
        made.append(one)
        await bot.start()
        await (bot.lead() if leading else bot.follow())
        one.heartbeat = asyncio.create_task(Leadership(app, [bot], leading).run(stop))
        return one

    yield make
    stop.set()
    for one in made:
        if one.heartbeat is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await one.heartbeat
    for one in made:
        await one.gateway.stop()
        await one.bot.stop()
        await one.app.runner.shutdown(5)
        await one.app.close()


def card(tg: FakeTelegram, chat_id: int) -> dict[str, Any] | None:
    return next((m for m in tg.sent(chat_id) if "Approval needed" in (m.get("text") or "")), None)


@pytest.mark.parametrize("pressed_on", ["follower", "leader"])
async def test_a_followers_run_is_asked_through_the_leaders_cards(
    make_instance: Callable[[], Awaitable[Instance]],
    tg: FakeTelegram,
    fake_llm: FakeLLM,
    pressed_on: str,
) -> None:
    leader = await make_instance()
    follower = await make_instance()
    fake_llm.script("claude-opus", Reply(text="the opus answer"))
    run_id = await follower.app.runner.start("deep", "cli")  # the run is the follower's
    await tg.wait_for(lambda t: card(t, ADMIN) is not None and card(t, ADMIN2) is not None)
    ask = card(tg, ADMIN)
    assert ask is not None
    (row,) = await follower.app.store.fetchall("SELECT owner, shown_by FROM approvals")
    assert (row["owner"], row["shown_by"]) == (follower.app.owner, leader.app.owner)
    # the admin presses Approve; the load balancer hands the update to one instance
    tg.user_press(ADMIN, ask, buttons(ask)["✅ Approve"])
    press = tg.pending_updates[-1]  # nobody polls in webhook mode: it is posted
    by = {"follower": follower, "leader": leader}[pressed_on]
    assert (await by.post(press)).status_code == 200
    run = await asyncio.wait_for(follower.app.runner.wait(run_id, 0.05), WAIT_S)
    assert run.status == "ok" and "the opus answer" in (run.output or "")
    for chat in (ADMIN, ADMIN2):  # every copy closed, by the leader
        copy = card(tg, chat)
        assert copy is not None
        await tg.wait_for(
            lambda t, c=chat, m=copy["message_id"]: (
                "✅ Approved by" in (t.message(c, m) or {}).get("text", "")
            )
        )
        assert live_buttons(tg, chat, copy["message_id"]) == {}
    assert follower.calls.cards() == []
    assert sorted(leader.calls.cards()) == ["editMessageText"] * 2 + ["sendMessage"] * 2
    answered = by.calls.methods.count("answerCallbackQuery")
    assert answered == 1  # the press is answered by the instance it reached


async def test_an_approval_the_leader_did_not_hear_of_is_shown_by_its_heartbeat(
    make_instance: Callable[[], Awaitable[Instance]], tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    leader = await make_instance()
    follower = await make_instance()
    fake_llm.script("claude-opus", Reply(text="the opus answer"))
    leader.app.approvals.is_leader = lambda: False  # deaf to the notification, as if missed
    run_id = await follower.app.runner.start("deep", "cli")
    await until(follower.app.approvals.pending, what="the follower's approval stored")
    await asyncio.sleep(0.5)  # the notification came and went
    assert tg.sent(ADMIN) == []
    leader.app.approvals.is_leader = leader.app.cluster.is_leader
    await tg.wait_for(lambda t: card(t, ADMIN) is not None, 5)  # Leadership's next sweep
    ask = card(tg, ADMIN)
    assert ask is not None
    tg.user_press(ADMIN, ask, buttons(ask)["❌ Deny"])
    assert (await follower.post(tg.pending_updates[-1])).status_code == 200
    run = await asyncio.wait_for(follower.app.runner.wait(run_id, 0.05), WAIT_S)
    assert run.status == "failed"
    assert follower.calls.cards() == []
    assert leader.calls.cards().count("sendMessage") == 2  # ADMIN's and ADMIN2's, once
