"""The gateway's HTTP protocol: aiohttp's, except for requests its parser refuses.

A request line or header aiohttp cannot parse (over-long, malformed) never reaches the
app's middlewares: aiohttp answers it itself with a plain-text 400 whose body, like the
ERROR traceback it logs, quotes up to 100 bytes of the offending line — the start of a
token when the line is ``Authorization``. aiohttp has no setting for this (see
aio-libs/aiohttp#3287), so the gateway's protocol answers those requests in the API's
OpenAI error shape, quotes nothing, and logs one INFO line.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_request import BaseRequest

from core.gateway.openai_api import GatewayError

log = logging.getLogger("openclaw.gateway")


def parser_error(exc: HttpProcessingError, max_bytes: int) -> GatewayError:
    """The answer to a request the HTTP parser refused; never quotes the request."""
    if isinstance(exc, LineTooLong):
        return GatewayError(
            431,
            f"the request line or a header is too long: at most {max_bytes} bytes each",
            code="request_header_too_large",
        )
    return GatewayError(
        400, f"the request is not valid HTTP/1.1 ({type(exc).__name__})", code="bad_request"
    )


class GatewayProtocol(web.RequestHandler):
    """aiohttp's RequestHandler with OpenAI-shaped answers to unparsable requests."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request that failed before or outside the app's middlewares."""
        if not isinstance(exc, HttpProcessingError):  # not the parser's: aiohttp's own way
            return super().handle_error(request, status, exc, message)
        # a client's mistake (or a scanner's): no traceback, and not the bytes it sent
        log.info(
            "gateway: refused a malformed request from %s (%s)", request.remote, type(exc).__name__
        )
        if request.writer.output_size > 0:  # as aiohttp: nothing more can be said
            raise ConnectionError("a response was already sent on this connection")
        err = parser_error(exc, max(self.max_line_size, self.max_field_size))
        resp = web.json_response(err.body(), status=err.status)
        resp.force_close()  # the parser cannot find where the next request starts
        return resp


class _GatewayServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return GatewayProtocol(self, loop=self._loop, **kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections speak :class:`GatewayProtocol`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # the app builds a plain Server (the factory of protocols) and offers no way to
        # choose its class; ours differs only in the protocol it makes
        server.__class__ = _GatewayServer
        return server
