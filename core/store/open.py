"""Open the engine a location names: a :class:`~core.store.path.PostgresURL` on
PostgreSQL, a path on SQLite."""

from __future__ import annotations

from core.store.base import Store
from core.store.path import DbLocation, PostgresURL


async def open_store(location: DbLocation) -> Store:
    """The store at ``location``, migrations applied and a write proven (StoreUnavailable
    when it cannot be reached or written). psycopg is imported only for PostgreSQL."""
    if isinstance(location, PostgresURL):
        from core.store.postgres import PostgresStore

        return await PostgresStore.open(location.url)
    from core.store.sqlite import SQLiteStore

    return await SQLiteStore.open(location)
