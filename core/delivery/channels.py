"""Channels that send a rendered message: the log, Slack's incoming webhooks, plain webhooks.

Telegram's channel is the bot's (``bot/channel.py``); every channel answers ``send`` with
its confirmation (a message id, ``200``) or raises :class:`DeliveryError`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import aiohttp

from core.config.models import Config
from core.config.settings import Settings
from core.delivery.errors import ChannelUnavailable, DeliveryError
from core.providers.base import parse_retry_after

log = logging.getLogger("openclaw.delivery")
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_RETRY_AFTER_S = 86400.0  # a receiver's Retry-After beyond this is capped, not obeyed


@dataclass(slots=True)
class Wire:
    """One send's progress, for the worker: did bytes of it leave? A send cut off after
    that (a shutdown, a failed confirmation write) may have arrived."""

    on_it: bool = False
    sent: str = ""  # confirmations of the parts of a split message that did go out


# the send under way in this task (set by the delivery worker around ``channel.send``)
WIRE: ContextVar[Wire | None] = ContextVar("openclaw_delivery_wire", default=None)


def on_the_wire() -> None:
    """Called by a channel right before a request that may deliver the message leaves
    (not while it waits its turn or a rate limit): from here a cut-off send is unknown."""
    wire = WIRE.get()
    if wire is not None:
        wire.on_it = True


def off_the_wire() -> None:
    """Called by a channel when the request it marked was refused as not sent (Telegram's
    429): a cut-off send, waiting for its retry, has not arrived."""
    wire = WIRE.get()
    if wire is not None:
        wire.on_it = False


def parts_sent(confirmations: Sequence[object]) -> None:
    """Called by a channel that splits a message, after each part it saw confirmed: a send
    cut off later keeps them, and its resend starts after them."""
    wire = WIRE.get()
    if wire is not None:
        wire.sent = ",".join(map(str, confirmations))
        wire.on_it = False  # all that left is confirmed, until the next part's request


class Channel(Protocol):
    async def send(self, name: str, body: str, sent: str = "", key: str = "") -> str:
        """Send ``body`` to ``name`` (chat id, Slack name, webhook name); return a confirmation
        id. ``sent`` holds the confirmations of parts an earlier try already delivered, for
        channels that split a message; ``key`` is the row's idempotency key (the same on
        every try), for channels whose receivers can drop a repeat. Raise DeliveryError or
        ChannelUnavailable.

        A channel with ``reports_wire = True`` calls :func:`on_the_wire` before each
        request that may deliver; of any other one, a send entered counts as on the wire."""
        ...


class LogChannel:
    """Writes the message to the log (always available)."""

    async def send(self, name: str, body: str, sent: str = "", key: str = "") -> str:
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
    on_the_wire()
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

    reports_wire = True

    def __init__(self, config: Config, settings: Settings, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.settings = settings
        self.session = session

    async def send(self, name: str, body: str, sent: str = "", key: str = "") -> str:
        """POST ``{"text": body}`` (Slack mrkdwn); confirmed by Slack's 200. Slack's incoming
        webhooks know no idempotency key: none is sent."""
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

    reports_wire = True

    def __init__(self, config: Config, settings: Settings, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.settings = settings
        self.session = session

    async def send(self, name: str, body: str, sent: str = "", key: str = "") -> str:
        """POST the stored JSON body with ``Idempotency-Key: key`` (the same on every try of
        the row, so a receiver can drop a repeat); any 2xx confirms."""
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
        headers = {
            "Content-Type": "application/json",
            **cfg.headers,
            **secret_headers(self.settings, cfg.headers_env),
        }
        if key:  # ours wins over a configured one of any case: it must be the row's own
            headers = {k: v for k, v in headers.items() if k.lower() != "idempotency-key"}
            headers[IDEMPOTENCY_HEADER] = key
        status, _ = await _post(
            self.session, url, data=body.encode(), headers=headers, timeout_s=cfg.timeout_s
        )
        return f"http:{status}"
