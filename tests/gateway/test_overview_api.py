"""/api/agents, /api/status and /readyz answer the overview's records in their order."""

from __future__ import annotations

from tests.gateway.conftest import GatewayFactory


async def test_agents_and_status_in_their_order(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(agents=[{"name": "a", "task": "chat", "message": "hi"}])
    async with gw.http() as c:
        agents = (await c.get("/api/agents")).json()["agents"]
        status = (await c.get("/api/status")).json()
        ready = await c.get("/readyz")
    assert agents == [
        {
            "name": "a",
            "description": "",
            "kind": "agentTurn",
            "schedule": None,
            "timezone": "UTC",
            "enabled": True,
            "disabled_reason": None,
            "next_fire": None,
            "last_status": None,
            "last_run": None,
            "consecutive_failures": 0,
            "cost_today_usd": 0.0,
            "deliver": ["log"],
        }
    ]
    # on PostgreSQL the cluster's part comes with the plugins: which instance leads
    assert [k for k in status if k != "cluster"] == [
        "version",
        "uptime_s",
        "tiers",
        "models",
        "keys",
        "embedded",
        "queues",
        "pending_approvals",
        "store",
        "telegram",
        "gateway",
    ]
    assert list(status["queues"]) == [
        "agents_waiting",
        "agents_running",
        "subagents_waiting",
        "subagents_running",
        "outbox_pending",
        "outbox_unknown",
        "gateway_in_flight",
    ]
    assert status["gateway"] == {"host": "127.0.0.1", "port": gw.gateway.port}
    assert ready.status_code == 200
    assert ready.text == '{"ready":true,"store":"ok","tiers":{"0":"ok","1":"ok","2":"ok","3":"ok"}}'
