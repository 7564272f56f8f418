"""The runs table: one row per agent run, whatever triggered it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from core.store import Store, utcnow_iso

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


# an owner id records the time just after its process started, to the second
START_SLACK_S = 2.0


def owner_id() -> str:
    """This process's owner id for runs and claims: ``host:pid:start[:token]``.

    ``start`` is the Unix time, ``token`` (Linux) the boot id and the process's start in
    clock ticks after boot: unlike the wall clock, they do not move when NTP steps it.
    """
    token = start_token(os.getpid())
    base = f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"
    return f"{base}:{token}" if token else base


def _start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks after boot (Linux's /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # the command name in parentheses may hold spaces: count fields after it
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def start_token(pid: int) -> str | None:
    """``bootid-ticks`` for a process (Linux), None where /proc cannot tell."""
    ticks = _start_ticks(pid)
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
    except OSError:
        return None
    return None if ticks is None else f"{boot}-{ticks}"


def alive_here(owner: str) -> bool:
    """Is the owner a live process on this host? (Other hosts' cannot be checked: False.)

    A live pid is the owner's only if it is the same process: the same boot id and start
    ticks where the id has them (Linux), else a process started by the time the id
    recorded. After a reboot or a long uptime the pid may belong to another program.
    """
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    started_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if token:
        live = start_token(pid)
        if live is not None:
            return live == token
    if not started_text.isdigit():
        return True  # no start time to compare with: assume the owner
    started = process_started_at(pid)
    return started is None or started <= int(started_text) + START_SLACK_S


def owner_alive(owner: str, me: str) -> bool:
    """Is the process named by an owner id (``host:pid:start``) still running here?

    ``me`` is this process's own id: the same pid with another start time is an earlier
    process whose pid was reused. Another host's process cannot be checked: it counts
    as alive, so its runs are never taken from under it.
    """
    if owner == me:
        return True
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True
    if rest.partition(":")[0] == str(os.getpid()):
        return False
    return alive_here(owner)


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (Unix time), or None where that cannot be told."""
    ticks = _start_ticks(pid)
    if ticks is None:
        return ps_started_at(pid)
    try:  # Linux: ticks after boot, and the boot time
        with open("/proc/stat", "rb") as f:
            btime = next(int(ln.split()[1]) for ln in f if ln.startswith(b"btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return ps_started_at(pid)
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def ps_started_at(pid: int) -> float | None:
    """``process_started_at`` where there is no /proc (macOS): from ps's elapsed time."""
    try:  # [[dd-]hh:]mm:ss
        out = subprocess.run(
            ["ps", "-o", "etime=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return _elapsed_to_start(out, time.time())


def _elapsed_to_start(etime: str, now: float) -> float | None:
    days, _, clock = etime.rpartition("-")
    parts = clock.split(":")
    if not etime or not all(p.isdigit() for p in parts) or (days and not days.isdigit()):
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return now - seconds - int(days or 0) * 86400


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
