"""Telegram outage: the fake Bot API answers 502, or does not answer at all, for ten
simulated minutes while digests for several chats queue up; afterwards every digest is
delivered, exactly once, in order per chat, and none was given up on meanwhile.

The real delivery worker and the real Telegram channel (aiogram ``Bot`` against the fake
Bot API) run on a real SQLite store. Time is simulated by scaling: every duration the
product takes from its configuration (the outbox's default backoff steps, its poll
interval, the channel's send pacing, the Bot API request timeout) is multiplied by
``SCALE``, and the outage lasts ``OUTAGE_S * SCALE`` seconds of real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode

from bot.channel import TelegramChannel
from bot.limiter import SendLimiter
from core.agents.templating import Templates
from core.app import BUNDLED_TEMPLATES
from core.config.delivery import DeliveryConfig
from core.delivery.outbox import Outbox
from core.delivery.worker import DeliveryWorker
from core.ops.owners import owner_id
from core.store.base import Store
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wait import until
from tests.reliability import secrets
from tests.reliability.scale import scale

SCALE = 0.01  # one simulated second is 10 ms
OUTAGE_S = 600.0  # ten simulated minutes
PHASE_S = 60.0  # the mixed outage changes its face every simulated minute
REQUEST_TIMEOUT_S = 150.0  # aiogram's default is 60; longer here so a loaded CI box is safe
CHATS = (5001, 5002, 5003, -1005004)  # three private chats and a group
DIGESTS = scale(12, 40)
SETTLE_S = 60.0  # a bound on the wait after the outage, not a speed expectation
DEFAULTS = DeliveryConfig()  # the product's own backoff steps, attempts, poll interval


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=secrets.TELEGRAM_TOKEN) as fake:
        yield fake


async def _rows(store: Store) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.fetchall("SELECT * FROM outbox ORDER BY id")]


def _go_down(tg: FakeTelegram, mode: str, phase: int) -> None:
    face = mode if mode != "mixed" else ("502", "timeout", "plain")[phase % 3]
    tg.set_down(True, plain=face == "plain", hang=face == "timeout")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["502", "timeout", "mixed"])
async def test_digests_queued_during_an_outage_arrive_once_in_order(
    tg: FakeTelegram, store: Store, mode: str
) -> None:
    rng = random.Random(f"outage-{mode}")
    config = DeliveryConfig(
        max_attempts=DEFAULTS.max_attempts,
        backoff_s=[s * SCALE for s in DEFAULTS.backoff_s],
        poll_interval_s=DEFAULTS.poll_interval_s * SCALE,
        claim_timeout_s=DEFAULTS.claim_timeout_s * SCALE,
    )
    outbox = Outbox(store, Templates(BUNDLED_TEMPLATES), config)
    bot = Bot(
        secrets.TELEGRAM_TOKEN,
        session=AiohttpSession(
            api=TelegramAPIServer.from_base(tg.url), timeout=REQUEST_TIMEOUT_S * SCALE
        ),
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )
    # Telegram's pacing, on the simulated clock too (a group's per-minute budget has a
    # fixed 60 s window, which does not scale: it is lifted instead)
    limiter = SendLimiter(
        per_chat_interval_s=1.0 * SCALE, group_per_minute=10_000, global_per_s=30.0 / SCALE
    )
    worker = DeliveryWorker(outbox, {"telegram": TelegramChannel(bot, limiter)}, owner_id())
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    loop = asyncio.get_running_loop()
    try:
        # the outage begins; digests keep coming for most of it, as scheduled runs finish
        _go_down(tg, mode, 0)
        start = loop.time()
        times = sorted(rng.uniform(0, OUTAGE_S * 0.9) for _ in range(DIGESTS))
        expected: defaultdict[int, list[str]] = defaultdict(list)
        worst: dict[str, Any] = {"attempts": 0, "statuses": set(), "errors": set()}
        phase = 0
        for n, at in enumerate(times, start=1):
            while (now := (loop.time() - start) / SCALE) < at:
                if mode == "mixed" and int(now // PHASE_S) != phase:
                    phase = int(now // PHASE_S)
                    _go_down(tg, mode, phase)
                await asyncio.sleep(min(at - now, PHASE_S) * SCALE)
            chats = rng.sample(CHATS, rng.choice((1, 1, 2)))  # some agents deliver to two
            await outbox.enqueue(
                n,
                "result",
                [f"telegram:{c}" for c in chats],
                {"agent": "digest", "run_id": n, "status": "ok", "text": f"digest #{n}"},
            )
            for c in chats:
                expected[c].append(f"digest #{n}")
        while (now := (loop.time() - start) / SCALE) < OUTAGE_S:
            if mode == "mixed" and int(now // PHASE_S) != phase:
                phase = int(now // PHASE_S)
                _go_down(tg, mode, phase)
            for row in await _rows(store):  # watched all along: nothing is given up on
                worst["attempts"] = max(worst["attempts"], row["attempts"])
                worst["statuses"].add(row["status"])
                if row["last_error"]:
                    worst["errors"].add(row["last_error"])
            await asyncio.sleep(min(OUTAGE_S - now, 5.0) * SCALE)
        rows_at_end = await _rows(store)
        tg.set_down(False)

        # nothing got through, and nothing was given up on, during the outage
        assert tg.sent() == []
        assert worst["statuses"] <= {"pending", "sending"}, worst
        assert {r["status"] for r in rows_at_end} <= {"pending", "sending"}
        assert worst["attempts"] < config.max_attempts, worst
        # each chat's oldest digest was tried, and refused (or is being tried); the later
        # ones wait behind it, so that none overtakes it
        heads: dict[str, dict[str, Any]] = {}
        for r in rows_at_end:
            heads.setdefault(r["target"], r)
        assert all(r["attempts"] or r["status"] == "sending" for r in heads.values()), heads
        assert all(r["last_error"] for r in heads.values() if r["status"] == "pending")
        errors = worst["errors"]
        if mode != "mixed":  # the fake failed the way it was asked to
            face = "Request timeout" if mode == "timeout" else "Bad Gateway"
            assert errors and all(face in e for e in errors), errors

        async def drained() -> bool:
            return not await outbox.pending_count()

        await until(drained, timeout_s=SETTLE_S, what="every digest delivered after the outage")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await bot.session.close()

    rows = await _rows(store)
    assert len(rows) == sum(len(v) for v in expected.values())
    assert {r["status"] for r in rows} == {"delivered"}
    for chat in CHATS:
        got = [m["text"] for m in tg.sent(chat)]
        want = [r["body"] for r in rows if r["target"] == f"telegram:{chat}"]
        # exactly once each, in the order they were queued
        assert got == want, f"chat {chat}: {got}"
        assert [w.rsplit("\n", 1)[-1] for w in want] == expected[chat]
    by_id = {(m["chat_id"], m["message_id"]) for m in tg.sent()}
    for r in rows:  # each confirmation is the message that arrived
        assert (int(r["target"].split(":")[1]), int(r["external_id"])) in by_id
