"""Gateway endpoints: liveness, readiness, status, usage, route, metrics, OpenAI API."""

from __future__ import annotations

import json
import logging
import time
from contextlib import aclosing, suppress
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from core import __version__
from core.agents.runner import AgentError, UnknownAgent
from core.agents.runs import Status, Trigger
from core.engine.engine import Result, Started, new_request_id
from core.engine.ledger import GROUPS
from core.engine.tier_targets import TARGET_SHARE
from core.errors import (
    AllAttemptsFailed,
    CannotServe,
    ProviderError,
    RequestRejected,
    RoutingError,
    StoreUnavailable,
)
from core.facade import Facade
from core.gateway.agent_model import answer_agent, parse_agent_chat
from core.gateway.auth import FailureLimiter
from core.gateway.openai_api import (
    SSE_HEADERS,
    ChunkWriter,
    GatewayError,
    capabilities,
    completion_json,
    parse_chat,
    route_names,
)
from core.ops.metrics import Metrics
from core.parsing import parse_id, parse_int, parse_since
from core.types import ChatRequest, StreamDelta

log = logging.getLogger("openclaw.gateway")


@dataclass
class GatewayState:
    facade: Facade
    token: str
    limiter: FailureLimiter
    metrics: Metrics
    started_at: float
    in_flight: int = 0
    port: int = 0  # the bound port, once listening
    self_authenticating: frozenset[str] = frozenset()  # paths that check their own secret

    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_at, 1)


STATE = web.AppKey("openclaw_gateway", GatewayState)


