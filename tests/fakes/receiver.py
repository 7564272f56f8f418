"""A fake receiver of outgoing messages on 127.0.0.1: Slack incoming webhooks and plain webhooks.

Every POST is recorded (path, headers, parsed JSON body). Answers are scripted per path
with a queue of :class:`Answer`; once a path's queue is empty it answers 200 "ok", as Slack
does.

    async with FakeReceiver() as rx:
        rx.script("/slack", Answer(500), Answer(429, retry_after="3"))
        url = rx.url + "/slack"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Answer:
    """One scripted response."""

    status: int = 200
    text: str = "ok"
    retry_after: str | None = None  # sets the Retry-After header, verbatim
    delay_s: float = 0.0  # before answering (cut short when the server closes)
    location: str | None = None  # sets the Location header (for redirects)


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or the raw text when it is not JSON
    answered: int  # the status the receiver answered with


class FakeReceiver:
    """A real aiohttp server on a free port of 127.0.0.1; any path takes POSTs."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[Received] = []
        self._queues: defaultdict[str, deque[Answer]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.arrived = asyncio.Event()  # set on every request (tests clear it to wait for one)

    async def __aenter__(self) -> FakeReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()  # wakes delayed handlers
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def script(self, path: str, *answers: Answer) -> None:
        """Queue answers for ``path``, used in order; then 200 "ok"."""
        self._queues[path].extend(answers)

    def at(self, path: str) -> list[Received]:
        """The requests that reached ``path``, in order."""
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        queue = self._queues[request.path]
        answer = queue.popleft() if queue else Answer()
        self.received.append(
            Received(
                path=request.path,
                method=request.method,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                answered=answer.status,
            )
        )
        self.arrived.set()
        if answer.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), answer.delay_s)
        headers = {}
        if answer.retry_after is not None:
            headers["Retry-After"] = answer.retry_after
        if answer.location is not None:
            headers["Location"] = answer.location
        return web.Response(status=answer.status, text=answer.text, headers=headers)
