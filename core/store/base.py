"""The store as repositories see it, whatever the engine: transactions, a group-committed
write, reads.

Repositories keep their SQL to themselves and take a :class:`Transaction` in the writes
that must commit with someone else's (a run's outcome and its outbox rows). That SQL is
portable: ``?`` placeholders (an engine converts them to its own), ``RETURNING id`` for a
new row's id, ISO-8601 UTC text for times, no engine's own functions. Everything only
one engine understands (PRAGMAs, how a write transaction locks, placeholders, its DDL)
lives in that engine's module (:mod:`core.store.sqlite`, :mod:`core.store.postgres`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Params = Sequence[Any]


class Row(Protocol):
    """A result row: by position (``row[0]``) or column name (``row["id"]``); ``dict(row)``."""

    def keys(self) -> list[str]: ...

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Transaction(Protocol):
    """Writes (and reads) that commit together when the ``async with`` block ends, or not
    at all when it raises. Only for use inside that block."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns how many rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement once per row."""
        ...

    async def insert_id(self, sql: str, params: Params = ()) -> int:
        """Run an ``INSERT … RETURNING id``; returns the new row's id."""
        ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query inside the transaction (it sees the transaction's own writes)."""
        ...

    async def lock(self, name: str) -> None:
        """Wait until no other transaction holding ``name`` is open, in any process, and
        hold it until this one ends (a budget cap's reservation check). A no-op where
        every write transaction is serialized anyway (SQLite)."""
        ...

    def notify(self, channel: str, payload: str = "") -> None:
        """Once this transaction commits (never if it rolls back), call every listener of
        ``channel`` (:meth:`Store.listen`) in every process on the database."""
        ...


Listener = Callable[[str], None]


class Store(Protocol):
    """One database, migrations applied. Errors that mean it cannot take writes now (a
    read-only file, a full disk) are raised as :class:`core.errors.StoreUnavailable`."""

    #: where the database is, as it may be printed (a URL's password masked)
    location: str

    #: appended to a ``SELECT`` that picks rows to claim in an unserialized transaction:
    #: rows another transaction has locked are skipped, not waited for
    #: (``FOR UPDATE SKIP LOCKED``; empty where transactions are serialized anyway)
    skip_locked: str

    def transaction(self, serialized: bool = True) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction (``async with store.transaction() as tx``), serialized with
        every other: what it reads cannot change, in this process or another, before it
        commits. Not reentrant: a block that holds one passes its ``tx`` on instead of
        opening another (that raises at once rather than waiting for itself forever).

        ``serialized=False``: a transaction that makes its own guarantees (a claim of rows
        with :attr:`skip_locked`, a :meth:`Transaction.lock` per budget cap) and so need
        not queue behind every other write. Where the engine has only one writer
        (SQLite) it is serialized all the same."""
        ...

    def listen(self, channel: str, listener: Listener) -> None:
        """Call ``listener(payload)`` after each commit that :meth:`Transaction.notify`-ed
        ``channel``, in this process or another on the same database. A wake-up, not a
        queue: one may be missed (a reconnect), so listeners keep polling as well."""
        ...

    async def insert(self, sql: str, row: Params) -> None:
        """Write one row, committed when this returns; concurrent callers share commits
        (the ledger's hot path: one commit serves many requests)."""
        ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query outside any transaction and return every row."""
        ...

    async def writable(self) -> bool:
        """True when a write goes through (for readiness checks)."""
        ...

    async def applied_migrations(self) -> list[str]:
        """Names of the migrations applied, in order."""
        ...

    async def close(self) -> None:
        """Finish pending writes, then close."""
        ...
