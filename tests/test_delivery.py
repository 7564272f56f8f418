"""The delivery outbox against a real SQLite file and a real receiver on 127.0.0.1.

Principle 4, "nothing is lost": a row is written before anything is sent, survives a
crash, is retried with a backoff, and once confirmed is never sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.agents.templating import Templates
from core.config.delivery import DeliveryConfig
from core.config.settings import Settings
from core.delivery.channels import Channel, LogChannel, SlackChannel, WebhookChannel
from core.delivery.outbox import CHANNEL_WAIT_S, Outbox, _claimable_sql
from core.delivery.worker import DeliveryWorker
from core.store.base import Store
from core.store.open import open_store
from core.store.path import DbLocation
from core.store.times import utcnow_iso
from tests.configs import make_config
from tests.fakes.receiver import Answer, FakeReceiver
from tests.fakes.wait import until
from tests.stores import REFUSED, add_refusal, set_read_only, sqlite_only

TEMPLATES = Path(__file__).parents[1] / "templates"
SLACK_ENV = "OPENCLAW_TEST_SLACK"
CTX: dict[str, Any] = {
    "agent": "morning-digest",
    "run_id": 7,
    "status": "ok",
    "text": "Markets are *up* & calm.",
}
DEADLINE_S = 10.0  # a bound on polling loops, not a speed expectation


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Settings.secret also reads ./.env: a developer's real one must not leak in
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SLACK_ENV, raising=False)


@pytest.fixture
async def receiver() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as rx:
        yield rx


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Clock:
    """The outbox's wall clock, moved by the test: a row becomes due, or a claim stale,
    because its time came, not because the test waited or rewrote the row."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slack_url(receiver: FakeReceiver, monkeypatch: pytest.MonkeyPatch) -> str:
    url = receiver.url + "/slack"
    monkeypatch.setenv(SLACK_ENV, url)
    return url


def make_outbox(store: Store, clock: Clock | None = None, **delivery: Any) -> Outbox:
    cfg = {"backoff_s": [0.01], "max_attempts": 3, "claim_timeout_s": 60.0} | delivery
    timing = {"clock": clock} if clock is not None else {}
    return Outbox(store, Templates(TEMPLATES), DeliveryConfig(**cfg), **timing)


def make_channels(receiver: FakeReceiver, http: aiohttp.ClientSession) -> dict[str, Channel]:
    config = make_config(
        channels={
            "slack": {"ops": {"webhook_url_env": SLACK_ENV}},
            "webhook": {
                "hook": {"url": receiver.url + "/hook", "headers": {"X-Token": "t0k"}},
                "other": {"url": receiver.url + "/other"},
            },
        }
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    return {
        "log": LogChannel(),
        "slack": SlackChannel(config, settings, http),
        "webhook": WebhookChannel(config, settings, http),
    }


def make_worker(
    outbox: Outbox, receiver: FakeReceiver, http: aiohttp.ClientSession, owner: str = "proc-a"
) -> DeliveryWorker:
    return DeliveryWorker(outbox, make_channels(receiver, http), owner)


async def all_rows(store: Store) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.fetchall("SELECT * FROM outbox ORDER BY id")]


async def one_row(store: Store, row_id: int = 1) -> dict[str, Any]:
    rows = await store.fetchall("SELECT * FROM outbox WHERE id = ?", (row_id,))
    assert rows, f"no outbox row {row_id}"
    return dict(rows[0])


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def wait_for_status(store: Store, status: str, row_id: int = 1) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        rows = await store.fetchall("SELECT * FROM outbox WHERE id = ?", (row_id,))
        return dict(rows[0]) if rows and rows[0]["status"] == status else None

    return await until(reached, DEADLINE_S, f"row {row_id} becoming {status}")


def event_waiters(*events: asyncio.Event) -> list[asyncio.Task[Any]]:
    """Tasks waiting on one of ``events``: a worker's run() between drains has two, on its
    stop event and on the outbox's wakeup (a store may wait on events of its own: the
    PostgreSQL pool's workers do)."""

    def waits_on(task: asyncio.Task[Any]) -> bool:
        coro: Any = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        return (
            coro.__qualname__ == "Event.wait"
            and frame is not None
            and any(frame.f_locals.get("self") is e for e in events)
        )

    return [t for t in asyncio.all_tasks() if waits_on(t)]


# -- enqueue, render, send -----------------------------------------------------------------


