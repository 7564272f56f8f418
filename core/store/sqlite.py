"""The embedded SQLite engine: one writer connection, WAL, numbered migrations.

Everything only SQLite understands lives here: the PRAGMAs, ``BEGIN IMMEDIATE`` (how a
write transaction takes the lock), its error codes, its DDL translation (none: the
portable dialect of :mod:`.migrations` is SQLite's own) and the call that runs a function
on aiosqlite's thread. Repositories see the
engine-neutral :class:`core.store.base.Store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiosqlite

from core.errors import StoreUnavailable
from core.store.base import Listener, Params, Row, Transaction
from core.store.migrations import MIGRATIONS
from core.store.times import utcnow_iso

log = logging.getLogger("openclaw.store")

Opener = Callable[[Path], Awaitable[aiosqlite.Connection]]
T = TypeVar("T")

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


def _raise_mapped(error: sqlite3.Error) -> NoReturn:
    """Raise ``error`` as StoreUnavailable when it means that, else as it is."""
    mapped = unavailable(error)
    if mapped is None:
        raise error
    raise mapped from error


async def on_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(connection, *args)`` on aiosqlite's thread, as one trip there.

    Each trip costs a future, a thread wake-up and a GIL hand-off (measured: ~5 µs of CPU
    per gateway request at c=64); aiosqlite's own ``execute`` + ``fetchall`` + ``close``
    is three. Run there as one function, a group of writes also cannot be left half
    open by a cancelled caller. aiosqlite has no public way to do this: ``_execute`` and
    ``_conn`` are what it uses itself (0.22). This and :func:`join_worker` are the only
    uses of its private API, so an upgrade that breaks them breaks here, and
    ``tests/test_store.py`` says so first.
    """
    result: T = await db._execute(fn, db._conn, *args)  # type: ignore[no-untyped-call]
    return result


async def join_worker(conn: aiosqlite.Connection, timeout_s: float = 5.0) -> None:
    """Wait for the worker thread of a connection that failed to open (aiosqlite's
    private ``_thread``): it stops with a call that answers on this loop, and unwaited it
    answers a closed loop and dies with a traceback (after an exit-78 message, or in the
    next test)."""
    worker = getattr(conn, "_thread", None)
    if worker is not None and worker.is_alive():
        await asyncio.to_thread(worker.join, timeout_s)


def translate_ddl(sql: str) -> str:
    """A migration's portable DDL as SQLite runs it: unchanged (the dialect is SQLite's)."""
    return sql


class _DDL:
    """The :class:`~core.store.migrations.DDL` a migration writes to: this connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str) -> None:
        await self._db.execute(translate_ddl(sql))


# -- what runs on the SQLite thread ---------------------------------------------------------


def _execute(conn: sqlite3.Connection, sql: str, params: Params) -> int:
    cur = conn.execute(sql, params)
    try:
        return cur.rowcount
    finally:
        cur.close()


def _executemany(conn: sqlite3.Connection, sql: str, rows: list[Params]) -> None:
    conn.executemany(sql, rows).close()


def _fetchall(conn: sqlite3.Connection, sql: str, params: Params) -> list[Row]:
    cur = conn.execute(sql, params)
    try:
        rows: list[Row] = cur.fetchall()
        return rows
    finally:
        cur.close()


def _in_transaction(conn: sqlite3.Connection, begin: bool, fn: Callable[..., T], *args: Any) -> T:
    # the first statement of a transaction takes the lock in the same trip
    if begin:
        conn.execute("BEGIN IMMEDIATE")
    return fn(conn, *args)


def _commit(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _write_groups(conn: sqlite3.Connection, groups: list[tuple[str, list[Params]]]) -> None:
    """Write every group's rows in one transaction."""
    conn.execute("BEGIN")
    try:
        for sql, rows in groups:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# -- the event loop's side ------------------------------------------------------------------


async def _connect(path: Path) -> aiosqlite.Connection:
    # autocommit: each write outside a transaction commits on its own, in one trip
    conn = aiosqlite.connect(path, isolation_level=None)
    try:
        return await conn
    except BaseException:
        await join_worker(conn)
        raise


