"""Deliveries whose outcome is unknown (issue 18): a claim that expired while ``sending``.

Telegram and Slack rows become ``unknown`` and wait for an admin; webhook rows carry an
``Idempotency-Key: outbox-<id>`` on every send and are resent with the same key;
``[delivery] on_unknown`` overrides either way. Real stores (SQLite and PostgreSQL), a
real receiver on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.cli import main
from core.config.load import parse_config
from core.delivery.channels import Channel
from core.delivery.deliveries import Deliveries, Delivery, DeliveryStatus
from core.delivery.worker import DeliveryWorker
from core.errors import EX_CONFIG, ConfigError
from core.store.base import Store
from core.store.open import open_store
from core.store.path import DbLocation
from tests.configs import pyramid
from tests.fakes.receiver import FakeReceiver
from tests.test_delivery import CTX, SLACK_ENV, Clock, all_rows, make_channels, make_outbox, one_row

DEAD = "dead-host:41:0"  # a claim whose process is gone (not this host's pid)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # Settings.secret also reads ./.env
    monkeypatch.delenv(SLACK_ENV, raising=False)


@pytest.fixture
async def receiver() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as rx:
        yield rx


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Recording:
    """A channel that records what it was asked to send (Telegram's stand-in here: the
    bot's own channel is tested in tests/bot/test_deliveries.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, name: str, body: str, sent: str = "", key: str = "") -> str:
        self.sent.append((name, body, key))
        return str(len(self.sent))


def worker_for(
    outbox: Any, receiver: FakeReceiver, http: aiohttp.ClientSession, tg: Recording
) -> DeliveryWorker:
    channels: dict[str, Channel] = make_channels(receiver, http) | {"telegram": tg}
    return DeliveryWorker(outbox, channels, "proc-new")


async def crashed_mid_send(outbox: Any, clock: Clock, targets: list[str]) -> None:
    """Rows to ``targets`` claimed by a process that then died; their claims expire."""
    await outbox.enqueue(1, "result", targets, CTX)
    assert len(await outbox.claim(DEAD)) == len(targets)
    clock.advance(3600)


async def test_a_stale_telegram_or_slack_claim_becomes_unknown_and_is_not_resent(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, clock: Clock
) -> None:
    outbox = make_outbox(store, clock)
    await crashed_mid_send(outbox, clock, ["telegram:42", "slack:ops"])
    assert await outbox.release_stale() == 2
    tg = Recording()
    assert await worker_for(outbox, receiver, http, tg).drain() == 0
    assert tg.sent == [] and receiver.received == []
    rows = await all_rows(store)
    assert [r["status"] for r in rows] == ["unknown", "unknown"]
    assert all("may or may not have arrived" in r["last_error"] for r in rows)
    assert await outbox.unknown_count() == 2
    assert await outbox.pending_count() == 0


async def test_webhooks_carry_an_idempotency_key_and_an_unknown_one_is_resent_with_it(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, clock: Clock
) -> None:
    outbox = make_outbox(store, clock)
    await outbox.enqueue(1, "result", ["webhook:hook"], CTX)
    worker = worker_for(outbox, receiver, http, Recording())
    assert await worker.drain() == 1
    assert receiver.received[0].headers["idempotency-key"] == "outbox-1"  # always, first send
    assert receiver.received[0].headers["x-token"] == "t0k"  # beside the configured ones
    await crashed_mid_send(outbox, clock, ["webhook:hook"])  # row 2
    assert await outbox.release_stale() == 1
    assert (await one_row(store, 2))["status"] == "pending"  # resent, not asked
    assert await worker.drain() == 1
    assert [r.headers["idempotency-key"] for r in receiver.received] == ["outbox-1", "outbox-2"]
    assert (await one_row(store, 2))["status"] == "delivered"


async def test_on_unknown_overrides_the_defaults_both_ways(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, clock: Clock
) -> None:
    outbox = make_outbox(store, clock, on_unknown={"telegram": "resend", "webhook": "ask"})
    await crashed_mid_send(outbox, clock, ["telegram:42", "webhook:hook", "slack:ops"])
    assert await outbox.release_stale() == 3
    tg = Recording()
    assert await worker_for(outbox, receiver, http, tg).drain() == 1
    assert [name for name, _, _ in tg.sent] == ["42"]  # resent at once
    assert receiver.received == []  # the webhook waits for an admin, Slack too (default)
    assert [r["status"] for r in await all_rows(store)] == ["delivered", "unknown", "unknown"]


@pytest.mark.parametrize("stores", ["one store", "a store each"])
async def test_two_instances_looking_at_once_move_a_stale_row_once(
    stores: str, store: Store, store_location: DbLocation, clock: Clock
) -> None:
    other = await open_store(store_location) if stores == "a store each" else store
    try:
        one, two = make_outbox(store, clock), make_outbox(other, clock)
        await crashed_mid_send(one, clock, ["telegram:42"])
        for _ in range(3):  # a few rounds: each time one of them moves it
            counts = await asyncio.gather(one.release_stale(), two.release_stale())
            assert sorted(counts) == [0, 1]
            (row,) = await all_rows(store)
            assert row["status"] == "unknown"
            assert (await Deliveries(one, clock).resend(1, "@op")).done
            assert len(await one.claim(DEAD)) == 1
            clock.advance(3600)
    finally:
        if other is not store:
            await other.close()


async def test_resend_sends_an_unknown_row_once_more(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, clock: Clock
) -> None:
    outbox = make_outbox(store, clock)
    deliveries = Deliveries(outbox, clock)
    await crashed_mid_send(outbox, clock, ["telegram:42"])
    await outbox.release_stale()
    first = await deliveries.resend(1, "@op")
    again = await deliveries.resend(1, "@op2")  # a second press (another admin's copy)
    assert first.done and not again.done
    assert again.delivery is not None and again.delivery.status == DeliveryStatus.PENDING
    tg = Recording()
    worker = worker_for(outbox, receiver, http, tg)
    assert await worker.drain() == 1
    assert await worker.drain() == 0
    assert len(tg.sent) == 1
    row = await one_row(store)
    assert (row["status"], row["note"]) == ("delivered", "resent by @op")


async def test_mark_delivered_records_the_admins_word_and_sends_nothing(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, clock: Clock
) -> None:
    outbox = make_outbox(store, clock)
    deliveries = Deliveries(outbox, clock)
    await crashed_mid_send(outbox, clock, ["telegram:42"])
    await outbox.release_stale()
    settled = await deliveries.mark_delivered(1, "@op")
    assert settled.done and settled.delivery is not None
    assert settled.delivery.status == DeliveryStatus.DELIVERED
    assert settled.delivery.note == "confirmed by admin @op"
    tg = Recording()
    assert await worker_for(outbox, receiver, http, tg).drain() == 0
    assert tg.sent == []
    assert not (await deliveries.resend(1, "@op")).done  # delivered: nothing to resend


async def test_a_failed_row_can_be_resent_but_never_marked_delivered(
    store: Store, clock: Clock
) -> None:
    outbox = make_outbox(store, clock)
    deliveries = Deliveries(outbox, clock)
    await outbox.enqueue(1, "result", ["telegram:42"], CTX)
    (row,) = await outbox.claim("proc-a")
    await outbox.failed_attempt(row, "Telegram refused", permanent=True, retry_after_s=None)
    assert not (await deliveries.mark_delivered(1, "@op")).done
    assert (await deliveries.resend(1, "@op")).done
    assert (await one_row(store))["status"] == "pending"
    assert not (await deliveries.mark_delivered(404, "@op")).done  # no such row


async def test_attention_lists_failed_and_unknown_rows_newest_first_paged(
    store: Store, clock: Clock
) -> None:
    outbox = make_outbox(store, clock)
    deliveries = Deliveries(outbox, clock)
    await crashed_mid_send(outbox, clock, ["telegram:1", "telegram:2", "telegram:3"])
    await outbox.release_stale()
    await outbox.enqueue(2, "result", ["telegram:4", "telegram:5"], CTX)
    (row, _) = await outbox.claim("proc-a")
    await outbox.failed_attempt(row, "refused", permanent=True, retry_after_s=None)
    page, total = await deliveries.attention(limit=2)
    assert total == 4  # the pending row to chat 5 is not listed
    assert [(d.id, d.status) for d in page] == [(4, "failed"), (3, "unknown")]
    page, _ = await deliveries.attention(limit=2, offset=2)
    assert [d.id for d in page] == [2, 1]


async def test_each_unknown_row_is_shown_to_the_admins_once_on_the_leader(
    store: Store, clock: Clock
) -> None:
    outbox = make_outbox(store, clock)
    deliveries = Deliveries(outbox, clock)
    shown: list[Delivery] = []
    alerts: list[str] = []

    async def card(d: Delivery) -> bool:
        shown.append(d)
        return True

    async def alert(text: str) -> None:
        alerts.append(text)

    deliveries.notifiers.append(card)
    deliveries.alert = alert
    await crashed_mid_send(outbox, clock, ["telegram:42"])
    await outbox.release_stale()
    outbox.is_leader = lambda: False  # a follower: the leader shows them
    assert await deliveries.ask() == 0
    outbox.is_leader = lambda: True
    assert await deliveries.ask() == 1
    assert await deliveries.ask() == 0  # once
    assert [(d.id, d.target, d.body) for d in shown] == [(1, "telegram:42", shown[0].body)]
    assert "Markets" in shown[0].body
    assert alerts == []


async def test_an_unknown_row_no_card_reached_is_an_alert(store: Store, clock: Clock) -> None:
    outbox = make_outbox(store, clock)
    deliveries = Deliveries(outbox, clock)
    alerts: list[str] = []

    async def unreachable(d: Delivery) -> bool:
        return False

    async def alert(text: str) -> None:
        alerts.append(text)

    deliveries.notifiers.append(unreachable)
    deliveries.alert = alert
    await crashed_mid_send(outbox, clock, ["slack:ops"])
    await outbox.release_stale()
    assert await deliveries.ask() == 1
    (text,) = alerts
    assert "Delivery #1 to slack:ops may or may not have arrived" in text
    assert "/deliveries" in text


# -- config ---------------------------------------------------------------------------------


def problems(delivery: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(pyramid(delivery=delivery), warnings=[])
    return [str(p) for p in info.value.problems]


def test_on_unknown_defaults_and_overrides() -> None:
    cfg = parse_config(pyramid(), warnings=[])
    assert [cfg.delivery.unknown_policy(k) for k in ("telegram", "slack", "webhook", "log")] == [
        "ask",
        "ask",
        "resend",
        "resend",
    ]
    cfg = parse_config(pyramid(delivery={"on_unknown": {"slack": "resend"}}), warnings=[])
    assert cfg.delivery.unknown_policy("slack") == "resend"
    assert cfg.delivery.unknown_policy("telegram") == "ask"


def test_on_unknown_refuses_an_unknown_kind_or_value_naming_key_and_fix() -> None:
    (kind,) = problems({"on_unknown": {"telgram": "ask"}})
    assert kind.startswith("delivery.on_unknown")
    assert "'telgram' is not a channel kind" in kind and "telegram, slack, webhook" in kind
    (value,) = problems({"on_unknown": {"webhook": "retry"}})
    assert "webhook = 'retry' is not a choice" in value
    assert '"ask"' in value and '"resend"' in value


def test_a_bad_on_unknown_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[providers.x]\napi = "ollama"\nbase_url = "http://h"\n[[tiers]]\nlevel = 0\n'
        'models = ["x/m"]\n[delivery]\non_unknown = { telegram = "maybe" }\n',
        encoding="utf-8",
    )
    assert main(["--config", str(bad), "config", "check"]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "delivery.on_unknown" in err and "telegram = 'maybe' is not a choice" in err
