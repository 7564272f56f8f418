"""The gateway's aiohttp application: middlewares (errors, metrics, auth) and lifecycle."""

from __future__ import annotations

import errno
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from core.console.routes import mount_console
from core.errors import OpenClawError, StoreUnavailable
from core.facade import Facade
from core.gateway import drills_api, schedule_api, tune_api
from core.gateway import handlers as h
from core.gateway.auth import FailureLimiter, token_matches
from core.gateway.limits import BODY_TIMEOUT, Limits, body_deadline
from core.gateway.openai_api import GatewayError
from core.gateway.protocol import GatewayRunner

log = logging.getLogger("openclaw.gateway")

OPEN_PATHS = frozenset({"/health", "/readyz"})  # liveness and readiness need no token
CONSOLE_PREFIX = "/ui"  # the console checks its own cookie (core/console/web.py)
STORE_RETRY_AFTER_S = 10  # what a 503 for an unwritable store asks the client to wait
CLIENT_GONE = 499  # nginx's "client closed request": in metrics, apart from our 5xx
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PortInUse(OpenClawError):
    """The gateway's port is taken."""


def _error_response(e: GatewayError) -> web.Response:
    resp = web.json_response(e.body(), status=e.status, headers=e.headers)
    if e.close:
        resp.force_close()
    return resp


def _store_unavailable() -> GatewayError:
    return GatewayError(
        503,
        "the store cannot take writes (read-only or full disk?), so nothing is done until "
        "it can: see the server log and /readyz",
        type_="server_error",
        code="store_unavailable",
        headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
    )