async def test_enqueue_writes_a_rendered_row_per_target_before_any_send(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, slack_url: str
) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(7, "digest", ["slack:ops", "webhook:hook", "log"], CTX)

    assert receiver.received == []  # stored, nothing sent yet
    assert outbox.wakeup.is_set()
    assert await outbox.pending_count() == 3
    slack, hook, logged = await all_rows(store)
    for row, target in zip(
        (slack, hook, logged), ("slack:ops", "webhook:hook", "log"), strict=True
    ):
        assert row["target"] == target
        assert (row["run_id"], row["kind"], row["status"], row["attempts"]) == (
            7,
            "digest",
            "pending",
            0,
        )
        assert row["external_id"] is None and row["claimed_by"] is None
    # Slack mrkdwn: the agent in bold on the first line, the text last
    lines = slack["body"].splitlines()
    assert lines[0] == "*morning-digest*" and lines[1] == ""  # a blank line, then the text
    # Slack reads &, < and > as control characters: they are escaped, nothing else is
    assert lines[-1] == CTX["text"].replace("&", "&amp;").replace("<", "&lt;")
    assert json.loads(hook["body"]) == {
        "agent": "morning-digest",
        "run_id": 7,
        "status": "ok",
        "target": "webhook:hook",
        "text": CTX["text"],
    }
    assert logged["body"] == "[morning-digest #7 ok] Markets are *up* & calm."


async def test_drain_sends_each_row_and_stores_the_confirmation(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, slack_url: str
) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(7, "digest", ["slack:ops", "webhook:hook", "log"], CTX)
    stored = {r["target"]: r["body"] for r in await all_rows(store)}

    assert await make_worker(outbox, receiver, http).drain() == 3

    (to_slack,) = receiver.at("/slack")
    assert to_slack.body == {"text": stored["slack:ops"]}
    assert to_slack.headers["content-type"] == "application/json"
    (to_hook,) = receiver.at("/hook")
    assert to_hook.body == json.loads(stored["webhook:hook"])  # the stored body, as stored
    assert to_hook.headers["x-token"] == "t0k"
    rows = await all_rows(store)
    assert [(r["status"], r["external_id"], r["attempts"]) for r in rows] == [
        ("delivered", "slack:200", 1),
        ("delivered", "http:200", 1),
        ("delivered", "log", 1),
    ]
    assert all(r["delivered_at"] and r["last_error"] is None for r in rows)
    assert await outbox.pending_count() == 0


async def test_a_late_run_is_marked_in_slack(store: Store) -> None:
    body = await make_outbox(store).render("slack:ops", CTX | {"status": "late"})
    assert body.splitlines()[0] == "*morning-digest* _(late)_"


async def test_enqueue_without_targets_writes_nothing(store: Store) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", [], CTX)
    assert await all_rows(store) == []
    assert not outbox.wakeup.is_set()


# -- retries, backoff, permanent failures --------------------------------------------------


async def test_server_errors_are_retried_with_backoff_until_delivered(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, slack_url: str
) -> None:
    receiver.script("/slack", Answer(500, "boom"), Answer(503, "busy"))
    clock = Clock()
    outbox = make_outbox(store, clock, backoff_s=[30.0])
    worker = make_worker(outbox, receiver, http)
    await outbox.enqueue(1, "digest", ["slack:ops"], CTX)

    seen: list[tuple[str, int, str | None]] = []
    for _ in range(5):  # more drains than needed: extra ones must be no-ops
        await worker.drain()
        row = await one_row(store)
        seen.append((row["status"], row["attempts"], row["last_error"]))
        if row["status"] != "pending":
            break
        assert row["claimed_by"] is None  # the claim is let go between tries
        assert await worker.drain() == 0  # not due before its backoff is over
        clock.advance(30)

    assert seen == [
        ("pending", 1, "HTTP 500: boom"),
        ("pending", 2, "HTTP 503: busy"),
        ("delivered", 3, None),
    ]
    assert [r.answered for r in receiver.at("/slack")] == [500, 503, 200]
    assert (await one_row(store))["external_id"] == "slack:200"


async def test_backoff_steps_follow_the_attempt_count(
    store: Store,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    slack_url: str,
    clock: Clock,
) -> None:
    receiver.script("/slack", Answer(500), Answer(500))
    outbox = make_outbox(store, clock, backoff_s=[40.0, 900.0])
    worker = make_worker(outbox, receiver, http)
    await outbox.enqueue(1, "digest", ["slack:ops"], CTX)
    await worker.drain()
    assert parse_ts((await one_row(store))["next_attempt_at"]) == clock.now + timedelta(seconds=40)
    clock.advance(40)
    await worker.drain()
    assert parse_ts((await one_row(store))["next_attempt_at"]) == clock.now + timedelta(seconds=900)


