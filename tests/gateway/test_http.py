"""The gateway over raw HTTP: auth, limits, bad input, ops endpoints, metrics."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.config.settings import Settings
from core.errors import ConfigError
from core.gateway import Gateway, PortInUse
from core.gateway.auth import FailureLimiter, is_loopback, resolve_token, token_matches
from tests.configs import pyramid, pyramid_urls
from tests.fakes.llm import FakeLLM, Reply
from tests.gateway.conftest import TOKEN, GatewayFactory, Running

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(body: dict[str, object], code: str | None = None) -> dict[str, object]:
    err = body["error"]
    assert isinstance(err, dict)
    assert set(err) == {"message", "type", "param", "code"}
    if code is not None:
        assert err["code"] == code
    return err


async def test_liveness_and_readiness_need_no_token(gateway: Running) -> None:
    async with gateway.http(token=None) as c:
        r = await c.get("/health")
        assert r.status_code == 200 and r.json()["ok"] is True
        r = await c.get("/readyz")
        assert r.status_code == 200
        assert r.json() == {
            "ready": True,
            "store": "ok",
            "tiers": {"0": "ok", "1": "ok", "2": "ok", "3": "ok"},
        }


@pytest.mark.parametrize(
    "path", ["/api/status", "/api/usage", "/api/route?task=chat", "/metrics", "/v1/models", "/nope"]
)
async def test_everything_else_needs_the_token(gateway: Running, path: str) -> None:
    async with gateway.http(token=None) as c:
        r = await c.get(path)
    assert r.status_code == 401
    assert_openai_error(r.json(), "invalid_api_key")
    async with gateway.http(token="Bearer-not-it") as c:
        assert (await c.get(path)).status_code == 401


async def test_repeated_failures_get_429_with_retry_after(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(gateway={"auth_max_failures": 3, "auth_window_s": 60})
    async with gw.http(token="bad") as c:
        codes = [(await c.get("/api/status")).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        r = await c.get("/api/status")
        assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 60
        assert_openai_error(r.json(), "auth_rate_limited")
    async with gw.http(token=None) as c:  # no token at all is a failed credential too
        assert (await c.get("/v1/models")).status_code == 429
        assert (await c.get("/health")).status_code == 200  # liveness is never locked


async def test_the_token_passes_while_its_address_is_locked_out(
    start_gateway: GatewayFactory,
) -> None:
    """Every local process is 127.0.0.1: ten requests without a token from any of them
    used to lock the operator's valid token out of every route for a minute."""
    gw = await start_gateway(gateway={"auth_max_failures": 3, "auth_window_s": 60})
    async with gw.http(token=None) as c:
        assert [(await c.get("/v1/models")).status_code for _ in range(4)][-1] == 429
    async with gw.http() as c:
        for path in ("/api/status", "/v1/models", "/api/usage", "/api/runs", "/metrics"):
            assert (await c.get(path)).status_code == 200, path
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
    async with gw.http(token="still-wrong") as c:  # the lockout holds for bad credentials
        assert (await c.get("/v1/models")).status_code == 429


