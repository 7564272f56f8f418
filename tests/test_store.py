"""The store contract on both engines (the ``store`` fixture of tests/stores.py): transactions
(all or nothing, never left open, never nested), the group commit (concurrent rows share
transactions, none is lost), a store that cannot take writes (StoreUnavailable at run time)
and a bad statement that is not one. Then what only SQLite has: aiosqlite's thread, and
files it cannot write (refused at open)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiosqlite
import psycopg
import pytest

from core.errors import StoreUnavailable
from core.store.base import Store, Transaction
from core.store.open import open_store
from core.store.path import DbLocation, PostgresURL
from core.store.sqlite import SQLiteStore, on_thread
from tests.fakes.wait import until
from tests.readonly import open_read_only, read_only
from tests.stores import REFUSED, NewLocation, run_sql, set_read_only

SQL = "INSERT INTO t (n) VALUES (?)"
# a statement the database rejects as wrong (no such table): never StoreUnavailable
BAD_STATEMENT = (sqlite3.OperationalError, psycopg.ProgrammingError)
# what the engine raised under a StoreUnavailable for a refused write
ENGINE_ERROR = (sqlite3.OperationalError, psycopg.Error)


async def make_table(store: Store, location: DbLocation) -> None:
    """Table ``t`` (an id, a unique ``n``) in the engine's own DDL."""
    ddl = "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL UNIQUE)"
    if isinstance(location, PostgresURL):
        from core.store.postgres import translate_ddl

        ddl = translate_ddl(ddl)
    async with store.transaction() as tx:
        await tx.execute(ddl)


@pytest.fixture
async def tstore(store: Store, store_location: DbLocation) -> Store:
    """The test's store (either engine) with table ``t``."""
    await make_table(store, store_location)
    return store


async def count(store: Store) -> int:
    return int((await store.fetchall("SELECT COUNT(*) FROM t"))[0][0])


async def _has(store: Store, rows: int) -> bool:
    return await count(store) == rows


async def no_transaction_open(store: Store, location: DbLocation) -> None:
    """No write transaction of the store is left open: SQLite's one connection is out of
    its transaction; on PostgreSQL no session is idle in one and none holds an advisory
    lock (the write lock), within a second (a closed connection's backend ends on its
    own time)."""
    if not isinstance(location, PostgresURL):
        assert isinstance(store, SQLiteStore)
        assert not store.db.in_transaction
        return
    sql = (
        "SELECT (SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state LIKE 'idle in transaction%'), (SELECT COUNT(*) FROM pg_locks"
        " WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database"
        " WHERE datname = current_database()))"
    )

    async def none_open() -> bool:
        return (await asyncio.to_thread(run_sql, location, sql))[0] == (0, 0)

    await until(none_open, 1.0, "no transaction left open on the server")


async def test_concurrent_inserts_all_land(tstore: Store) -> None:
    await asyncio.gather(*[tstore.insert(SQL, (i,)) for i in range(300)])
    assert await count(tstore) == 300


async def test_a_bad_row_fails_only_its_caller(tstore: Store) -> None:
    await tstore.insert(SQL, (1,))
    results = await asyncio.gather(
        *[tstore.insert(SQL, (n,)) for n in (2, 1, 3, 4)], return_exceptions=True
    )
    assert results[0] is None and results[2] is None and results[3] is None
    assert isinstance(results[1], REFUSED)
    assert await count(tstore) == 4


async def test_a_cancelled_caller_does_not_lose_its_row(tstore: Store) -> None:
    blocker = asyncio.gather(*[tstore.insert(SQL, (i,)) for i in range(50)])
    victim = asyncio.create_task(tstore.insert(SQL, (999,)))
    await asyncio.sleep(0)
    victim.cancel()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await victim
    # the flusher finishes the row on its own
    await until(lambda: _has(tstore, 51), 1.0, "the cancelled caller's row landing")


