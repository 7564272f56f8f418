"""The runs table: one row per agent run, whatever triggered it."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.cluster.base import RUNS
from core.errors import OpenClawError
from core.ops.owners import Liveness, host_liveness
from core.store.base import Row, Store, Transaction
from core.store.times import utcnow_iso


class AlreadyExists(OpenClawError):
    """A run with this dedupe key exists (another scheduler took the fire, another
    recovery retried the run): the transaction that tried is rolled back."""


class Trigger(enum.StrEnum):
    """What started a run (stored as its text)."""

    SCHEDULE = "schedule"
    CHAT = "chat"
    CLI = "cli"
    API = "api"
    RERUN = "rerun"
    RECOVERY = "recovery"
    REPLY = "reply"  # a chat reply to a message the parent run delivered
    AGENT = "agent"  # the parent run's run_agent tool: its answer goes back, not out


class Status(enum.StrEnum):
    """Where a run is (stored as its text)."""

    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    LATE = "late"
    MISSED = "missed"
    INTERRUPTED = "interrupted"


DONE = (Status.OK, Status.FAILED, Status.LATE, Status.MISSED, Status.INTERRUPTED)
LATE_AFTER_S = 60.0  # a scheduled run created later than this after its fire ran late


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    agent: str
    trigger: Trigger
    parent_run: int | None
    status: Status
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
    quiet: bool = False  # the answer said NO_REPLY: ok, nothing delivered on purpose
    reply_to: str | None = None  # a reply run: the one target its answer goes to
    dedupe_key: str | None = None  # fire:AGENT@TIME, missed:…, recovery:PARENT (or none)

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def created_late(self) -> bool:
        """A scheduled run created more than ``LATE_AFTER_S`` after its fire: a catch-up."""
        if self.trigger != Trigger.SCHEDULE or not self.scheduled_for:
            return False
        created = datetime.fromisoformat(self.created_at)
        return (created - datetime.fromisoformat(self.scheduled_for)).total_seconds() > LATE_AFTER_S

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_row(cls, row: Row) -> Run:
        """A run as the store returns it."""
        fields = dict(row)
        return cls(
            **fields
            | {
                "trigger": Trigger(fields["trigger"]),
                "status": Status(fields["status"]),
                "quiet": bool(fields.get("quiet", 0)),
            }
        )


class Runs:
    """Create, claim, finish and list runs."""

    def __init__(
        self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock  # created, started and finished times
        self.alive: Liveness | None = None  # set by the app: whose runs are orphans

    async def create(
        self,
        tx: Transaction,
        agent: str,
        trigger: Trigger,
        *,
        status: Status = Status.QUEUED,
        parent_run: int | None = None,
        scheduled_for: str | None = None,
        message: str | None = None,
        owner: str | None = None,
        error: str | None = None,
        dedupe_key: str | None = None,
    ) -> int:
        """Insert a run row in ``tx`` (with the writes it must not exist without: the fire a
        scheduler handles); returns its id. A finished status (a missed fire) is stamped
        finished now. A queued run nobody owns wakes every instance's adoption.

        ``dedupe_key`` (``fire:AGENT@TIME``, ``recovery:PARENT``): when a run with that key
        exists, raises :class:`AlreadyExists` (the caller's transaction rolls back), so
        two instances cannot both run one fire or retry one interruption."""
        now = utcnow_iso(self.clock())
        rows = await tx.fetchall(
            "INSERT INTO runs (agent, trigger, parent_run, status, scheduled_for, created_at,"
            " message, owner, error, finished_at, dedupe_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
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
                dedupe_key,
            ),
        )
        if not rows:
            raise AlreadyExists(f"a run {dedupe_key} exists already")
        if status == Status.QUEUED and owner is None:
            tx.notify(RUNS)
        return int(rows[0][0])

    async def claim_queued(self, owner: str, limit: int = 10) -> list[int]:
        """Take up to ``limit`` queued runs nobody owns, oldest first; returns their ids.

        Not serialized with other writes: rows another instance is claiming right now are
        skipped (``FOR UPDATE SKIP LOCKED``), not waited for, and each is taken once."""
        async with self.store.transaction(serialized=False) as tx:
            # materialized: see Outbox.claim (a LIMIT … SKIP LOCKED sub-select may run twice)
            rows = await tx.fetchall(
                "WITH picked AS MATERIALIZED (SELECT id FROM runs"
                " WHERE status = 'queued' AND owner IS NULL ORDER BY id"
                f" LIMIT {int(limit)}{self.store.skip_locked})"
                " UPDATE runs SET owner = ? WHERE id IN (SELECT id FROM picked)"
                " AND owner IS NULL RETURNING id",
                (owner,),
            )
        return sorted(int(r[0]) for r in rows)

    async def claim(self, run_id: int, owner: str) -> bool:
        """Take a queued run nobody owns; True if this process got it."""
        async with self.store.transaction() as tx:
            changed = await tx.execute(
                "UPDATE runs SET owner = ? WHERE id = ? AND status = 'queued' AND owner IS NULL",
                (owner, run_id),
            )
        return changed == 1

    async def release(self, run_id: int, owner: str) -> bool:
        """Give back a queued run that ``owner`` took but never started (its process died
        while it waited for a slot): unowned again, the adoption loop takes it."""
        async with self.store.transaction() as tx:
            changed = await tx.execute(
                "UPDATE runs SET owner = NULL WHERE id = ? AND status = 'queued' AND owner = ?",
                (run_id, owner),
            )
        return changed == 1

    async def start(self, run_id: int, session_id: str) -> None:
        """The run got its slot and its session."""
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE runs SET status = 'running', started_at = ?, session_id = ? WHERE id = ?",
                (utcnow_iso(self.clock()), session_id, run_id),
            )

    async def finish(
        self,
        tx: Transaction,
        run_id: int,
        status: Status,
        *,
        output: str | None = None,
        error: str | None = None,
        route: str | None = None,
        quiet: bool = False,
    ) -> None:
        """Record the outcome in ``tx`` (with the run's outbox rows, so that a crash never
        leaves a finished run without its messages); the cost is what the ledger holds
        for the run. ``quiet``: the answer said NO_REPLY, so nothing was delivered."""
        await tx.execute(
            "UPDATE runs SET status = ?, finished_at = ?, output = ?, error = ?, route = ?,"
            " quiet = ?, cost_usd = (SELECT COALESCE(SUM(cost_usd), 0) FROM attempts"
            " WHERE run_id = ? AND drill IS NULL) WHERE id = ?",
            (
                status,
                utcnow_iso(self.clock()),
                output,
                error,
                route,
                int(quiet),
                str(run_id),
                run_id,
            ),
        )

    async def get(self, run_id: int) -> Run | None:
        """One run."""
        rows = await self.store.fetchall("SELECT * FROM runs WHERE id = ?", (run_id,))
        return Run.from_row(rows[0]) if rows else None

    async def recent(
        self, agent: str | None = None, limit: int = 20, status: Status | None = None
    ) -> list[Run]:
        """The newest runs, of one agent or all, in one status or any."""
        conditions, params = [], []
        if agent:
            conditions.append("agent = ?")
            params.append(agent)
        if status is not None:
            conditions.append("status = ?")
            params.append(str(status))
        where = "WHERE " + " AND ".join(conditions) if conditions else ""
        rows = await self.store.fetchall(
            f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [Run.from_row(r) for r in rows]

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
        runs = [Run.from_row(r) for r in rows]
        owners = {run.owner for run in runs if run.owner is not None}
        alive = await (self.alive or host_liveness(me))(owners)
        return [run for run in runs if run.owner is not None and run.owner not in alive]

    async def interrupted_without_retry(self, since: str) -> list[Run]:
        """Runs interrupted since ``since`` that no later run retries yet."""
        rows = await self.store.fetchall(
            "SELECT * FROM runs r WHERE status = 'interrupted' AND finished_at >= ?"
            " AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run = r.id"
            " AND c.trigger = 'recovery') ORDER BY id",
            (since,),
        )
        return [Run.from_row(r) for r in rows]

    async def unclaimed(self) -> list[int]:
        """Queued runs no process has taken (queued by the CLI or the API of another process)."""
        rows = await self.store.fetchall(
            "SELECT id FROM runs WHERE status = 'queued' AND owner IS NULL ORDER BY id"
        )
        return [int(r[0]) for r in rows]
