"""Approvals on a shared database (issue 17): only the leader shows the cards and closes
their copies; a run waiting on a follower still gets its decision at once.

Two brokers on one real store (both engines) stand for two instances: each has its own
notifier and closer (its bot), the follower's ``is_leader`` is False. The notifications
between them are the store's own (``LISTEN/NOTIFY`` on PostgreSQL)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

import pytest

from core.cluster.base import APPROVALS
from core.config.models import ApprovalsConfig
from core.engine.approvals import ApprovalBroker, ApprovalRecord, ApprovalRequest, Copy, CopyShown
from core.store.base import Store
from tests.fakes.wait import until

REQUEST = ApprovalRequest("req-1", "strategy", 3, "opus/claude-opus", "starts at tier 3", 0.01)
_message_ids = itertools.count(100)


class Cards:
    """One instance's bot: what it showed and closed."""

    def __init__(self, reach: bool = True) -> None:
        self.reach = reach
        self.shown: list[int] = []
        self.closed: list[tuple[int, str, list[Copy]]] = []

    async def notify(self, record: ApprovalRecord, shown: CopyShown) -> list[str]:
        self.shown.append(record.id)
        if not self.reach:
            return ["admin 1: Forbidden: bot was blocked by the user"]
        await shown(1, next(_message_ids))
        return []

    async def close(self, record: ApprovalRecord, copies: list[Copy] | None = None) -> None:
        closing = record.messages if copies is None else copies
        self.closed.append((record.id, record.status, closing))


class Instance:
    def __init__(self, store: Store, owner: str, leading: bool, reach: bool = True) -> None:
        config = ApprovalsConfig.model_validate({"default": "deny", "timeout_s": 600})
        self.broker = ApprovalBroker(store, config)
        self.broker.owner = owner
        self.leading = leading
        self.broker.is_leader = lambda: self.leading
        self.broker.poll_s = 30.0  # only a notification can wake a run within a test
        self.cards = Cards(reach)
        self.broker.notifiers.append(self.cards.notify)
        self.broker.closers.append(self.cards.close)

        async def alive(owners: Iterable[str]) -> set[str]:
            return set(owners) & {"leader", "follower", "other"}

        self.broker.alive = alive


async def listening(store: Store) -> None:
    """Until the store's notifications arrive (PostgreSQL's LISTEN connection is up)."""
    heard = asyncio.Event()
    store.listen(APPROVALS, lambda payload: heard.set() if payload == "probe" else None)

    async def probe() -> bool:
        async with store.transaction() as tx:
            tx.notify(APPROVALS, "probe")  # not an id: the brokers ignore it
        await asyncio.sleep(0.05)
        return heard.is_set()

    await until(probe, what="the store's notifications heard")


async def pending_row(b: ApprovalBroker) -> None:
    await until(b.pending, what="the approval stored as pending")


async def drain(*instances: Instance) -> None:
    for one in instances:
        await one.broker.drain()


@pytest.mark.parametrize("decided_on", ["follower", "leader"])
async def test_a_followers_approval_is_shown_and_closed_by_the_leader(
    store: Store, decided_on: str
) -> None:
    leader = Instance(store, "leader", leading=True)
    follower = Instance(store, "follower", leading=False)
    await listening(store)
    deciding = asyncio.create_task(follower.broker.decide(REQUEST))
    # shown on the notification alone: nobody sweeps in this test
    await until(lambda: leader.cards.shown == [1], what="the leader showed #1")
    record = await until(lambda: _with_copy(leader.broker), what="the leader's copy recorded")
    assert follower.cards.shown == []
    assert (await store.fetchall("SELECT shown_by FROM approvals"))[0]["shown_by"] == "leader"
    by = {"follower": follower, "leader": leader}[decided_on]
    assert await by.broker.resolve(1, True, "@op") == (True, "approved — thanks")
    decision = await asyncio.wait_for(deciding, 10)  # poll_s is 30: the notification woke it
    assert decision.approved and decision.by == "@op"
    await until(lambda: leader.cards.closed, what="the leader closed the copies")
    await drain(leader, follower)
    assert leader.cards.closed == [(1, "approved", record.messages)]
    assert follower.cards.closed == []
    assert (await store.fetchall("SELECT closed FROM approvals"))[0]["closed"] == 1


async def _with_copy(b: ApprovalBroker) -> ApprovalRecord | None:
    record = await b.get(1)
    return record if record is not None and record.messages else None


