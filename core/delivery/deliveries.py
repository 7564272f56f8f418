"""Deliveries an admin settles: rows that failed, and rows whose outcome is unknown.

A row whose claim expired while it was ``sending`` (the process died between the send and
the confirmation), or whose send a live process cut off after its request left (a
shutdown), may have arrived or not. Where ``[delivery] on_unknown`` says ``ask``
(Telegram, Slack: a second send is a second message) it waits as ``unknown`` and the
admins are shown it once (the bot's card, else an alert to ``[alerts] deliver``); an
admin then resends it or marks it delivered. Nothing here reports a row delivered without
the channel's confirmation or an admin's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from core.cluster.base import OUTBOX
from core.delivery.outbox import Outbox
from core.store.base import Row
from core.store.times import utcnow_iso

log = logging.getLogger("openclaw.delivery")
ASK_BATCH = 20  # unknown rows shown to the admins per worker cycle


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"  # sent maybe, never confirmed: an admin decides


# what an admin may do with a row in each status
RESENDABLE = (DeliveryStatus.UNKNOWN, DeliveryStatus.FAILED)
CONFIRMABLE = (DeliveryStatus.UNKNOWN,)  # a failed row was refused: it never arrived


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row, as the interfaces show it."""

    id: int
    run_id: int | None
    kind: str  # result | alert | notify …
    target: str  # telegram:<chat> | slack:<name> | webhook:<name> | log
    status: DeliveryStatus
    body: str
    attempts: int
    last_error: str | None
    created_at: str
    delivered_at: str | None
    note: str | None  # who settled it by hand

    @property
    def channel(self) -> str:
        """The channel kind: ``telegram``, ``slack``, ``webhook``, ``log``."""
        return self.target.partition(":")[0]

    def as_dict(self) -> dict[str, Any]:
        """JSON for the API (without the body: it can be long)."""
        return {
            "id": self.id,
            "target": self.target,
            "status": str(self.status),
            "attempts": self.attempts,
            "error": self.last_error,
            "delivered_at": self.delivered_at,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Settled:
    """What an admin's Resend or Mark delivered did: ``done`` or why not."""

    done: bool
    delivery: Delivery | None  # None: no such row


# the bot's card to the admins; True once at least one admin was shown it
UnknownNotifier = Callable[[Delivery], Awaitable[bool]]
Alert = Callable[[str], Awaitable[None]]

_COLUMNS = (
    "id, run_id, kind, target, status, body, attempts, last_error, created_at, delivered_at, note"
)


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=int(row["id"]),
        run_id=None if row["run_id"] is None else int(row["run_id"]),
        kind=str(row["kind"]),
        target=str(row["target"]),
        status=DeliveryStatus(str(row["status"])),
        body=str(row["body"]),
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        created_at=str(row["created_at"]),
        delivered_at=row["delivered_at"],
        note=row["note"],
    )


class Deliveries:
    """Failed and unknown rows: listed, shown, resent, confirmed; unknown ones announced."""

    def __init__(
        self,
        outbox: Outbox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.store = outbox.store
        self.clock = clock
        self.notifiers: list[UnknownNotifier] = []  # the bot's cards (set through the facade)
        self.alert: Alert | None = None  # [alerts] deliver, when no card reached anyone

    async def get(self, row_id: int) -> Delivery | None:
        """One row, or None."""
        rows = await self.store.fetchall(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (row_id,))
        return _delivery(rows[0]) if rows else None

    async def of_run(self, run_id: int) -> list[Delivery]:
        """A run's rows, in the order queued (one query)."""
        rows = await self.store.fetchall(
            f"SELECT {_COLUMNS} FROM outbox WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [_delivery(r) for r in rows]

    async def attention(self, limit: int, offset: int = 0) -> tuple[list[Delivery], int]:
        """Failed and unknown rows, newest first (one page), and how many there are."""
        rows = await self.store.fetchall(
            f"SELECT {_COLUMNS} FROM outbox WHERE status IN ('failed', 'unknown')"
            " ORDER BY id DESC LIMIT ? OFFSET ?",
            (int(limit), int(offset)),
        )
        total = await self.store.fetchall(
            "SELECT COUNT(*) FROM outbox WHERE status IN ('failed', 'unknown')"
        )
        return [_delivery(r) for r in rows], int(total[0][0])

    async def resend(self, row_id: int, by: str) -> Settled:
        """An unknown or failed row goes back to pending, due now: sent once more (a
        failed one fails for good on its next error). Guarded by its status: of two
        presses, one resends."""
        now = utcnow_iso(self.clock())
        async with self.store.transaction() as tx:
            changed = await tx.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, claimed_by = NULL,"
                " claimed_at = NULL, asked_at = NULL, note = ?"
                " WHERE id = ? AND status IN ('unknown', 'failed')",
                (now, f"resent by {by}"[:200], row_id),
            )
            if changed:
                tx.notify(OUTBOX)  # every instance's worker (the leader sends Telegram rows)
        if changed:
            self.outbox.notify()
            log.info("outbox: delivery %s resent by %s", row_id, by)
        return Settled(bool(changed), await self.get(row_id))

    async def mark_delivered(self, row_id: int, by: str) -> Settled:
        """An admin saw the message arrive: an unknown row is delivered, with a note that
        it was the admin's word and not the channel's."""
        now = utcnow_iso(self.clock())
        async with self.store.transaction() as tx:
            changed = await tx.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, note = ?,"
                " claimed_by = NULL, claimed_at = NULL WHERE id = ? AND status = 'unknown'",
                (now, f"confirmed by admin {by}"[:200], row_id),
            )
        if changed:
            log.info("outbox: delivery %s marked delivered by admin %s", row_id, by)
        return Settled(bool(changed), await self.get(row_id))

    async def ask(self) -> int:
        """Show the admins each unknown row not shown yet (the leader's job: one card per
        row, from one instance); returns how many were shown. A row no card reached is
        announced through ``[alerts] deliver`` instead, so it is never silent."""
        if not self.outbox.is_leader():
            return 0
        rows = await self.store.fetchall(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = 'unknown' AND asked_at IS NULL"
            f" ORDER BY id LIMIT {ASK_BATCH}"
        )
        shown = 0
        for row in rows:
            delivery = _delivery(row)
            reached = False
            for notify in self.notifiers:
                try:
                    reached = await notify(delivery) or reached
                except Exception:  # the bot's bug must not stop the worker
                    log.exception("outbox: showing delivery %s to the admins failed", delivery.id)
            if not reached and self.alert is not None:
                await self.alert(
                    f"Delivery #{delivery.id} to {delivery.target} may or may not have arrived"
                    " (the process sending it stopped before the channel confirmed it)."
                    " Resend it or mark it delivered: /deliveries in Telegram."
                )
            async with self.store.transaction() as tx:
                await tx.execute(
                    "UPDATE outbox SET asked_at = ? WHERE id = ? AND asked_at IS NULL",
                    (utcnow_iso(self.clock()), delivery.id),
                )
            shown += 1
        return shown
