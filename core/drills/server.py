"""The drill server: where a drilled model's requests go instead of its provider.

An aiohttp server on 127.0.0.1 (an ephemeral port), in the serve process. A request to
``/drill/<id>/<the adapter's path>`` is answered as drill ``id``'s fault would be, in the
drilled model's wire format (:mod:`core.drills.wire`). ``refused`` never reaches it: its
tickets point at a port that is bound but never listens, so the connection is really
refused. ``timeout`` requests are held until the client's own read timeout gives up; the
ones still held when their drill ends are answered 503 and released.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from core.drills.wire import Fault, answer, is_stream

if TYPE_CHECKING:
    from core.drills.board import Drill

HOST = "127.0.0.1"


class DrillServer:
    """Answers drilled requests; started by the board on the first drill."""

    def __init__(self, find: Callable[[int], Drill | None]) -> None:
        self._find = find
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._closed: socket.socket | None = None  # bound, never listening: refuses
        self._held: dict[int, asyncio.Event] = {}  # drill id -> set when it ends

    @property
    def refused_url(self) -> str:
        assert self._closed is not None
        return f"http://{HOST}:{self._closed.getsockname()[1]}"

    def url_for(self, drill_id: int, fault: Fault) -> str:
        """The base URL a ticket of ``drill_id`` sends to."""
        if fault is Fault.REFUSED:
            return self.refused_url
        return f"http://{HOST}:{self.port}/drill/{drill_id}"

    async def start(self) -> None:
        """Bind both ports (once)."""
        if self._runner is not None:
            return
        closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        closed.bind((HOST, 0))
        self._closed = closed
        app = web.Application()
        app.router.add_route("*", "/drill/{drill}/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        self._runner = runner
        for addr in runner.addresses:
            if isinstance(addr, tuple):
                self.port = int(addr[1])
                break

    def release(self, drill_id: int) -> None:
        """The drill ended: answer its held requests."""
        held = self._held.pop(drill_id, None)
        if held is not None:
            held.set()

    async def close(self) -> None:
        """Release everything held, stop serving, free the refusing port."""
        for held in self._held.values():
            held.set()
        self._held.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._closed is not None:
            self._closed.close()
            self._closed = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            drill_id = int(request.match_info["drill"])
        except ValueError:
            raise web.HTTPNotFound() from None
        drill = self._find(drill_id)
        if drill is None:
            return web.json_response({"error": "no such drill"}, status=404)
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        if drill.fault is Fault.TIMEOUT:
            if drill.running:
                held = self._held.setdefault(drill_id, asyncio.Event())
                await held.wait()  # the client's read timeout fires long before, as a real hang
            return web.json_response({"error": "the drill ended"}, status=503)
        path = "/" + request.match_info["tail"]
        model = body.get("model", "") if isinstance(body, dict) else ""
        out = answer(drill.api, drill.fault, str(model), is_stream(drill.api, path, body))
        return web.Response(
            status=out.status, body=out.body, content_type=out.media_type, headers=out.headers
        )
