"""A send cut off mid-flight in a live process (issue 18): a shutdown cancels it while the
channel's answer is still coming, or the store fails to record the confirmation.

Once bytes may have left, a Telegram or Slack row becomes ``unknown`` (the admins decide)
and is not sent again; a webhook row goes again with the same Idempotency-Key; a row cut
off before anything left (waiting its chat's turn) is simply pending again; a row the
channel confirmed is never resent. The real worker, the real Telegram channel (aiogram
against the fake Bot API), the real webhook channel and a real receiver, on real stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.channel import TelegramChannel
from bot.limiter import SendLimiter
from bot.sending import Priority, SendPath, chat_key
from core.delivery.channels import Channel
from core.delivery.deliveries import Deliveries, Delivery
from core.delivery.outbox import Outbox
from core.delivery.worker import DeliveryWorker
from core.errors import StoreUnavailable
from core.store.base import Store
from tests.fakes.receiver import Answer, FakeReceiver
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wait import until
from tests.test_delivery import CTX, SLACK_ENV, Clock, make_channels, make_outbox, one_row

CHAT = 4242
OWNER = "proc-live"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # Settings.secret also reads ./.env
    monkeypatch.delenv(SLACK_ENV, raising=False)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))
    try:
        yield bot
    finally:
        await bot.session.close()


@pytest.fixture
async def receiver() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as rx:
        yield rx


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def worker(
    outbox: Outbox, bot: Bot, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> DeliveryWorker:
    channels: dict[str, Channel] = make_channels(receiver, http)
    channels["telegram"] = TelegramChannel(bot)
    return DeliveryWorker(outbox, channels, OWNER)


async def cut_off(w: DeliveryWorker, arrived: Any) -> None:
    """Drain, and cancel the drain (a shutdown) once ``arrived()`` is true."""
    draining = asyncio.create_task(w.drain())
    await until(arrived, timeout_s=10, what="the send reaching the channel")
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining


async def test_a_telegram_send_cut_off_waiting_for_its_answer_is_unknown_not_resent(
    store: Store,
    tg: FakeTelegram,
    bot: Bot,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
) -> None:
    outbox = make_outbox(store, Clock())
    await outbox.enqueue(1, "result", [f"telegram:{CHAT}"], CTX)
    w = worker(outbox, bot, receiver, http)
    tg.delay_next("sendMessage", 30)  # Telegram takes it; its answer is held
    await cut_off(w, lambda: len(tg.sent(CHAT)) == 1)
    row = await one_row(store)
    assert row["status"] == "unknown" and row["claimed_by"] is None
    assert "may or may not have arrived" in row["last_error"]
    assert row["delivered_at"] is None  # never delivered without Telegram's word
    assert await w.drain() == 0  # not claimable: not sent a second time
    assert len(tg.sent(CHAT)) == 1
    # the leader's card flow shows it to the admins, once
    shown: list[Delivery] = []

    async def card(d: Delivery) -> bool:
        shown.append(d)
        return True

    deliveries = Deliveries(outbox)
    deliveries.notifiers.append(card)
    assert await deliveries.ask() == 1
    assert [(d.id, d.target) for d in shown] == [(1, f"telegram:{CHAT}")]
    assert await deliveries.ask() == 0


async def test_a_telegram_row_cut_off_before_it_left_is_pending_and_sent_once(
    store: Store,
    tg: FakeTelegram,
    bot: Bot,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
) -> None:
    """Waiting its chat's turn (a reply being sent there), nothing of it left: no card."""
    outbox = make_outbox(store, Clock())
    await outbox.enqueue(1, "result", [f"telegram:{CHAT}"], CTX)
    w = worker(outbox, bot, receiver, http)
    turns = SendPath.of(bot).turns
    key = chat_key(CHAT)

    def queued() -> bool:
        return key in turns._chats and bool(turns._chats[key].waiters)

    async with turns.turn(key, Priority.REPLY):  # the chat's turn is held
        await cut_off(w, queued)
    row = await one_row(store)
    assert row["status"] == "pending" and tg.sent(CHAT) == []
    assert await w.drain() == 1
    assert len(tg.sent(CHAT)) == 1
    assert (await one_row(store))["status"] == "delivered"


