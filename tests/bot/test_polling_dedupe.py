"""Polling on a shared database (issue 17): each polled ``update_id`` is handled once in
the cluster. A leader frozen (SIGSTOP) inside a getUpdates long poll and replaced can wake
up holding an answer the new leader was given too; both feeding it would reply (or start
a run) twice.

Two real instances (App and bot) on one throwaway PostgreSQL; the same update is fed to
both dispatchers, as the stale and the new leader would; the fake Bot API gets replies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiogram.types import Update

from bot.service import TelegramBot
from core.app import App
from core.config.settings import Settings
from core.store.path import DbLocation, PostgresURL
from tests.bot.conftest import ADMIN
from tests.bot.test_webhook_dedupe import help_update, helps
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram

Make = Callable[[DbLocation], Awaitable[TelegramBot]]


@pytest.fixture
async def make_bot(fake_llm: FakeLLM, tmp_path: Path) -> AsyncIterator[tuple[FakeTelegram, Make]]:
    made: list[tuple[App, TelegramBot]] = []
    async with FakeTelegram() as tg:

        async def make(location: DbLocation) -> TelegramBot:
            telegram = {"admins": [ADMIN]}  # no webhook_url: polling mode
            cfg = make_config(pyramid_urls(fake_llm.base_url), agents=[], telegram=telegram)
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
            app = await App.open(cfg, settings, location, base_dir=tmp_path)
            bot = TelegramBot(app.facade, tg.token, tg.url)
            made.append((app, bot))
            await bot.start()
            return bot

        yield tg, make
        for app, bot in made:
            await bot.stop()
            await app.runner.shutdown(5)
            await app.close()


async def test_an_update_polled_by_two_instances_is_handled_once(
    make_bot: tuple[FakeTelegram, Make], pg_url: str
) -> None:
    tg, make = make_bot
    stale, new = await make(PostgresURL(pg_url)), await make(PostgresURL(pg_url))
    update = Update.model_validate(help_update(41, ADMIN))
    await new.dp.feed_update(new.bot, update)
    await stale.dp.feed_update(stale.bot, update)  # woke up with the same answer
    await new.dp.feed_update(new.bot, Update.model_validate(help_update(42, ADMIN)))
    await tg.wait_for(lambda tg: helps(tg, ADMIN) == 2)  # 41 once, then 42
    assert helps(tg, ADMIN) == 2


async def test_one_instance_on_sqlite_records_no_polled_update(
    make_bot: tuple[FakeTelegram, Make], tmp_path: Path
) -> None:
    tg, make = make_bot
    bot = await make(tmp_path / "one.db")
    assert not bot.facade.updates.shared  # one serve per file: nothing to share
    await bot.dp.feed_update(bot.bot, Update.model_validate(help_update(43, ADMIN)))
    await tg.wait_for(lambda tg: helps(tg, ADMIN) == 1)
    rows = await bot.facade.updates.store.fetchall("SELECT update_id FROM telegram_updates")
    assert rows == []