async def test_what_no_leader_heard_of_is_shown_and_closed_once_by_the_sweep(
    store: Store,
) -> None:
    leader = Instance(store, "leader", leading=False)  # nobody leads yet
    other = Instance(store, "other", leading=False)
    follower = Instance(store, "follower", leading=False)
    deciding = asyncio.create_task(follower.broker.decide(REQUEST))
    await pending_row(follower.broker)
    await leader.broker.sweep()  # not the leader: does nothing
    await asyncio.sleep(0.3)
    assert leader.cards.shown == other.cards.shown == follower.cards.shown == []
    leader.leading = True  # the leadership changed hands: the new leader's heartbeat
    await leader.broker.sweep()
    await until(lambda: _with_copy(leader.broker), what="the sweep showed #1")
    await leader.broker.sweep()
    other.leading = True  # a leader change: the next one finds it shown already
    await other.broker.sweep()
    await drain(leader, other)
    assert (leader.cards.shown, other.cards.shown) == ([1], [])
    # decided while no leader listened (its notification heard by nobody who closes)
    leader.leading = other.leading = False
    assert (await follower.broker.resolve(1, False, "@op"))[0]
    assert not (await asyncio.wait_for(deciding, 10)).approved
    await drain(leader, other, follower)
    assert leader.cards.closed == other.cards.closed == follower.cards.closed == []
    other.leading = True
    await other.broker.sweep()
    await until(lambda: other.cards.closed, what="the sweep closed #1's copies")
    await other.broker.sweep()
    await drain(other)
    assert [(i, status) for i, status, _ in other.cards.closed] == [(1, "denied")]
    assert leader.cards.closed == follower.cards.closed == []


async def test_an_approval_a_stopped_leader_claimed_unshown_is_taken_over(
    store: Store,
) -> None:
    leader = Instance(store, "leader", leading=False)
    follower = Instance(store, "follower", leading=False)
    deciding = asyncio.create_task(follower.broker.decide(REQUEST))
    await pending_row(follower.broker)
    async with store.transaction() as tx:  # claimed, then the process was killed
        await tx.execute("UPDATE approvals SET shown_by = 'killed' WHERE id = 1")
    leader.leading = True
    await leader.broker.sweep()
    await until(lambda: _with_copy(leader.broker), what="the new leader showed #1")
    assert (await store.fetchall("SELECT shown_by FROM approvals"))[0]["shown_by"] == "leader"
    await leader.broker.resolve(1, True, "@op")
    assert (await asyncio.wait_for(deciding, 10)).approved
    await drain(leader, follower)
    assert leader.cards.shown == [1] and follower.cards.shown == []


async def test_a_row_shown_before_the_upgrade_is_not_shown_again_by_the_sweep(
    store: Store,
) -> None:
    """A pending approval from before migration 020 has copies but no claimer: the new
    leader's sweep must not send every admin a second card for it."""
    leader = Instance(store, "leader", leading=False)
    follower = Instance(store, "follower", leading=False)
    deciding = asyncio.create_task(follower.broker.decide(REQUEST))
    await pending_row(follower.broker)
    async with store.transaction() as tx:  # as an instance of the old version left it
        await tx.execute("UPDATE approvals SET shown_by = NULL, messages = '[[1, 7]]'")
    leader.leading = True
    await leader.broker.sweep()
    await drain(leader, follower)
    assert leader.cards.shown == []
    await leader.broker.resolve(1, True, "@op")
    assert (await asyncio.wait_for(deciding, 10)).approved
    await drain(leader, follower)
    assert [(i, status, c) for i, status, c in leader.cards.closed] == [(1, "approved", [(1, 7)])]


async def test_reaching_nobody_from_the_leader_decides_the_followers_run_at_once(
    store: Store,
) -> None:
    leader = Instance(store, "leader", leading=True, reach=False)
    follower = Instance(store, "follower", leading=False)
    await listening(store)
    decision = await asyncio.wait_for(follower.broker.decide(REQUEST), 10)  # timeout_s 600
    assert not decision.approved and decision.by == "policy"
    assert decision.note == (
        "no admin could be reached: admin 1: Forbidden: bot was blocked by the user;"
        " [approvals] default = 'deny'"
    )
    await drain(leader, follower)
    assert leader.cards.shown == [1] and follower.cards.shown == []