def _http_date(seconds_ahead: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_ahead), usegmt=True)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_waits_at_least_retry_after(
    form: str,
    store: Store,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    slack_url: str,
) -> None:
    header = "30" if form == "seconds" else _http_date(31)
    receiver.script("/slack", Answer(429, "rate_limited", retry_after=header))
    outbox = make_outbox(store, backoff_s=[0.01])
    await outbox.enqueue(1, "digest", ["slack:ops"], CTX)
    before = datetime.now(UTC)

    await make_worker(outbox, receiver, http).drain()

    row = await one_row(store)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "HTTP 429: rate_limited"
    # an HTTP date has whole seconds: allow one more second of slack
    assert parse_ts(row["next_attempt_at"]) >= before + timedelta(seconds=29)
    assert len(receiver.at("/slack")) == 1


@pytest.mark.parametrize(
    ("header", "at_least_s", "at_most_s"),
    [
        ("inf", 3600.0, 86400.0 + 5),  # capped, and it must not strand the row in 'sending'
        ("1e30", 3600.0, 86400.0 + 5),
        ("-5", 0.0, 5.0),  # in the past: the backoff applies
        ("soon", 0.0, 5.0),  # unreadable: the backoff applies
    ],
)
async def test_odd_retry_after_values_neither_crash_nor_stall(
    header: str,
    at_least_s: float,
    at_most_s: float,
    store: Store,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    slack_url: str,
) -> None:
    receiver.script("/slack", Answer(503, retry_after=header))
    outbox = make_outbox(store, backoff_s=[0.5])
    await outbox.enqueue(1, "digest", ["slack:ops"], CTX)
    before = datetime.now(UTC)
    await make_worker(outbox, receiver, http).drain()
    row = await one_row(store)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    due = parse_ts(row["next_attempt_at"])
    assert before + timedelta(seconds=at_least_s) <= due
    assert due <= datetime.now(UTC) + timedelta(seconds=at_most_s)


@pytest.mark.parametrize("status", [400, 404])
async def test_a_permanent_4xx_fails_after_one_attempt(
    status: int, store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    receiver.script("/hook", Answer(status, "no_such_hook"))
    outbox = make_outbox(store, backoff_s=[0.0])
    worker = make_worker(outbox, receiver, http)
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)

    await worker.drain()
    await worker.drain()

    row = await one_row(store)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"] == f"HTTP {status}: no_such_hook"
    assert row["external_id"] is None
    assert len(receiver.at("/hook")) == 1
    assert await outbox.pending_count() == 0


async def test_max_attempts_exhausted_fails_the_row(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    receiver.script("/hook", *(Answer(502, "bad gateway") for _ in range(5)))
    outbox = make_outbox(store, backoff_s=[0.0], max_attempts=3)
    worker = make_worker(outbox, receiver, http)
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)

    await worker.drain()  # zero backoff: every retry is due at once, within this drain
    await worker.drain()

    row = await one_row(store)
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert row["last_error"] == "HTTP 502: bad gateway"
    assert len(receiver.at("/hook")) == 3


async def test_a_refused_connection_is_retried(
    store: Store, http: aiohttp.ClientSession, receiver: FakeReceiver, closed_port: int
) -> None:
    config = make_config(
        channels={"webhook": {"hook": {"url": f"http://127.0.0.1:{closed_port}/"}}}
    )
    outbox = make_outbox(store, backoff_s=[60.0])
    channel = WebhookChannel(config, Settings(_env_file=None), http)  # type: ignore[call-arg]
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)
    await DeliveryWorker(outbox, {"webhook": channel}, "proc-a").drain()
    row = await one_row(store)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "Cannot connect" in row["last_error"]


async def test_a_redirect_is_not_followed_as_a_bodyless_get(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    # aiohttp would turn the POST into a GET to /moved, whose 200 confirms nothing
    receiver.script("/hook", Answer(302, "", location="/moved"))
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)
    await make_worker(outbox, receiver, http).drain()
    row = await one_row(store)
    assert (row["status"], row["external_id"]) == ("failed", None)
    assert "redirect" in row["last_error"]
    assert receiver.at("/moved") == []


async def test_a_bad_slack_url_is_not_written_to_the_outbox(
    store: Store,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SLACK_ENV, "htps://hooks.example/T000/B000/s3cr3t-token")
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", ["slack:ops"], CTX)
    await make_worker(outbox, receiver, http).drain()
    row = await one_row(store)
    assert row["attempts"] == 1 and row["status"] == "pending"
    assert "s3cr3t-token" not in row["last_error"]


