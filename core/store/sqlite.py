"""The embedded SQLite store: one writer connection, WAL, numbered migrations.

Queries are plain SQL that also runs on PostgreSQL: ISO-8601 UTC text for
times, no SQLite-only functions where it matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from core.errors import StoreUnavailable
from core.store.migrations import MIGRATIONS
from core.store.times import utcnow_iso

Opener = Callable[[Path], Awaitable[aiosqlite.Connection]]

# SQLite's primary result codes that mean "this database cannot take writes now" (a read-only
# file or mount, a full disk, an I/O error, a file that cannot be opened), as opposed to a
# bad statement or a constraint: callers answer 503 and back off instead of failing a row
_UNAVAILABLE_CODES = {
    3: "SQLITE_PERM",
    8: "SQLITE_READONLY",
    10: "SQLITE_IOERR",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
}


def unavailable(error: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable that ``error`` (an sqlite3 error) amounts to, or None."""
    code = getattr(error, "sqlite_errorcode", None)
    if not isinstance(error, sqlite3.Error) or code is None:
        return None
    if code & 0xFF not in _UNAVAILABLE_CODES:
        return None
    name = getattr(error, "sqlite_errorname", None) or _UNAVAILABLE_CODES[code & 0xFF]
    return StoreUnavailable(f"the database cannot take writes: {error} ({name})")


def _mapped(error: BaseException) -> BaseException:
    mapped = unavailable(error)
    if mapped is None:
        return error
    mapped.__cause__ = error  # the sqlite3 error stays reachable for logs and tests
    return mapped


async def _connect(path: Path) -> aiosqlite.Connection:
    # autocommit: each write is its own transaction, one trip to the SQLite thread
    conn = aiosqlite.connect(path, isolation_level=None)
    try:
        return await conn
    except BaseException:
        # a failed connect stops aiosqlite's worker thread with a call that answers on
        # this loop: wait for it, or it answers a closed loop and dies with a traceback
        # (after an exit-78 message, or in the next test)
        worker = getattr(conn, "_thread", None)
        if worker is not None and worker.is_alive():
            await asyncio.to_thread(worker.join, 5.0)
        raise