def _from_http(e: web.HTTPException) -> GatewayError:
    if e.status == 413:
        return GatewayError(
            413, f"the request body is larger than the limit: {e.text}", code="request_too_large"
        )
    if e.status == 404:
        return GatewayError(404, "no such endpoint (see README for the list)", code="not_found")
    if isinstance(e, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(e.allowed_methods))
        return GatewayError(
            405,
            f"method {e.method} is not allowed on this endpoint; allowed: {allowed}",
            code="method_not_allowed",
            headers={"Allow": allowed},
        )
    return GatewayError(e.status, e.reason)


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every error becomes OpenAI-shaped JSON; every request is counted."""
    st = request.app[h.STATE]
    t0 = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        limit = st.facade.config.gateway.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise GatewayError(
                413, f"the request body is larger than {limit} bytes", code="request_too_large"
            )
        resp = await handler(request)
        status = resp.status
        return resp
    except GatewayError as e:
        status = e.status
        return _error_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        err = _from_http(e)
        status = err.status
        return _error_response(err)
    except StoreUnavailable as e:
        log.warning("gateway: %s %s refused: %s", request.method, request.path, e)
        err = _store_unavailable()
        status = err.status
        return _error_response(err)
    except Exception as e:
        if isinstance(e, ConnectionError) and h.client_gone(request):
            # the client reset or closed mid-request: its loss, not a server fault
            log.debug("gateway: client left during %s %s (%s)", request.method, request.path, e)
            status = CLIENT_GONE
            return web.Response(status=CLIENT_GONE)  # aiohttp finds the transport closed
        log.exception("gateway: unexpected error on %s %s", request.method, request.path)
        return _error_response(
            GatewayError(
                500,
                "internal error; see the server log",
                type_="server_error",
                code="internal_error",
            )
        )
    finally:
        st.metrics.observe_request(route, status, time.perf_counter() - t0)


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything but liveness/readiness needs the bearer token. The token always passes;
    an address with too many failed credentials gets 429 for them until the window ends."""
    st = request.app[h.STATE]
    if request.path in OPEN_PATHS or request.path in st.self_authenticating:
        return await handler(request)
    if request.path == CONSOLE_PREFIX or request.path.startswith(CONSOLE_PREFIX + "/"):
        return await handler(request)
    # the token first: every local process shares 127.0.0.1, so refusing an address
    # before looking at its token would let any of them lock the operator out
    if token_matches(request.headers.get("Authorization"), st.token):
        return await handler(request)
    addr = request.remote or "unknown"
    now = time.monotonic()
    wait = st.limiter.blocked_for(addr, now)
    if wait:
        raise GatewayError(
            429,
            "too many failed authentications from this address; retry later",
            type_="rate_limit_error",
            code="auth_rate_limited",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    st.limiter.fail(addr, now)
    raise GatewayError(
        401,
        "missing or invalid bearer token: send 'Authorization: Bearer "
        "<token>' (OPENCLAW_GATEWAY_TOKEN or the token file serve printed)",
        code="invalid_api_key",
    )


def create_app(
    facade: Facade,
    token: str,
    extra_routes: Mapping[str, Handler] | None = None,
    limits: Limits | None = None,
) -> web.Application:
    """The aiohttp application serving every gateway endpoint.

    ``extra_routes`` are POST endpoints that check their own credentials (the
    Telegram webhook checks Telegram's secret token), so the bearer check skips them.
    """
    cfg = facade.config.gateway
    web_app = web.Application(
        middlewares=[errors_and_metrics, bearer_auth, body_deadline],
        client_max_size=cfg.max_body_bytes,
    )
    web_app[BODY_TIMEOUT] = (limits or Limits()).body_timeout_s
    web_app[h.STATE] = h.GatewayState(
        facade,
        token,
        FailureLimiter(cfg.auth_max_failures, cfg.auth_window_s),
        facade.metrics,
        time.monotonic(),
    )
    r = web_app.router
    r.add_get("/health", h.health)
    r.add_get("/readyz", h.readyz)
    r.add_get("/api/status", h.status)
    r.add_get("/api/usage", h.usage)
    r.add_get("/api/route", h.route)
    r.add_get("/api/budget", h.budget)
    r.add_get("/metrics", h.metrics)
    r.add_get("/v1/models", h.models)
    r.add_post("/v1/chat/completions", h.chat_completions)
    r.add_get("/api/agents", h.agents)
    r.add_post("/api/agents/{name}/run", h.start_run)
    r.add_get("/api/runs", h.runs)
    r.add_get("/api/schedule", schedule_api.schedule)
    r.add_get("/api/tune", tune_api.tune)
    r.add_post("/api/drills", drills_api.start)
    r.add_get("/api/drills", drills_api.listing)
    r.add_get("/api/drills/{drill_id}", drills_api.detail)
    r.add_post("/api/drills/{drill_id}/stop", drills_api.stop)
    r.add_get("/api/runs/{run_id}", h.run_detail)
    r.add_post("/api/runs/{run_id}/rerun", h.rerun)
    for path, handler in (extra_routes or {}).items():
        r.add_post(path, handler)
    web_app[h.STATE].self_authenticating = frozenset(extra_routes or {})
    mount_console(web_app, web_app[h.STATE])
    return web_app


class Gateway:
    """Runs the gateway on host:port until stopped."""

    def __init__(
        self,
        facade: Facade,
        token: str,
        host: str,
        port: int,
        extra_routes: Mapping[str, Handler] | None = None,
        limits: Limits | None = None,
    ) -> None:
        cfg = facade.config.gateway
        self.limits = limits or Limits(
            header_timeout_s=cfg.header_timeout_s, body_timeout_s=cfg.body_timeout_s
        )
        self.web_app = create_app(facade, token, extra_routes, self.limits)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve. Raises PortInUse with what to do."""
        # on shutdown, requests in flight get a few seconds; agent runs are waited for apart
        runner = GatewayRunner(
            self.web_app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=10.0,
            **self.limits.protocol_kwargs(),
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {self.port} on {self.host} is already in use (another openclaw "
                    "serve?): stop that process, or choose another port with --port or "
                    "[gateway] port"
                ) from None
            raise
        self._runner = runner
        for addr in runner.addresses:
            if isinstance(addr, tuple):
                self.port = int(addr[1])
                break
        self.web_app[h.STATE].port = self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, let running requests finish briefly, close."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