# one encoder for every answer: json.dumps with options builds a new one on each call
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_encode_json)


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    st = request.app[STATE]
    return _json({"ok": True, "version": __version__, "uptime_s": st.uptime_s()})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store is writable and some tier has a healthy model."""
    r = await request.app[STATE].facade.overview.readiness()
    body = {"ready": r.ready, "store": "ok" if r.store_ok else "not writable", "tiers": r.tiers}
    return _json(body, 200 if r.ready else 503)


async def status(request: web.Request) -> web.Response:
    """Health per model, tiers, queue depths, uptime, version. No secrets."""
    st = request.app[STATE]
    snap = (await st.facade.overview.status(st.uptime_s())).as_dict()
    snap["gateway"] = {"host": st.facade.config.gateway.host, "port": st.port}
    snap["queues"]["gateway_in_flight"] = st.in_flight
    return _json(snap)


async def usage(request: web.Request) -> web.Response:
    """Ledger aggregates over ``since`` grouped by ``group``, with tier shares and savings."""
    since = request.query.get("since", "7d")
    group = request.query.get("group", "tier")
    try:
        period = parse_since(since)
    except ValueError as e:
        raise GatewayError(400, str(e), param="since") from None
    if group not in GROUPS:
        raise GatewayError(400, f"group must be one of {', '.join(GROUPS)}", param="group")
    r = await request.app[STATE].facade.ledger.report(period, group)
    return _json(
        {
            "since": r.since,
            "period": since,
            "group": r.group,
            "rows": [asdict(row) for row in r.rows],
            "requests": r.requests,
            "answered": r.answered,
            "tier_share_pct": {str(k): round(v, 2) for k, v in r.tier_share.items()},
            "tier_share_target_pct": {str(k): v for k, v in TARGET_SHARE.items()},
            "savings_vs_cloud_pct": round(r.savings_vs_cloud_pct, 2),
            "savings_vs_top_pct": round(r.savings_vs_top_pct, 2),
            "cost_usd": r.cost_usd,
            "cloud_only_usd": r.cloud_only_usd,
            "savings_vs_cloud_usd": r.savings_vs_cloud_usd,
            "all_top_tier_usd": r.all_top_tier_usd,
            "savings_vs_top_usd": r.savings_vs_top_usd,
        }
    )


async def route(request: web.Request) -> web.Response:
    """The plan the router would follow for ``task`` (or ``tier``), with reasons."""
    task = request.query.get("task")
    tier_raw = request.query.get("tier")
    tier = None
    if tier_raw is not None:
        try:
            tier = parse_int(tier_raw, "tier")
        except ValueError as e:
            raise GatewayError(400, str(e), param="tier") from None
    try:
        # request_id: that request's plan (a task's trial is picked by it)
        p = request.app[STATE].facade.engine.plan(
            task=task, tier=tier, request_id=request.query.get("request_id")
        )
    except RoutingError as e:
        raise GatewayError(400, str(e), param="tier" if tier is not None else "task") from None
    return _json(
        {
            "task": p.task,
            "min_tier": p.min_tier,
            "reasons": list(p.reasons),
            "candidates": [
                {
                    "tier": c.tier,
                    "model": c.ref,
                    "max_tokens": c.max_tokens,
                    "reasoning": c.reasoning,
                    "requires_approval": c.requires_approval,
                }
                for c in p.candidates
            ],
            "skipped": [{"tier": s.tier, "model": s.ref, "reason": s.reason} for s in p.skipped],
            "explain": p.explain(),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body = request.app[STATE].metrics.render()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


async def models(request: web.Request) -> web.Response:
    """OpenAI model list: one entry per route name, with what its plan can offer."""
    config = request.app[STATE].facade.config
    return _json(
        {
            "object": "list",
            "data": [
                {
                    "id": n,
                    "object": "model",
                    "created": 0,
                    "owned_by": "openclaw",
                    "capabilities": capabilities(config, n),
                }
                for n in route_names(config)
            ],
        }
    )


async def _body(request: web.Request) -> Any:
    raw = await request.read()  # over client_max_size → 413 via the error middleware
    try:
        return json.loads(raw)
    except ValueError as e:
        raise GatewayError(400, f"the body is not valid JSON: {e}") from None
    except RecursionError:  # nesting deeper than the parser's stack: not a server fault
        raise GatewayError(400, "the body is not valid JSON: nested too deeply") from None


def _route_headers(rid: str, route_line: str) -> dict[str, str]:
    return {"x-openclaw-request-id": rid, "x-openclaw-route": route_line}


def _all_failed(e: AllAttemptsFailed, rid: str) -> GatewayError:
    tried = len([a for a in e.attempts if a.outcome not in ("skipped", "denied")])
    if isinstance(e, CannotServe):  # tools or JSON no model of the route has: the caller's
        return GatewayError(
            400,
            str(e),
            code="no_capable_model",
            headers={
                "x-openclaw-request-id": rid,
                "x-openclaw-route": f"cannot serve; attempts={tried}",
            },
        )
    if isinstance(e, RequestRejected):  # the request's own fault: the caller must change it
        return GatewayError(
            400,
            f"{e.error.provider}/{e.error.model} refused the request: {e.error.detail}",
            code="upstream_rejected",
            headers={
                "x-openclaw-request-id": rid,
                "x-openclaw-route": f"rejected; attempts={tried}",
            },
        )
    return GatewayError(
        503,
        str(e),
        type_="server_error",
        code="all_models_failed",
        headers={
            "x-should-retry": "false",
            "x-openclaw-request-id": rid,
            "x-openclaw-route": f"failed; attempts={tried}",
        },
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """OpenAI ``POST /v1/chat/completions``, JSON or SSE."""
    st = request.app[STATE]
    rid = new_request_id()
    body = await _body(request)
    agent_call = parse_agent_chat(st.facade, body)  # None unless model is agent:<name>
    call = parse_chat(st.facade.config, body, rid) if agent_call is None else None
    st.in_flight += 1
    try:
        if agent_call is not None:
            return await answer_agent(request, st.facade, agent_call, rid)
        assert call is not None
        if call.stream:
            return await _stream(request, st, call.request, call.include_usage, rid)
        try:
            result = await st.facade.engine.complete(call.request)
        except AllAttemptsFailed as e:
            raise _all_failed(e, rid) from None
        except RoutingError as e:
            raise GatewayError(400, str(e), param="model") from None
        headers = _route_headers(rid, result.route_header())
        headers["x-openclaw-cost-usd"] = f"{result.cost_usd:.8f}"
        return _json(
            completion_json(
                rid,
                result.answered_by.ref,
                result.content,
                result.finish_reason,
                result.answered_by.usage,
                result.tool_calls,
            ),
            headers=headers,
        )
    finally:
        st.in_flight -= 1


async def _stream(
    request: web.Request, st: GatewayState, req: ChatRequest, include_usage: bool, rid: str
) -> web.StreamResponse:
    """SSE: every stream that began ends with a finish (and ``[DONE]``) or an error event,
    whatever broke; a failure before the first byte is an ordinary JSON error."""
    resp: web.StreamResponse | None = None
    writer = ChunkWriter(rid, "", include_usage)
    first = True
    finished = False
    try:
        async with aclosing(st.facade.engine.stream(req)) as items:
            async for item in items:
                if isinstance(item, Started):
                    writer.model = item.ref
                    resp = web.StreamResponse(
                        headers=SSE_HEADERS | _route_headers(rid, item.route_header())
                    )
                    await resp.prepare(request)
                elif isinstance(item, StreamDelta):
                    assert resp is not None
                    await resp.write(writer.delta(item.content, first=first))
                    first = False
                elif isinstance(item, Result):
                    assert resp is not None
                    # the calls go out whole once the engine has judged them: before, the
                    # answer could still fail over
                    calls = item.tool_calls
                    tail = writer.tool_calls(calls, first=first) if calls else b""
                    tail += writer.finish(item.finish_reason, item.answered_by.usage, calls)
                    await resp.write(tail)
                    finished = True
    except Exception as e:
        if resp is None:
            raise _before_first_byte(e, rid) from None
        if isinstance(e, ConnectionError) and client_gone(request):
            return resp
        # after [DONE] the client has its answer: the fault is only logged
        await _end(resp, b"" if finished else _error_event(e, request))
        if finished:
            trace = None if isinstance(e, StoreUnavailable) else e
            log.error("gateway: %s failed after its stream finished: %s", rid, e, exc_info=trace)
        return resp  # a client that went away was charged for what the engine recorded
    if resp is None:  # the engine ended without starting: a fault of ours
        raise RuntimeError("the engine's stream ended before it started")
    if not finished:
        log.error("gateway: the engine's stream for %s ended without a result", rid)
        await _end(resp, ChunkWriter.error("the stream ended without a result", "internal_error"))
        return resp
    await _end(resp, b"")
    return resp


def client_gone(request: web.Request) -> bool:
    """True when the request's client has closed or reset its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _before_first_byte(e: Exception, rid: str) -> Exception:
    """What to answer (as JSON) for a failure before the stream began."""
    if isinstance(e, AllAttemptsFailed):
        return _all_failed(e, rid)
    if isinstance(e, RoutingError):
        return GatewayError(400, str(e), param="model")
    return e  # the error middleware's: StoreUnavailable → 503, the rest → 500


