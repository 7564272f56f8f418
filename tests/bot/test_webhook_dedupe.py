"""Webhook mode behind a load balancer (issue 17): every instance serves the webhook, only
the leader sets it, and an update is recorded by ``update_id`` before the 200, so that a
redelivery (to the same instance or another) is answered and not handled again.

Two real instances (App, bot, gateway) share one store: a SQLite file, and a throwaway
PostgreSQL where the binaries are installed. The fake Bot API gets the replies."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.service import TelegramBot
from core.app import App
from core.cluster.updates import UpdateLog
from core.config.settings import Settings
from core.gateway import Gateway
from core.store.path import DbLocation, PostgresURL
from tests.bot.conftest import ADMIN, VIEWER
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wait import until
from tests.stores import open_unwritable

SECRET = "hook-secret-dedupe"
HOOK = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
WEBHOOK_URL = "https://bot.example.invalid/telegram/webhook"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Instance:
    app: App
    bot: TelegramBot
    gateway: Gateway

    async def post(self, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.gateway.url) as c:
            return await c.post("/telegram/webhook", json=body, headers=HOOK)


InstanceFactory = Callable[..., Awaitable[Instance]]


def help_update(update_id: int, user: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "text": "/help",
            "chat": {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": "Op", "username": "op"},
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }


def helps(tg: FakeTelegram, chat_id: int) -> int:
    return sum("OpenClaw" in (m.get("text") or "") for m in tg.sent(chat_id))


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> DbLocation:
    """One store for every instance of a test."""
    if request.param == "postgres":
        return PostgresURL(request.getfixturevalue("pg_url"))
    return tmp_path / "shared.db"


@pytest.fixture
async def make_instance(
    tg: FakeTelegram,
    fake_llm: FakeLLM,
    tmp_path: Path,
    location: DbLocation,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[InstanceFactory]:
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    made: list[Instance] = []

    async def make(
        lead: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        updates: UpdateLog | None = None,
    ) -> Instance:
        telegram = {"admins": [ADMIN], "allowed_users": [VIEWER], "webhook_url": WEBHOOK_URL}
        cfg = make_config(pyramid_urls(fake_llm.base_url), agents=[], telegram=telegram)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        app = await App.open(cfg, settings, location, base_dir=tmp_path, clock=clock)
        facade = app.facade
        if updates is not None:  # the record of updates on another store
            facade = dataclasses.replace(facade, updates=updates)
        bot = TelegramBot(facade, tg.token, tg.url)
        gateway = Gateway(facade, "gateway-token", "127.0.0.1", 0, bot.routes())
        await gateway.start()
        made.append(Instance(app, bot, gateway))
        await bot.start()
        await (bot.lead() if lead else bot.follow())
        return made[-1]

    yield make
    for one in made:
        await one.gateway.stop()
        await one.bot.stop()
        await one.app.runner.shutdown(5)
        await one.app.close()


async def test_a_redelivered_update_is_handled_once_by_two_instances(
    make_instance: InstanceFactory, tg: FakeTelegram
) -> None:
    leader = await make_instance(lead=True)
    follower = await make_instance(lead=False)
    assert tg.webhook is not None and tg.webhook["secret_token"] == SECRET
    assert len(tg.calls_of("setWebhook")) == 1  # the leader's; the follower never sets it
    assert [c.method for c in tg.calls if c.method in ("getUpdates", "deleteWebhook")] == []
    first = await leader.post(help_update(5, ADMIN))
    again = await follower.post(help_update(5, ADMIN))  # the balancer picked the other one
    same = await leader.post(help_update(5, ADMIN))
    assert [r.status_code for r in (first, again, same)] == [200, 200, 200]
    assert again.json() == same.json() == {"ok": True}
    # a later update, handled by the follower: once its reply is out, the duplicates
    # (fed, if they had been, before it) would have replied too
    assert (await follower.post(help_update(6, VIEWER))).status_code == 200
    await tg.wait_for(lambda tg: helps(tg, VIEWER) == 1)
    await tg.wait_for(lambda tg: helps(tg, ADMIN) >= 1)
    assert helps(tg, ADMIN) == 1
    status = follower.bot.status()
    assert (status["mode"], status["role"]) == ("webhook", "follower")
    assert leader.bot.status()["role"] == "leader"


async def test_an_update_without_an_integer_update_id_is_refused(
    make_instance: InstanceFactory, tg: FakeTelegram
) -> None:
    one = await make_instance(lead=True)
    body = help_update(7, ADMIN)
    for bad in ({k: v for k, v in body.items() if k != "update_id"}, body | {"update_id": "7"}):
        r = await one.post(bad)
        assert r.status_code == 400
        assert r.json() == {"ok": False, "error": "no integer update_id"}
    assert (await one.post([body])).status_code == 400  # not an object at all
    assert (await one.post(body)).status_code == 200  # the id was not taken by the refusals
    await tg.wait_for(lambda tg: helps(tg, ADMIN) == 1)


async def test_a_store_that_cannot_record_answers_503(
    make_instance: InstanceFactory,
    tg: FakeTelegram,
    location: DbLocation,
    caplog: pytest.LogCaptureFixture,
) -> None:
    healthy = await make_instance(lead=True)  # the database exists, migrated
    # the broken instance's record of updates is on a store that cannot write (a file
    # opened read-only; PostgreSQL sessions that are read-only, as on a standby)
    read_only = await open_unwritable(location)
    try:
        broken = await make_instance(lead=False, updates=UpdateLog(read_only, "ro"))
        with caplog.at_level(logging.INFO, logger="openclaw.bot"):
            answers = [await broken.post(help_update(8, ADMIN)) for _ in range(3)]
        assert [r.status_code for r in answers] == [503, 503, 503]
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1, [r.getMessage() for r in warned]  # one line per outage
        assert "cannot be recorded" in warned[0].getMessage()
        # Telegram delivers it again; the balancer picks the healthy instance, which
        # handles it: the 503s recorded nothing and fed nothing
        assert (await healthy.post(help_update(8, ADMIN))).status_code == 200
        await tg.wait_for(lambda tg: helps(tg, ADMIN) == 1)
        assert (await healthy.post(help_update(9, VIEWER))).status_code == 200
        await tg.wait_for(lambda tg: helps(tg, VIEWER) == 1)
        assert helps(tg, ADMIN) == 1
    finally:
        await read_only.close()


async def test_the_leader_prunes_records_older_than_a_day(
    make_instance: InstanceFactory,
) -> None:
    clock = Clock()
    one = await make_instance(lead=False, clock=clock)
    assert await one.app.facade.updates.first_time(1)
    clock.now += timedelta(hours=25)  # Telegram gave up on update 1 an hour ago
    assert await one.app.facade.updates.first_time(2)

    async def kept() -> list[int]:
        rows = await one.app.store.fetchall("SELECT update_id FROM telegram_updates")
        return sorted(r["update_id"] for r in rows)

    async def pruned() -> bool:
        return await kept() == [2]

    assert await kept() == [1, 2]  # a follower does not prune
    await one.bot.lead()  # the leader sweeps at once, then hourly
    await until(pruned, what="update 1 pruned")
    await one.bot.follow()
    assert not await one.app.facade.updates.first_time(2)  # still a redelivery
