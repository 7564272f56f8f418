"""POST/GET /api/drills: start, list, one report, stop; bad input is an OpenAI-shaped 400
(unknown fields refused), an unknown drill a 404, a second drill of a model a 409; the
gateway's token is needed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import GatewayFactory


def error(body: dict[str, Any]) -> tuple[str, str | None]:
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]["message"], body["error"]["param"]


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"model": "deep/nope", "fault": "500"}, "unknown model 'deep/nope': use one of", "model"),
        ({"model": "deep/deepseek-chat", "fault": "fire"}, "unknown fault 'fire'", "fault"),
        ({"fault": "500"}, "model is required", "model"),
        ({"model": "deep/deepseek-chat", "fault": "500", "for_s": 0}, "for_s must be", "for_s"),
        ({"model": "deep/deepseek-chat", "fault": "500", "for_s": 901}, "at most 900", "for_s"),
        ({"model": "deep/deepseek-chat", "fault": "500", "for_s": "1m"}, "a number", "for_s"),
        ({"model": "deep/deepseek-chat", "fault": "500", "requests": 0}, "1 to", "requests"),
        ({"model": "deep/deepseek-chat", "fault": "500", "requests": 1.5}, "whole", "requests"),
        ({"model": "deep/deepseek-chat", "fault": "500", "seconds": 5}, "unknown field", "seconds"),
        ([], "must be a JSON object", None),
    ],
)
async def test_bad_starts_are_400s_that_say_why(
    start_gateway: GatewayFactory, body: Any, message: str, param: str | None
) -> None:
    gw = await start_gateway()
    async with gw.http() as c:
        r = await c.post("/api/drills", json=body)
    assert r.status_code == 400
    got, got_param = error(r.json())
    assert message in got and got_param == param
    assert not gw.app.drills.drilled("deep/deepseek-chat")


async def test_start_list_report_stop(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    async with gw.http() as c:
        r = await c.post(
            "/api/drills", json={"model": "deep/deepseek-chat", "fault": "429", "for_s": 30}
        )
        assert r.status_code == 201, r.text
        started = r.json()
        assert started["state"] == "running" and started["fault"] == "429"
        again = await c.post("/api/drills", json={"model": "deep/deepseek-chat", "fault": "500"})
        assert again.status_code == 409 and "being drilled already" in error(again.json())[0]
        # a request meets the drill: 429 with Retry-After, the breaker opens at once
        chat = await c.post(
            "/v1/chat/completions",
            json={"model": "task:analysis", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 200
        assert "deep2/deepseek-backup" in chat.headers["x-openclaw-route"]
        stopped = (await c.post(f"/api/drills/{started['id']}/stop")).json()
        assert stopped["state"] == "ended" and stopped["end_reason"] == "stopped"
        assert stopped["faulted_requests"] == 1 and stopped["breaker_opened_after_s"] is not None
        listed = (await c.get("/api/drills")).json()["drills"]
        assert [d["id"] for d in listed] == [started["id"]]
        one = (await c.get(f"/api/drills/{started['id']}")).json()
        assert one["failover"] == [{"model": "deep2/deepseek-backup", "requests": 1}]
        missing = await c.get("/api/drills/99")
        assert missing.status_code == 404 and error(missing.json())[1] == "id"
        bad = await c.get("/api/drills/x")
        assert bad.status_code == 400
        assert (await c.get("/api/drills", params={"limit": "3"})).status_code == 400
    async with gw.http(token=None) as anon:
        assert (await anon.get("/api/drills")).status_code == 401
        r = await anon.post("/api/drills", json={"model": "deep/deepseek-chat", "fault": "500"})
        assert r.status_code == 401
    assert not gw.app.drills.drilled("deep/deepseek-chat")
