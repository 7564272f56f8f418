"""The send path's turns: one message at a time per chat, replies before digests."""

from __future__ import annotations

import asyncio

from bot.sending import ChatTurns, Priority


async def test_waiting_replies_go_before_waiting_digests_in_arrival_order() -> None:
    turns = ChatTurns()
    order: list[str] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with turns.turn(7, Priority.BULK):
            holding.set()
            await release.wait()
            order.append("digest 1")

    async def take(name: str, priority: Priority) -> None:
        async with turns.turn(7, priority):
            assert turns.held(7)
            order.append(name)

    first = asyncio.create_task(holder())
    await holding.wait()
    waiters = []
    for name, priority in [
        ("digest 2", Priority.BULK),
        ("reply 1", Priority.REPLY),
        ("digest 3", Priority.BULK),
        ("reply 2", Priority.REPLY),
    ]:
        waiters.append(asyncio.create_task(take(name, priority)))
        await asyncio.sleep(0)  # queued in this order
    cancelled = asyncio.create_task(take("never", Priority.REPLY))
    await asyncio.sleep(0)
    cancelled.cancel()  # a waiter that gives up leaves the queue
    release.set()
    await asyncio.gather(first, *waiters)
    assert order == ["digest 1", "reply 1", "reply 2", "digest 2", "digest 3"]
    assert not turns.held(7) and turns._chats == {}  # no state left for an idle chat


async def test_a_turn_is_reentrant_and_per_chat() -> None:
    turns = ChatTurns()
    async with turns.turn(1, Priority.REPLY):
        async with turns.turn(1, Priority.REPLY):  # send_parts inside the middleware's turn
            assert turns.held(1)
        async with turns.turn(2, Priority.BULK):  # another chat is not held back
            assert turns.held(2)
        assert turns.held(1)
