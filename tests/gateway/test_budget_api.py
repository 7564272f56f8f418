"""GET /api/budget."""

from __future__ import annotations

from tests.gateway.conftest import GatewayFactory


async def test_budget_endpoint(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(
        budgets={"timezone": "Europe/Berlin", "total": {"day": 5.0, "month": 40.0}}
    )
    async with gw.http() as c:
        r = await c.get("/api/budget")
    assert r.status_code == 200
    body = r.json()
    assert body["timezone"] == "Europe/Berlin"
    assert [(x["scope"], x["period"], x["cap_usd"]) for x in body["caps"]] == [
        ("total", "day", 5.0),
        ("total", "month", 40.0),
    ]
    assert {
        "spent_usd",
        "reserved_usd",
        "remaining_usd",
        "used_pct",
        "forecast_usd",
        "period_ends",
    } <= set(body["caps"][0])
