"""The console's login, logout and actions (POST, each behind the cookie and CSRF check
of :func:`core.console.web.console_guard`); every action answers with a redirect."""

from __future__ import annotations

import hmac
import math
import time
from urllib.parse import urlencode

from aiohttp import web

from core.agents.runner import AgentError, UnknownAgent
from core.agents.runs import Trigger
from core.console.keys import COOKIE, SESSION_S
from core.console.pages import run_id_of
from core.console.web import CONSOLE, PREFIX, form_field, render
from core.facade import Facade
from core.parsing import parse_id

BY = "console"  # who decided, in approvals and settled deliveries


def _facade(request: web.Request) -> Facade:
    return request.app[CONSOLE].gateway.facade


def _back(path: str, note: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?{urlencode({'note': note})}")


def _safe_next(value: str | None) -> str:
    """Where to go after login: a console path only (never another site)."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//"):
        return value
    return f"{PREFIX}/"


async def login_form(request: web.Request) -> web.Response:
    """The token form."""
    return render(request, "login.html", next=_safe_next(request.query.get("next")), error="")


async def login(request: web.Request) -> web.StreamResponse:
    """Check the gateway token (counted by the API's failure limiter), set the cookie."""
    cs = request.app[CONSOLE]
    st = cs.gateway
    given = await form_field(request, "token")
    nxt = _safe_next(await form_field(request, "next"))
    addr = request.remote or "unknown"
    now = time.monotonic()
    if given is not None and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), st.token.encode()
    ):
        resp = web.HTTPSeeOther(nxt)
        resp.set_cookie(
            COOKIE,
            cs.keys.issue(time.time()),
            max_age=SESSION_S,
            path=f"{PREFIX}/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        raise resp
    wait = st.limiter.blocked_for(addr, now)
    if wait:
        error = f"too many failed logins from this address: retry in {math.ceil(wait)} s"
        return render(request, "login.html", http_status=429, next=nxt, error=error)
    st.limiter.fail(addr, now)
    error = "wrong token: use OPENCLAW_GATEWAY_TOKEN or the token file serve printed"
    return render(request, "login.html", http_status=401, next=nxt, error=error)


async def logout(request: web.Request) -> web.StreamResponse:
    """Forget the session: the cookie is cleared and refused even if replayed."""
    cs = request.app[CONSOLE]
    cs.keys.revoke(request.cookies.get(COOKIE), time.time())
    resp = web.HTTPSeeOther(f"{PREFIX}/login")
    resp.del_cookie(COOKIE, path=f"{PREFIX}/")
    raise resp


async def run_now(request: web.Request) -> web.StreamResponse:
    """Start an agent now, as ``POST /api/agents/{name}/run`` does; go to its run page."""
    name = request.match_info["name"]
    try:
        rid = await _facade(request).runner.start(name, Trigger.API)
    except UnknownAgent as e:
        raise _back(f"{PREFIX}/agents", str(e)) from None
    raise web.HTTPSeeOther(f"{PREFIX}/runs/{rid}")


async def set_enabled(request: web.Request) -> web.StreamResponse:
    """Enable or disable an agent, as the bot's buttons do."""
    facade = _facade(request)
    name = request.match_info["name"]
    disable = await form_field(request, "enabled") == "0"
    if facade.config.agent(name) is None:
        raise _back(f"{PREFIX}/agents", f"no agent named {name!r}")
    await facade.states.set_disabled(name, disable, "disabled from the console")
    raise _back(f"{PREFIX}/agents", f"{name} {'disabled' if disable else 'enabled'}")


async def rerun(request: web.Request) -> web.StreamResponse:
    """Run the same agent again with the same message, linked to the old run."""
    old = run_id_of(request)
    try:
        rid = await _facade(request).runner.rerun(old)
    except (AgentError, UnknownAgent) as e:
        raise _back(f"{PREFIX}/runs/{old}", str(e)) from None
    raise web.HTTPSeeOther(f"{PREFIX}/runs/{rid}")


async def decide(request: web.Request) -> web.StreamResponse:
    """Approve or deny; the first decision wins, wherever it was made (Telegram too)."""
    try:
        aid = parse_id(request.match_info["approval_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    approved = request.match_info["verdict"] == "approve"
    _, text = await _facade(request).approvals.resolve(aid, approved, BY)
    raise _back(f"{PREFIX}/approvals", f"#{aid}: {text}")


async def settle(request: web.Request) -> web.StreamResponse:
    """Resend a failed or unknown delivery, or mark an unknown one delivered (as the
    bot's buttons do: of two presses, one acts)."""
    try:
        row_id = parse_id(request.match_info["delivery_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    deliveries = _facade(request).deliveries
    if request.match_info["action"] == "resend":
        settled = await deliveries.resend(row_id, BY)
        done = "resent"
    else:
        settled = await deliveries.mark_delivered(row_id, BY)
        done = "marked delivered"
    if settled.delivery is None:
        note = f"#{row_id}: no such delivery"
    elif settled.done:
        note = f"#{row_id} {done}"
    else:
        note = f"#{row_id} not changed: it is {settled.delivery.status} now"
    raise _back(f"{PREFIX}/deliveries", note)
