"""A mistyped agent name gets the same "did you mean" from every gateway route."""

from __future__ import annotations

from tests.gateway.conftest import GatewayFactory
from tests.gateway.test_http import assert_openai_error

AGENTS = [
    {"name": "morning-digest", "message": "hello", "task": "chat", "deliver": ["log"]},
    {"name": "news-watch", "message": "hello", "task": "chat", "deliver": ["log"]},
]


async def test_runs_and_run_name_the_closest_agent(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(agents=AGENTS)
    async with gw.http() as c:
        listed = await c.get("/api/runs", params={"agent": "morning-digst"})
        started = await c.post("/api/agents/morning-digst/run", json={})
        known = await c.get("/api/runs", params={"agent": "news-watch"})
    for r in (listed, started):
        assert r.status_code == 404, r.text
        err = assert_openai_error(r.json(), "not_found")
        assert "no agent named 'morning-digst'; did you mean morning-digest?" in err["message"]
    assert assert_openai_error(listed.json())["param"] == "agent"
    assert known.status_code == 200 and known.json() == {"runs": []}
