"""The store's group commit: concurrent rows share transactions, and none is lost."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.store import Store

SQL = "INSERT INTO t (n) VALUES (?)"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "s.db")
    await s.execute("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
    yield s
    await s.close()


async def count(store: Store) -> int:
    return int((await store.fetchall("SELECT COUNT(*) FROM t"))[0][0])


async def test_concurrent_inserts_all_land(store: Store) -> None:
    await asyncio.gather(*[store.insert(SQL, (i,)) for i in range(300)])
    assert await count(store) == 300


async def test_a_bad_row_fails_only_its_caller(store: Store) -> None:
    await store.insert(SQL, (1,))
    results = await asyncio.gather(
        *[store.insert(SQL, (n,)) for n in (2, 1, 3, 4)], return_exceptions=True
    )
    assert [type(r) for r in results] == [
        type(None),
        sqlite3.IntegrityError,
        type(None),
        type(None),
    ]
    assert await count(store) == 4


async def test_a_cancelled_caller_does_not_lose_its_row(store: Store) -> None:
    blocker = asyncio.gather(*[store.insert(SQL, (i,)) for i in range(50)])
    victim = asyncio.create_task(store.insert(SQL, (999,)))
    await asyncio.sleep(0)
    victim.cancel()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await victim
    for _ in range(100):  # the flusher finishes the row on its own (bounded wait)
        if await count(store) == 51:
            break
        await asyncio.sleep(0.01)
    assert await count(store) == 51


async def test_close_waits_for_pending_rows(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "c.db")
    await s.execute("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
    tasks = [asyncio.create_task(s.insert(SQL, (i,))) for i in range(20)]
    await asyncio.sleep(0)
    await s.close()
    await asyncio.gather(*tasks)
    s = await Store.open(tmp_path / "c.db")
    try:
        assert await count(s) == 20
    finally:
        await s.close()


async def test_a_cancelled_transaction_never_leaves_one_open(store: Store) -> None:
    async def hold() -> None:
        async with store.immediate() as db:
            await db.execute("INSERT INTO t (n) VALUES (1)")
            await asyncio.sleep(10)  # cancelled here

    for _ in range(5):
        task = asyncio.create_task(hold())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not store.db.in_transaction
    await store.insert(SQL, (2,))  # autocommit writes still commit
    async with store.immediate() as db:  # and new transactions start
        await db.execute("INSERT INTO t (n) VALUES (3)")
    rows = await store.fetchall("SELECT n FROM t ORDER BY n")
    assert [r[0] for r in rows] == [2, 3]
