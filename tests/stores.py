"""The store-backed tests run on both engines: ``store_engine`` is parametrized over
``sqlite`` and ``postgres``, and every fixture that opens a store (or an App) takes its
location from ``new_location``, so each such test runs once per engine.

A SQLite location is a new file under ``tmp_path``; a PostgreSQL one a new database on
the session's throwaway cluster (:mod:`tests.pg`), migrated already (a copy of a
template), dropped after the test. A test about one engine on purpose asks for
``tmp_path`` or ``pg_url`` instead. Registered by tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.store.base import Store
from core.store.open import open_store
from core.store.path import DbLocation, PostgresURL
from tests.pg import Cluster

ENGINES = ("sqlite", "postgres")

# a test about one engine on purpose, whose fixtures would run it on both
sqlite_only = pytest.mark.parametrize("store_engine", ["sqlite"])


@dataclass
class NewLocation:
    """Call it for a fresh database on this test's engine; ``made`` lists them in order."""

    tmp_path: Path
    cluster: Cluster | None  # None: SQLite files under tmp_path
    made: list[DbLocation] = field(default_factory=list)
    _pg_names: list[str] = field(default_factory=list)

    def __call__(self) -> DbLocation:
        location: DbLocation
        if self.cluster is None:
            location = self.tmp_path / f"store{len(self.made)}.db"
        else:
            self._pg_names.append(self.cluster.new_migrated_database())
            location = PostgresURL(self.cluster.url(self._pg_names[-1]))
        self.made.append(location)
        return location

    def drop_all(self) -> None:
        if self.cluster is not None:
            for name in self._pg_names:
                self.cluster.drop_database(name)


@pytest.fixture(params=ENGINES)
def store_engine(request: pytest.FixtureRequest) -> str:
    """The engine this run of the test is on: ``sqlite`` or ``postgres``."""
    engine: str = request.param
    return engine


@pytest.fixture
def new_location(
    request: pytest.FixtureRequest, store_engine: str, tmp_path: Path
) -> Iterator[NewLocation]:
    """Fresh databases on this test's engine (the same engine every call), dropped after."""
    cluster = request.getfixturevalue("pg_cluster") if store_engine == "postgres" else None
    locations = NewLocation(tmp_path, cluster)
    yield locations
    locations.drop_all()


@pytest.fixture
def store_location(new_location: NewLocation) -> DbLocation:
    """One fresh database on this test's engine."""
    return new_location()


@pytest.fixture
async def store(store_location: DbLocation) -> AsyncIterator[Store]:
    """The store at ``store_location``, migrations applied; closed after the test."""
    s = await open_store(store_location)
    yield s
    await s.close()


def location_env(location: DbLocation) -> str:
    """``location`` as ``OPENCLAW_DB`` (or ``--db``) takes it: a path, or the full URL."""
    return location.url if isinstance(location, PostgresURL) else str(location)