# -- channels that are not there (yet) -----------------------------------------------------


async def test_an_unset_slack_url_waits_without_spending_attempts(
    store: Store,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    outbox = make_outbox(store, clock)
    worker = make_worker(outbox, receiver, http)
    await outbox.enqueue(1, "digest", ["slack:ops"], CTX)

    for _ in range(2):  # not an attempt, however often the worker comes by
        await worker.drain()
    row = await one_row(store)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert SLACK_ENV in row["last_error"]
    assert parse_ts(row["next_attempt_at"]) == clock.now + timedelta(seconds=CHANNEL_WAIT_S)
    assert receiver.received == []

    monkeypatch.setenv(SLACK_ENV, receiver.url + "/slack")
    await worker.drain()
    assert receiver.received == []  # still waiting out the channel wait
    clock.advance(CHANNEL_WAIT_S)
    await worker.drain()

    row = await one_row(store)
    assert (row["status"], row["attempts"], row["external_id"]) == ("delivered", 1, "slack:200")
    assert len(receiver.at("/slack")) == 1


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("slack:gone", "no [channels.slack.gone] is configured"),
        ("webhook:gone", "no [channels.webhook.gone] is configured"),
        ("telegram:123", "no telegram channel is running"),
    ],
)
async def test_a_missing_channel_keeps_the_row_waiting(
    target: str,
    error: str,
    store: Store,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    slack_url: str,
) -> None:
    # e.g. a channel dropped from the config after the row was written
    outbox = make_outbox(store, max_attempts=1)
    await outbox.enqueue(1, "digest", [target], CTX)
    await make_worker(outbox, receiver, http).drain()
    row = await one_row(store)
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 0, error)


# -- crashes, stale claims, concurrent workers ---------------------------------------------


async def test_rows_survive_a_crash_and_are_sent_once_by_the_next_process(
    store_location: DbLocation,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    slack_url: str,
) -> None:
    path = store_location
    first = await open_store(path)
    try:
        outbox = make_outbox(first)
        await outbox.enqueue(1, "digest", ["slack:ops", "webhook:hook"], CTX)
        await outbox.enqueue(2, "digest", ["webhook:other"], CTX | {"run_id": 2})
    finally:
        await first.close()  # the process dies here: nothing was sent
    assert receiver.received == []

    second = await open_store(path)
    try:
        outbox = make_outbox(second)
        worker = make_worker(outbox, receiver, http, owner="proc-b")
        assert await outbox.pending_count() == 3
        assert await worker.drain() == 3
        assert await worker.drain() == 0
        assert [r.path for r in receiver.received] == ["/slack", "/hook", "/other"]
        assert {r["status"] for r in await all_rows(second)} == {"delivered"}
    finally:
        await second.close()

    third = await open_store(path)  # and a restart after that sends nothing again
    try:
        assert await make_worker(make_outbox(third), receiver, http, "proc-c").drain() == 0
    finally:
        await third.close()
    assert len(receiver.received) == 3


async def test_a_stale_claim_is_released_and_sent_but_a_fresh_one_is_not(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession, clock: Clock
) -> None:
    outbox = make_outbox(store, clock, claim_timeout_s=60.0)
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)
    await outbox.enqueue(2, "digest", ["webhook:other"], CTX | {"run_id": 2})
    assert len(await outbox.claim("dead-host:41:0", run_id=1)) == 1  # then it died
    clock.advance(3599)
    assert len(await outbox.claim("busy-host:42:0", run_id=2)) == 1  # alive, mid-send
    clock.advance(1)  # the first claim is an hour old, the second a second

    worker = make_worker(outbox, receiver, http, owner="proc-new")
    assert await worker.drain() == 0  # claimed rows are not anyone else's to send
    assert await outbox.release_stale() == 1
    assert await worker.drain() == 1

    assert [r.path for r in receiver.received] == ["/hook"]
    stale, fresh = await all_rows(store)
    assert (stale["status"], stale["external_id"]) == ("delivered", "http:200")
    assert (fresh["status"], fresh["claimed_by"]) == ("sending", "busy-host:42:0")
    assert await outbox.release_stale() == 0


async def test_a_late_failure_does_not_undo_a_delivery_by_another_worker(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)
    (slow,) = await outbox.claim("slow-host")  # its send hangs past the claim timeout
    assert await outbox.release_stale(older_than_s=0) == 1
    assert await make_worker(outbox, receiver, http, "proc-b").drain() == 1

    status = await outbox.failed_attempt(slow, "TimeoutError", permanent=False, retry_after_s=None)

    assert status == "delivered"
    row = await one_row(store)
    assert (row["status"], row["attempts"], row["external_id"]) == ("delivered", 1, "http:200")
    assert await make_worker(outbox, receiver, http, "proc-c").drain() == 0
    assert len(receiver.received) == 1


