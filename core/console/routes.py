"""The console's routes, mounted on the gateway's application as a sub-application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from core.console import actions, live, pages
from core.console.keys import ConsoleKeys
from core.console.web import CONSOLE, PREFIX, STATIC, ConsoleState, console_guard, make_env

if TYPE_CHECKING:  # the gateway imports the console, never the other way at run time
    from core.gateway.handlers import GatewayState


async def _to_index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(f"{PREFIX}/")


def mount_console(web_app: web.Application, state: GatewayState) -> None:
    """Serve the console under ``/ui/`` on ``web_app``. The gateway's bearer check leaves
    these paths to :func:`core.console.web.console_guard` (cookie and CSRF)."""
    ui = web.Application(middlewares=[console_guard])
    watch = live.RunWatch(state.facade)
    ui[CONSOLE] = ConsoleState(state, ConsoleKeys(state.token), make_env(), watch)
    r = ui.router
    r.add_get("/", pages.overview)
    r.add_get("/login", actions.login_form)
    r.add_post("/login", actions.login)
    r.add_post("/logout", actions.logout)
    r.add_get("/runs", pages.runs)
    r.add_get("/runs/{run_id}", pages.run_page)
    r.add_get("/runs/{run_id}/events", live.run_events)
    r.add_post("/runs/{run_id}/rerun", actions.rerun)
    r.add_get("/agents", pages.agents)
    r.add_get("/agents/{name}", pages.agent_page)
    r.add_post("/agents/{name}/run", actions.run_now)
    r.add_post("/agents/{name}/enabled", actions.set_enabled)
    r.add_get("/approvals", pages.approvals)
    r.add_post("/approvals/{approval_id}/{verdict:approve|deny}", actions.decide)
    r.add_get("/usage", pages.usage)
    r.add_get("/budgets", pages.budgets)
    r.add_get("/schedule", pages.schedule)
    r.add_get("/deliveries", pages.deliveries)
    r.add_post("/deliveries/{delivery_id}/{action:resend|delivered}", actions.settle)
    r.add_static("/static/", STATIC)

    async def stop_streams(_: web.Application) -> None:
        watch.close()

    web_app.on_shutdown.append(stop_streams)
    web_app.router.add_get(PREFIX, _to_index)
    web_app.add_subapp(PREFIX, ui)
