"""The delivery outbox: rows written before anything is sent, sent by a worker, confirmed.

A row moves pending → sending (claimed by one process) → delivered (with the
channel's confirmation: Telegram ``message_id``, Slack's 200) or back to pending
with a backoff, or failed after ``max_attempts``. A claim older than
``claim_timeout_s`` goes back to pending: that is the one window in which a
message can be sent twice — a crash after the channel accepted it and before
the confirmation was stored — and it is as narrow as one database write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp

from core.backoff import Backoff
from core.config import Config
from core.config_agents import DeliveryConfig
from core.errors import OpenClawError
from core.providers.base import parse_retry_after
from core.runs import alive_here, owner_id
from core.settings import Settings
from core.store import Store, unavailable, utcnow_iso
from core.templating import Templates

log = logging.getLogger("openclaw.delivery")

TEMPLATES = {
    "telegram": "channels/telegram.html.j2",
    "slack": "channels/slack.j2",
    "webhook": "channels/webhook.j2",
    "log": "channels/log.j2",
}
CHANNEL_WAIT_S = 60.0  # a channel that is not set up yet: try again this much later
MAX_RETRY_AFTER_S = 86400.0  # a receiver's Retry-After beyond this is capped, not obeyed
# rows being sent at once: enough that rows waiting on one chat's flood limit leave room
# for the other chats to fill Telegram's global rate
MAX_IN_FLIGHT = 100
# While rows are in flight, the next top-up waits this many times as long as the last claim
# took (at most TOP_UP_PAUSE_MAX_S): a claim scans the due backlog, ~0.5 ms at 1k rows but
# ~75 ms at 100k, and claiming after every finished send would then keep the store busy.
TOP_UP_PAUSE_FACTOR = 9.0
TOP_UP_PAUSE_MAX_S = 1.0


class DeliveryError(OpenClawError):
    """A send failed. ``permanent`` ones are not retried; ``retry_after_s`` is honoured."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        sent: str = "",
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        self.sent = sent  # confirmations of the parts that did go out (a split message)


class ChannelUnavailable(OpenClawError):
    """The channel is not configured (yet): the row waits, it is not an attempt."""


class Channel(Protocol):
    async def send(self, name: str, body: str, sent: str = "") -> str:
        """Send ``body`` to ``name`` (chat id, Slack name, webhook name); return a confirmation
        id. ``sent`` holds the confirmations of parts an earlier try already delivered, for
        channels that split a message. Raise DeliveryError or ChannelUnavailable."""
        ...


def process_owner() -> str:
    """An id for this process, for claims and runs (see :func:`core.runs.owner_id`)."""
    return owner_id()


class LogChannel:
    """Writes the message to the log (always available)."""

    async def send(self, name: str, body: str, sent: str = "") -> str:
        """Log it; the confirmation is ``log``."""
        log.info("deliver log: %s", body)
        return "log"


