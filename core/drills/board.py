"""Failure drills: a fault injected into one model's transport for a while, and its report.

The board is owned by the App. The engine asks it, once per attempt, for a
:class:`Ticket` (:meth:`DrillBoard.take`): while a drill of that model runs, the attempt
is marked in the ledger with the drill's id and its request goes to the drill server
(:mod:`core.drills.server`) instead of the provider, which answers in the adapter's wire
format as the fault would. Everything above the transport runs for real: the adapter's
parsing and error mapping, the breaker, failover, the ledger, alerts. One decision per
attempt, taken by the engine and handed down with the adapter: the ledger's mark and the
request's destination cannot disagree, and an N-request drill faults exactly N.

The engine tells the board what the drill is there to measure: when the breaker opened,
which alert was queued, where each affected request was answered, and the first answer
of the model after the drill (it is healthy again). The report is a ``drills`` row,
written when the drill starts, ends and when the model is healthy again.

Drills live in the process that started them: on a shared PostgreSQL database another
instance's traffic to the model is not drilled. A serve restart ends them (their rows
are marked ended by ``restart``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.config.models import Config, split_model_ref
from core.drills.server import DrillServer
from core.drills.ticket import Ticket
from core.drills.wire import FAULTS, Fault
from core.errors import OpenClawError
from core.ops.owners import Liveness, host_liveness
from core.store.base import Store
from core.store.times import utcnow_iso
from core.waits import wait_set

log = logging.getLogger("openclaw.drills")

DEFAULT_FOR_S = 60.0
MAX_FOR_S = 900.0  # 15 min: a drill forgotten must not keep a model out for long
MAX_REQUESTS = 10_000
# after the drill: how long the board waits for the model's first answer (healthy again)
RECOVERY_WATCH_S = 900.0
# samples kept per drill for the latency figures (a busy 15-min drill stays bounded)
MAX_SAMPLES = 10_000


class DrillError(OpenClawError):
    """A drill that cannot start or be found; ``param`` names the field at fault."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


@dataclass
class Drill:
    """A running (or ended, still watched) drill and what it measured so far."""

    id: int
    ref: str
    api: str
    fault: Fault
    for_s: float
    max_requests: int | None
    started: datetime
    faulted: int = 0
    ended: datetime | None = None
    end_reason: str = ""
    breaker_opened_s: float | None = None
    alert_ids: list[int] = field(default_factory=list)
    affected: int = 0  # requests that met the drill (faulted, or skipped while it was out)
    failover: Counter[str] = field(default_factory=Counter)  # answering model -> requests
    failover_ms: list[float] = field(default_factory=list)  # their answering attempt
    added_ms: list[float] = field(default_factory=list)  # time on faulted attempts, per request
    unanswered: int = 0
    healthy_s: float | None = None  # after the drill ended: its first answer
    done: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.ended is None

    def measurements(self) -> dict[str, Any]:
        """What the ``report`` column keeps."""
        return {
            "faulted": self.faulted,
            "breaker_opened_s": self.breaker_opened_s,
            "alert_ids": self.alert_ids,
            "affected": self.affected,
            "failover": dict(self.failover),
            "failover_ms": self.failover_ms,
            "added_ms": self.added_ms,
            "unanswered": self.unanswered,
            "healthy_s": self.healthy_s,
            "api": self.api,
        }


def parse_for(text: str) -> float:
    """A drill's duration: ``90``, ``90s``, ``5m`` (at most 15 min); ValueError otherwise."""
    raw = text.strip().lower()
    scale = 60.0 if raw.endswith("m") else 1.0
    number = raw.removesuffix("m").removesuffix("s")
    try:
        seconds = float(number) * scale
    except ValueError:
        raise ValueError(f"invalid duration {text!r}: use seconds (60s) or minutes (5m)") from None
    if not 0 < seconds <= MAX_FOR_S or seconds != seconds:
        raise ValueError(f"duration {text!r} out of range: more than 0, at most 15m")
    return seconds


