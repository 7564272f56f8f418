"""The console's sub-application: its state, the jinja2 environment, and the middleware
that checks the login cookie and the CSRF token and sets the security headers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from core.console.keys import COOKIE, ConsoleKeys

if TYPE_CHECKING:  # the gateway imports the console, never the other way at run time
    from core.gateway.handlers import GatewayState

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "console"
STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/ui"
OPEN = frozenset({f"{PREFIX}/login"})  # the login form and its POST need no session
# no inline script or style anywhere: scripts, styles and the SSE stream come from here
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ConsoleState:
    gateway: GatewayState
    keys: ConsoleKeys
    env: jinja2.Environment
    live: Any = None  # core.console.live.RunWatch, set when the console is mounted


CONSOLE = web.AppKey("openclaw_console", ConsoleState)
NONCE = web.RequestKey("console_nonce", str)  # the session nonce, once the cookie passed


def make_env() -> jinja2.Environment:
    """Autoescape on for every template: agent outputs and errors are model text."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["usd"] = lambda v: f"${float(v or 0):.4f}"
    env.filters["ms"] = lambda v: "—" if v is None else f"{float(v):.0f} ms"
    env.filters["when"] = lambda v: "—" if not v else str(v).replace("T", " ")[:19]
    return env


def render(request: web.Request, name: str, http_status: int = 200, **context: Any) -> web.Response:
    """A page from ``templates/console/<name>``, with the session's CSRF token."""
    cs = request.app[CONSOLE]
    nonce = request.get(NONCE)
    html = cs.env.get_template(name).render(
        csrf=cs.keys.csrf(nonce) if nonce else "",
        path=request.path,
        logged_in=nonce is not None,
        **context,
    )
    return web.Response(text=html, status=http_status, content_type="text/html")


def refused(request: web.Request, status: int, why: str) -> web.Response:
    """A plain HTML refusal (never the JSON of the API: a person reads it)."""
    return render(request, "refused.html", http_status=status, status_code=status, why=why)


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page needs the session cookie; every POST also its CSRF token. Adds the
    security headers and ``Server-Timing`` (the page's server time, read by bench)."""
    t0 = time.perf_counter()
    cs = request.app[CONSOLE]
    resp: web.StreamResponse
    is_static = request.path.startswith(f"{PREFIX}/static/")
    nonce = cs.keys.check(request.cookies.get(COOKIE), time.time())
    if nonce is not None:
        request[NONCE] = nonce
    if request.path in OPEN or is_static:
        resp = await handler(request)
    elif nonce is None:
        if request.method in ("GET", "HEAD") and "text/event-stream" not in request.headers.get(
            "Accept", ""
        ):
            raise web.HTTPSeeOther(f"{PREFIX}/login?" + urlencode({"next": request.path_qs}))
        resp = refused(request, 401, "not logged in: open /ui/login and give the token")
    elif request.method == "POST" and not await _csrf_ok(request, cs, nonce):
        resp = refused(request, 403, "the form's CSRF token is missing or wrong: reload the page")
    else:
        resp = await handler(request)
    if not resp.prepared:  # a stream (SSE) sent its headers already
        resp.headers.update(SECURITY_HEADERS)
        if is_static:  # the same bytes for everyone, changed only by an upgrade
            resp.headers["Cache-Control"] = "max-age=3600"
        resp.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.2f}"
    return resp


async def form_field(request: web.Request, name: str) -> str | None:
    """A text field of the request's form; None when it is absent, not text, or the body is
    no form at all (bytes that are not UTF-8 are a wrong value, never a server error)."""
    try:
        value = (await request.post()).get(name)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, str) else None


async def _csrf_ok(request: web.Request, cs: ConsoleState, nonce: str) -> bool:
    given = request.headers.get("X-CSRF-Token")
    if given is None:
        given = await form_field(request, "csrf")
    return cs.keys.csrf_matches(nonce, given)