async def test_a_telegram_row_cut_off_waiting_out_a_429_is_pending_not_unknown(
    store: Store,
    tg: FakeTelegram,
    bot: Bot,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
) -> None:
    """Telegram refused it (429: not sent); cut off while waiting out the retry_after, it
    is pending: no card asks about a message that never arrived."""
    outbox = make_outbox(store, Clock())
    await outbox.enqueue(1, "result", [f"telegram:{CHAT}"], CTX)
    w = worker(outbox, bot, receiver, http)
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 30", retry_after=30)
    limiter = SendPath.of(bot).limiter

    def waiting_out_the_429() -> bool:
        chat = limiter._chats.get(CHAT)
        return chat is not None and chat.blocked_until > 0

    await cut_off(w, waiting_out_the_429)
    row = await one_row(store)
    assert row["status"] == "pending" and tg.sent(CHAT) == []
    assert len(tg.calls_of("sendMessage")) == 1


LONG = CTX | {"text": "word " * 1500}  # split under Telegram's 4096 limit (three parts)


async def test_a_split_message_cut_off_mid_part_keeps_the_parts_that_arrived(
    store: Store,
    tg: FakeTelegram,
    bot: Bot,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
) -> None:
    """Part one confirmed, part two held: unknown, part one's id kept; an admin's Resend
    starts at part two."""
    outbox = make_outbox(store, Clock())
    await outbox.enqueue(1, "result", [f"telegram:{CHAT}"], LONG)
    w = worker(outbox, bot, receiver, http)
    tg.delay_next("sendMessage", 0)  # part one: answered at once
    tg.delay_next("sendMessage", 30)  # part two: taken, its answer held
    await cut_off(w, lambda: len(tg.sent(CHAT)) == 2)
    first = tg.sent(CHAT)[0]["message_id"]
    row = await one_row(store)
    assert (row["status"], row["external_id"]) == ("unknown", str(first))
    assert (await Deliveries(outbox, outbox.clock).resend(1, "@admin")).done
    assert await w.drain() == 1
    texts = [m["text"] for m in tg.sent(CHAT)]
    # parts two and three (this body splits in three): part two twice, part one once
    assert len(texts) == 4 and texts[2] == texts[1] and len(set(texts)) == 3


async def test_a_split_message_cut_off_between_parts_is_pending_from_the_next_part(
    store: Store,
    tg: FakeTelegram,
    bot: Bot,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
) -> None:
    """Part one confirmed, part two still waiting for the chat's next slot: nothing is in
    doubt, so no card; the next drain sends part two only."""
    outbox = make_outbox(store, Clock())
    await outbox.enqueue(1, "result", [f"telegram:{CHAT}"], LONG)
    slow = SendLimiter(per_chat_interval_s=30.0, group_per_minute=10_000, global_per_s=1000.0)
    channels: dict[str, Channel] = {"telegram": TelegramChannel(bot, slow)}
    await cut_off(DeliveryWorker(outbox, channels, OWNER), lambda: len(tg.sent(CHAT)) == 1)
    first = tg.sent(CHAT)[0]["message_id"]
    row = await one_row(store)
    assert (row["status"], row["external_id"]) == ("pending", str(first))
    fast = SendLimiter(per_chat_interval_s=0.0, group_per_minute=10_000, global_per_s=1000.0)
    channels["telegram"] = TelegramChannel(bot, fast)
    assert await DeliveryWorker(outbox, channels, OWNER).drain() == 1
    texts = [m["text"] for m in tg.sent(CHAT)]
    assert len(texts) == 3 and len(set(texts)) == 3  # each part once
    row = await one_row(store)
    assert row["status"] == "delivered"
    assert row["external_id"] == ",".join(str(m["message_id"]) for m in tg.sent(CHAT))


