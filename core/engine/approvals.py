"""Approval of calls to tiers marked ``requires_approval`` (Tier 3 by default).

The engine asks an Approver before calling such a tier. ``PolicyApprover`` applies
``[approvals] default`` without asking anyone. ``ApprovalBroker`` asks people: it
stores a pending row, lets notifiers (the Telegram bot) show it to the admins, and
waits for the first decision or the timeout (then denied, marked expired).

Every copy shown to someone is recorded the moment it is sent, so a decision closes all
of them: copies recorded before it are closed with it, a copy recorded after it (still
being sent when someone decided, or posted later by ``/approvals``) is closed at once.
If the request reaches nobody, the run is not left waiting for the timeout: the
``[approvals] default`` applies at once, with that reason, and an alert goes out.

Several instances on one database: the copies go out from the leader only (Telegram's
rate limit is the whole cluster's). A run waiting on a follower stores its row and
notifies ``APPROVAL_ASKED``; the leader claims the row (``shown_by``) and shows it, and
its sweep each heartbeat shows what a missed notification or a leader change left
unshown. A decision taken on any instance notifies ``APPROVALS``: the waiting run wakes
wherever it is, and the leader claims the closing of the copies (``closed``). The
instance whose run waits tells its watchers (the run's progress in the chat it answers).
Alone (SQLite, or no cluster wired) the broker always leads: it shows and closes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.cluster.base import APPROVAL_ASKED, APPROVALS
from core.config.models import ApprovalsConfig
from core.ops.owners import Liveness
from core.store.base import Store
from core.store.times import utcnow_iso
from core.waits import within

log = logging.getLogger("openclaw.approvals")


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    request_id: str
    task: str | None
    tier: int
    model: str
    reason: str  # why the request climbed this far
    estimated_cost_usd: float
    agent: str | None = None
    run_id: str | None = None
    caller: str | None = None
    preview: str = ""  # the start of the prompt
    # An agent's operator tool call instead of an escalation (core/agents/tool_approval.py):
    # then tier is TOOL_TIER, model is empty and the texts say "tool <name>", not the tier.
    tool: str | None = None
    arguments: str = ""  # the call's arguments, JSON text, redacted by the caller

    @property
    def subject(self) -> str:
        """What is to be approved, for texts: ``tier 3 (opus/claude-opus)`` or
        ``tool deploy``."""
        return f"tool {self.tool}" if self.tool is not None else f"tier {self.tier} ({self.model})"


@dataclass(frozen=True, slots=True)
class Decision:
    approved: bool
    by: str
    note: str = ""


class Approver(Protocol):
    async def decide(self, request: ApprovalRequest) -> Decision:
        """Approve or deny one escalation. Must return within the configured timeout."""
        ...


class PolicyApprover:
    """Decides by the configured default policy, without asking anyone."""

    def __init__(self, config: ApprovalsConfig) -> None:
        self.config = config

    async def decide(self, request: ApprovalRequest) -> Decision:
        """Apply ``[approvals] default``."""
        approved = self.config.default == "approve"
        return Decision(approved, "policy", f"[approvals] default = {self.config.default!r}")


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    id: int
    request: ApprovalRequest
    status: str  # pending | approved | denied | expired
    decided_by: str | None
    created_at: str
    expires_at: str
    messages: list[tuple[int, int]]  # (chat id, message id) shown to admins
    owner: str | None = None  # the instance whose run waits for it

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> ApprovalRecord:
        req = ApprovalRequest(
            r["request_id"],
            r["task"],
            r["tier"],
            r["model"],
            r["reason"],
            r["estimated_cost_usd"],
            r["agent"],
            r["run_id"],
            r["caller"],
            r["preview"],
            r["tool"],
            r["arguments"],
        )
        return cls(
            r["id"],
            req,
            r["status"],
            r["decided_by"],
            r["created_at"],
            r["expires_at"],
            [(int(m[0]), int(m[1])) for m in json.loads(r["messages"])],
            r.get("owner"),
        )


Copy = tuple[int, int]  # (chat id, message id) of one copy shown to someone
CopyShown = Callable[[int, int], Awaitable[None]]
# Shows a pending approval: calls ``shown(chat, message)`` for each copy as soon as it is
# sent, and returns why each recipient it could not reach was not reached.
Notifier = Callable[[ApprovalRecord, CopyShown], Awaitable[list[str]]]
Alert = Callable[[str], Awaitable[None]]
# A run on this instance waits for this approval (pending) or got its outcome (the record
# as decided or expired): for the run's own progress, on the instance that runs it.
Watcher = Callable[[ApprovalRecord], None]
POLICY_BY = "policy ("  # decided_by of the default applied because nobody was reached
MAX_DECIDED_BY = 500  # the reason "nobody could be reached" lives in decided_by
MAX_ARGUMENTS = 4000  # a tool call's arguments as stored; the card shows far fewer
# a waiting run reads its approval's row this often, woken or not: a decision taken on
# another instance wakes it through the store's notification, or at the latest then
POLL_S = 2.0


class Closer(Protocol):
    async def __call__(self, record: ApprovalRecord, copies: list[Copy] | None = None) -> None:
        """The approval was decided or expired: close ``copies`` (None: the decision
        itself, close every copy in ``record.messages``)."""
        ...


class ApprovalBroker:
    """Asks people, waits for the first decision or the timeout; every decision is a row.

    Without a notifier (no bot) it falls back to the policy, since nobody could answer.
    Rows are stamped with ``clock``'s time; the wait itself is the event loop's.
    """

    def __init__(
        self,
        store: Store,
        config: ApprovalsConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.notifiers: list[Notifier] = []  # show a pending approval to the people
        self.closers: list[Closer] = []  # an approval was decided or expired: update copies
        self.alerts: list[Alert] = []  # nobody could be asked: tell the operator
        self.watchers: list[Watcher] = []  # a run here waits for an approval, or got it
        # whether this instance shows and closes the copies: the cluster's leader on a
        # shared database (serve wires it); alone it always is
        self.is_leader: Callable[[], bool] = lambda: True
        self._waiting: dict[int, asyncio.Future[Decision]] = {}
        self._copies_lock = asyncio.Lock()  # messages is read-modified-written
        self._background: set[asyncio.Task[None]] = set()
        self.owner: str | None = None  # this instance's id, stamped on what it waits for
        self.alive: Liveness | None = None  # set by the app on a shared database
        self.poll_s = POLL_S
        store.listen(APPROVALS, self._decided_elsewhere)
        store.listen(APPROVAL_ASKED, self._asked)

    async def decide(self, request: ApprovalRequest) -> Decision:
        """Store a pending approval, notify, wait; expired → denied; reached nobody →
        ``[approvals] default`` at once."""
        if not self.notifiers:
            return await PolicyApprover(self.config).decide(request)
        # The row is stored in a task of its own: a run cancelled while its COMMIT is on
        # the wire would otherwise leave a pending row that nobody waits for (and no one
        # expires before the next sweep). Cancelled then, it waits for the row and expires it.
        leading = self.is_leader()  # then this instance shows the copies itself
        stored = asyncio.ensure_future(self._store(request, leading))
        try:
            aid = await asyncio.shield(stored)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                # shielded again: a second cancel must not cut the insert off mid-COMMIT
                aid = await asyncio.shield(stored)
                await asyncio.shield(self._close(aid, "expired", "abandoned"))
            raise
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting[aid] = fut
        try:
            record = await self.get(aid)
            assert record is not None
            self._tell_watchers(record)
            if leading:
                # Copies go out beside the wait: an admin may decide while another admin's
                # copy is still being sent (waiting out a 429), and the run goes on at once.
                self._spawn(self._notify(record))
            try:
                return await within(self._wait(aid, fut), self.config.timeout_s)
            except TimeoutError:
                if not await self._close(aid, "expired", "timeout"):
                    # a decision landed just as time ran out: the row is the truth
                    decided = await self._decision_in_row(aid)
                    if decided is not None:
                        return decided
                return Decision(
                    False, "timeout", f"expired after {self.config.timeout_s:g}s without a decision"
                )
        finally:
            self._waiting.pop(aid, None)
            if not fut.done():  # the run went away (timeout, shutdown): nobody waits now
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._close(aid, "expired", "abandoned"))
            if self.watchers:
                self._spawn(self._tell_outcome(aid))

    async def _store(self, request: ApprovalRequest, leading: bool) -> int:
        """Insert the pending row; its id. Leading, this instance claims showing it in the
        same write; following, the leader is told to."""
        now = self.clock()
        expires = now + timedelta(seconds=self.config.timeout_s)
        async with self.store.transaction() as tx:
            aid = await tx.insert_id(
                "INSERT INTO approvals (request_id, run_id, agent, caller, task, tier, model,"
                " reason, estimated_cost_usd, preview, tool, arguments, status, created_at,"
                " expires_at, owner, shown_by, closed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, 0)"
                " RETURNING id",
                (
                    request.request_id,
                    request.run_id,
                    request.agent,
                    request.caller,
                    request.task,
                    request.tier,
                    request.model,
                    request.reason[:1000],
                    request.estimated_cost_usd,
                    request.preview[:1000],
                    request.tool,
                    request.arguments[:MAX_ARGUMENTS],
                    utcnow_iso(now),
                    utcnow_iso(expires),
                    self.owner,
                    self._me if leading else None,
                ),
            )
            if not leading:
                tx.notify(APPROVAL_ASKED, str(aid))
            return aid

    @property
    def _me(self) -> str:
        """What ``shown_by`` says of this instance ('' for a broker outside any app)."""
        return self.owner or ""

    async def _wait(self, aid: int, fut: asyncio.Future[Decision]) -> Decision:
        """The decision: from this instance (the future), or read from the row when
        another instance's notification says so, or every ``poll_s`` at the latest."""
        while True:
            done, _ = await asyncio.wait({fut}, timeout=self.poll_s)  # fut is never cancelled
            if done:
                return fut.result()
            decided = await self._decision_in_row(aid)
            if decided is not None:
                return decided

    async def _decision_in_row(self, aid: int) -> Decision | None:
        record = await self.get(aid)
        if record is None or record.status not in ("approved", "denied"):
            return None
        approved, by = record.status == "approved", record.decided_by or ""
        if by.startswith(POLICY_BY):  # the default, applied where nobody could be reached
            why = by.removeprefix(POLICY_BY).removesuffix(")")
            return Decision(approved, "policy", self._policy_note(why))
        return Decision(approved, by)

    def _policy_note(self, why: str) -> str:
        return f"{why}; [approvals] default = {self.config.default!r}"

    def _decided_elsewhere(self, payload: str) -> None:
        """An approval was decided (by any instance): wake its run if it waits here; the
        leader closes its copies."""
        if not payload.isdigit():
            return
        if self.is_leader():
            self._spawn(self._close_copies(int(payload)))
        fut = self._waiting.get(int(payload))
        if fut is None or fut.done():
            return

        async def wake() -> None:
            decided = await self._decision_in_row(int(payload))
            if decided is not None and not fut.done():
                fut.set_result(decided)

        self._spawn(wake())

    def _asked(self, payload: str) -> None:
        """A run on a follower waits for a new approval: the leader shows it."""
        if payload.isdigit() and self.is_leader():
            self._spawn(self._show(int(payload)))

    async def _show(self, aid: int, dead: str | None = None) -> None:
        """Claim showing a pending approval (or take it over from ``dead``, an instance
        that claimed it and stopped before any copy was recorded), then show it: one
        instance shows each approval, across leader changes."""
        if dead is None:
            sql = "shown_by IS NULL"
            params: tuple[Any, ...] = (self._me, aid)
        else:
            sql = "shown_by = ? AND messages = '[]'"
            params = (self._me, aid, dead)
        async with self.store.transaction() as tx:
            claimed = await tx.execute(
                f"UPDATE approvals SET shown_by = ? WHERE id = ? AND status = 'pending' AND {sql}",
                params,
            )
        record = await self.get(aid) if claimed == 1 else None
        if record is not None and record.status == "pending":
            await self._notify(record)

    async def sweep(self) -> None:
        """The leader's catch-up, each heartbeat: show the pending approvals nobody shows
        (a notification missed, a leader that stopped mid-way), and close the copies of
        decided ones nobody closed (decided while no leader listened). The sending goes
        on in the background: this returns after a query or two."""
        if not self.is_leader():
            return
        rows = await self.store.fetchall(
            "SELECT id, status, shown_by, messages FROM approvals"
            # a pending row with copies and no claimer was shown before migration 020
            " WHERE (status = 'pending' AND messages = '[]')"
            " OR (closed = 0 AND status <> 'pending') ORDER BY id"
        )
        claimers = {
            r["shown_by"]
            for r in rows
            if r["status"] == "pending" and r["shown_by"] not in (None, self._me)
        }
        alive = await self.alive(claimers) if self.alive is not None and claimers else set()
        for r in rows:
            if r["status"] != "pending":
                self._spawn(self._close_copies(r["id"]))
            elif r["shown_by"] is None:
                self._spawn(self._show(r["id"]))
            elif r["shown_by"] in claimers and r["shown_by"] not in alive:
                self._spawn(self._show(r["id"], dead=r["shown_by"]))

    async def _notify(self, record: ApprovalRecord) -> None:
        reached = 0

        async def shown(chat_id: int, message_id: int) -> None:
            nonlocal reached
            reached += 1
            await self.add_copy(record.id, chat_id, message_id)

        async def one(notify: Notifier) -> list[str]:
            try:
                return await notify(record, shown)
            except Exception as e:
                log.exception("approval %s: a notifier failed", record.id)
                return [f"a notifier failed ({type(e).__name__})"]

        failures = [f for fs in await asyncio.gather(*map(one, self.notifiers)) for f in fs]
        if not self.notifiers:  # the leader has no bot, while the waiting instance has
            failures = ["the leading instance has no notifier (no Telegram bot)"]
        if reached == 0:
            await self._reached_nobody(record, failures)

    async def _reached_nobody(self, record: ApprovalRecord, failures: list[str]) -> None:
        """Nobody can decide, so waiting for the timeout would only delay the same answer:
        the configured default applies now, and the operator hears of it."""
        why = "no admin could be reached: " + ("; ".join(failures) or "nobody to ask")
        default = self.config.default
        approved = default == "approve"
        by = f"{POLICY_BY}{why})"[:MAX_DECIDED_BY]
        decision = Decision(approved, "policy", self._policy_note(why))
        status = "approved" if approved else "denied"
        if not await self._close(record.id, status, by, wake=decision):
            return  # decided or expired meanwhile: that stands
        req = record.request
        who = req.agent or req.caller or "a gateway client"
        run = f" (run #{req.run_id})" if req.run_id else ""
        text = (
            f"Approval #{record.id} for {req.subject} from {who}{run}: {why}."
            f" [approvals] default = {default!r} applied: {status}."
        )
        log.error("%s", text)
        for alert in self.alerts:
            try:
                await alert(text)
            except Exception:
                log.exception("approval %s: an alert failed", record.id)

    async def add_copy(self, approval_id: int, chat_id: int, message_id: int) -> None:
        """Record one copy shown to someone (with buttons). A copy of an approval that was
        already decided or expired is closed at once: it must not keep live buttons."""
        # read inside the (serialized) write: another instance may record a copy too (the
        # leader's cards, another's /approvals answer); the lock spares this one's waits
        async with self._copies_lock, self.store.transaction() as tx:
            rows = await tx.fetchall("SELECT messages FROM approvals WHERE id = ?", (approval_id,))
            if not rows:
                return
            copies = [*json.loads(rows[0]["messages"]), [chat_id, message_id]]
            await tx.execute(
                "UPDATE approvals SET messages = ? WHERE id = ?",
                (json.dumps(copies), approval_id),
            )
        # Read after the write: a decision either saw this copy when it closed the others,
        # or its status is already visible here, so no copy escapes both.
        record = await self.get(approval_id)
        if record is not None and record.status != "pending":
            await self._run_closers(record, [(chat_id, message_id)])

    async def close_copy(self, approval_id: int, chat_id: int, message_id: int) -> bool:
        """Close one recorded copy of a decided approval again (a press on a copy whose
        closing failed). False when it is still pending or not one of its copies."""
        record = await self.get(approval_id)
        if record is None or record.status == "pending":
            return False
        if (chat_id, message_id) not in record.messages:
            return False  # never edit a message that is not a copy of this approval
        await self._run_closers(record, [(chat_id, message_id)])
        return True

    async def resolve(self, approval_id: int, approved: bool, by: str) -> tuple[bool, str]:
        """Record a decision; the first one wins. Returns (taken, what to tell the person)."""
        status = "approved" if approved else "denied"
        if await self._close(approval_id, status, by, wake=Decision(approved, by)):
            return True, f"{status} — thanks"
        record = await self.get(approval_id)
        if record is None:
            return False, "no such approval"
        if record.status == "expired":
            return False, "this approval has expired"
        return False, f"already {record.status} by {record.decided_by}"

    async def _close(
        self, approval_id: int, status: str, by: str, wake: Decision | None = None
    ) -> bool:
        leading = self.is_leader()  # then it closes the copies itself, claimed here
        async with self.store.transaction() as tx:
            changed = await tx.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, closed = ?"
                " WHERE id = ? AND status = 'pending'",
                (status, by, utcnow_iso(self.clock()), int(leading), approval_id),
            )
            if changed == 1:
                tx.notify(APPROVALS, str(approval_id))
        if changed != 1:
            return False
        fut = self._waiting.get(approval_id)
        if wake is not None and fut is not None and not fut.done():
            fut.set_result(wake)  # the waiting run goes on before the messages are edited
        record = await self.get(approval_id) if leading else None
        if record is not None:
            # Edits may wait out rate limits: the person who decided is answered first.
            self._spawn(self._run_closers(record, None))
        return True

    async def _close_copies(self, approval_id: int) -> None:
        """The leader claims closing the copies of an approval decided elsewhere (or by a
        leader that stopped first), then closes them: once, whoever hears of it."""
        async with self.store.transaction() as tx:
            claimed = await tx.execute(
                "UPDATE approvals SET closed = 1 WHERE id = ? AND closed = 0"
                " AND status <> 'pending'",
                (approval_id,),
            )
        record = await self.get(approval_id) if claimed == 1 else None
        if record is not None:
            await self._run_closers(record, None)

    def _tell_watchers(self, record: ApprovalRecord) -> None:
        for watch in self.watchers:
            try:
                watch(record)
            except Exception:
                log.exception("approval %s: a watcher failed", record.id)

    async def _tell_outcome(self, approval_id: int) -> None:
        record = await self.get(approval_id)
        if record is not None and record.status != "pending":
            self._tell_watchers(record)

    async def _run_closers(self, record: ApprovalRecord, copies: list[Copy] | None) -> None:
        for close in self.closers:
            try:
                await close(record, copies)
            except Exception:
                log.exception("approval %s: a closer failed", record.id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("approvals: sending or closing copies failed", exc_info=task.exception())

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for copies still being sent or closed; cancel what is left.
        For shutdown, so no task is left behind on a closing loop."""
        if not self._background:
            return
        _, left = await asyncio.wait(set(self._background), timeout=timeout_s)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    async def get(self, approval_id: int) -> ApprovalRecord | None:
        """One approval."""
        rows = await self.store.fetchall("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return ApprovalRecord.from_row(dict(rows[0])) if rows else None

    async def pending(self) -> list[ApprovalRecord]:
        """Approvals still waiting for a decision, oldest first."""
        rows = await self.store.fetchall(
            "SELECT * FROM approvals WHERE status = 'pending' ORDER BY id"
        )
        return [ApprovalRecord.from_row(dict(r)) for r in rows]

    async def expire_abandoned(self) -> int:
        """Pending approvals nobody waits for any more (their process ended) are expired:
        this instance's own that no run here waits for, and, on a shared database,
        those of instances that are gone."""
        records = await self.pending()
        others = {r.owner for r in records if r.owner and r.owner != self.owner}
        alive = await self.alive(others) if self.alive is not None and others else set()
        count = 0
        for record in records:
            mine = record.owner is None or record.owner == self.owner
            abandoned = record.id not in self._waiting if mine else record.owner not in alive
            if abandoned and await self._close(record.id, "expired", "restart"):
                count += 1
        return count