def _error_event(e: Exception, request: web.Request) -> bytes:
    """The SSE error event for a stream that broke after it began."""
    if isinstance(e, ProviderError):
        return ChunkWriter.error(f"the upstream stream broke: {e}", "stream_interrupted")
    if isinstance(e, AllAttemptsFailed):
        return ChunkWriter.error(str(e), "all_models_failed")
    if isinstance(e, StoreUnavailable):
        log.warning("gateway: a stream on %s stopped: %s", request.path, e)
        return ChunkWriter.error(
            "the store cannot take writes; the answer could not be recorded", "store_unavailable"
        )
    log.error("gateway: a stream on %s broke", request.path, exc_info=e)
    return ChunkWriter.error("internal error; see the server log", "internal_error")


async def _end(resp: web.StreamResponse, last: bytes) -> None:
    # the client may have gone while the upstream stalled: nobody is left to tell
    with suppress(ConnectionError):
        if last:
            await resp.write(last)
        await resp.write_eof()


# -- agents and runs ---------------------------------------------------------------------


async def agents(request: web.Request) -> web.Response:
    """Every agent: schedule, next fire, enabled, last status, cost today."""
    rows = await request.app[STATE].facade.overview.agents()
    return _json({"agents": [row.as_dict() for row in rows]})


def _limit(request: web.Request) -> int:
    try:
        return parse_int(request.query.get("limit", "20"), "limit", 1, 500)
    except ValueError as e:
        raise GatewayError(400, str(e), param="limit") from None