async def test_body_over_the_limit_is_413(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(gateway={"max_body_bytes": 2048})
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    async with gw.http() as c:
        r = await c.post("/v1/chat/completions", json=big)
        assert r.status_code == 413
        assert_openai_error(r.json(), "request_too_large")

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught on read
            for _ in range(10):
                yield b"x" * 1000

        r = await c.post("/v1/chat/completions", content=chunked())
        assert r.status_code == 413
    assert gw.fake.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"model": "auto"}', "messages"),
        (b'{"model": "auto", "messages": []}', "messages"),
        (b'{"model": "auto", "messages": [{"role": "tool", "content": "x"}]}', "messages[0].role"),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": [{"type": "image"}]}]}',
            "messages[0].content[0]",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "temperature": 7}',
            "temperature",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            "max_tokens",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "stream",
        ),
        (b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}',
            "tools[0].type",
        ),
    ],
)
async def test_bad_input_is_400_naming_the_param(
    gateway: Running, body: bytes, param: str | None
) -> None:
    async with gateway.http() as c:
        r = await c.post(
            "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 400
    err = assert_openai_error(r.json())
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert gateway.fake.requests == []


async def test_unknown_endpoint_and_method(gateway: Running) -> None:
    async with gateway.http() as c:
        r = await c.get("/v2/everything")
        assert r.status_code == 404 and assert_openai_error(r.json(), "not_found")
        r = await c.get("/v1/chat/completions")
        assert r.status_code == 405 and assert_openai_error(r.json(), "method_not_allowed")


async def test_status_has_health_and_no_secrets(
    start_gateway: GatewayFactory, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCLAW_TEST_KEY", "sk-super-secret-123")
    providers = pyramid(pyramid_urls(fake_llm.base_url))["providers"]
    providers["deep"]["api_key_env"] = "OPENCLAW_TEST_KEY"
    gw = await start_gateway(providers=providers)
    gw.fake.script("qwen3:14b", Reply(status=500))
    async with gw.http() as c:
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
        r = await c.get("/api/status")
    assert r.status_code == 200
    assert "sk-super-secret-123" not in r.text and TOKEN not in r.text
    body = r.json()
    assert body["version"] and body["uptime_s"] >= 0
    assert body["gateway"]["port"] == gw.gateway.port
    assert [t["level"] for t in body["tiers"]] == [0, 1, 2, 3]
    local = next(m for m in body["models"] if m["model"] == "local/qwen3:14b")
    assert local["state"] == "open" and local["last_error"] == "server_error HTTP 500"
    assert local["api"] == "ollama" and local["tier"] == 0
    flash = next(m for m in body["models"] if m["model"] == "flash/gemini-flash")
    assert flash["state"] == "closed" and flash["last_latency_ms"] > 0
    assert body["queues"] == {
        "gateway_in_flight": 0,
        "agents_waiting": 0,
        "agents_running": 0,
        "subagents_waiting": 0,
        "subagents_running": 0,
        "outbox_pending": 1,  # the alert that local's breaker opened
        "outbox_unknown": 0,
    }


async def test_readyz_503_names_what_is_down(start_gateway: GatewayFactory) -> None:
    providers = pyramid()["providers"]
    for p in providers.values():
        p["api_key_env"] = "OPENCLAW_TEST_MISSING_KEY"
    gw = await start_gateway(providers=providers)
    async with gw.http(token=None) as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False and body["store"] == "ok"
    assert body["tiers"]["0"].startswith("down (local/qwen3:14b: OPENCLAW_TEST_MISSING_KEY")


async def test_usage_endpoint(gateway: Running) -> None:
    gateway.fake.script("qwen3:14b", Reply(status=503))
    gateway.fake.script("gemini-flash", Reply(text="x", input_tokens=1000, output_tokens=100))
    async with gateway.http() as c:
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
        r = await c.get("/api/usage", params={"since": "7d", "group": "model"})
        assert r.status_code == 200
        body = r.json()
        assert {row["key"] for row in body["rows"]} == {"local/qwen3:14b", "flash/gemini-flash"}
        assert body["tier_share_pct"] == {"1": 100.0}
        cost = 1000 * 0.3e-6 + 100 * 2.5e-6
        assert body["cost_usd"] == pytest.approx(cost)
        assert body["cloud_only_usd"] == pytest.approx(cost)  # tier-0 work priced at tier 1
        assert body["savings_vs_top_usd"] == pytest.approx(1000 * 5e-6 + 100 * 25e-6 - cost)
        for query, param in (({"since": "soon"}, "since"), ({"group": "colour"}, "group")):
            r = await c.get("/api/usage", params=query)
            assert r.status_code == 400 and assert_openai_error(r.json())["param"] == param


async def test_route_endpoint(gateway: Running) -> None:
    async with gateway.http() as c:
        r = await c.get("/api/route", params={"task": "summarize"})
        body = r.json()
        assert body["min_tier"] == 1
        assert [x["model"] for x in body["candidates"]][:2] == [
            "flash/gemini-flash",
            "deep/deepseek-chat",
        ]
        assert "minimum tier 1" in body["reasons"][0]
        r = await c.get("/api/route", params={"tier": "3"})
        assert r.json()["candidates"][0]["requires_approval"] is True
        r = await c.get("/api/route", params={"task": "nope"})
        assert r.status_code == 400 and "configured tasks" in r.json()["error"]["message"]
    assert gateway.fake.requests == []


async def test_metrics(gateway: Running) -> None:
    gateway.fake.script("qwen3:14b", Reply(status=500))
    gateway.fake.script("gemini-flash", Reply(text="x", input_tokens=10, output_tokens=4))
    async with gateway.http() as c:
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert (await c.get("/v1/models")).status_code == 200
        r = await c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'openclaw_gateway_requests_total{route="/v1/chat/completions",status="200"} 1.0' in text
    assert (
        'openclaw_attempts_total{model="qwen3:14b",outcome="unavailable",provider="local",'
        'tier="0"} 1.0' in text
    )
    assert 'openclaw_tokens_total{kind="input",model="flash/gemini-flash"} 10.0' in text
    # the counter's value, not only its name: the answer's tokens at the model's price
    cost = re.search(r'^openclaw_cost_usd_total\{model="flash/gemini-flash"\} (\S+)$', text, re.M)
    assert cost is not None and float(cost[1]) == pytest.approx(10 * 0.3e-6 + 4 * 2.5e-6)
    assert 'openclaw_breaker_state{model="local/qwen3:14b"} 2.0' in text
    assert 'openclaw_gateway_request_seconds_bucket{le="0.005",route="/v1/models"}' in text


async def test_port_in_use_names_the_port(gateway: Running) -> None:
    other = Gateway(gateway.app.facade, TOKEN, "127.0.0.1", gateway.gateway.port)
    with pytest.raises(
        PortInUse, match=f"port {gateway.gateway.port} on 127.0.0.1 is already in use"
    ):
        await other.start()


# -- the token -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_without_token_refuses(tmp_path: Path) -> None:
    s = Settings(_env_file=None, openclaw_db=tmp_path / "x.db")  # type: ignore[call-arg]
    with pytest.raises(ConfigError) as info:
        resolve_token(s, "0.0.0.0")
    assert "OPENCLAW_GATEWAY_TOKEN" in str(info.value)
    assert not (tmp_path / "openclaw.gateway-token").exists()
    s = Settings(_env_file=None, openclaw_gateway_token="abc")  # type: ignore[call-arg]
    assert resolve_token(s, "0.0.0.0") == ("abc", "OPENCLAW_GATEWAY_TOKEN")


def test_loopback_generates_a_private_token_once(tmp_path: Path) -> None:
    s = Settings(_env_file=None, openclaw_db=tmp_path / "x.db")  # type: ignore[call-arg]
    token, where = resolve_token(s, "127.0.0.1")
    path = tmp_path / "openclaw.gateway-token"
    assert len(token) >= 32 and "generated" in where and str(path) in where
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert resolve_token(s, "127.0.0.1")[0] == token  # stable across restarts


def test_token_check() -> None:
    assert token_matches("Bearer abc", "abc")
    assert token_matches("bearer abc", "abc")  # the scheme is case-insensitive
    assert not token_matches("Bearer", "abc")
    assert not token_matches("Basic abc", "abc")
    assert not token_matches("Bearer abd", "abc")
    assert not token_matches("abc", "abc")
    assert not token_matches(None, "abc")


def test_failure_limiter_window() -> None:
    lim = FailureLimiter(max_failures=2, window_s=10)
    lim.fail("a", 0)
    assert lim.blocked_for("a", 1) == 0
    lim.fail("a", 1)
    assert lim.blocked_for("a", 2) == pytest.approx(8)
    assert lim.blocked_for("b", 2) == 0
    assert lim.blocked_for("a", 11) == 0
