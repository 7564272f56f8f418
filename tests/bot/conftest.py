"""The real bot (aiogram Dispatcher, polling) against the fake Bot API and the fake LLM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.service import TelegramBot
from core.app import App
from core.config.settings import Settings
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram
from tests.stores import NewLocation

ADMIN, VIEWER, STRANGER = 1001, 2002, 3003


@dataclass
class BotRig:
    app: App
    bot: TelegramBot
    tg: FakeTelegram
    llm: FakeLLM

    def texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.tg.sent(chat_id)]

    async def said(self, chat_id: int, needle: str, timeout_s: float = 15) -> dict[str, Any]:
        """Wait until the bot sent (or edited to) a message containing ``needle``."""

        def found(tg: FakeTelegram) -> bool:
            return any(
                needle in (m.get("text") or m.get("caption") or "")
                for m in tg.sent(chat_id) + tg.edits(chat_id)
            )

        await self.tg.wait_for(found, timeout_s)
        for m in reversed(self.tg.sent(chat_id) + self.tg.edits(chat_id)):
            if needle in (m.get("text") or m.get("caption") or ""):
                return m
        raise AssertionError(needle)


RigFactory = Callable[..., Awaitable[BotRig]]


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def make_rig(
    tg: FakeTelegram, fake_llm: FakeLLM, tmp_path: Path, new_location: NewLocation
) -> AsyncIterator[RigFactory]:
    made: list[BotRig] = []

    async def make(
        agents: list[dict[str, Any]] | None = None,
        telegram: dict[str, Any] | None = None,
        lead: bool = True,  # False: a follower, started and not leading (nothing polls)
        **overrides: Any,
    ) -> BotRig:
        base = pyramid_urls(fake_llm.base_url)
        tg_cfg = {
            "admins": [ADMIN],
            "allowed_users": [VIEWER],
            "polling_timeout_s": 1,
            **(telegram or {}),
        }
        cfg = make_config(base, agents=agents or [], telegram=tg_cfg, **overrides)
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
        if lead:
            await bot.lead()
        return rig

    yield make
    for rig in made:
        await rig.bot.stop()
        await rig.app.runner.shutdown(5)
        await rig.app.close()