async def runs(request: web.Request) -> web.Response:
    """Recent runs, newest first (``agent``, ``status`` and ``limit`` filter)."""
    facade = request.app[STATE].facade
    agent = request.query.get("agent")
    if agent is not None:
        try:  # the same message, with its "did you mean", as `openclaw runs --agent`
            facade.runner.agent(agent)
        except UnknownAgent as e:
            raise GatewayError(404, str(e), param="agent", code="not_found") from None
    status = request.query.get("status")
    if status is not None and status not in set(Status):
        raise GatewayError(400, f"status must be one of {', '.join(Status)}", param="status")
    found = await facade.runs.recent(agent, _limit(request), Status(status) if status else None)
    return _json({"runs": [r.as_dict() for r in found]})


def _run_id(request: web.Request) -> int:
    try:
        return parse_id(request.match_info["run_id"])
    except ValueError as e:
        raise GatewayError(400, str(e), param="run_id") from None


async def run_detail(request: web.Request) -> web.Response:
    """One run in full, with its tool-loop steps (``[]`` for a run that took none) and its
    deliveries (target, status — ``unknown`` included —, error)."""
    facade = request.app[STATE].facade
    run = await facade.runs.get(_run_id(request))
    if run is None:
        raise GatewayError(404, "no such run", code="not_found")
    steps = await facade.steps.for_run(run.id)  # one query for all of them
    deliveries = await facade.deliveries.of_run(run.id)
    return _json(
        run.as_dict()
        | {"steps": [asdict(s) for s in steps], "deliveries": [d.as_dict() for d in deliveries]}
    )


async def start_run(request: web.Request) -> web.Response:
    """Start an agent now (202 with the run id; poll ``/api/runs/{id}``)."""
    runner = request.app[STATE].facade.runner
    name = request.match_info["name"]
    body: Any = {}
    # body_exists, not can_read_body: the body deadline may have read it already (a body
    # that came after the headers), and read() then returns those bytes
    if request.body_exists:
        body = await _body(request)
        if not isinstance(body, dict):
            raise GatewayError(400, "the body must be a JSON object")
    message = body.get("message")
    if message is not None and not isinstance(message, str):
        raise GatewayError(400, "message must be a string", param="message")
    try:
        rid = await runner.start(name, Trigger.API, message=message)
    except UnknownAgent as e:
        raise GatewayError(404, str(e), code="not_found") from None
    return _json({"run_id": rid, "status": Status.QUEUED, "agent": name}, 202)


async def rerun(request: web.Request) -> web.Response:
    """Run the same agent again with the same message, linked to the old run."""
    runner = request.app[STATE].facade.runner
    old = _run_id(request)
    try:
        rid = await runner.rerun(old)
    except (AgentError, UnknownAgent) as e:
        raise GatewayError(404, str(e), code="not_found") from None
    return _json({"run_id": rid, "status": Status.QUEUED, "parent_run": old}, 202)


async def budget(request: web.Request) -> web.Response:
    """Caps with spent, reserved, remaining and a period-end forecast."""
    facade = request.app[STATE].facade
    rows = await facade.budget.report() if facade.budget is not None else []
    return _json({"timezone": facade.config.budgets.timezone, "caps": rows})
