"""``GET /api/tune``: the routing advisor's report over a period (see
:mod:`core.engine.advisor`): per task, the share answered at each tier, escalations and
why, the waste, and the suggested tier changes with their effect per month."""

from __future__ import annotations

from aiohttp import web

from core.engine.advisor import parse_period
from core.engine.tuning import tune_report
from core.gateway.handlers import STATE, _json
from core.gateway.openai_api import GatewayError

QUERY = frozenset({"since"})


async def tune(request: web.Request) -> web.Response:
    """``since`` (default 30d, at most 365d). Read-only: suggestions are applied with
    ``openclaw tune --apply`` on the machine that holds the config file."""
    unknown = sorted(set(request.query) - QUERY)
    if unknown:
        raise GatewayError(
            400, f"unknown query parameter {unknown[0]!r}: use since", param=unknown[0]
        )
    since = request.query.get("since", "30d")
    try:
        period = parse_period(since)
    except ValueError as e:
        raise GatewayError(400, str(e), param="since") from None
    report = await tune_report(request.app[STATE].facade.ledger, period)
    return _json({"since": since} | report.as_dict())
