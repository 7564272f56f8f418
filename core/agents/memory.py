"""Agents' memory: what ``remember`` stored, per agent, kept across runs and restarts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from core.store.base import Store
from core.store.times import utcnow_iso

MAX_KEY_CHARS = 200
MAX_VALUE_CHARS = 16_000  # one entry; a model pasting a whole page is cut, not refused
MAX_KEYS = 500  # per agent: a loop that invents keys cannot fill the store


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: str
    updated_at: str
    run_id: int | None


class Memory:
    """The agent_memory table: one value per (agent, key)."""

    def __init__(
        self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock

    async def put(self, agent: str, key: str, value: str, run_id: int | None = None) -> bool:
        """Store ``value`` under ``key`` (replacing it); False when the agent already holds
        ``MAX_KEYS`` other keys."""
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT COUNT(*), SUM(CASE WHEN key = ? THEN 1 ELSE 0 END) FROM agent_memory"
                " WHERE agent = ?",
                (key, agent),
            )
            count, exists = int(rows[0][0]), bool(rows[0][1])
            if not exists and count >= MAX_KEYS:
                return False
            await tx.execute(
                "INSERT INTO agent_memory (agent, key, value, run_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (agent, key) DO UPDATE SET"
                " value = excluded.value, run_id = excluded.run_id,"
                " updated_at = excluded.updated_at",
                (agent, key, value, run_id, utcnow_iso(self.clock())),
            )
        return True

    async def get(self, agent: str, key: str) -> Entry | None:
        """The entry under ``key``, if the agent stored one."""
        rows = await self.store.fetchall(
            "SELECT key, value, updated_at, run_id FROM agent_memory WHERE agent = ? AND key = ?",
            (agent, key),
        )
        return Entry(*rows[0]) if rows else None

    async def entries(self, agent: str) -> list[Entry]:
        """Everything the agent remembers, newest first."""
        rows = await self.store.fetchall(
            "SELECT key, value, updated_at, run_id FROM agent_memory WHERE agent = ?",
            (agent,),
        )
        # sorted here, not by ORDER BY: PostgreSQL orders text by the database's collation
        # (en_US sorts "a" before "B"), SQLite by code point, as Python does
        entries = sorted((Entry(*r) for r in rows), key=lambda e: e.key)
        return sorted(entries, key=lambda e: e.updated_at, reverse=True)

    async def forget(self, agent: str, key: str | None = None) -> int:
        """Drop one key, or all of the agent's (None); returns how many went."""
        async with self.store.transaction() as tx:
            if key is None:
                return await tx.execute("DELETE FROM agent_memory WHERE agent = ?", (agent,))
            return await tx.execute(
                "DELETE FROM agent_memory WHERE agent = ? AND key = ?", (agent, key)
            )