async def test_a_webhook_send_cut_off_is_resent_with_the_same_idempotency_key(
    store: Store,
    bot: Bot,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
) -> None:
    outbox = make_outbox(store, Clock())
    await outbox.enqueue(1, "result", ["webhook:hook"], CTX)
    w = worker(outbox, bot, receiver, http)
    receiver.script("/hook", Answer(200, delay_s=30))  # received; the 200 comes too late
    await cut_off(w, lambda: len(receiver.received) == 1)
    assert (await one_row(store))["status"] == "pending"  # on_unknown: resend
    assert await w.drain() == 1
    assert [r.headers["idempotency-key"] for r in receiver.received] == ["outbox-1"] * 2
    assert (await one_row(store))["status"] == "delivered"


async def test_a_slack_send_cut_off_is_unknown(
    store: Store,
    bot: Bot,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SLACK_ENV, receiver.url + "/slack")
    outbox = make_outbox(store, Clock())
    await outbox.enqueue(1, "result", ["slack:ops"], CTX)
    w = worker(outbox, bot, receiver, http)
    receiver.script("/slack", Answer(200, delay_s=30))
    await cut_off(w, lambda: len(receiver.received) == 1)
    assert (await one_row(store))["status"] == "unknown"
    assert await w.drain() == 0 and len(receiver.received) == 1


class FlakyConfirmations(Outbox):
    """The real outbox whose next ``failures`` confirmation writes fail (the database went
    away between the channel's answer and its record)."""

    failures = 0

    async def delivered(self, row_id: int, external_id: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("the database is unreachable")
        await super().delivered(row_id, external_id)


def flaky_outbox(store: Store, failures: int) -> FlakyConfirmations:
    base = make_outbox(store, Clock())
    outbox = FlakyConfirmations(store, base.templates, base.config, clock=base.clock)
    outbox.failures = failures
    return outbox


@pytest.mark.parametrize(
    ("failures", "status"),
    [(1, "delivered"), (2, "unknown")],
    ids=["stored-on-the-second-try", "kept-missing-leaves-it-unknown"],
)
async def test_a_confirmation_the_store_missed(
    store: Store,
    tg: FakeTelegram,
    bot: Bot,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    failures: int,
    status: str,
) -> None:
    """Telegram confirmed the send; writing that failed once (stored on the retry) or
    twice (the row is unknown: never delivered without the confirmation on record)."""
    outbox = flaky_outbox(store, failures=failures)
    await outbox.enqueue(1, "result", [f"telegram:{CHAT}"], CTX)
    w = worker(outbox, bot, receiver, http)
    with pytest.raises(StoreUnavailable):  # the drain reports the store's error
        await w.drain()
    row = await one_row(store)
    assert row["status"] == status
    if status == "delivered":
        assert row["external_id"] == str(tg.sent(CHAT)[0]["message_id"])
    else:  # the confirmation is kept: a Resend would skip what arrived
        assert row["delivered_at"] is None
        assert row["external_id"] == str(tg.sent(CHAT)[0]["message_id"])
    assert await w.drain() == 0 and len(tg.sent(CHAT)) == 1


async def test_of_two_instances_only_the_claims_owner_moves_a_cut_off_row(
    store: Store,
) -> None:
    """A claim that went stale and was taken by another instance meanwhile is left alone
    by the first one's late cut-off: the row stays the second instance's."""
    clock = Clock()
    outbox = make_outbox(store, clock)
    await outbox.enqueue(1, "result", [f"telegram:{CHAT}"], CTX)
    (first,) = await outbox.claim("proc-a")
    await outbox.release(int(first["id"]), "proc-a")  # given back, then claimed again
    clock.advance(1)
    (second,) = await outbox.claim("proc-b")
    assert await outbox.cut_off(first) == "sending"  # proc-a's claim is not the row's
    row = await one_row(store)
    assert row["status"] == "sending" and row["claimed_by"] == "proc-b"
    assert await outbox.cut_off(second) == "unknown"
