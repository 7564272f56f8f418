"""GET /api/tune: the advisor's report as JSON, the trial measured; bad queries are
OpenAI-shaped 400 errors."""

from __future__ import annotations

from datetime import timedelta

from core.engine.routing import trial_point
from tests.gateway.conftest import GatewayFactory
from tests.tune_seed import seed

TASKS = {"chat": 0, "analysis": 1, "summarize": {"tier": 1, "min_chars": 20, "trial": 0.2}}


async def test_tune_reports_tasks_and_suggestions(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(tasks=TASKS)
    ledger = gw.app.ledger
    await seed(ledger, gw.app.config, ledger.clock() - timedelta(hours=2))
    async with gw.http() as c:
        r = await c.get("/api/tune", params={"since": "1d"})
        route = await c.get("/api/route", params={"task": "summarize"})
        inside = next(f"r{i}" for i in range(1000) if trial_point(f"r{i}") < 0.2)
        picked = await c.get("/api/route", params={"task": "summarize", "request_id": inside})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["since"] == "1d" and body["period_s"] == 86400
    tasks = {t["task"]: t for t in body["tasks"]}
    chat = tasks["chat"]
    assert (chat["requests"], chat["escalated"], chat["escalation_pct"]) == (25, 20, 80.0)
    assert chat["share_by_tier_pct"] == {"0": 20.0, "1": 80.0}
    assert chat["why"] == {"unusable": 20, "validator": 0, "unavailable": 0, "denied": 0}
    assert chat["wasted_latency_s"] == 18.0
    trial = tasks["summarize"]["trial"]
    assert trial["requests"] == 5 and trial["success_pct"] == 80.0 and trial["tier"] == 0
    kinds = {s["task"]: (s["kind"], s["from_tier"], s["to_tier"]) for s in body["suggestions"]}
    assert kinds == {"chat": ("raise", 0, 1), "summarize": ("lower", 1, 0)}
    lower = next(s for s in body["suggestions"] if s["task"] == "summarize")
    assert "80% answered there" in lower["trial"]
    assert lower["unpriced_requests_per_month"] == 20 * 30.0
    assert tasks["analysis"]["suggestion"] is None
    assert "trial: 20% of requests start at tier 0" in route.json()["explain"]
    assert picked.json()["min_tier"] == 0
    assert "trial: this request starts at tier 0 (share 20%)" in picked.json()["reasons"]


async def test_bad_tune_queries_are_errors(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    async with gw.http() as c:
        for query, param in {
            "since=forever": "since",
            "since=0d": "since",
            "since=400d": "since",
            "period=7d": "period",
        }.items():
            r = await c.get(f"/api/tune?{query}")
            assert r.status_code == 400, (query, r.text)
            error = r.json()["error"]
            assert error["param"] == param and error["type"] == "invalid_request_error", query
        assert (await c.get("/api/tune", headers={"Authorization": ""})).status_code == 401
        empty = (await c.get("/api/tune")).json()
    assert empty["tasks"] == [] and empty["suggestions"] == []