async def test_close_waits_for_pending_rows(new_location: NewLocation) -> None:
    location = new_location()
    s = await open_store(location)
    await make_table(s, location)
    tasks = [asyncio.create_task(s.insert(SQL, (i,))) for i in range(20)]
    await asyncio.sleep(0)
    await s.close()
    await asyncio.gather(*tasks)
    s = await open_store(location)
    try:
        assert await count(s) == 20
    finally:
        await s.close()


async def test_a_transaction_commits_all_its_writes_or_none(
    tstore: Store, store_location: DbLocation
) -> None:
    async with tstore.transaction() as tx:
        first = await tx.insert_id("INSERT INTO t (n) VALUES (?) RETURNING id", (1,))
        second = await tx.insert_id("INSERT INTO t (n) VALUES (?) RETURNING id", (2,))
        assert [tuple(r) for r in await tx.fetchall("SELECT n FROM t ORDER BY n")] == [
            (1,),
            (2,),
        ]
    assert second == first + 1
    with pytest.raises(REFUSED):
        async with tstore.transaction() as tx:
            assert await tx.execute("INSERT INTO t (n) VALUES (3)") == 1
            await tx.execute("INSERT INTO t (n) VALUES (1)")  # a real constraint fails it
    assert await count(tstore) == 2  # 3 went with it
    await no_transaction_open(tstore, store_location)


async def test_a_transaction_is_not_reentrant_and_ends_with_its_block(tstore: Store) -> None:
    """Opening another transaction (or a group-committed insert) while holding one would
    wait for the lock this task holds, forever: it raises at once instead."""
    async with tstore.transaction() as tx:
        with pytest.raises(RuntimeError, match="pass its tx on"):
            async with tstore.transaction():
                pass
        with pytest.raises(RuntimeError, match="pass its tx on"):
            await tstore.insert(SQL, (1,))
        await tx.execute("INSERT INTO t (n) VALUES (2)")
    with pytest.raises(RuntimeError, match="has ended"):
        await tx.execute("INSERT INTO t (n) VALUES (3)")
    assert [r[0] for r in await tstore.fetchall("SELECT n FROM t")] == [2]


async def test_a_cancelled_transaction_never_leaves_one_open(
    tstore: Store, store_location: DbLocation
) -> None:
    async def hold(inside: asyncio.Event) -> None:
        async with tstore.transaction() as tx:
            await tx.execute("INSERT INTO t (n) VALUES (1)")
            inside.set()
            await asyncio.Event().wait()  # cancelled here, or earlier: mid-statement

    for mid_statement in (False, True, False, True, False):
        inside = asyncio.Event()
        task = asyncio.create_task(hold(inside))
        if mid_statement:
            await asyncio.sleep(0)  # one step: the INSERT is on its way to the database
        else:
            await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await no_transaction_open(tstore, store_location)
    await tstore.insert(SQL, (2,))  # autocommit writes still commit
    async with tstore.transaction() as tx:  # and new transactions start
        await tx.execute("INSERT INTO t (n) VALUES (3)")
    rows = await tstore.fetchall("SELECT n FROM t ORDER BY n")
    assert [r[0] for r in rows] == [2, 3]


async def test_writes_on_a_read_only_store_raise_store_unavailable(
    store: Store, store_location: DbLocation
) -> None:
    """A store that became unwritable after it opened (SQLite: ``query_only``, the code a
    read-only file answers; PostgreSQL: SQLSTATE 25006, a read-only server's): every kind
    of write raises StoreUnavailable, no transaction is left open, reads go on."""

    async def in_tx(write: Callable[[Transaction], Awaitable[object]]) -> None:
        async with store.transaction() as tx:
            await write(tx)

    await set_read_only(store, store_location, True)
    insert = "INSERT INTO schema_migrations (name) VALUES (?)"
    writes = [
        in_tx(lambda tx: tx.execute("UPDATE schema_migrations SET applied_at = 'x'")),
        in_tx(lambda tx: tx.executemany(insert, [("b",)])),
        in_tx(lambda tx: tx.insert_id(insert + " RETURNING name", ("c",))),
        store.insert(insert, ("a",)),
    ]
    for write in writes:
        with pytest.raises(StoreUnavailable, match=r"read-?only") as info:
            await write
        assert isinstance(info.value.__cause__, ENGINE_ERROR)
        await no_transaction_open(store, store_location)
    assert len(await store.applied_migrations()) > 0  # reads still work
    assert not await store.writable()
    await set_read_only(store, store_location, False)
    assert await store.writable()
    await store.insert(insert, ("a",))  # and writes go through again


