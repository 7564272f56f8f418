"""Several instances on one PostgreSQL database, coordinated by the database itself.

- **Liveness.** Each instance holds a session-level advisory lock keyed by its owner id on
  a connection of its own (the *member* connection). The lock goes when the process dies
  (the kernel closes its socket, the server ends the session), on any host: "is that
  owner alive" is a look at ``pg_locks``. An instance whose member connection was lost
  (the server restarted) takes its lock again on the next heartbeat; a serve instance is
  counted dead only when its lock is gone *and* its heartbeat row is older than
  ``leader_timeout_s``, so such a blip does not hand its running runs to recovery.
- **One leader.** ``pg_try_advisory_lock(LEADER_KEY)`` on a second connection (the
  *leader* connection). The leader refreshes its row's heartbeat through that very
  connection, so a heartbeat proves the lock is still held. It acts as the leader only
  while its last heartbeat is younger than half of ``leader_timeout_s`` by its own
  monotonic clock (its lease): a process frozen by SIGSTOP and woken later knows at once
  that it may no longer lead. A follower that finds the lock held by an instance whose
  heartbeat (by the database's clock: no host's clock is trusted) is older than
  ``leader_timeout_s`` fences it: ``pg_terminate_backend`` of the backend holding the
  lock, which frees it for the next try.
- **Slots.** ``[concurrency]`` limits for the whole cluster: slot *i* of a kind is the
  advisory lock of ``slot:KIND:i``, held on the member connection while a run holds it
  (a dead instance's slots go with its session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import psycopg

from core.cluster.base import SLOTS
from core.config.models import ClusterConfig
from core.store.postgres import Conn, PostgresStore, lock_key
from core.waits import wait_set

log = logging.getLogger("openclaw.cluster")

LEADER_KEY = lock_key("openclaw:leader")
SLOT_POLL_S = 1.0  # a waiter for a slot looks again this often, woken or not
# the database's clock as the store writes times (ISO-8601 UTC text)
DB_NOW = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || 'Z'"
_ADVISORY = (
    # a bigint key is shown split: classid its high 32 bits, objid its low ones
    "SELECT pid, (classid::bigint << 32) | objid::bigint AS key FROM pg_locks"
    " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def owner_key(owner: str) -> int:
    """The advisory-lock key an instance holds while it lives."""
    return lock_key(f"owner:{owner}")


def _age_s(then: str | None, now: str) -> float:
    if not then:
        return float("inf")
    a = datetime.fromisoformat(then.removesuffix("Z"))
    b = datetime.fromisoformat(now.removesuffix("Z"))
    return (b - a).total_seconds()


class PgCluster:
    """This instance among the others on one PostgreSQL database."""

    shared = True

    def __init__(self, store: PostgresStore, owner: str, config: ClusterConfig) -> None:
        self.store = store
        self.owner = owner
        self.config = config
        self._member: Conn | None = None
        self._member_lock = asyncio.Lock()  # one statement at a time on it
        self._leader: Conn | None = None
        self._leading = False
        self._closing: set[asyncio.Future[None]] = set()  # step-downs closing their connection
        self._lease_at = 0.0  # monotonic time of the last heartbeat that proved the lock
        self._joined = False  # a serve instance: has a row in instances
        self._left = False  # leave() ran: no session is opened again
        self._slot_freed = asyncio.Event()
        self._slot_scan = asyncio.Lock()
        self._held: dict[str, set[int]] = {}  # kind → slot numbers held here
        self.leader_owner: str | None = None  # who leads, as last seen
        self.fenced: list[str] = []  # owners of stale leaders this one terminated
        self.last_error: str | None = None
        self.elected_at: float | None = None  # monotonic, when this one took over
        store.listen(SLOTS, lambda _: self._slot_freed.set())

    # -- liveness -----------------------------------------------------------------------

    async def start(self) -> None:
        """Take this instance's liveness lock (raises StoreUnavailable when the server
        cannot be reached: no work may be taken that nobody could see is alive)."""
        await self._ensure_member()

    async def _ensure_member(self) -> Conn:
        if self._member is not None and not self._member.closed:
            return self._member
        if self._left:  # e.g. a slot given back after leave(): its lock went with it
            raise psycopg.OperationalError("this instance left the cluster")
        conn = await self.store.connect()
        try:
            # try, not wait: a second App of this very process (tests, a CLI command run
            # inside serve's process) shares its owner id, and its lock says the same
            await conn.execute("SELECT pg_try_advisory_lock(%s)", (owner_key(self.owner),))
            # slots held before a lost connection, taken again where still free: waiting
            # for one another instance took meanwhile would stall every heartbeat here
            # (for a moment the cluster runs one more than the limit; the log says so)
            for kind, held in self._held.items():
                for i in held:
                    cur = await conn.execute(
                        "SELECT pg_try_advisory_lock(%s)", (_slot_key(kind, i),)
                    )
                    row = await cur.fetchone()
                    if not (row and row[0]):
                        log.warning(
                            "%s slot %d was taken by another instance while this one was"
                            " cut off: one run more than the limit until it ends",
                            kind,
                            i,
                        )
        except BaseException:
            await conn.close()
            raise
        self._member = conn
        return conn

    async def _on_member(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        async with self._member_lock:
            try:
                conn = await self._ensure_member()
                cur = await conn.execute(sql, params)
                return list(await cur.fetchall()) if cur.description else []
            except psycopg.Error:
                await self._drop_member()
                raise

    async def _drop_member(self) -> None:
        conn, self._member = self._member, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def alive(self, owners: Iterable[str]) -> set[str]:
        """Owners holding their liveness lock, plus serve instances whose heartbeat is
        recent (a lock lost with its connection is taken again within a heartbeat)."""
        wanted = set(owners)
        if not wanted:
            return set()
        held = {int(r["key"]) for r in await self.store.fetchall(_ADVISORY)}
        out = {o for o in wanted if o == self.owner or owner_key(o) in held}
        rest = sorted(wanted - out)
        if rest:
            marks = ", ".join("?" for _ in rest)
            rows = await self.store.fetchall(
                f"SELECT owner, heartbeat_at, {DB_NOW} AS now FROM instances"
                f" WHERE stopped_at IS NULL AND owner IN ({marks})",
                rest,
            )
            for r in rows:
                if _age_s(r["heartbeat_at"], r["now"]) < self.config.leader_timeout_s:
                    out.add(str(r["owner"]))
        return out

    # -- leadership ---------------------------------------------------------------------

    def is_leader(self) -> bool:
        lease = self.config.leader_timeout_s / 2
        return self._leading and time.monotonic() - self._lease_at < lease

    async def campaign(self) -> bool:
        try:
            await self._heartbeat()
        except Exception as e:  # the store unreachable: a follower until it is back
            self._step_down(f"{type(e).__name__}: {e}")
        return self.is_leader()

    async def _heartbeat(self) -> None:
        if not self._joined:
            await self._on_member(
                "INSERT INTO instances (owner, host, pid, started_at, heartbeat_at, leader)"
                f" VALUES (%s, %s, %s, {DB_NOW}, {DB_NOW}, 0)"
                " ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,"
                " stopped_at = NULL",
                (self.owner, socket.gethostname(), os.getpid()),
            )
            self._joined = True
        else:
            await self._on_member(
                f"UPDATE instances SET heartbeat_at = {DB_NOW} WHERE owner = %s", (self.owner,)
            )
        began = time.monotonic()
        if self._leading:
            if not self.is_leader():  # frozen past its lease: not the leader any more
                self._step_down("its lease ran out (the process was frozen or too slow)")
                return
            assert self._leader is not None
            cur = await self._leader.execute(
                f"UPDATE instances SET heartbeat_at = {DB_NOW}, leader = 1 WHERE owner = %s",
                (self.owner,),
            )
            if cur.rowcount != 1:
                raise RuntimeError("this instance's row is gone")
            self._lease_at = began
            return
        if self._leader is None or self._leader.closed:
            self._leader = await self.store.connect()
        cur = await self._leader.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_KEY,))
        row = await cur.fetchone()
        if row is not None and row[0]:
            await self._leader.execute(
                "UPDATE instances SET leader = 0 WHERE owner <> %s AND leader = 1", (self.owner,)
            )
            await self._leader.execute(
                f"UPDATE instances SET leader = 1, leader_since = {DB_NOW},"
                f" heartbeat_at = {DB_NOW} WHERE owner = %s",
                (self.owner,),
            )
            self._leading, self._lease_at = True, began
            self.leader_owner = self.owner
            self.elected_at = time.monotonic()
            self.last_error = None
            log.warning("this instance is now the leader (%s)", self.owner)
            return
        await self._fence_if_stale()

    async def _fence_if_stale(self) -> None:
        """The lock is held by someone else: terminate its backend if its heartbeat stopped."""
        key = LEADER_KEY
        holders = [
            int(r["pid"]) for r in await self.store.fetchall(_ADVISORY) if int(r["key"]) == key
        ]
        rows = await self.store.fetchall(
            f"SELECT owner, heartbeat_at, {DB_NOW} AS now FROM instances WHERE leader = 1"
            " ORDER BY heartbeat_at DESC LIMIT 1"
        )
        self.leader_owner = str(rows[0]["owner"]) if rows else None
        age = _age_s(rows[0]["heartbeat_at"], rows[0]["now"]) if rows else float("inf")
        if not holders or age < self.config.leader_timeout_s:
            return
        for pid in holders:
            await self.store.fetchall("SELECT pg_terminate_backend(?)", (pid,))
        who = self.leader_owner or "an unknown instance"
        self.fenced.append(who)
        log.warning(
            "fenced the stale leader %s (no heartbeat for %.1fs): its session ended", who, age
        )

    def _step_down(self, why: str) -> None:
        self.last_error = why
        if self._leading:
            log.warning("this instance is no longer the leader: %s", why)
        self._leading = False
        conn, self._leader = self._leader, None
        if conn is not None:  # ends the session: its advisory lock goes with it
            task = asyncio.ensure_future(conn.close())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            # awaited by leave(): a loop that ends first would drop the connection open
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- slots --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self, kind: str, limit: int) -> AsyncIterator[None]:
        i = await self._take_slot(kind, limit)
        try:
            yield
        finally:
            await asyncio.shield(self._give_slot(kind, i))

    async def _take_slot(self, kind: str, limit: int) -> int:
        held = self._held.setdefault(kind, set())
        while True:
            self._slot_freed.clear()
            # one scan at a time here: an advisory lock is reentrant within its session,
            # so only ``held`` tells this instance's own slots apart
            async with self._slot_scan:
                for i in range(limit):
                    if i in held:
                        continue
                    rows = await self._on_member(
                        "SELECT pg_try_advisory_lock(%s)", (_slot_key(kind, i),)
                    )
                    if rows and rows[0][0]:
                        held.add(i)
                        return i
            await wait_set(self._slot_freed, SLOT_POLL_S)

    async def _give_slot(self, kind: str, i: int) -> None:
        try:
            await self._on_member("SELECT pg_advisory_unlock(%s)", (_slot_key(kind, i),))
            await self._on_member("SELECT pg_notify(%s, %s)", (SLOTS, kind))
        except Exception as e:  # a lost connection released it already
            log.info("giving back a %s slot: %s", kind, e)
        finally:  # after the unlock: until then a scan here must not take it again
            self._held.get(kind, set()).discard(i)
            self._slot_freed.set()

    # -- status and shutdown --------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": "cluster (PostgreSQL)",
            "owner": self.owner,
            "role": "leader" if self.is_leader() else "follower",
            "leader": self.owner if self.is_leader() else self.leader_owner,
        }
        if self.last_error:
            out["last_error"] = self.last_error
        if self.fenced:
            out["fenced"] = list(self.fenced)
        return out

    async def instances(self) -> list[dict[str, Any]]:
        held = {int(r["key"]) for r in await self.store.fetchall(_ADVISORY)}
        rows = await self.store.fetchall(
            f"SELECT *, {DB_NOW} AS now FROM instances ORDER BY heartbeat_at DESC"
        )
        out = []
        for r in rows:
            item = dict(r)
            item.pop("now")
            item["heartbeat_s_ago"] = round(_age_s(r["heartbeat_at"], r["now"]), 1)
            item["alive"] = owner_key(str(r["owner"])) in held
            item["leader"] = bool(r["leader"])
            out.append(item)
        return out

    async def resign(self) -> None:
        if not self._leading:
            return
        self._leading = False
        conn, self._leader = self._leader, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.execute(
                    "UPDATE instances SET leader = 0 WHERE owner = %s", (self.owner,)
                )
            await _release_and_close(conn)
        log.warning("this instance gave up the leadership (stopping)")

    async def leave(self) -> None:
        was = self._leading
        self._leading = False
        with contextlib.suppress(Exception):
            if self._joined:
                await self._on_member(
                    f"UPDATE instances SET stopped_at = {DB_NOW}, leader = 0 WHERE owner = %s",
                    (self.owner,),
                )
        self._left = True
        for conn in (self._leader, self._member):
            if conn is not None:
                await _release_and_close(conn)
        self._leader = self._member = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if was:
            log.warning("this instance gave up the leadership (stopping)")


async def _release_and_close(conn: Conn) -> None:
    """Give up the session's advisory locks, then close it. Closing alone ends them too,
    but only once the server has seen the disconnect, a moment after close() returns:
    another instance asking right away would still see this one alive, or leading."""
    with contextlib.suppress(Exception):
        await conn.execute("SELECT pg_advisory_unlock_all()")
    with contextlib.suppress(Exception):
        await conn.close()


def _slot_key(kind: str, i: int) -> int:
    return lock_key(f"slot:{kind}:{i}")
