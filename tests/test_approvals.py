"""The approval broker on a real SQLite store: who is asked, what happens when nobody can
be, and that every copy shown is closed by the decision (issue 13, part A2).

Notifiers and closers here are in-process hooks (what the bot plugs in), scripted so a
test decides when each copy "lands"; the bot's side is tested in tests/bot/.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from core.config.models import ApprovalsConfig
from core.engine.approvals import ApprovalBroker, ApprovalRecord, ApprovalRequest, Copy, CopyShown
from core.store.base import Store
from core.store.times import utcnow_iso
from tests.fakes.wait import until

REQUEST = ApprovalRequest("req-1", "strategy", 3, "opus/claude-opus", "starts at tier 3", 0.01)


class Closed:
    """A closer that records what it was asked to close."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Copy]]] = []
        self.changed = asyncio.Event()

    async def __call__(self, record: ApprovalRecord, copies: list[Copy] | None = None) -> None:
        self.calls.append((record.status, list(record.messages if copies is None else copies)))
        self.changed.set()

    def copies(self) -> set[Copy]:
        return {c for _, cs in self.calls for c in cs}


def broker(store: Store, default: str = "deny", timeout_s: float = 600) -> ApprovalBroker:
    config = ApprovalsConfig.model_validate({"default": default, "timeout_s": timeout_s})
    return ApprovalBroker(store, config)


async def first_copy(b: ApprovalBroker) -> None:
    """Until approval #1 has a recorded copy."""

    async def recorded() -> bool:
        record = await b.get(1)
        return record is not None and bool(record.messages)

    await until(recorded, what="a copy of approval #1 recorded")


async def test_nobody_reached_applies_the_default_now_with_the_reason(store: Store) -> None:
    b = broker(store)
    alerts: list[str] = []

    async def nobody(record: ApprovalRecord, shown: CopyShown) -> list[str]:
        return ["admin 1: Forbidden: bot was blocked by the user"]

    async def alert(text: str) -> None:
        alerts.append(text)

    b.notifiers.append(nobody)
    b.alerts.append(alert)
    decision = await asyncio.wait_for(b.decide(REQUEST), 10)  # timeout_s is 600
    assert not decision.approved and decision.by == "policy"
    assert "no admin could be reached: admin 1: Forbidden" in decision.note
    assert "[approvals] default = 'deny'" in decision.note
    record = await b.get(1)
    assert record is not None and record.status == "denied"
    assert record.decided_by == (
        "policy (no admin could be reached: admin 1: Forbidden: bot was blocked by the user)"
    )
    assert len(alerts) == 1 and "Approval #1 for tier 3" in alerts[0]
    assert "'deny' applied: denied" in alerts[0]


async def test_a_notifier_that_raises_counts_as_reaching_nobody(store: Store) -> None:
    b = broker(store, default="approve")

    async def broken(record: ApprovalRecord, shown: CopyShown) -> list[str]:
        raise RuntimeError("boom")

    b.notifiers.append(broken)
    decision = await asyncio.wait_for(b.decide(REQUEST), 10)
    assert decision.approved and "a notifier failed (RuntimeError)" in decision.note


async def test_one_copy_reached_means_the_run_waits_for_a_person(store: Store) -> None:
    b = broker(store, timeout_s=0.3)

    async def one_of_two(record: ApprovalRecord, shown: CopyShown) -> list[str]:
        await shown(1, 10)
        return ["admin 2: Forbidden"]

    b.notifiers.append(one_of_two)
    decision = await b.decide(REQUEST)
    assert decision.by == "timeout"  # nobody decided: expired, not the "unreachable" default


async def test_copies_shown_after_the_decision_are_closed_too(store: Store) -> None:
    b = broker(store)
    closed = Closed()
    b.closers.append(closed)
    release = asyncio.Event()

    async def slow_second(record: ApprovalRecord, shown: CopyShown) -> list[str]:
        await shown(1, 10)
        await release.wait()  # the second admin's copy is still on its way
        await shown(2, 20)
        return []

    b.notifiers.append(slow_second)
    deciding = asyncio.create_task(b.decide(REQUEST))
    await first_copy(b)
    taken, text = await b.resolve(1, True, "@op")
    assert taken and text == "approved — thanks"
    decision = await asyncio.wait_for(deciding, 10)  # the run goes on before the late copy
    assert decision.approved and decision.by == "@op"
    await until(lambda: closed.copies() == {(1, 10)}, what="the first copy closed")
    release.set()
    await until(lambda: closed.copies() == {(1, 10), (2, 20)}, what="the late copy closed")
    # an /approvals copy posted later is closed as soon as it is recorded
    await b.add_copy(1, 1, 30)
    assert closed.copies() == {(1, 10), (2, 20), (1, 30)}
    assert all(status == "approved" for status, _ in closed.calls)
    assert (await b.get(1)).messages == [(1, 10), (2, 20), (1, 30)]  # type: ignore[union-attr]
    await b.drain()


async def one_copy(record: ApprovalRecord, shown: CopyShown) -> list[str]:
    """A notifier that reaches one admin: copy 1 in chat 1, message 10."""
    await shown(1, 10)
    return []


async def test_a_late_decision_says_what_happened(store: Store) -> None:
    b = broker(store)

    b.notifiers.append(one_copy)
    deciding = asyncio.create_task(b.decide(REQUEST))
    await first_copy(b)
    assert await b.resolve(1, False, "@a") == (True, "denied — thanks")
    assert await b.resolve(1, True, "@b") == (False, "already denied by @a")
    assert await b.resolve(99, True, "@b") == (False, "no such approval")
    assert not (await deciding).approved
    await b.drain()


async def test_close_copy_only_edits_copies_of_that_approval(store: Store) -> None:
    b = broker(store)
    closed = Closed()
    b.closers.append(closed)

    b.notifiers.append(one_copy)
    deciding = asyncio.create_task(b.decide(REQUEST))
    await first_copy(b)
    assert not await b.close_copy(1, 1, 10)  # still pending: nothing to close
    await b.resolve(1, True, "@op")
    await deciding
    await b.drain()
    closed.calls.clear()
    assert not await b.close_copy(1, 1, 99)  # a crafted press on another bot message
    assert await b.close_copy(1, 1, 10)
    assert closed.calls == [("approved", [(1, 10)])]


async def test_an_approvals_times_are_the_brokers_clock(store: Store) -> None:
    b = broker(store, timeout_s=600)
    t0 = datetime(2031, 7, 1, 5, 0, tzinfo=UTC)
    now = [t0]
    b.clock = lambda: now[0]

    b.notifiers.append(one_copy)
    deciding = asyncio.create_task(b.decide(REQUEST))
    await first_copy(b)
    now[0] += timedelta(seconds=42)
    await b.resolve(1, True, "@op")
    assert (await deciding).approved
    (row,) = await store.fetchall("SELECT created_at, expires_at, decided_at FROM approvals")
    assert tuple(row) == (
        utcnow_iso(t0),
        utcnow_iso(t0 + timedelta(seconds=600)),  # created + [approvals] timeout_s
        utcnow_iso(t0 + timedelta(seconds=42)),
    )
    await b.drain()