async def test_a_bad_statement_is_not_store_unavailable(tstore: Store) -> None:
    with pytest.raises(BAD_STATEMENT) as bad:
        async with tstore.transaction() as tx:
            await tx.execute("INSERT INTO nope VALUES (1)")
    assert not isinstance(bad.value, StoreUnavailable)
    with pytest.raises(REFUSED):
        async with tstore.transaction() as tx:
            await tx.executemany(SQL, [(1,), (1,)])
    with pytest.raises(BAD_STATEMENT):
        await tstore.fetchall("SELECT * FROM nope")


# -- SQLite only: aiosqlite's thread and files (these take tmp_path, not a store) ---------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = await SQLiteStore.open(tmp_path / "s.db")
    await make_table(s, tmp_path / "s.db")
    yield s
    await s.close()


async def test_aiosqlite_still_runs_a_function_on_its_thread(sqlite_store: SQLiteStore) -> None:
    """``on_thread`` is the one use of aiosqlite's private ``_execute`` and ``_conn``: if an
    upgrade renames or changes them, this fails first. Fix ``core.store.sqlite.on_thread``
    (or pin aiosqlite) before anything else."""
    store = sqlite_store

    def where(conn: sqlite3.Connection, n: int) -> tuple[int, sqlite3.Connection, int]:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return threading.get_ident(), conn, n

    try:
        ident, conn, n = await on_thread(store.db, where, 7)
    except (AttributeError, TypeError) as e:
        pytest.fail(f"aiosqlite's private API changed; fix core.store.sqlite.on_thread: {e!r}")
    assert n == 7 and isinstance(conn, sqlite3.Connection)
    assert ident != threading.get_ident()  # not the event loop's thread
    (thread,) = [t for t in threading.enumerate() if t.ident == ident]
    assert "_connection_worker_thread" in thread.name  # aiosqlite's own
    assert await count(store) == 1  # the same connection the store reads from
    # join_worker's private attribute: the worker thread of a connection
    worker = getattr(store.db, "_thread", None)
    assert isinstance(worker, threading.Thread), "aiosqlite's _thread changed: fix join_worker"
    assert worker.ident == ident


# -- issue 13: a SQLite file it cannot write, refused at open (PostgreSQL's: at the end) -----


async def _made(tmp_path: Path) -> Path:
    path = tmp_path / "ro.db"
    s = await SQLiteStore.open(path)
    await s.close()
    return path


async def test_open_refuses_a_database_it_cannot_write(tmp_path: Path) -> None:
    path = await _made(tmp_path)
    with read_only(path) as how:
        with pytest.raises(StoreUnavailable, match=f"cannot write {path}") as info:
            await SQLiteStore.open(path)
        assert how and isinstance(info.value, StoreUnavailable)


async def test_open_probes_with_a_real_write_not_just_permissions(tmp_path: Path) -> None:
    path = await _made(tmp_path)

    async def read_only_opener(p: Path) -> aiosqlite.Connection:
        return await aiosqlite.connect(f"file:{p}?mode=ro", uri=True, isolation_level=None)

    # os.access says the file is writable (it is; this connection is not): the probe
    # writes, so it finds out
    assert os.access(path, os.W_OK)
    with pytest.raises(StoreUnavailable, match="attempt to write a readonly database"):
        await SQLiteStore.open(path, opener=read_only_opener)