async def test_a_late_confirmation_still_counts_after_the_claim_went_stale(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)
    (slow,) = await outbox.claim("slow-host")
    await outbox.release_stale(older_than_s=0)
    await outbox.delivered(int(slow["id"]), "http:200")  # it did go through after all
    assert await make_worker(outbox, receiver, http, "proc-b").drain() == 0
    assert receiver.received == []
    assert (await one_row(store))["status"] == "delivered"


@pytest.mark.parametrize("stores", ["one store", "a store each"])
async def test_two_workers_draining_at_once_send_each_row_once(
    stores: str,
    store_location: DbLocation,
    store: Store,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
) -> None:
    outbox_a = make_outbox(store)
    targets = ["webhook:hook", "webhook:other"]
    for run_id in range(1, 41):
        await outbox_a.enqueue(run_id, "digest", targets, CTX | {"run_id": run_id})
    other = store if stores == "one store" else await open_store(store_location)
    try:
        worker_a = make_worker(outbox_a, receiver, http, owner="proc-a")
        worker_b = make_worker(make_outbox(other), receiver, http, owner="proc-b")

        handled = await asyncio.gather(worker_a.drain(), worker_b.drain())

        assert sum(handled) == 80
        # once each, and each target's in the order queued, whichever worker sent it
        for path in ("/hook", "/other"):
            assert [r.body["run_id"] for r in receiver.at(path)] == list(range(1, 41)), path
        rows = await all_rows(store)
        assert {r["status"] for r in rows} == {"delivered"}
        assert {r["attempts"] for r in rows} == {1}
    finally:
        if other is not store:
            await other.close()


