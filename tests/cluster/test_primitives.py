"""The coordination primitives of several instances on one real PostgreSQL database:
liveness, leader election and fencing, unique fires, SKIP LOCKED claims, per-cap budget
locks, LISTEN/NOTIFY wake-ups, cluster-wide slots, approvals decided elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from core.agents.runs import AlreadyExists, Runs, Trigger
from core.cluster.pg import PgCluster
from core.config.models import ApprovalsConfig, ClusterConfig
from core.engine.approvals import ApprovalBroker, ApprovalRecord, ApprovalRequest, CopyShown
from core.engine.budget import BudgetGuard
from core.store.postgres import PostgresStore
from tests.configs import make_config

FAST = ClusterConfig(heartbeat_s=0.1, leader_timeout_s=0.6, recover_every_s=0.2)

Stores = Callable[[int], Awaitable[list[PostgresStore]]]


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[Stores]:
    """``await stores(n)``: n stores (as n instances would have) on one fresh database."""
    opened: list[PostgresStore] = []

    async def make(n: int) -> list[PostgresStore]:
        new = [await PostgresStore.open(pg_url) for _ in range(n)]
        opened.extend(new)
        return new

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def clusters(stores: Stores) -> AsyncIterator[Callable[..., Awaitable[list[PgCluster]]]]:
    made: list[PgCluster] = []

    async def make(n: int, config: ClusterConfig = FAST) -> list[PgCluster]:
        out = []
        for i, store in enumerate(await stores(n)):
            c = PgCluster(store, f"host{i}:{1000 + i}:1", config)
            await c.start()
            out.append(c)
        made.extend(out)
        return out

    yield make
    for c in made:
        await c.leave()


async def test_an_owner_is_alive_while_its_lock_is_held_on_any_host(
    clusters: Callable[..., Awaitable[list[PgCluster]]],
) -> None:
    a, b = await clusters(2)
    # "host1" is not this machine: today's host check would call it alive forever
    assert await a.alive([b.owner, "elsewhere:1:1"]) == {b.owner}
    await b.leave()
    assert await a.alive([b.owner]) == set()
    assert await a.alive([a.owner]) == {a.owner}


async def test_a_serve_instance_that_lost_its_connection_stays_alive_within_the_timeout(
    clusters: Callable[..., Awaitable[list[PgCluster]]],
) -> None:
    a, b = await clusters(2, ClusterConfig(heartbeat_s=1, leader_timeout_s=30))
    await b.campaign()  # joined: it has a heartbeat row
    assert b._member is not None
    await b._member.close()  # e.g. the server restarted under it
    assert await a.alive([b.owner]) == {b.owner}  # its heartbeat is recent
    await b.campaign()  # the next heartbeat takes the lock again
    held = await a.alive([b.owner])
    assert held == {b.owner}


async def test_one_leader_and_a_new_one_when_it_leaves(
    clusters: Callable[..., Awaitable[list[PgCluster]]],
) -> None:
    a, b, c = await clusters(3)
    assert await a.campaign() is True
    assert await b.campaign() is False
    assert await c.campaign() is False
    assert b.describe()["leader"] == a.owner
    rows = {r["owner"]: r for r in await b.instances()}
    assert [o for o, r in rows.items() if r["leader"]] == [a.owner]
    await a.resign()
    assert not a.is_leader()
    assert await b.campaign() or await c.campaign()
    assert sum(x.is_leader() for x in (a, b, c)) == 1


async def test_a_frozen_leader_is_fenced_and_knows_it_when_it_wakes(
    clusters: Callable[..., Awaitable[list[PgCluster]]],
) -> None:
    a, b = await clusters(2)
    assert await a.campaign()
    # a is "frozen": no heartbeat; b keeps trying
    deadline = asyncio.get_running_loop().time() + 10
    while not await b.campaign():
        assert asyncio.get_running_loop().time() < deadline, "no new leader"
        await asyncio.sleep(FAST.heartbeat_s)
    assert b.is_leader()
    assert a.owner in b.fenced
    # a wakes: its lease ran out, so it does not act as the leader even for a moment,
    # and its next heartbeat finds its session gone
    assert not a.is_leader()
    assert await a.campaign() is False
    assert b.is_leader() and await b.campaign()


async def test_one_fire_is_one_run_whatever_the_number_of_schedulers(stores: Stores) -> None:
    first, second = await stores(2)
    key = "fire:digest@2026-12-02T08:00:00.000000Z"
    async with first.transaction() as tx:
        rid = await Runs(first).create(tx, "digest", Trigger.SCHEDULE, dedupe_key=key)
    with pytest.raises(AlreadyExists):
        async with second.transaction() as tx:
            await Runs(second).create(tx, "digest", Trigger.SCHEDULE, dedupe_key=key)
    rows = await second.fetchall("SELECT id FROM runs")
    assert [r[0] for r in rows] == [rid]


async def test_queued_runs_are_claimed_once_across_instances(stores: Stores) -> None:
    three = await stores(3)
    async with three[0].transaction() as tx:
        for _ in range(60):
            await Runs(three[0]).create(tx, "a", Trigger.CLI)

    async def take(store: PostgresStore, owner: str) -> list[int]:
        got: list[int] = []
        while batch := await Runs(store).claim_queued(owner, limit=3):
            got += batch
        return got

    results = await asyncio.gather(*(take(s, f"o{i}") for i, s in enumerate(three)))
    taken = [rid for r in results for rid in r]
    assert sorted(taken) == list(range(1, 61))  # every run once, none twice
    owners = await three[0].fetchall("SELECT owner, COUNT(*) FROM runs GROUP BY owner")
    assert sum(int(r[1]) for r in owners) == 60


async def test_forty_concurrent_reservations_across_instances_stay_within_the_cap(
    stores: Stores,
) -> None:
    config = make_config(budgets={"total": {"day": 10.0}})
    guards = [BudgetGuard(s, config) for s in await stores(3)]
    results = await asyncio.gather(
        *(guards[i % 3].reserve(2, "deep/deepseek-chat", None, 1.0) for i in range(40))
    )
    granted = [rid for rid, why in results if rid is not None]
    assert len(granted) == 10
    assert all(why and "over budget" in why for rid, why in results if rid is None)
    rows = await guards[0].store.fetchall("SELECT SUM(amount_usd) FROM reservations")
    assert float(rows[0][0]) == pytest.approx(10.0)


async def test_a_notification_reaches_other_instances_only_when_committed(
    stores: Stores,
) -> None:
    writer, reader = await stores(2)
    heard: asyncio.Queue[str] = asyncio.Queue()
    reader.listen("openclaw_test", heard.put_nowait)
    await asyncio.sleep(0.3)  # the listening connection is up
    with pytest.raises(RuntimeError):
        async with writer.transaction() as tx:
            await tx.execute("UPDATE instances SET pid = 0 WHERE 1 = 0")
            tx.notify("openclaw_test", "rolled back")
            raise RuntimeError("roll back")
    async with writer.transaction(serialized=False) as tx:
        await tx.execute("UPDATE instances SET pid = 0 WHERE 1 = 0")
        tx.notify("openclaw_test", "committed")
    assert await asyncio.wait_for(heard.get(), 5) == "committed"
    await asyncio.sleep(0.2)
    assert heard.empty()


async def test_concurrency_slots_hold_for_the_whole_cluster(
    clusters: Callable[..., Awaitable[list[PgCluster]]],
) -> None:
    three = await clusters(3)
    running = peak = 0

    async def work(c: PgCluster) -> None:
        nonlocal running, peak
        async with c.slot("agents", 2):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

    await asyncio.wait_for(asyncio.gather(*(work(three[i % 3]) for i in range(12))), 30)
    assert peak == 2


async def test_a_slot_held_by_an_instance_that_dies_is_free_again(
    clusters: Callable[..., Awaitable[list[PgCluster]]],
) -> None:
    a, b = await clusters(2)
    entered = asyncio.Event()

    async def hold() -> None:
        async with a.slot("agents", 1):
            entered.set()
            await asyncio.sleep(60)

    holder = asyncio.create_task(hold())
    await entered.wait()
    await a.leave()  # its session ends, as when the process is killed
    holder.cancel()
    async with asyncio.timeout(10):
        async with b.slot("agents", 1):
            pass
    with contextlib.suppress(asyncio.CancelledError):
        await holder
    # giving the slot back after leave() opened no session again (one left open for the
    # garbage collector to find)
    assert a._member is None


async def test_an_approval_decided_on_another_instance_wakes_the_waiting_run(
    stores: Stores,
) -> None:
    here, there = await stores(2)
    waiting = ApprovalBroker(here, ApprovalsConfig(timeout_s=60))
    deciding = ApprovalBroker(there, ApprovalsConfig(timeout_s=60))
    waiting.poll_s = 30.0  # only the notification can wake it within the test
    shown: asyncio.Queue[int] = asyncio.Queue()

    async def notify(record: ApprovalRecord, copy_shown: CopyShown) -> list[str]:
        await copy_shown(1, 1)
        shown.put_nowait(record.id)
        return []

    waiting.notifiers.append(notify)
    await asyncio.sleep(0.3)  # listening
    request = ApprovalRequest("r1", "strategy", 3, "opus/claude-opus", "why", 0.5)
    decision = asyncio.create_task(waiting.decide(request))
    approval_id = await asyncio.wait_for(shown.get(), 5)
    taken, _ = await deciding.resolve(approval_id, True, "admin 1")
    assert taken
    result = await asyncio.wait_for(decision, 5)
    assert result.approved and result.by == "admin 1"
    await waiting.drain()
    await deciding.drain()


async def test_only_the_leader_claims_telegram_rows(stores: Stores, tmp_path: Any) -> None:
    from core.agents.templating import BUNDLED_TEMPLATES, Templates
    from core.config.delivery import DeliveryConfig
    from core.delivery.outbox import Outbox, OutboxRow

    (store,) = await stores(1)
    outbox = Outbox(store, Templates(tmp_path, BUNDLED_TEMPLATES), DeliveryConfig())
    async with store.transaction() as tx:
        await outbox.add(
            tx,
            [
                OutboxRow(None, "alert", "telegram:1", "t", "pending"),
                OutboxRow(None, "alert", "webhook:ops", "w", "pending"),
            ],
        )
    outbox.is_leader = lambda: False
    assert [r["target"] for r in await outbox.claim("follower")] == ["webhook:ops"]
    outbox.is_leader = lambda: True
    assert [r["target"] for r in await outbox.claim("leader")] == ["telegram:1"]