async def test_open_never_creates_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="unable to open database file"):
        await SQLiteStore.open(tmp_path / "no" / "such" / "dir" / "x.db")
    assert not (tmp_path / "no").exists()


async def test_writes_on_a_read_only_sqlite_file_raise_store_unavailable(tmp_path: Path) -> None:
    """The real file opened ``mode=ro``: SQLite's own "attempt to write a readonly
    database", what a read-only file or mount answers (not a PRAGMA)."""
    path = await _made(tmp_path)
    store = await open_read_only(path)

    async def in_tx(write: Callable[[Transaction], Awaitable[object]]) -> None:
        async with store.transaction() as tx:
            await write(tx)

    try:
        insert = "INSERT INTO schema_migrations (name) VALUES (?)"
        writes = [
            in_tx(lambda tx: tx.execute("UPDATE schema_migrations SET applied_at = 'x'")),
            in_tx(lambda tx: tx.executemany(insert, [("b",)])),
            in_tx(lambda tx: tx.insert_id(insert + " RETURNING rowid", ("c",))),
            store.insert(insert, ("a",)),
        ]
        for write in writes:
            with pytest.raises(StoreUnavailable, match="readonly database") as info:
                await write
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            assert not store.db.in_transaction
        assert len(await store.applied_migrations()) > 0  # reads still work
        assert not await store.writable()
    finally:
        await store.close()


async def test_a_failed_open_leaves_no_worker_thread_behind(tmp_path: Path) -> None:
    """aiosqlite stops its thread with a call answered on this loop: if the loop closed first
    the thread died with a traceback (in the next test, or after serve's exit-78 line)."""

    def workers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}

    # a set, not a count: an earlier test's thread may end meanwhile (tests share a process)
    before = workers()
    with pytest.raises(StoreUnavailable):
        await SQLiteStore.open(tmp_path / "missing" / "x.db")
    assert workers() <= before


# -- issue 17: the same store on PostgreSQL (a throwaway cluster, tests/pg.py) -----------


async def test_postgres_store_round_trip(pg_url: str) -> None:
    from core.store.postgres import PostgresStore, translate_ddl

    url = pg_url.replace("postgres@", "postgres:hunter2@")
    s = await PostgresStore.open(url)
    try:
        assert "hunter2" not in s.location
        async with s.transaction() as tx:
            await tx.execute(translate_ddl("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)"))
            first = await tx.insert_id("INSERT INTO t (n) VALUES (?) RETURNING id", (1,))
            rows = await tx.fetchall("SELECT id, '?' AS q, '50%' AS p FROM t WHERE n = ?", (1,))
        assert first == 1 and dict(rows[0]) == {"id": 1, "q": "?", "p": "50%"}
        with pytest.raises(ZeroDivisionError):
            async with s.transaction() as tx:
                await tx.execute("INSERT INTO t (n) VALUES (2)")
                raise ZeroDivisionError
        await asyncio.gather(
            *[s.insert("INSERT INTO t (n) VALUES (?)", (i,)) for i in range(3, 50)]
        )
        assert (await s.fetchall("SELECT COUNT(*) FROM t"))[0][0] == 48  # 2 rolled back
        assert await s.writable()
    finally:
        await s.close()


async def test_postgres_open_refuses_a_database_it_cannot_write(pg_migrated_url: str) -> None:
    """A read-only database (a standby answers alike, SQLSTATE 25006) is refused at open,
    by the probe's real write, with the password masked."""
    from core.store.postgres import PostgresStore

    name = urlsplit(pg_migrated_url).path.lstrip("/")
    await asyncio.to_thread(
        run_sql,
        PostgresURL(pg_migrated_url),
        f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
    )
    url = pg_migrated_url.replace("postgres@", "postgres:hunter2@")
    with pytest.raises(StoreUnavailable, match="cannot write postgresql://") as info:
        await PostgresStore.open(url)
    assert "read-only transaction" in str(info.value) and "hunter2" not in str(info.value)