class DrillBoard:
    """The drills of this process: started, asked per attempt, ended, reported."""

    def __init__(
        self,
        config: Config,
        store: Store,
        owner: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.store = store
        self.owner = owner
        self.clock = clock
        self.alive: Liveness | None = None  # set by the app on a shared database
        # called with the model's ref when a drill of it ends (the engine: its breaker)
        self.on_end: list[Callable[[str], None]] = []
        self._by_ref: dict[str, Drill] = {}  # the running drill of each model
        self._drills: dict[int, Drill] = {}  # running, and ended ones still watched
        self._server: DrillServer | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._forgets: list[asyncio.TimerHandle] = []

    @property
    def active(self) -> bool:
        """Whether any drill runs or is still watched (the engine reports requests then)."""
        return bool(self._drills)

    # -- starting and ending -------------------------------------------------------

    def check(self, ref: str, fault: str) -> tuple[str, Fault]:
        """``ref``'s provider api and the fault, or DrillError naming the valid values."""
        if ref not in self.config.models:
            valid = ", ".join(sorted(self.config.models)) or "none configured"
            raise DrillError(f"unknown model {ref!r}: use one of {valid}", "model")
        if fault not in FAULTS:
            raise DrillError(f"unknown fault {fault!r}: use one of {', '.join(FAULTS)}", "fault")
        provider, _ = split_model_ref(ref)
        pcfg = self.config.providers.get(provider)
        if pcfg is None:
            raise DrillError(f"model {ref!r} names no configured provider", "model")
        return pcfg.api, Fault(fault)

    async def start(
        self,
        ref: str,
        fault: str,
        for_s: float = DEFAULT_FOR_S,
        max_requests: int | None = None,
    ) -> Drill:
        """Start a drill of ``ref`` (DrillError when the model, the fault or the bounds are
        wrong, or the model is drilled already). It ends after ``for_s`` or after
        ``max_requests`` faulted requests, whichever comes first."""
        api, kind = self.check(ref, fault)
        if not 0 < for_s <= MAX_FOR_S:
            raise DrillError(f"for_s must be more than 0 and at most {MAX_FOR_S:.0f}", "for_s")
        if max_requests is not None and not 1 <= max_requests <= MAX_REQUESTS:
            raise DrillError(f"requests must be 1 to {MAX_REQUESTS}", "requests")
        if ref in self._by_ref:
            running = self._by_ref[ref]
            raise DrillError(
                f"{ref} is being drilled already (drill {running.id}): wait for it to end or"
                f" stop it (POST /api/drills/{running.id}/stop)",
                "model",
                409,
            )
        if self._server is None:
            self._server = DrillServer(self._find)
        await self._server.start()
        started = self.clock()
        async with self.store.transaction() as tx:
            drill_id = await tx.insert_id(
                "INSERT INTO drills (model, fault, duration_s, max_requests, started_at, owner)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (ref, kind.value, for_s, max_requests, utcnow_iso(started), self.owner),
            )
        drill = Drill(drill_id, ref, api, kind, for_s, max_requests, started)
        self._by_ref[ref] = drill
        self._drills[drill_id] = drill
        drill.timer = asyncio.create_task(self._expire(drill))
        log.warning("drill %d: %s faulted with %s for %.0fs", drill_id, ref, kind.value, for_s)
        return drill

    async def _expire(self, drill: Drill) -> None:
        await asyncio.sleep(drill.for_s)
        self._end(drill, "time")

    async def stop(self, drill_id: int) -> Drill:
        """End a running drill now (an operator's Ctrl-C); DrillError 404 when unknown."""
        drill = self._drills.get(drill_id)
        if drill is None:
            raise DrillError(f"no running drill {drill_id} in this process", "id", 404)
        self._end(drill, "stopped")
        await self.flush()
        return drill

    def _end(self, drill: Drill, reason: str) -> None:
        if not drill.running:
            return
        drill.ended = self.clock()
        drill.end_reason = reason
        self._by_ref.pop(drill.ref, None)
        if drill.timer is not None and drill.timer is not asyncio.current_task():
            drill.timer.cancel()
        if self._server is not None:
            self._server.release(drill.id)
        drill.done.set()
        for hook in self.on_end:
            hook(drill.ref)
        log.warning("drill %d of %s ended (%s)", drill.id, drill.ref, reason)
        self._save(drill)
        # still watched for the first answer after it: when the model was healthy again
        loop = asyncio.get_running_loop()
        self._forgets.append(loop.call_later(RECOVERY_WATCH_S, self._forget, drill.id))

    def _forget(self, drill_id: int) -> None:
        drill = self._drills.get(drill_id)
        if drill is not None and not drill.running:
            del self._drills[drill_id]

    async def wait(self, drill_id: int, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a drill of this process to end; True when it did
        (or is not running here)."""
        drill = self._drills.get(drill_id)
        if drill is None or not drill.running:
            return True
        return await wait_set(drill.done, timeout_s)

    async def end_orphans(self) -> int:
        """Mark ended (``restart``) the drills a stopped process left running: a restart
        ends a drill, and its row must not say it runs. Rows of live owners (another
        instance, this process) are left alone."""
        rows = await self.store.fetchall("SELECT id, owner FROM drills WHERE ended_at IS NULL")
        owners = {r["owner"] for r in rows if r["owner"]}
        alive = await (self.alive or host_liveness(self.owner))(owners)
        dead = [r["id"] for r in rows if r["owner"] not in alive and r["id"] not in self._drills]
        now = utcnow_iso(self.clock())
        for drill_id in dead:
            await self.store.insert(
                "UPDATE drills SET ended_at = ?, end_reason = 'restart'"
                " WHERE id = ? AND ended_at IS NULL",
                (now, drill_id),
            )
        return len(dead)

    async def close(self) -> None:
        """End every drill (``shutdown``), release held requests, stop the drill server."""
        for drill in list(self._by_ref.values()):
            self._end(drill, "shutdown")
        await self.flush()
        for handle in self._forgets:
            handle.cancel()
        if self._server is not None:
            await self._server.close()

    # -- what the engine asks and tells ---------------------------------------------

    def take(self, ref: str) -> Ticket | None:
        """A ticket when ``ref`` is drilled now: its next attempt is faulted (and counted;
        the N-th of an N-request drill ends it). None otherwise: the call goes out."""
        drill = self._by_ref.get(ref)
        if drill is None or self._server is None:
            return None
        drill.faulted += 1
        provider, model = split_model_ref(ref)
        url = self._server.url_for(drill.id, drill.fault)
        if drill.max_requests is not None and drill.faulted >= drill.max_requests:
            self._end(drill, "requests")
        return Ticket(drill.id, provider, model, url)

    def drilled(self, ref: str) -> bool:
        """Whether ``ref`` is being drilled now."""
        return ref in self._by_ref

    def _of(self, ref: str, drill_id: int | None) -> Drill | None:
        """The drill that faulted an attempt (its id), else the one running on ``ref``: the
        N-th attempt of an N-request drill ends it before its answer is judged."""
        return self._drills.get(drill_id) if drill_id is not None else self._by_ref.get(ref)

    def breaker_opened(self, ref: str, drill_id: int | None = None) -> None:
        """The breaker of ``ref`` opened after an attempt (faulted by ``drill_id``); the
        first opening in a drill is reported."""
        drill = self._of(ref, drill_id)
        if drill is not None and drill.breaker_opened_s is None:
            drill.breaker_opened_s = self._since(drill.started)
            self._save(drill)

    def alerted(self, ref: str, outbox_ids: Iterable[int], drill_id: int | None = None) -> None:
        """An alert about ``ref`` was queued (its outbox rows) after an attempt (faulted by
        ``drill_id``) or while ``ref`` is drilled."""
        drill = self._of(ref, drill_id)
        if drill is not None:
            drill.alert_ids += list(outbox_ids)
            self._save(drill)

    def answered(self, ref: str, drilled: bool) -> None:
        """``ref`` answered a real call (``drilled`` False): after its drill ended, the
        first such answer is when the model was healthy again."""
        if drilled:
            return
        for drill in self._drills.values():
            if drill.ref == ref and not drill.running and drill.healthy_s is None:
                assert drill.ended is not None
                drill.healthy_s = self._since(drill.ended)
                self._save(drill)

    def request_done(
        self,
        faulted_ms: Mapping[int, float],
        skipped: Iterable[str],
        answered_ref: str | None,
        answered_ms: float,
    ) -> None:
        """A request ended: ``faulted_ms`` is the time it spent on attempts each drill
        faulted (by drill id), ``skipped`` the models its plan left out (a drilled one,
        out while its breaker is open), ``answered_ref`` the model that answered it
        (None: none did) in ``answered_ms``."""
        passed = set(skipped)
        for drill in self._drills.values():
            if drill.id not in faulted_ms and not (drill.running and drill.ref in passed):
                continue
            drill.affected += 1
            if len(drill.added_ms) < MAX_SAMPLES:
                drill.added_ms.append(round(faulted_ms.get(drill.id, 0.0), 3))
            if answered_ref is None or answered_ref == drill.ref:
                drill.unanswered += answered_ref is None
                continue
            drill.failover[answered_ref] += 1
            if len(drill.failover_ms) < MAX_SAMPLES:
                drill.failover_ms.append(round(answered_ms, 3))

    # -- reports ---------------------------------------------------------------------

    async def report(self, drill_id: int) -> dict[str, Any]:
        """One drill's report (DrillError 404 when there is no such drill)."""
        await self.flush()
        rows = await self.store.fetchall("SELECT * FROM drills WHERE id = ?", (drill_id,))
        if not rows:
            raise DrillError(f"no drill {drill_id}: list them with GET /api/drills", "id", 404)
        row = dict(rows[0])
        m = self._measured(row)
        outbox = await self._outbox(m.get("alert_ids", []))
        normal = await self._normal_ms(row["model"], _parse(row["started_at"]))
        return self._report(row, m, outbox, normal)

    async def reports(self, limit: int = 50) -> list[dict[str, Any]]:
        """The kept drills, newest first."""
        await self.flush()
        rows = [
            dict(r)
            for r in await self.store.fetchall(
                "SELECT * FROM drills ORDER BY id DESC LIMIT ?", (limit,)
            )
        ]
        measured = [self._measured(r) for r in rows]
        # one query for every listed drill's alerts; the normal latency is one report's only
        outbox = await self._outbox([i for m in measured for i in m.get("alert_ids", [])])
        return [self._report(r, m, outbox, None) for r, m in zip(rows, measured, strict=True)]

    def _measured(self, row: dict[str, Any]) -> dict[str, Any]:
        live = self._drills.get(int(row["id"]))
        if live is not None:
            return live.measurements()
        measured: dict[str, Any] = json.loads(row["report"] or "{}")
        return measured

    def _report(
        self,
        row: dict[str, Any],
        m: dict[str, Any],
        outbox: dict[int, dict[str, Any]],
        normal_ms: float | None,
    ) -> dict[str, Any]:
        live = self._drills.get(int(row["id"]))
        started = _parse(row["started_at"])
        ended = row["ended_at"]
        if live is not None and live.ended is not None:
            ended = utcnow_iso(live.ended)
        alerts = [_alert(outbox[i], started) for i in m.get("alert_ids", []) if i in outbox]
        failover = [
            {
                "model": ref,
                "requests": n,
            }
            for ref, n in sorted(m.get("failover", {}).items(), key=lambda kv: -kv[1])
        ]
        added = m.get("added_ms", [])
        answers = m.get("failover_ms", [])
        return {
            "id": int(row["id"]),
            "model": row["model"],
            "fault": row["fault"],
            "state": "running" if ended is None else "ended",
            "started_at": row["started_at"],
            "ended_at": ended,
            "end_reason": (live.end_reason if live is not None else row["end_reason"]) or None,
            "for_s": float(row["duration_s"]),
            "max_requests": row["max_requests"],
            "faulted_requests": int(m.get("faulted", 0)),
            "affected_requests": int(m.get("affected", 0)),
            "breaker_opened_after_s": m.get("breaker_opened_s"),
            "failover": failover,
            "unanswered": int(m.get("unanswered", 0)),
            "added_latency_ms": {"median": _pct(added, 50), "p95": _pct(added, 95)},
            "failover_latency_ms": {"median": _pct(answers, 50), "p95": _pct(answers, 95)},
            "normal_latency_ms": normal_ms,
            "alerts": alerts,
            "healthy_after_s": m.get("healthy_s"),
        }

    async def _outbox(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """The outbox rows of alerts, by id, in one query."""
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        rows = await self.store.fetchall(
            "SELECT id, target, status, created_at, delivered_at FROM outbox"
            f" WHERE id IN ({marks})",
            tuple(ids),
        )
        return {int(r["id"]): dict(r) for r in rows}

    async def _normal_ms(self, ref: str, started: datetime) -> float | None:
        """The model's median latency of real answers over the day before the drill."""
        provider, model = split_model_ref(ref)
        rows = await self.store.fetchall(
            "SELECT latency_ms FROM attempts WHERE provider = ? AND model = ?"
            " AND outcome = 'ok' AND drill IS NULL AND ts >= ? AND ts < ?",
            (provider, model, utcnow_iso(started - timedelta(days=1)), utcnow_iso(started)),
        )
        return _pct([float(r[0]) for r in rows], 50)

    # -- internals -------------------------------------------------------------------

    def _find(self, drill_id: int) -> Drill | None:
        return self._drills.get(drill_id)

    def _since(self, when: datetime) -> float:
        return round((self.clock() - when).total_seconds(), 3)

    def _save(self, drill: Drill) -> None:
        """Write the drill's row in the background (the engine's hooks are synchronous)."""
        task = asyncio.get_running_loop().create_task(self._write(drill))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, drill: Drill) -> None:
        try:
            await self.store.insert(
                "UPDATE drills SET ended_at = ?, end_reason = ?, report = ? WHERE id = ?",
                (
                    utcnow_iso(drill.ended) if drill.ended is not None else None,
                    drill.end_reason or None,
                    json.dumps(drill.measurements()),
                    drill.id,
                ),
            )
        except Exception:  # the report is lost, the drill itself is not affected
            log.exception("drill %d: its report could not be written", drill.id)

    async def flush(self) -> None:
        """Wait for the report writes queued so far."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)


def _alert(row: dict[str, Any], started: datetime) -> dict[str, Any]:
    """An alert's outbox row as a report shows it: times counted from the drill's start."""
    delivered = row["delivered_at"]
    return {
        "outbox_id": int(row["id"]),
        "target": row["target"],
        "status": row["status"],
        "queued_after_s": _secs(_parse(row["created_at"]) - started),
        "delivered_after_s": _secs(_parse(delivered) - started) if delivered else None,
    }


def _parse(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _secs(delta: timedelta) -> float:
    return round(delta.total_seconds(), 3)


def _pct(values: list[float], pct: int) -> float | None:
    """The ``pct``-th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))
    return round(float(ordered[rank - 1]), 1)