class SQLiteTransaction:
    """A :class:`~core.store.base.Transaction` on the store's one connection. ``BEGIN
    IMMEDIATE`` goes with its first statement: what it reads cannot change before it
    commits, and a transaction of one write costs two trips (that write, COMMIT)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._begun = False
        self._open = True
        self.notices: list[tuple[str, str]] = []  # for the listeners, once committed

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._open:
            raise RuntimeError("this transaction has ended: use it inside its `async with`")
        begin, self._begun = not self._begun, True
        try:
            return await on_thread(self._db, _in_transaction, begin, fn, *args)
        except sqlite3.Error as e:
            _raise_mapped(e)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns how many rows it changed."""
        return await self._run(_execute, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement once per row."""
        await self._run(_executemany, sql, list(rows))

    async def insert_id(self, sql: str, params: Params = ()) -> int:
        """Run an ``INSERT … RETURNING id``; returns the new row's id."""
        rows = await self._run(_fetchall, sql, params)
        if len(rows) != 1:
            raise ValueError(f"insert_id needs an INSERT … RETURNING id of one row: {sql}")
        return int(rows[0][0])

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query inside the transaction (it sees the transaction's own writes)."""
        return await self._run(_fetchall, sql, params)

    async def lock(self, name: str) -> None:
        """Nothing to do: this write transaction already excludes every other."""

    def notify(self, channel: str, payload: str = "") -> None:
        """Call ``channel``'s listeners once this commits (one process per SQLite file:
        they are all in this one)."""
        self.notices.append((channel, payload))

    async def _commit(self) -> None:
        self._open = False
        if self._begun:
            await on_thread(self._db, _commit)

    async def _rollback(self) -> None:
        self._open = False
        if not self._begun:
            return
        # statements run in order on the SQLite thread: this comes after any a cancelled
        # caller left queued, and it runs even if we are being cancelled now
        with contextlib.suppress(Exception):
            await asyncio.shield(on_thread(self._db, _rollback))


class SQLiteStore:
    """One aiosqlite connection (the only writer) with migrations applied: a
    :class:`~core.store.base.Store`."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self.location = str(path)
        self.skip_locked = ""  # one writer: a claim never meets another one's locked rows
        self._listeners: dict[str, list[Listener]] = {}
        self._write_lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None  # the task inside a transaction
        self._pending: list[tuple[str, Params, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, opener: Opener | None = None) -> SQLiteStore:
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
                await fn(_DDL(self.db))
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

    def _refuse_reentry(self, what: str) -> None:
        if self._holder is not None and self._holder is asyncio.current_task():
            # it would wait for the lock this very task holds, forever
            raise RuntimeError(f"{what} inside a transaction: pass its tx on instead")

    @contextlib.asynccontextmanager
    async def transaction(self, serialized: bool = True) -> AsyncIterator[Transaction]:
        """A write transaction, serialized with every other (``BEGIN IMMEDIATE``; also when
        ``serialized`` is False: SQLite has one writer): committed when the block ends,
        rolled back when it raises or is cancelled."""
        self._refuse_reentry("a transaction opened")
        async with self._write_lock:
            self._holder = asyncio.current_task()
            tx = SQLiteTransaction(self.db)
            try:
                yield tx
                try:
                    await tx._commit()
                except sqlite3.Error as e:
                    _raise_mapped(e)
            except BaseException:
                await tx._rollback()
                raise
            finally:
                self._holder = None
        for channel, payload in tx.notices:
            self._dispatch(channel, payload)

    def listen(self, channel: str, listener: Listener) -> None:
        """Call ``listener`` after each commit that notified ``channel``."""
        self._listeners.setdefault(channel, []).append(listener)

    def _dispatch(self, channel: str, payload: str) -> None:
        for listener in self._listeners.get(channel, ()):
            try:
                listener(payload)
            except Exception:  # a listener's bug must not fail the committed write
                log.exception("a listener of %s failed", channel)

    async def insert(self, sql: str, row: Params) -> None:
        """Write one row, committed when this returns (group commit).

        Rows that arrive while a write is in flight share the next transaction, so
        under load one commit (and one trip to the SQLite thread per statement
        kind) serves many callers; alone, a row costs one autocommit. A caller that
        is cancelled while waiting does not take its row with it.
        """
        self._refuse_reentry("a group-committed insert")
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

    async def _write_batch(self, batch: list[tuple[str, Params, asyncio.Future[None]]]) -> None:
        try:
            if len(batch) == 1:
                await on_thread(self.db, _execute, batch[0][0], batch[0][1])
            else:
                groups: dict[str, list[Params]] = {}
                for sql, row, _ in batch:
                    groups.setdefault(sql, []).append(row)
                await on_thread(self.db, _write_groups, list(groups.items()))
        except Exception as error:
            if len(batch) == 1 or unavailable(error):  # no row can land: all fail alike
                for _, _, fut in batch:
                    _settle(fut, _mapped(error))
                return
            for sql, row, fut in batch:  # find the bad row; the others still land
                try:
                    await on_thread(self.db, _execute, sql, row)
                except Exception as e:
                    _settle(fut, _mapped(e))
                else:
                    _settle(fut, None)
            return
        for _, _, fut in batch:
            _settle(fut, None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query and return every row (StoreUnavailable on an I/O error)."""
        try:
            return await on_thread(self.db, _fetchall, sql, params)
        except sqlite3.Error as e:
            _raise_mapped(e)

    async def writable(self) -> bool:
        """True when a write goes through (for readiness checks)."""
        try:
            async with self._write_lock:
                await on_thread(
                    self.db, _execute, "UPDATE schema_migrations SET name = name WHERE 1 = 0", ()
                )
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Finish pending writes, then close the connection."""
        if self._flusher is not None:
            await self._flusher
        await self.db.close()


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