class GateChannel:
    """Holds sends to ``slow*`` names until ``open`` is set; counts the sends in flight."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.changed = asyncio.Event()
        self.sent: list[str] = []
        self.in_flight = self.peak = 0

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE_S):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def send(self, name: str, body: str, sent: str = "", key: str = "") -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.changed.set()
        try:
            if name.startswith("slow"):
                await self.open.wait()
            await asyncio.sleep(0)
            self.sent.append(name)
            return name
        finally:
            self.in_flight -= 1
            self.changed.set()


async def test_a_waiting_row_does_not_hold_up_the_rows_behind_it(store: Store) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", ["log:slow"], CTX)  # e.g. a chat at its flood limit
    for run_id in range(2, 52):
        await outbox.enqueue(run_id, "digest", [f"log:fast{run_id}"], CTX)
    gate = GateChannel()
    drain = asyncio.create_task(DeliveryWorker(outbox, {"log": gate}, "proc-a").drain())
    try:
        await gate.until(lambda: len(gate.sent) == 50)  # a batch waiting for "slow" would stall
        assert "slow" not in gate.sent
        gate.open.set()
        assert await asyncio.wait_for(drain, DEADLINE_S) == 51
    finally:
        drain.cancel()
    assert {r["status"] for r in await all_rows(store)} == {"delivered"}


async def test_sends_in_flight_stay_within_the_cap(store: Store) -> None:
    outbox = make_outbox(store)
    gate = GateChannel()
    gate.open.set()
    for run_id in range(1, 31):
        await outbox.enqueue(run_id, "digest", [f"log:slow{run_id}"], CTX)
    worker = DeliveryWorker(outbox, {"log": gate}, "proc-a", max_in_flight=4)
    assert await worker.drain() == 30
    assert gate.peak == 4 and len(gate.sent) == 30


def count_claims(outbox: Outbox, delay_s: float = 0.0) -> list[float]:
    """Record when each claim starts; each one takes at least ``delay_s`` (a big backlog)."""
    claim, started = outbox.claim, []

    async def counted(*args: Any, **kw: Any) -> list[dict[str, Any]]:
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(delay_s)
        return await claim(*args, **kw)

    outbox.claim = counted  # type: ignore[method-assign]
    return started


async def test_a_drain_waiting_on_a_send_does_not_poll_the_store(store: Store) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", ["log:slow"], CTX)
    claims = count_claims(outbox)
    gate = GateChannel()
    drain = asyncio.create_task(DeliveryWorker(outbox, {"log": gate}, "proc-a").drain())
    await gate.until(lambda: gate.in_flight == 1)
    await asyncio.sleep(0.2)
    assert len(claims) == 1  # nothing finished: nothing to top up
    gate.open.set()
    assert await asyncio.wait_for(drain, DEADLINE_S) == 1


async def test_slow_claims_are_paced_while_sends_are_in_flight(store: Store) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", ["log:slow"], CTX)
    for run_id in range(2, 12):  # one target: each row is claimable once the last is sent
        await outbox.enqueue(run_id, "digest", ["log:fast"], CTX | {"run_id": run_id})
    claims = count_claims(outbox, delay_s=0.05)
    gate = GateChannel()
    drain = asyncio.create_task(DeliveryWorker(outbox, {"log": gate}, "proc-a").drain())
    await gate.until(lambda: gate.sent == ["fast"])
    await asyncio.sleep(0.3)
    # a claim after every finished send would have made six by now; a paced one waits
    # nine times as long as the last claim took
    assert len(claims) <= 2
    gate.open.set()
    assert await asyncio.wait_for(drain, DEADLINE_S) == 11
    assert gate.sent.count("fast") == 10


async def test_cancelling_drain_stops_the_sends_in_flight(store: Store) -> None:
    outbox = make_outbox(store)
    gate = GateChannel()
    for run_id in range(1, 4):
        await outbox.enqueue(run_id, "digest", [f"log:slow{run_id}"], CTX)
    drain = asyncio.create_task(DeliveryWorker(outbox, {"log": gate}, "proc-a").drain())
    await gate.until(lambda: gate.in_flight == 3)
    drain.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drain
    assert gate.in_flight == 0  # no send goes on behind the cancelled drain
    # and their rows are given back at once, not held by this live process until a restart
    assert {r["status"] for r in await all_rows(store)} == {"pending"}


async def test_a_new_row_is_claimed_while_the_only_send_in_flight_waits(store: Store) -> None:
    outbox = make_outbox(store, poll_interval_s=0.05)
    await outbox.enqueue(1, "digest", ["log:slow"], CTX)  # e.g. waiting out a long 429
    gate = GateChannel()
    drain = asyncio.create_task(DeliveryWorker(outbox, {"log": gate}, "proc-a").drain())
    try:
        await gate.until(lambda: gate.in_flight == 1)
        await outbox.enqueue(2, "digest", ["log:fast"], CTX | {"run_id": 2})
        await gate.until(lambda: gate.sent == ["fast"])  # not after "slow" is done
        gate.open.set()
        assert await asyncio.wait_for(drain, DEADLINE_S) == 2
    finally:
        drain.cancel()


async def test_a_store_error_while_claiming_strands_no_row(store: Store) -> None:
    outbox = make_outbox(store, poll_interval_s=0.05)
    await outbox.enqueue(1, "digest", ["log:slow"], CTX)
    gate = GateChannel()
    claim, calls, failed = outbox.claim, [], asyncio.Event()

    async def failing(*args: Any, **kw: Any) -> list[dict[str, Any]]:
        calls.append(1)
        if len(calls) > 1:
            failed.set()
            raise sqlite3.OperationalError("database is locked")
        return await claim(*args, **kw)

    outbox.claim = failing  # type: ignore[method-assign]
    drain = asyncio.create_task(DeliveryWorker(outbox, {"log": gate}, "proc-a").drain())
    await asyncio.wait_for(failed.wait(), DEADLINE_S)  # the top-up failed, "slow" in flight
    gate.open.set()
    with pytest.raises(sqlite3.OperationalError):
        await asyncio.wait_for(drain, DEADLINE_S)
    # the send in flight finished and was recorded: nothing is left claimed by a live owner
    assert [(r["target"], r["status"]) for r in await all_rows(store)] == [
        ("log:slow", "delivered")
    ]


async def test_a_row_whose_outcome_cannot_be_stored_is_given_back(
    store: Store, store_location: DbLocation
) -> None:
    outbox = make_outbox(store)
    await outbox.enqueue(1, "digest", ["log:a"], CTX)
    # a real trigger on a connection of its own: recording "delivered" fails
    refusal = ("UPDATE OF status", "outbox", "NEW.status = 'delivered'", "not recorded")
    await asyncio.to_thread(add_refusal, store_location, "refuse", *refusal)
    gate = GateChannel()
    gate.open.set()
    with pytest.raises(REFUSED, match="not recorded"):
        await DeliveryWorker(outbox, {"log": gate}, "proc-a").drain()
    assert gate.sent == ["a"]  # sent, but its record failed
    (row,) = await all_rows(store)
    assert row["status"] == "pending" and row["claimed_by"] is None  # due again, not stranded


# -- the worker loop -----------------------------------------------------------------------


async def test_run_is_woken_by_a_new_row_and_stops_when_told(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    # a poll interval longer than the test waits: only the wakeup can deliver in time
    outbox = make_outbox(store, poll_interval_s=3600.0)
    worker = make_worker(outbox, receiver, http)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        waiting = lambda: len(event_waiters(stop, outbox.wakeup)) == 2  # noqa: E731
        await until(waiting, DEADLINE_S, "the worker waiting")
        assert not task.done()  # it drained (nothing) and waits for a row or to stop
        await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)
        await asyncio.wait_for(receiver.arrived.wait(), DEADLINE_S)
        row = await wait_for_status(store, "delivered")
        assert row["external_id"] == "http:200"

        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)
    finally:
        task.cancel()
    assert len(receiver.received) == 1


class _RowArrivesAfterLastClaim(Outbox):
    """Enqueues a row just after a drain found nothing: the narrowest wakeup race."""

    raced = False

    async def claim(
        self, owner: str, limit: int = 20, run_id: int | None = None
    ) -> list[dict[str, Any]]:
        rows = await super().claim(owner, limit, run_id)
        if not rows and not self.raced:
            self.raced = True
            await self.enqueue(1, "digest", ["webhook:hook"], CTX)
        return rows


async def test_a_row_enqueued_while_run_drains_is_not_left_for_the_poll(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    outbox = _RowArrivesAfterLastClaim(
        store, Templates(TEMPLATES), DeliveryConfig(poll_interval_s=3600.0)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(DeliveryWorker(outbox, make_channels(receiver, http), "a").run(stop))
    try:
        await wait_for_status(store, "delivered")
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)
    finally:
        task.cancel()
    assert outbox.raced  # the row really came in after the last empty claim
    assert len(receiver.received) == 1


async def test_run_resends_rows_left_claimed_by_a_dead_process(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    outbox = make_outbox(store, clock, poll_interval_s=3600.0, claim_timeout_s=60.0)
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX)
    assert len(await outbox.claim("crashed-cli:7:0")) == 1  # then it crashed
    clock.advance(3600)
    stop = asyncio.Event()
    task = asyncio.create_task(make_worker(outbox, receiver, http).run(stop))
    try:
        await wait_for_status(store, "delivered")
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)
    finally:
        task.cancel()
    assert len(receiver.received) == 1


async def test_cancelling_run_leaves_no_tasks_behind(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    outbox, stop = make_outbox(store, poll_interval_s=3600.0), asyncio.Event()
    worker = make_worker(outbox, receiver, http)
    task = asyncio.create_task(worker.run(stop))
    waiting = lambda: len(event_waiters(stop, outbox.wakeup)) == 2  # noqa: E731
    await until(waiting, DEADLINE_S, "the worker waiting")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert event_waiters(stop, outbox.wakeup) == []


async def test_a_row_in_backoff_holds_back_later_rows_to_its_target_only(
    store: Store, receiver: FakeReceiver, http: aiohttp.ClientSession
) -> None:
    # the first message to /hook fails and waits out its backoff; the second one to /hook
    # must not overtake it, while /other is not held up
    receiver.script("/hook", Answer(502))
    clock = Clock()
    outbox = make_outbox(store, clock, backoff_s=[30.0])
    await outbox.enqueue(1, "digest", ["webhook:hook"], CTX | {"run_id": 1})
    await outbox.enqueue(2, "digest", ["webhook:hook", "webhook:other"], CTX | {"run_id": 2})
    worker = make_worker(outbox, receiver, http)

    assert await worker.drain() == 2  # row 1 (fails) and row 3; row 2 waits behind row 1
    assert [r["status"] for r in await all_rows(store)] == ["pending", "pending", "delivered"]
    assert await worker.drain() == 0  # both /hook rows wait out row 1's backoff
    clock.advance(30)
    assert await worker.drain() == 2
    assert [r["status"] for r in await all_rows(store)] == ["delivered"] * 3
    assert [(r.path, r.body["run_id"]) for r in receiver.received] == [
        ("/hook", 1),
        ("/other", 2),
        ("/hook", 1),
        ("/hook", 2),
    ]


@sqlite_only  # SQLite's EXPLAIN QUERY PLAN names the covering index
async def test_the_claim_reads_each_targets_head_from_its_index(store: Store) -> None:
    plan = await store.fetchall("EXPLAIN QUERY PLAN " + _claimable_sql(20), (utcnow_iso(),))
    details = " | ".join(str(row[-1]) for row in plan)
    assert "COVERING INDEX outbox_open" in details, details


async def test_a_message_whose_template_breaks_is_kept_as_failed(
    store: Store, tmp_path: Path
) -> None:
    # an operator's edit of one channel's template that fails on every message
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "channels" / "slack.j2").write_text("{{ items[0] }}\n", encoding="utf-8")
    outbox = Outbox(store, Templates(templates), DeliveryConfig())
    await outbox.enqueue(7, "result", ["slack:ops", "log:x"], CTX)
    rows = {r["target"]: r for r in await all_rows(store)}
    assert rows["log:x"]["status"] == "pending"
    slack = rows["slack:ops"]
    assert slack["status"] == "failed" and slack["body"] == CTX["text"]
    assert slack["last_error"] == (
        "rendering its template failed: template channels/slack.j2 (line 1): UndefinedError:"
        " 'items' is undefined"
    )  # the operator learns which file and line to fix


# -- issue 13: secret headers from the environment; a store that cannot take writes ------


async def test_headers_env_values_come_from_the_environment(
    store: Store,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(
        channels={
            "webhook": {
                "hook": {
                    "url": receiver.url + "/hook",
                    "headers": {"X-Plain": "plain"},
                    "headers_env": {"Authorization": "OPENCLAW_TEST_HOOK_AUTH"},
                }
            },
            "slack": {
                "ops": {
                    "webhook_url_env": SLACK_ENV,
                    "headers_env": {"X-Slack-Extra": "OPENCLAW_TEST_HOOK_AUTH"},
                }
            },
        }
    )
    monkeypatch.setenv(SLACK_ENV, receiver.url + "/slack")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    channels: dict[str, Channel] = {
        "webhook": WebhookChannel(config, settings, http),
        "slack": SlackChannel(config, settings, http),
    }
    clock = Clock()
    outbox = make_outbox(store, clock)
    worker = DeliveryWorker(outbox, channels, "proc-a")
    await outbox.enqueue(1, "run", ["webhook:hook", "slack:ops"], CTX)
    await worker.drain()
    # unset: the rows wait for the variable (not an attempt), nothing is sent without it
    assert receiver.at("/hook") == [] and receiver.at("/slack") == []
    rows = await all_rows(store)
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0), ("pending", 0)]
    assert "OPENCLAW_TEST_HOOK_AUTH is not set" in rows[0]["last_error"]
    monkeypatch.setenv("OPENCLAW_TEST_HOOK_AUTH", "Bearer hook-secret")
    clock.advance(CHANNEL_WAIT_S)
    await worker.drain()
    (hook,) = receiver.at("/hook")
    assert hook.headers["authorization"] == "Bearer hook-secret"
    assert hook.headers["x-plain"] == "plain"
    (slack,) = receiver.at("/slack")
    assert slack.headers["x-slack-extra"] == "Bearer hook-secret"


async def test_the_worker_backs_off_a_read_only_store_with_one_warning_per_step(
    store: Store,
    store_location: DbLocation,
    receiver: FakeReceiver,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await make_outbox(store).enqueue(1, "run", ["webhook:hook"], CTX)
    # the database became read-only under a running serve (SQLite's read-only file code,
    # PostgreSQL's read-only server SQLSTATE 25006)
    await set_read_only(store, store_location, True)
    outbox = make_outbox(store, poll_interval_s=0.01)
    worker = make_worker(outbox, receiver, http)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    caplog.set_level(logging.WARNING, logger="openclaw.delivery")
    # at a 10 ms poll interval, the old loop logged ~30 tracebacks in this time; the
    # first backoff step is 1 s, so there is one warning (bounded: two on a slow host)
    await asyncio.sleep(0.3)
    outbox.notify()  # new rows do not cut the backoff short: they could not be claimed
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, DEADLINE_S)
    records = [r for r in caplog.records if r.name == "openclaw.delivery"]
    assert 1 <= len(records) <= 2, [r.getMessage() for r in records]
    first = records[0]
    assert first.levelno == logging.WARNING and first.exc_info is None
    assert re.search(r"read-?only", first.getMessage()), first.getMessage()
    assert "next try in 1 s" in first.getMessage()
    assert receiver.at("/hook") == []  # nothing sent while its record cannot be kept


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    from core.errors import StoreUnavailable
    from core.ops.backoff import Backoff

    backoff = Backoff("x", logging.getLogger("test.backoff"), first_s=1.0, cap_s=8.0)
    error = StoreUnavailable("read-only")
    assert [backoff.failed(error) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.succeeded()
    assert backoff.failed(error) == 1.0
