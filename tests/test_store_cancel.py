"""A cancellation is never lost on the way to a pooled PostgreSQL connection.

psycopg_pool waits for a free connection with ``asyncio.wait_for``; on Python 3.11 that
returns the connection instead of raising when the cancel meets the hand-over, and the
caller runs on as if never cancelled. It was seen as a run's approval wait that polled
forever after its run was cancelled (tests/test_engine.py, once in ~1,500 runs under load);
with one connection and a waiter cancelled around the moment it is handed over, it is
nearly every other try."""

from __future__ import annotations

import asyncio

import pytest

from core.store.postgres import PostgresStore

TRIES = 120


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 4, 6])
async def test_a_caller_cancelled_as_it_gets_a_connection_is_cancelled(
    pg_url: str, turns: int
) -> None:
    store = await PostgresStore.open(pg_url, min_size=1, max_size=1)
    lost = 0
    try:
        for _ in range(TRIES // 6):
            holding, release = asyncio.Event(), asyncio.Event()

            async def hold(holding: asyncio.Event, release: asyncio.Event) -> None:
                async with store._connection():
                    holding.set()
                    await release.wait()

            holder = asyncio.create_task(hold(holding, release))
            await holding.wait()

            stop = asyncio.Event()

            async def poll(stop: asyncio.Event) -> None:
                while not stop.is_set():  # the shape of a wait that re-reads its row
                    await store.fetchall("SELECT 1")
                    await asyncio.sleep(0)

            waiter = asyncio.create_task(poll(stop))
            await asyncio.sleep(0.002)  # the waiter queues for the one connection
            release.set()
            for _ in range(turns):  # the hand-over takes a few turns of the loop
                await asyncio.sleep(0)
            waiter.cancel()
            await holder
            done, _ = await asyncio.wait({waiter}, timeout=5)
            if not done:  # it polls on, never told: stop it the other way
                lost += 1
                stop.set()
                await waiter
            else:
                assert waiter.cancelled()
        assert lost == 0, f"{lost} cancellations lost"
        assert len(await store.fetchall("SELECT 1")) == 1  # no connection was leaked
    finally:
        await store.close()