class Store:
    """One aiosqlite connection (the only writer) with migrations applied."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self._write_lock = asyncio.Lock()
        self._pending: list[tuple[str, Sequence[Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, opener: Opener | None = None) -> Store:
        """Open (creating the file if needed, never its directory) the database, apply pending
        migrations and prove it takes writes.

        Raises StoreUnavailable when it cannot be opened or written (a read-only file or
        mount, a full disk): starting on it would accept work whose record cannot be kept.
        ``opener`` connects (autocommit); the default is a plain read-write file.
        """
        try:
            db = await (opener or _connect)(path)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open {path}: {e}") from None
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA busy_timeout=5000")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            store = cls(db, path)
            await store._migrate()
            await store._probe_write()
        except sqlite3.Error as e:
            await db.close()
            raise StoreUnavailable(
                f"cannot write {path}: {e} ({getattr(e, 'sqlite_errorname', '?')})"
            ) from None
        except BaseException:
            await db.close()
            raise
        return store

    async def _probe_write(self) -> None:
        # a real write, rolled back: os.access says yes as root on a 0444 file, and a
        # read-only mount or an immutable file is only found by writing
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES ('~write-probe', '')"
            )
        finally:
            await self.db.execute("ROLLBACK")

    async def _migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
        )
        async with self.db.execute("SELECT name FROM schema_migrations") as cur:
            done = {row[0] for row in await cur.fetchall()}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            await self.db.execute("BEGIN")
            try:
                await fn(self.db)
                await self.db.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                    (name, utcnow_iso()),
                )
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    async def applied_migrations(self) -> list[str]:
        """Names of the migrations applied, in order."""
        rows = await self.fetchall("SELECT name FROM schema_migrations ORDER BY name")
        return [r[0] for r in rows]

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one write (committed on return)."""
        await self.write(sql, params)

    async def write(self, sql: str, params: Sequence[Any] = ()) -> tuple[int, int | None]:
        """Run one write (committed on return); returns (rows changed, last row id).

        Every write raises StoreUnavailable, not sqlite3's error, when the database cannot
        take writes (read-only, full, I/O error)."""
        try:
            async with self._write_lock, self.db.execute(sql, params) as cur:
                return cur.rowcount, cur.lastrowid
        except sqlite3.Error as e:
            raise _mapped(e) from e

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one write per row, committed together."""
        try:
            async with self._write_lock:
                await self._transaction([(sql, list(rows))])
        except sqlite3.Error as e:
            raise _mapped(e) from e

    async def write_all(self, writes: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Several writes, committed together or not at all."""
        async with self.immediate() as db:
            for sql, params in writes:
                await db.execute(sql, params)

    @contextlib.asynccontextmanager
    async def immediate(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction that takes the database lock at once (BEGIN IMMEDIATE):
        what it reads cannot change, in this process or another, before it commits."""
        async with self._write_lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                await self.db.execute("COMMIT")
            except sqlite3.Error as e:
                await self._rollback()
                raise _mapped(e) from e
            except BaseException:
                await self._rollback()
                raise

    async def insert(self, sql: str, row: Sequence[Any]) -> None:
        """Write one row, committed when this returns (group commit).

        Rows that arrive while a write is in flight share the next transaction, so
        under load one commit (and one trip to the SQLite thread per statement
        kind) serves many callers; alone, a row costs one autocommit. A caller that
        is cancelled while waiting does not take its row with it.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((sql, row, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(fut)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                async with self._write_lock:
                    await self._write_batch(batch)
        finally:
            self._flusher = None

    async def _write_batch(
        self, batch: list[tuple[str, Sequence[Any], asyncio.Future[None]]]
    ) -> None:
        try:
            if len(batch) == 1:
                await self.db.execute(batch[0][0], batch[0][1])
            else:
                groups: dict[str, list[Sequence[Any]]] = {}
                for sql, row, _ in batch:
                    groups.setdefault(sql, []).append(row)
                await self._transaction(list(groups.items()))
        except Exception as error:
            if len(batch) == 1 or unavailable(error):  # no row can land: all fail alike
                for _, _, fut in batch:
                    _settle(fut, _mapped(error))
                return
            for sql, row, fut in batch:  # find the bad row; the others still land
                try:
                    await self.db.execute(sql, row)
                except Exception as e:
                    _settle(fut, _mapped(e))
                else:
                    _settle(fut, None)
            return
        for _, _, fut in batch:
            _settle(fut, None)

    async def _transaction(self, groups: list[tuple[str, list[Sequence[Any]]]]) -> None:
        # one trip to the SQLite thread for BEGIN, the rows and COMMIT (or ROLLBACK), not
        # one per statement: each trip costs a future, a thread wake-up and a GIL hand-off
        # (measured: ~5 µs of CPU per gateway request at c=64). Run there as one function,
        # the transaction also cannot be left half open by a cancelled caller. aiosqlite
        # has no public way to run a function on its thread; _execute is what it uses.
        await self.db._execute(_write_groups, self.db._conn, groups)  # type: ignore[no-untyped-call]

    async def _rollback(self) -> None:
        # a cancelled await does not stop aiosqlite from running the queued BEGIN: check
        # the connection itself, and finish the rollback even if we are being cancelled
        with contextlib.suppress(Exception):  # statements run in order: the BEGIN is done
            await asyncio.shield(self.db.execute("SELECT 1"))
        if self.db.in_transaction:
            await asyncio.shield(self.db.execute("ROLLBACK"))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """Run a query and return every row (StoreUnavailable on an I/O error)."""
        try:
            async with self.db.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as e:
            raise _mapped(e) from e

    async def writable(self) -> bool:
        """True when a write goes through (for readiness checks)."""
        try:
            await self.execute("UPDATE schema_migrations SET name = name WHERE 1 = 0")
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Finish pending writes, then close the connection."""
        if self._flusher is not None:
            await self._flusher
        await self.db.close()


def _write_groups(conn: sqlite3.Connection, groups: list[tuple[str, list[Sequence[Any]]]]) -> None:
    """Write every group's rows in one transaction; on the SQLite thread."""
    conn.execute("BEGIN")
    try:
        for sql, rows in groups:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
