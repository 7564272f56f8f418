"""``GET /api/schedule``: every scheduled agent's expected fires over a period, joined
with what happened to each (see :mod:`core.agents.assurance`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from aiohttp import web

from core.agents.assurance import PROBLEMS, Fire, Outcome, parse_period, summary
from core.gateway.handlers import STATE, _json
from core.gateway.openai_api import GatewayError

QUERY = frozenset({"since", "agent", "fires"})


async def schedule(request: web.Request) -> web.Response:
    """``since`` (default 24h, at most 31d), ``agent`` (one agent), ``fires=all`` (every
    fire, not only the problems). Counts per outcome, per agent and overall."""
    unknown = sorted(set(request.query) - QUERY)
    if unknown:
        raise GatewayError(
            400,
            f"unknown query parameter {unknown[0]!r}: use since, agent or fires",
            param=unknown[0],
        )
    since = request.query.get("since", "24h")
    try:
        period = parse_period(since)
    except ValueError as e:
        raise GatewayError(400, str(e), param="since") from None
    every = request.query.get("fires", "problems")
    if every not in ("problems", "all"):
        raise GatewayError(400, "fires must be problems or all", param="fires")
    facade = request.app[STATE].facade
    agent = request.query.get("agent")
    if agent is not None:
        cfg = facade.config.agent(agent)
        if cfg is None or not cfg.schedule:
            raise GatewayError(
                404, f"no scheduled agent named {agent!r}", param="agent", code="not_found"
            )
    now = facade.schedule.clock()
    fires = await facade.schedule.fires(now - period, now)
    if agent is not None:
        fires = [f for f in fires if f.agent == agent]
    agents = sorted({f.agent for f in fires})
    return _json(
        {
            "since": since,
            "summary": summary(fires),
            "counts": _counts(fires),
            "agents": {
                a: {
                    "summary": summary(mine := [f for f in fires if f.agent == a]),
                    "counts": _counts(mine),
                }
                for a in agents
            },
            "fires": [f.as_dict() for f in fires if every == "all" or f.outcome in PROBLEMS],
        }
    )


def _counts(fires: Sequence[Fire]) -> dict[str, int]:
    counts = Counter(f.outcome for f in fires)
    return {"expected": len(fires)} | {str(o): counts.get(o, 0) for o in Outcome}
