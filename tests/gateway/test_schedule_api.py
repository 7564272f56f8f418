"""GET /api/schedule: expected fires vs runs, counts per agent, the problems; bad
queries are OpenAI-shaped 400/404 errors."""

from __future__ import annotations

from datetime import timedelta

from core.agents.scheduler import fires_between
from core.store.times import utcnow_iso
from tests.agents.conftest import add_run, set_seen
from tests.gateway.conftest import GatewayFactory

HOURLY = {"name": "h", "task": "chat", "message": "x", "schedule": "0 * * * *"}


async def test_schedule_counts_and_problems(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(agents=[HOURLY, {"name": "manual", "task": "chat", "message": "x"}])
    sched = gw.app.scheduler
    now = sched.clock()
    await set_seen(gw.app, "h", None)  # as a scheduler started long ago
    fires = fires_between(sched.trigger(gw.app.config.agents[0]), now - timedelta(hours=3), now)
    assert len(fires) == 3
    await add_run(gw.app, "h", "schedule", status="ok", scheduled_for=utcnow_iso(fires[0]))
    await add_run(
        gw.app, "h", "schedule", status="failed", scheduled_for=utcnow_iso(fires[1]), error="x 402"
    )
    await add_run(gw.app, "h", "schedule", status="ok", scheduled_for=utcnow_iso(fires[2]))
    async with gw.http() as c:
        body = (await c.get("/api/schedule", params={"since": "3h"})).json()
        every = (await c.get("/api/schedule", params={"since": "3h", "fires": "all"})).json()
        one = await c.get("/api/schedule", params={"agent": "h", "since": "3h"})
    assert body["summary"] == "3 expected · 2 ok · 1 failed (x 402)"
    assert body["counts"]["expected"] == 3 and body["counts"]["failed"] == 1
    assert list(body["agents"]) == ["h"]  # only scheduled agents have fires
    assert body["fires"] == [
        {
            "agent": "h",
            "at": utcnow_iso(fires[1]),
            "outcome": "failed",
            "run_id": 2,
            "error": "x 402",
        }
    ]
    assert [f["outcome"] for f in every["fires"]] == ["ok", "failed", "ok"]
    assert one.status_code == 200 and one.json()["summary"] == body["summary"]


async def test_bad_schedule_queries_are_errors(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(agents=[HOURLY])
    async with gw.http() as c:
        cases = {
            "since=forever": (400, "since"),
            "since=40d": (400, "since"),
            "fires=some": (400, "fires"),
            "agents=h": (400, "agents"),
            "agent=nope": (404, "agent"),
        }
        for query, (status, param) in cases.items():
            r = await c.get(f"/api/schedule?{query}")
            assert r.status_code == status, (query, r.text)
            assert r.json()["error"]["param"] == param, query
        assert (await c.get("/api/schedule", headers={"Authorization": ""})).status_code == 401
