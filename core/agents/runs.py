"""The runs table: one row per agent run, whatever triggered it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from core.ops.owners import owner_alive
from core.store.sqlite import Store
from core.store.times import utcnow_iso

Trigger = Literal["schedule", "chat", "cli", "api", "rerun", "recovery"]
Status = Literal["queued", "running", "ok", "failed", "late", "missed", "interrupted"]
DONE = ("ok", "failed", "late", "missed", "interrupted")
LATE_AFTER_S = 60.0  # a scheduled run created later than this after its fire ran late


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    agent: str
    trigger: str
    parent_run: int | None
    status: str
    scheduled_for: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    session_id: str | None
    message: str | None
    output: str | None
    error: str | None
    cost_usd: float
    route: str | None
    owner: str | None

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def created_late(self) -> bool:
        """A scheduled run created more than ``LATE_AFTER_S`` after its fire: a catch-up."""
        if self.trigger != "schedule" or not self.scheduled_for:
            return False
        created = datetime.fromisoformat(self.created_at)
        return (created - datetime.fromisoformat(self.scheduled_for)).total_seconds() > LATE_AFTER_S

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Runs:
    """Create, claim, finish and list runs."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(
        self,
        agent: str,
        trigger: str,
        *,
        also: Sequence[tuple[str, Sequence[Any]]] = (),
        **fields: Any,
    ) -> int:
        """Insert a run row (``fields`` as :meth:`insert_statement` takes them); returns
        its id.

        ``also`` are writes committed in the same transaction (a scheduler's record of
        the fire it handles), so a crash never keeps one without the other.
        """
        sql, params = self.insert_statement(agent, trigger, **fields)
        if not also:
            _, rid = await self.store.write(sql, params)
        else:
            async with self.store.immediate() as db:
                async with db.execute(sql, params) as cur:
                    rid = cur.lastrowid
                for more_sql, more_params in also:
                    await db.execute(more_sql, more_params)
        assert rid is not None
        return rid

    @staticmethod
    def insert_statement(
        agent: str,
        trigger: str,
        *,
        status: str = "queued",
        parent_run: int | None = None,
        scheduled_for: str | None = None,
        message: str | None = None,
        owner: str | None = None,
        error: str | None = None,
    ) -> tuple[str, tuple[Any, ...]]:
        """The INSERT of a run row, for :meth:`create` or another write's transaction."""
        now = utcnow_iso()
        return (
            "INSERT INTO runs (agent, trigger, parent_run, status, scheduled_for, created_at,"
            " message, owner, error, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                agent,
                trigger,
                parent_run,
                status,
                scheduled_for,
                now,
                message,
                owner,
                error,
                now if status in DONE else None,
            ),
        )

    async def claim(self, run_id: int, owner: str) -> bool:
        """Take a queued run nobody owns; True if this process got it."""
        changed, _ = await self.store.write(
            "UPDATE runs SET owner = ? WHERE id = ? AND status = 'queued' AND owner IS NULL",
            (owner, run_id),
        )
        return changed == 1

    async def release(self, run_id: int, owner: str) -> bool:
        """Give back a queued run that ``owner`` took but never started (its process died
        while it waited for a slot): unowned again, the adoption loop takes it."""
        changed, _ = await self.store.write(
            "UPDATE runs SET owner = NULL WHERE id = ? AND status = 'queued' AND owner = ?",
            (run_id, owner),
        )
        return changed == 1

    async def start(self, run_id: int, session_id: str) -> None:
        """The run got its slot and its session."""
        await self.store.execute(
            "UPDATE runs SET status = 'running', started_at = ?, session_id = ? WHERE id = ?",
            (utcnow_iso(), session_id, run_id),
        )

    async def finish(
        self,
        run_id: int,
        status: str,
        *,
        output: str | None = None,
        error: str | None = None,
        route: str | None = None,
        also: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> None:
        """Record the outcome; the cost is what the ledger holds for the run.

        ``also`` are writes committed in the same transaction (the run's outbox rows), so
        that a crash never leaves a finished run without its messages.
        """
        sql = (
            "UPDATE runs SET status = ?, finished_at = ?, output = ?, error = ?, route = ?,"
            " cost_usd = (SELECT COALESCE(SUM(cost_usd), 0) FROM attempts"
            " WHERE run_id = ?) WHERE id = ?"
        )
        params = (status, utcnow_iso(), output, error, route, str(run_id), run_id)
        if not also:
            await self.store.execute(sql, params)
            return
        await self.store.write_all([(sql, params), *also])

    async def get(self, run_id: int) -> Run | None:
        """One run."""
        rows = await self.store.fetchall("SELECT * FROM runs WHERE id = ?", (run_id,))
        return Run(**dict(rows[0])) if rows else None

    async def recent(self, agent: str | None = None, limit: int = 20) -> list[Run]:
        """The newest runs, of one agent or all."""
        where, params = ("WHERE agent = ?", (agent,)) if agent else ("", ())
        rows = await self.store.fetchall(
            f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [Run(**dict(r)) for r in rows]

    async def last_output(self, agent: str, before: int) -> str | None:
        """The output of the agent's previous successful run."""
        rows = await self.store.fetchall(
            "SELECT output FROM runs WHERE agent = ? AND id < ? AND status IN ('ok', 'late')"
            " ORDER BY id DESC LIMIT 1",
            (agent, before),
        )
        return rows[0][0] if rows else None

    async def orphans(self, me: str) -> list[Run]:
        """Queued or running runs whose owning process is gone (on this host)."""
        rows = await self.store.fetchall(
            "SELECT * FROM runs WHERE status IN ('queued', 'running') AND owner IS NOT NULL"
            " ORDER BY id"
        )
        runs = [Run(**dict(r)) for r in rows]
        owners = {run.owner for run in runs if run.owner is not None}
        # off the event loop: on macOS telling a live owner from a reused pid runs ps
        alive = await asyncio.to_thread(lambda: {o for o in owners if owner_alive(o, me)})
        return [run for run in runs if run.owner is not None and run.owner not in alive]

    async def interrupted_without_retry(self, since: str) -> list[Run]:
        """Runs interrupted since ``since`` that no later run retries yet."""
        rows = await self.store.fetchall(
            "SELECT * FROM runs r WHERE status = 'interrupted' AND finished_at >= ?"
            " AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run = r.id"
            " AND c.trigger = 'recovery') ORDER BY id",
            (since,),
        )
        return [Run(**dict(r)) for r in rows]

    async def unclaimed(self) -> list[int]:
        """Queued runs no process has taken (queued by the CLI or the API of another process)."""
        rows = await self.store.fetchall(
            "SELECT id FROM runs WHERE status = 'queued' AND owner IS NULL ORDER BY id"
        )
        return [int(r[0]) for r in rows]

    async def cost_today(self, agent: str, day_start: str) -> float:
        """What the agent's runs cost since ``day_start``."""
        rows = await self.store.fetchall(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM runs WHERE agent = ? AND created_at >= ?",
            (agent, day_start),
        )
        return float(rows[0][0])