def run_sql(location: DbLocation, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own, committed (the app's store may be
    open), as another process would: ``?`` placeholders on either engine. Blocking: call
    it through ``asyncio.to_thread`` from a test's loop."""
    if isinstance(location, PostgresURL):
        with psycopg.connect(location.url, autocommit=True) as pg:
            # without parameters the text goes as it is (several statements, a literal %)
            query = sql.replace("?", "%s") if params else sql
            cur = pg.execute(query.encode(), params or None)
            return list(cur.fetchall()) if cur.description else []
    with contextlib.closing(sqlite3.connect(location)) as db:
        rows = db.execute(sql, params).fetchall()
        db.commit()
        return rows


# what a refused write raises, whichever engine refused it
REFUSED = (sqlite3.IntegrityError, psycopg.IntegrityError)


def add_refusal(
    location: DbLocation,
    name: str,
    event: str,
    table: str,
    when: str | None = None,
    message: str = "refused",
) -> None:
    """A real trigger that makes a write fail as a crash or a full disk would, with nothing
    replaced: ``BEFORE {event} ON {table}`` (``INSERT``, ``UPDATE OF status``), only rows
    matching ``when`` (``NEW.status <> 'running'``) if given. It raises one of REFUSED."""
    if isinstance(location, PostgresURL):
        run_sql(
            location,
            f"CREATE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" RAISE EXCEPTION '{message}' USING ERRCODE = 'integrity_constraint_violation';"
            " END $$",
        )
        condition = f" WHEN ({when})" if when else ""
        run_sql(
            location,
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW{condition}"
            f" EXECUTE FUNCTION {name}_fn()",
        )
        return
    condition = f" WHEN {when}" if when else ""
    run_sql(
        location,
        f"CREATE TRIGGER {name} BEFORE {event} ON {table}{condition}"
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END",
    )


def drop_refusal(location: DbLocation, name: str, table: str) -> None:
    """Undo :func:`add_refusal`."""
    if isinstance(location, PostgresURL):
        run_sql(location, f"DROP TRIGGER {name} ON {table}")
        run_sql(location, f"DROP FUNCTION {name}_fn()")
    else:
        run_sql(location, f"DROP TRIGGER {name}")


@contextlib.contextmanager
def write_lock_held(location: DbLocation) -> Iterator[None]:
    """Another connection holds the store's write lock until the block ends (then rolls
    back): SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock every write takes."""
    if isinstance(location, PostgresURL):
        from core.store.postgres import WRITE_LOCK_KEY

        with psycopg.connect(location.url, autocommit=True) as pg:
            pg.execute("BEGIN")
            pg.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})".encode())
            yield
            pg.execute("ROLLBACK")
        return
    with contextlib.closing(sqlite3.connect(location, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("ROLLBACK")


_READ_ONLY_PG = """
CREATE FUNCTION read_only_fn() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN
  RAISE EXCEPTION 'cannot execute % in a read-only transaction', TG_OP
    USING ERRCODE = 'read_only_sql_transaction';
END $f$;
DO $d$ DECLARE t text; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('CREATE TRIGGER read_only BEFORE INSERT OR UPDATE OR DELETE ON %I'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION read_only_fn()', t);
  END LOOP;
END $d$
"""


async def set_read_only(store: Store, location: DbLocation, on: bool) -> None:
    """Make the store refuse every write, as a read-only disk or server does (``on``), or
    take writes again. SQLite: ``PRAGMA query_only`` on the store's own connection
    (SQLITE_READONLY; chmod is no test as root). PostgreSQL: a statement trigger on every
    table that raises SQLSTATE 25006, what a read-only server or a standby answers (a
    statement trigger fires for an UPDATE of no row too, as the readiness probe sends)."""
    if isinstance(location, PostgresURL):
        sql = _READ_ONLY_PG if on else "DROP FUNCTION read_only_fn() CASCADE"
        await asyncio.to_thread(run_sql, location, sql)
        return
    from core.store.sqlite import SQLiteStore

    assert isinstance(store, SQLiteStore)
    await store.db.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


async def open_unwritable(location: DbLocation) -> Store:
    """A second store on the same database that can read and never write, built directly
    (no start-up probe refuses it): a store that became unwritable after it opened, while
    other stores on the database still write. SQLite: the file opened ``mode=ro``;
    PostgreSQL: sessions with ``default_transaction_read_only``, whose writes answer
    SQLSTATE 25006 as a standby's do. Close it after."""
    if not isinstance(location, PostgresURL):
        from tests.readonly import open_read_only

        return await open_read_only(location)
    from psycopg_pool import AsyncConnectionPool

    from core.store.postgres import Conn, PostgresStore, _configure, pg_row

    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        location.url,
        open=False,
        min_size=1,
        max_size=2,
        kwargs={
            "autocommit": True,
            "row_factory": pg_row,
            "options": "-c default_transaction_read_only=on",
        },
        configure=_configure,
        timeout=5,
    )
    await pool.open(wait=True, timeout=5)
    return PostgresStore(pool, location.url, timeout_s=5)