def _retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from a receiver's Retry-After, read as the providers read it, capped."""
    seconds = parse_retry_after(headers, now or datetime.now(UTC))
    # "inf" or a huge value would overflow the timedelta and strand the row in 'sending'
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER_S)


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    data: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
) -> tuple[int, str]:
    try:
        # no redirects: aiohttp turns a POST answered 301/302/303 into a body-less GET, whose
        # 200 would confirm a message that never arrived
        async with session.post(
            url,
            data=data,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as r:
            text = await r.text(errors="replace")
            if r.status == 429 or r.status >= 500:
                raise DeliveryError(
                    f"HTTP {r.status}: {text[:200]}", retry_after_s=_retry_after(r.headers)
                )
            if r.status >= 400:
                raise DeliveryError(f"HTTP {r.status}: {text[:200]}", permanent=True)
            if r.status >= 300:
                raise DeliveryError(
                    f"HTTP {r.status}: the URL redirects; configure the final URL"
                    " (redirects are not followed, a POST would lose its body)",
                    permanent=True,
                )
            return r.status, text
    except (aiohttp.ClientError, TimeoutError) as e:
        # an invalid-URL error quotes the URL, and a Slack URL is a secret
        message = f"{type(e).__name__}: {e}".replace(url, "<the configured URL>")
        raise DeliveryError(message.rstrip(": ")) from None


def secret_headers(settings: Settings, headers_env: Mapping[str, str]) -> dict[str, str]:
    """A channel's ``headers_env``: header name → the value of the variable it names, read
    through Settings. An unset variable makes the channel wait (ChannelUnavailable): sent
    without its credential, the message would only be refused."""
    out = {}
    for header, env in headers_env.items():
        value = settings.secret(env)
        if value is None:
            raise ChannelUnavailable(f"{env} is not set (headers_env of {header!r})")
        out[header] = value.get_secret_value()
    return out


class SlackChannel:
    """Slack incoming webhooks; the URL (a secret) comes from the environment."""

    def __init__(self, config: Config, settings: Settings, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.settings = settings
        self.session = session

    async def send(self, name: str, body: str, sent: str = "") -> str:
        """POST ``{"text": body}`` (Slack mrkdwn); confirmed by Slack's 200."""
        cfg = self.config.channels.slack.get(name)
        if cfg is None:  # removed from the config since the row was written: wait, don't drop
            raise ChannelUnavailable(f"no [channels.slack.{name}] is configured")
        url = self.settings.secret(cfg.webhook_url_env)
        if url is None:
            raise ChannelUnavailable(f"{cfg.webhook_url_env} is not set")
        status, _ = await _post(
            self.session,
            url.get_secret_value(),
            data=json.dumps({"text": body}).encode(),
            headers={
                "Content-Type": "application/json",
                **secret_headers(self.settings, cfg.headers_env),
            },
            timeout_s=15,
        )
        return f"slack:{status}"


class WebhookChannel:
    """POSTs the run's JSON to a configured URL."""

    def __init__(self, config: Config, settings: Settings, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.settings = settings
        self.session = session

    async def send(self, name: str, body: str, sent: str = "") -> str:
        """POST the stored JSON body; any 2xx confirms."""
        cfg = self.config.channels.webhook.get(name)
        if cfg is None:
            raise ChannelUnavailable(f"no [channels.webhook.{name}] is configured")
        if cfg.url is not None:
            url = cfg.url
        else:
            assert cfg.url_env is not None
            secret = self.settings.secret(cfg.url_env)
            if secret is None:
                raise ChannelUnavailable(f"{cfg.url_env} is not set")
            url = secret.get_secret_value()
        status, _ = await _post(
            self.session,
            url,
            data=body.encode(),
            headers={
                "Content-Type": "application/json",
                **cfg.headers,
                **secret_headers(self.settings, cfg.headers_env),
            },
            timeout_s=cfg.timeout_s,
        )
        return f"http:{status}"


class Outbox:
    """Outbox rows: rendered and stored before any send."""

    def __init__(self, store: Store, templates: Templates, config: DeliveryConfig) -> None:
        self.store = store
        self.templates = templates
        self.config = config
        self.wakeup = asyncio.Event()

    async def render(self, target: str, context: dict[str, Any]) -> str:
        """The body stored for ``target``: the channel's template, JSON for webhooks."""
        kind = target.partition(":")[0]
        text = await self.templates.render_file(TEMPLATES.get(kind, TEMPLATES["log"]), context)
        if kind == "webhook":
            return json.dumps(
                {
                    "agent": context.get("agent"),
                    "run_id": context.get("run_id"),
                    "status": context.get("status"),
                    "target": target,
                    "text": text,
                }
            )
        return text

    async def prepare(
        self, run_id: int | None, kind: str, targets: Sequence[str], context: dict[str, Any]
    ) -> list[tuple[str, tuple[Any, ...]]]:
        """The rendered rows for ``targets`` as INSERT statements, for a caller that commits
        them together with its own write (a run's outcome), then calls :meth:`notify`."""
        now = utcnow_iso()
        rows = []
        for target in targets:
            try:
                body, status, error = await self.render(target, context), "pending", None
            except Exception as e:  # a broken channel template: keep the message, failed
                log.error("outbox: rendering a %s message for %s failed: %s", kind, target, e)
                body = str(context.get("text", ""))
                status, error = "failed", f"rendering its template failed: {e}"
            rows.append(
                (
                    "INSERT INTO outbox (run_id, kind, target, body, status, next_attempt_at,"
                    " created_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, kind, target, body, status, now, now, error),
                )
            )
        return rows

    def notify(self) -> None:
        """Rows were written: wake the worker."""
        self.wakeup.set()

    async def enqueue(
        self, run_id: int | None, kind: str, targets: Sequence[str], context: dict[str, Any]
    ) -> None:
        """One row per target, all committed together, then the worker is woken."""
        rows = await self.prepare(run_id, kind, targets, context)
        if rows:
            await self.store.executemany(rows[0][0], [params for _, params in rows])
            self.notify()

    async def claim(
        self, owner: str, limit: int = 20, run_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Claim due pending rows for this process (atomically) and return them.

        Each target gets its messages in the order they were queued: only a target's
        oldest undelivered row can be claimed, so a row waiting out its backoff (an
        outage) holds back the later ones to the same chat until it is delivered or
        failed for good, and none of them overtakes it.
        """
        now = utcnow_iso()
        params: tuple[Any, ...] = (owner, now, now) + ((run_id,) if run_id is not None else ())
        await self.store.execute(
            "UPDATE outbox SET status = 'sending', claimed_by = ?, claimed_at = ? WHERE id IN"
            f" ({claimable_sql(limit, run_id is not None)})",
            params,
        )
        rows = await self.store.fetchall(
            "SELECT * FROM outbox WHERE status = 'sending' AND claimed_by = ? AND claimed_at = ?"
            " ORDER BY id",
            (owner, now),
        )
        return [dict(r) for r in rows]

    async def delivered(self, row_id: int, external_id: str) -> None:
        """The channel confirmed: never send this row again.

        Not tied to the claim: a confirmation is the truth even when the claim went stale
        meanwhile (the row back to pending would be sent a second time). The first
        confirmation of a row sent twice is kept.
        """
        await self.store.execute(
            "UPDATE outbox SET status = 'delivered', external_id = ?, delivered_at = ?,"
            " attempts = attempts + 1, last_error = NULL, claimed_by = NULL, claimed_at = NULL"
            " WHERE id = ? AND status <> 'delivered'",
            (external_id, utcnow_iso(), row_id),
        )

    async def failed_attempt(
        self,
        row: Mapping[str, Any],
        error: str,
        *,
        permanent: bool,
        retry_after_s: float | None,
        count: bool = True,
        sent: str = "",
    ) -> str:
        """Back to pending with a backoff, or failed for good; returns the new status.

        ``row`` is one returned by :meth:`claim`. Only that claim is settled: when it went
        stale and the row was claimed again (or delivered) elsewhere meanwhile, the row is
        left alone (a late failure must not send a delivered row again) and its current
        status is returned.
        """
        attempts = int(row["attempts"]) + (1 if count else 0)
        if count and (permanent or attempts >= self.config.max_attempts):
            status, delay = "failed", 0.0
        else:
            steps = self.config.backoff_s
            delay = steps[min(max(attempts - 1, 0), len(steps) - 1)] if count else CHANNEL_WAIT_S
            delay = max(delay, retry_after_s or 0.0)
            status = "pending"
        when = utcnow_iso(datetime.now(UTC) + timedelta(seconds=delay))
        changed, _ = await self.store.write(
            "UPDATE outbox SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?,"
            " claimed_by = NULL, claimed_at = NULL, external_id = COALESCE(?, external_id)"
            " WHERE id = ? AND status = 'sending' AND claimed_by = ? AND claimed_at = ?",
            (
                status,
                attempts,
                error[:500],
                when,
                sent or None,
                row["id"],
                row["claimed_by"],
                row["claimed_at"],
            ),
        )
        if changed:
            return status
        current = await self.store.fetchall("SELECT status FROM outbox WHERE id = ?", (row["id"],))
        return str(current[0][0]) if current else "gone"

    async def release_stale(self, older_than_s: float | None = None) -> int:
        """Claims older than the timeout go back to pending — unless their process is alive
        on this host (a slow send, e.g. waiting out Telegram's 429s, is not a dead one)."""
        limit = self.config.claim_timeout_s if older_than_s is None else older_than_s
        cutoff = utcnow_iso(datetime.now(UTC) - timedelta(seconds=limit))
        rows = await self.store.fetchall(
            "SELECT id, claimed_by FROM outbox WHERE status = 'sending' AND claimed_at <= ?",
            (cutoff,),
        )
        released = 0
        for row in rows:
            # off the event loop: on macOS telling a live owner from a reused pid runs ps
            if row[1] and await asyncio.to_thread(alive_here, str(row[1])):
                continue
            changed, _ = await self.store.write(
                "UPDATE outbox SET status = 'pending', claimed_by = NULL, claimed_at = NULL"
                " WHERE id = ? AND status = 'sending' AND claimed_at <= ?",
                (row[0], cutoff),
            )
            released += changed
        return released

    async def release(self, row_id: int, owner: str) -> bool:
        """Give back a row ``owner`` claimed and did not settle: pending again, due now."""
        changed, _ = await self.store.write(
            "UPDATE outbox SET status = 'pending', claimed_by = NULL, claimed_at = NULL"
            " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
            (row_id, owner),
        )
        return changed > 0

    async def of_run(self, run_id: int) -> list[tuple[str, str, str | None]]:
        """A run's messages: (target, status, last error), in the order queued."""
        rows = await self.store.fetchall(
            "SELECT target, status, last_error FROM outbox WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]

    async def pending_count(self) -> int:
        """Rows not yet delivered nor failed."""
        rows = await self.store.fetchall(
            "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')"
        )
        return int(rows[0][0])


def claimable_sql(limit: int, only_run: bool = False) -> str:
    """The ids of due rows that head their target's queue (params: now[, run_id]).

    The per-target MIN(id) is read from the ``outbox_open`` index alone.
    """
    return (
        "SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
        + (" AND run_id = ?" if only_run else "")
        + " AND id IN (SELECT MIN(id) FROM outbox"
        " WHERE status IN ('pending', 'sending') GROUP BY target)"
        f" ORDER BY id LIMIT {int(limit)}"
    )


class DeliveryWorker:
    """Sends due outbox rows through their channels until stopped."""

    def __init__(
        self,
        outbox: Outbox,
        channels: dict[str, Channel],
        owner: str,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.outbox = outbox
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
        (see :class:`core.backoff.Backoff`) instead of the poll interval, and new rows do
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
                await self.drain()
                backoff.succeeded()
            except Exception as e:  # the store or a bug: keep the worker alive, rows stay pending
                wait_s, wake_on_rows = backoff.failed(unavailable(e) or e), False
            waits = [asyncio.ensure_future(stop.wait())]
            if wake_on_rows:
                waits.append(asyncio.ensure_future(self.outbox.wakeup.wait()))
            try:
                await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when run() is cancelled: no waiter task outlives it
                for w in waits:
                    w.cancel()

    async def _send(self, row: Mapping[str, Any]) -> None:
        settled = False
        try:
            await self._send_row(row)
            settled = True
        finally:
            if not settled:
                # cancelled, or the store failed to record the outcome: give the row back
                # now, or this live process would hold it (and its chat) until a restart.
                # Sent but not confirmed, it goes again: the at-least-once window.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.outbox.release(int(row["id"]), self.owner))

    async def _send_row(self, row: Mapping[str, Any]) -> None:
        kind, _, name = str(row["target"]).partition(":")
        channel = self.channels.get(kind)
        try:
            if channel is None:
                raise ChannelUnavailable(f"no {kind} channel is running")
            external_id = await channel.send(name, str(row["body"]), str(row["external_id"] or ""))
        except ChannelUnavailable as e:
            await self.outbox.failed_attempt(
                row, str(e), permanent=False, retry_after_s=None, count=False
            )
            return
        except DeliveryError as e:
            status = await self.outbox.failed_attempt(
                row, str(e), permanent=e.permanent, retry_after_s=e.retry_after_s, sent=e.sent
            )
            log.warning("delivery %s to %s failed (%s): %s", row["id"], row["target"], status, e)
            return
        except Exception as e:  # a channel bug: count it, keep the row
            log.exception("delivery %s to %s raised", row["id"], row["target"])
            await self.outbox.failed_attempt(
                row, f"{type(e).__name__}: {e}", permanent=False, retry_after_s=None
            )
            return
        await self.outbox.delivered(int(row["id"]), external_id)
