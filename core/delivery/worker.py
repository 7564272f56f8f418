"""The delivery worker: claims due outbox rows and sends them through their channels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.delivery.channels import WIRE, Channel, Wire
from core.delivery.deliveries import Deliveries
from core.delivery.errors import ChannelUnavailable, DeliveryError
from core.delivery.outbox import Outbox
from core.ops.backoff import Backoff

log = logging.getLogger("openclaw.delivery")
# rows being sent at once: enough that rows waiting on one chat's flood limit leave room
# for the other chats to fill Telegram's global rate
MAX_IN_FLIGHT = 100
# While rows are in flight, the next top-up waits this many times as long as the last claim
# took (at most TOP_UP_PAUSE_MAX_S): a claim scans the due backlog, ~0.5 ms at 1k rows but
# ~75 ms at 100k, and claiming after every finished send would then keep the store busy.
TOP_UP_PAUSE_FACTOR = 9.0
TOP_UP_PAUSE_MAX_S = 1.0


def idempotency_key(row: Mapping[str, Any]) -> str:
    """The key a row carries on every send (webhooks: the Idempotency-Key header)."""
    return f"outbox-{row['id']}"


class DeliveryWorker:
    """Sends due outbox rows through their channels until stopped."""

    def __init__(
        self,
        outbox: Outbox,
        channels: dict[str, Channel],
        owner: str,
        max_in_flight: int = MAX_IN_FLIGHT,
        deliveries: Deliveries | None = None,
    ) -> None:
        self.outbox = outbox
        # unknown rows (a claim expired mid-send) are shown to the admins from this loop
        self.deliveries = deliveries or Deliveries(outbox, outbox.clock)
        self.channels = channels
        self.owner = owner
        self.max_in_flight = max(1, max_in_flight)

    async def drain(self, run_id: int | None = None) -> int:
        """Send everything due now (only ``run_id``'s rows if given); returns rows handled.

        Up to ``max_in_flight`` rows are sent at once, topped up as they finish, and at
        least every poll interval while none finishes (new rows, other chats): a row that
        waits (a chat's flood limit, a slow receiver) holds up only itself. While some
        are in flight, claims take at most about a tenth of the time (see
        ``TOP_UP_PAUSE_FACTOR``), and stale claims are released every poll interval (a
        long drain must not keep a dead process's rows, and the chats behind them,
        stuck). An error (a send's, or the store's) stops the claiming; it is raised once
        the rows in flight are done.
        """
        handled = 0
        sending: set[asyncio.Task[None]] = set()
        error: BaseException | None = None
        loop = asyncio.get_running_loop()
        interval = self.outbox.config.poll_interval_s
        next_top_up = -math.inf
        last_claim = last_release = loop.time()  # run() released just before draining
        finished = False  # a send finished since the last claim: there may be room and rows
        try:
            while True:
                room = self.max_in_flight - len(sending)
                top_up = room > 0 and error is None
                now = loop.time()
                due = now >= next_top_up and (finished or now - last_claim >= interval)
                if top_up and (not sending or due):
                    try:
                        if sending and now - last_release >= interval:
                            last_release = now
                            await self.outbox.release_stale()
                        rows = await self.outbox.claim(self.owner, limit=room, run_id=run_id)
                    except Exception as e:  # the store: finish what is in flight, then raise
                        error, rows = e, []
                    last_claim = loop.time()
                    next_top_up = last_claim + min(
                        (last_claim - now) * TOP_UP_PAUSE_FACTOR, TOP_UP_PAUSE_MAX_S
                    )
                    finished = False
                    sending.update(asyncio.create_task(self._send(row)) for row in rows)
                    handled += len(rows)
                if not sending:
                    if error is not None:
                        raise error
                    return handled
                # woken by the next finished send, or once a top-up is due
                wait_s = None
                if top_up:
                    wake = next_top_up if finished else max(next_top_up, last_claim + interval)
                    wait_s = max(0.0, wake - loop.time())
                done, sending = await asyncio.wait(
                    sending, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
                )
                finished = finished or bool(done)
                for task in done:
                    exc = None if task.cancelled() else task.exception()  # all retrieved
                    if error is None and exc is not None:
                        error = exc
        finally:  # cancelled: the sends in flight stop too (and release their rows)
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop: release stale claims, drain, then wait for new rows or the poll interval.

        After a failure (the store read-only or full, or a bug) it waits a growing delay
        (see :class:`core.ops.backoff.Backoff`) instead of the poll interval, and new rows do
        not cut that wait short: they could not be claimed either."""
        interval = self.outbox.config.poll_interval_s
        backoff = Backoff("delivery worker", log)
        while not stop.is_set():
            # cleared before draining: a row enqueued during the drain wakes the next wait
            # instead of waiting out the poll interval
            self.outbox.wakeup.clear()
            wait_s, wake_on_rows = interval, True
            try:
                # a process that died mid-send (a CLI `run --wait`) leaves claims behind; a
                # long-running worker must not wait for the next start-up to resend them
                await self.outbox.release_stale()
                await self.deliveries.ask()
                await self.drain()
                backoff.succeeded()
            except Exception as e:  # the store or a bug: keep the worker alive, rows stay pending
                wait_s, wake_on_rows = backoff.failed(e), False  # the store's errors come mapped
            waits = [asyncio.ensure_future(stop.wait())]
            if wake_on_rows:
                waits.append(asyncio.ensure_future(self.outbox.wakeup.wait()))
            try:
                await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when run() is cancelled: no waiter task outlives it
                for w in waits:
                    w.cancel()

    async def _send(self, row: Mapping[str, Any]) -> None:
        attempt = _Attempt()
        try:
            await self._send_row(row, attempt)
        finally:
            if not attempt.settled:
                # cancelled (a shutdown), or the store failed to record the outcome: settle
                # the row now, or this live process would hold it (and its chat) until a
                # restart
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._unsettled(row, attempt))

    async def _unsettled(self, row: Mapping[str, Any], attempt: _Attempt) -> None:
        """A send that stopped before its outcome was stored. Nothing left, or the channel
        refused it: pending again. The channel confirmed it: the confirmation is stored
        once more. Bytes may have left without an answer: the row is cut off — unknown
        (the admins decide) or, where ``on_unknown`` resends (webhooks), pending again
        with the same Idempotency-Key. Never delivered without the channel's word."""
        row_id = int(row["id"])
        if attempt.confirmation is not None:
            try:
                await self.outbox.delivered(row_id, attempt.confirmation)
                return
            except Exception:  # the store again: it may have arrived, say so if we can
                log.warning("delivery %s: its confirmation could not be stored", row_id)
        # what the channel confirmed: the whole message, or the parts of a split one (a
        # Resend then skips them instead of sending them a second time)
        sent = attempt.confirmation or attempt.sent or attempt.wire.sent
        if attempt.confirmation is None and (attempt.answered or not attempt.on_the_wire()):
            await self.outbox.release(row_id, self.owner, sent=sent)
            return
        await self.outbox.cut_off(row, sent)

    async def _send_row(self, row: Mapping[str, Any], attempt: _Attempt) -> None:
        kind, _, name = str(row["target"]).partition(":")
        channel = self.channels.get(kind)
        try:
            if channel is None:
                raise ChannelUnavailable(f"no {kind} channel is running")
            attempt.reports_wire = bool(getattr(channel, "reports_wire", False))
            token = WIRE.set(attempt.wire)
            attempt.entered = True
            try:
                confirmation = await channel.send(
                    name, str(row["body"]), str(row["external_id"] or ""), key=idempotency_key(row)
                )
            finally:
                WIRE.reset(token)
        except ChannelUnavailable as e:
            attempt.answered = True
            await self.outbox.failed_attempt(
                row, str(e), permanent=False, retry_after_s=None, count=False
            )
            attempt.settled = True
            return
        except DeliveryError as e:
            attempt.answered, attempt.sent = True, e.sent
            status = await self.outbox.failed_attempt(
                row, str(e), permanent=e.permanent, retry_after_s=e.retry_after_s, sent=e.sent
            )
            attempt.settled = True
            log.warning("delivery %s to %s failed (%s): %s", row["id"], row["target"], status, e)
            return
        except Exception as e:  # a channel bug: count it, keep the row
            attempt.answered = True
            log.exception("delivery %s to %s raised", row["id"], row["target"])
            await self.outbox.failed_attempt(
                row, f"{type(e).__name__}: {e}", permanent=False, retry_after_s=None
            )
            attempt.settled = True
            return
        attempt.confirmation = confirmation
        await self.outbox.delivered(int(row["id"]), confirmation)
        attempt.settled = True


@dataclass(slots=True)
class _Attempt:
    """How far one send of a row got, for settling it when it is cut off."""

    wire: Wire = field(default_factory=Wire)  # the channel's word: a request left
    reports_wire: bool = False  # the channel marks its requests (else entered = left)
    entered: bool = False  # channel.send was called
    answered: bool = False  # the channel refused (or raised): nothing, or ``sent``, arrived
    sent: str = ""  # confirmations of the parts that did go out
    confirmation: str | None = None  # the channel confirmed it
    settled: bool = False  # its outcome is stored

    def on_the_wire(self) -> bool:
        """Bytes of it may have left."""
        return self.wire.on_it if self.reports_wire else self.entered
