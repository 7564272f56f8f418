"""A run's page, live: server-sent events carrying the re-rendered run, sent whenever it
changes, until it is done. ``static/run.js`` swaps the HTML in (no reload)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from contextlib import suppress

from aiohttp import web

from core.agents.steps import Step
from core.console.pages import run_id_of, run_view
from core.console.web import CONSOLE, SECURITY_HEADERS
from core.engine.ledger import RequestMeta
from core.facade import Facade
from core.types import Attempt
from core.waits import wait_set

# A run's status changes (queued → running → ok) are not observed, only its steps and
# attempts: the stream also looks every POLL_S, so a change is seen within that at worst.
POLL_S = 1.0
KEEPALIVE_S = 15.0  # a comment line this often finds a reader that went away


class RunWatch:
    """Wakes the streams of a run when one of its steps or attempts is recorded."""

    def __init__(self, facade: Facade) -> None:
        self._events: dict[int, set[asyncio.Event]] = defaultdict(set)
        self.closing = False
        facade.add_step_observer(self._step)
        facade.add_attempt_observer(self._attempt)

    def _wake(self, run_id: int) -> None:
        for event in self._events.get(run_id, ()):
            event.set()

    def _step(self, step: Step) -> None:
        self._wake(step.run_id)

    def _attempt(self, meta: RequestMeta, attempt: Attempt) -> None:
        if meta.run_id is not None and meta.run_id.isdigit():
            self._wake(int(meta.run_id))

    def subscribe(self, run_id: int) -> asyncio.Event:
        """An event set whenever ``run_id`` records a step or an attempt."""
        event = asyncio.Event()
        self._events[run_id].add(event)
        return event

    def unsubscribe(self, run_id: int, event: asyncio.Event) -> None:
        """The stream that held ``event`` ended."""
        self._events[run_id].discard(event)
        if not self._events[run_id]:
            del self._events[run_id]

    def close(self) -> None:
        """The gateway stops: every stream ends now instead of holding up the shutdown."""
        self.closing = True
        for events in self._events.values():
            for event in events:
                event.set()


async def run_events(request: web.Request) -> web.StreamResponse:
    """``text/event-stream``: one ``data:`` event (JSON: ``html``, ``status``, ``done``)
    per change of the run, the last one when it is done."""
    cs = request.app[CONSOLE]
    facade = cs.gateway.facade
    watch: RunWatch = cs.live
    run_id = run_id_of(request)
    template = cs.env.get_template("_run_body.html")
    resp = web.StreamResponse(
        headers=SECURITY_HEADERS
        | {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    event = watch.subscribe(run_id)
    last = ""
    idle = 0.0
    try:
        while not watch.closing:
            event.clear()
            view = await run_view(facade, run_id)
            if view is None:
                await resp.write(b"event: gone\ndata: {}\n\n")
                break
            html = template.render(v=view)
            if html != last:
                last = html
                body = {"html": html, "status": str(view.run.status), "done": view.run.done}
                await resp.write(f"data: {json.dumps(body)}\n\n".encode())
                idle = 0.0
            if view.run.done:
                break
            await wait_set(event, POLL_S)
            idle += POLL_S
            if idle >= KEEPALIVE_S:
                await resp.write(b": keepalive\n\n")
                idle = 0.0
    except ConnectionError:
        return resp  # the reader left
    finally:
        watch.unsubscribe(run_id, event)
    with suppress(ConnectionError):
        await resp.write_eof()
    return resp
