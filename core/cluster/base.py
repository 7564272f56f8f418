"""What an instance needs to know of the others on its database, whatever the engine.

:class:`Solo` is the embedded case (SQLite: one serve per file, so it always leads, and an
owner is alive when its process runs on this host). :class:`core.cluster.pg.PgCluster` is
several instances on one PostgreSQL database, coordinated through the database itself:
advisory locks for liveness, leadership and concurrency slots, a heartbeat row per
instance, ``LISTEN/NOTIFY`` for wake-ups.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from core.ops.owners import host_liveness

# the wake-up channels (core.store.base.Store.listen)
RUNS = "openclaw_runs"  # a run was queued for any instance to take
OUTBOX = "openclaw_outbox"  # outbox rows were written
APPROVALS = "openclaw_approvals"  # an approval was decided (payload: its id)
APPROVAL_ASKED = "openclaw_approval_asked"  # a follower's run waits: the leader shows it (id)
SLOTS = "openclaw_slots"  # a concurrency slot was given back


class Cluster(Protocol):
    """This instance among the others on its database."""

    owner: str  # this process's owner id (core.ops.owners)
    shared: bool  # True: other instances may share the database

    async def start(self) -> None:
        """Be seen alive by the others (before taking any work)."""
        ...

    async def alive(self, owners: Iterable[str]) -> set[str]:
        """Those of ``owners`` whose process is still running (this one always is)."""
        ...

    def is_leader(self) -> bool:
        """Whether this instance may act as the leader right now (its lease is fresh)."""
        ...

    async def campaign(self) -> bool:
        """One heartbeat: keep or try to take the leadership (fencing a stale leader);
        returns :meth:`is_leader` after it. Never raises: a store it cannot reach makes it
        a follower."""
        ...

    def slot(self, kind: str, limit: int) -> AbstractAsyncContextManager[None]:
        """Hold one of ``limit`` slots of ``kind`` for the whole cluster while inside."""
        ...

    def describe(self) -> dict[str, Any]:
        """For status: this instance's role, and what it knows of the leader."""
        ...

    async def instances(self) -> list[dict[str, Any]]:
        """Every instance that ran serve on the database, newest heartbeat first."""
        ...

    async def resign(self) -> None:
        """Stop leading now (shutting down: a follower takes over within a heartbeat),
        still alive: runs finishing in the grace period are not orphans."""
        ...

    async def leave(self) -> None:
        """Give up the leadership and the locks; the row says it stopped."""
        ...


class Solo:
    """One instance: the leader from its first heartbeat; owners are judged by this host's
    process table; slots are the runner's own semaphores (nothing to add)."""

    shared = False

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._leading = False

    async def start(self) -> None:
        """Nothing to announce: no other instance can look."""

    async def alive(self, owners: Iterable[str]) -> set[str]:
        """Owners whose process runs here (off the loop: on macOS this runs ps)."""
        return await host_liveness(self.owner)(owners)

    def is_leader(self) -> bool:
        return self._leading

    async def campaign(self) -> bool:
        self._leading = True
        return True

    @contextlib.asynccontextmanager
    async def slot(self, kind: str, limit: int) -> AsyncIterator[None]:
        yield

    def describe(self) -> dict[str, Any]:
        return {"mode": "single instance", "role": "leader" if self._leading else "starting"}

    async def instances(self) -> list[dict[str, Any]]:
        return []

    async def resign(self) -> None:
        self._leading = False

    async def leave(self) -> None:
        self._leading = False
