"""Failure drills over the gateway (the token holder is the admin here):
``POST /api/drills`` starts one, ``GET /api/drills`` lists the kept ones,
``GET /api/drills/{id}`` is one report, ``POST /api/drills/{id}/stop`` ends one early."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.drills.board import DEFAULT_FOR_S, DrillError
from core.gateway.handlers import STATE, _body, _json
from core.gateway.openai_api import GatewayError
from core.parsing import parse_id

FIELDS = ("model", "fault", "for_s", "requests")


def _error(e: DrillError) -> GatewayError:
    code = {404: "not_found", 409: "conflict"}.get(e.status)
    return GatewayError(e.status, str(e), param=e.param, code=code)


def _drill_id(request: web.Request) -> int:
    try:
        return parse_id(request.match_info["drill_id"])
    except ValueError as e:
        raise GatewayError(400, str(e), param="drill_id") from None


def _number(body: dict[str, Any], key: str, integer: bool) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        kind = "a whole number" if integer else "a number of seconds"
        raise GatewayError(400, f"{key} must be {kind}", param=key)
    return value


async def start(request: web.Request) -> web.Response:
    """``{"model": "provider/model", "fault": "timeout", "for_s": 60, "requests": 5}``:
    201 with the drill (poll ``GET /api/drills/{id}`` for its report)."""
    body = await _body(request) if request.body_exists else None
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object with model and fault")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise GatewayError(
            400,
            f"unknown field {unknown[0]}: use {', '.join(FIELDS)}",
            param=unknown[0],
            code="unknown_parameter",
        )
    for key in ("model", "fault"):
        if not isinstance(body.get(key), str):
            raise GatewayError(400, f"{key} is required (a string)", param=key)
    for_s = _number(body, "for_s", integer=False)
    requests = _number(body, "requests", integer=True)
    try:
        drill = await request.app[STATE].facade.drills.start(
            body["model"], body["fault"], DEFAULT_FOR_S if for_s is None else float(for_s), requests
        )
        report = await request.app[STATE].facade.drills.report(drill.id)
    except DrillError as e:
        raise _error(e) from None
    return _json(report, 201)


async def listing(request: web.Request) -> web.Response:
    """The kept drills' reports, newest first."""
    unknown = sorted(set(request.query))
    if unknown:
        raise GatewayError(400, f"unknown query parameter {unknown[0]!r}", param=unknown[0])
    return _json({"drills": await request.app[STATE].facade.drills.reports()})


async def detail(request: web.Request) -> web.Response:
    """One drill's report."""
    try:
        return _json(await request.app[STATE].facade.drills.report(_drill_id(request)))
    except DrillError as e:
        raise _error(e) from None


async def stop(request: web.Request) -> web.Response:
    """End a running drill now; its report."""
    drills = request.app[STATE].facade.drills
    drill_id = _drill_id(request)
    try:
        await drills.stop(drill_id)
        return _json(await drills.report(drill_id))
    except DrillError as e:
        raise _error(e) from None
