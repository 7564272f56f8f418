"""How long and how much the gateway waits for a client: read deadlines and size limits.

aiohttp has no read timeout of its own. Its keep-alive timer closes a connection that
waits for a request without one arriving, and a request whose headers trickle in is
such a connection, so ``keepalive_timeout`` is the header deadline too. A body is read
under a deadline by :func:`body_deadline` (aiohttp reads it only when a handler asks);
after its 408 aiohttp drains what is left of the body for ``linger_s`` and closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from core.gateway.openai_api import GatewayError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# defaults; serve takes [gateway] header_timeout_s and body_timeout_s
HEADER_TIMEOUT_S = 10.0  # request line and headers, and an idle keep-alive connection;
# over httpx's 5 s keep-alive expiry, so the SDK drops an idle connection before we do
BODY_TIMEOUT_S = 30.0  # a whole body: 1 MiB (the default max_body_bytes) at ~35 KB/s
LINGER_S = 5.0  # after an early answer (401, 413, 408), for the rest of the body
MAX_LINE_BYTES = 8190  # request line; aiohttp's default
MAX_FIELD_BYTES = 8190  # one header (name + value); aiohttp's default


@dataclass(frozen=True, slots=True)
class Limits:
    """The deadlines and sizes of one gateway (tests shorten the deadlines)."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    linger_s: float = LINGER_S
    max_line_bytes: int = MAX_LINE_BYTES
    max_field_bytes: int = MAX_FIELD_BYTES

    def protocol_kwargs(self) -> dict[str, Any]:
        """The keyword arguments aiohttp's protocol (RequestHandler) takes for these."""
        return {
            "keepalive_timeout": self.header_timeout_s,
            "lingering_time": self.linger_s,
            "max_line_size": self.max_line_bytes,
            "max_field_size": self.max_field_bytes,
        }


BODY_TIMEOUT = web.AppKey("openclaw_body_timeout_s", float)


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read a request's whole body within the body deadline, before its handler runs.

    Runs after the token check, so nobody unauthenticated makes us wait for a body. The
    handler's own ``read()`` then returns the bytes read here."""
    # a small body usually comes in the headers' packet: already whole, nothing to wait for
    if request.body_exists and not request.content.is_eof():
        try:
            async with asyncio.timeout(request.app[BODY_TIMEOUT]):
                await request.read()
        except TimeoutError:
            raise GatewayError(
                408,
                f"the request body did not arrive within {request.app[BODY_TIMEOUT]:g} s",
                code="request_timeout",
                close=True,
            ) from None
    return await handler(request)
