"""The gateway's edges (issue 13): bytes and numbers a careless or hostile client sends,
clients that leave mid-request, and requests aiohttp's parser refuses. Each is a 4xx in
the OpenAI error shape with no traceback in the log, never a 500."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct

import pytest

from tests.fakes.wait import until
from tests.gateway.conftest import TOKEN, GatewayFactory, Running
from tests.gateway.raw import RawResponse, exchange, parse, request
from tests.gateway.test_http import CHAT, assert_openai_error

SECRET_START = "sk-live-Q7f3ZpL0-start-of-a-token"  # must never be quoted back or logged


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at WARNING or above, and no traceback, in what the test logged."""
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [f"{r.name} {r.levelname} {r.getMessage()}" for r in loud]


def assert_json_error(r: RawResponse, status: int, code: str | None = None) -> dict[str, object]:
    assert r.status == status, r.raw[:300]
    assert r.headers["content-type"].startswith("application/json"), r.headers
    return assert_openai_error(r.json(), code)


# -- the token ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [b"Bearer \xe9t\xe9", "Bearer été".encode(), b"\xff\xfe", b"Bearer \x80" * 3]
)
async def test_a_non_ascii_authorization_is_a_failed_credential(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await start_gateway(gateway={"auth_max_failures": 2, "auth_window_s": 60})
    data = request("GET", "/v1/models").replace(
        b"\r\n\r\n", b"\r\nAuthorization: " + value + b"\r\n\r\n"
    )
    answers = [await exchange(gw.gateway.port, data) for _ in range(3)]
    assert_json_error(answers[0], 401, "invalid_api_key")
    assert_json_error(answers[1], 401, "invalid_api_key")
    assert_json_error(answers[2], 429, "auth_rate_limited")  # counted like any bad token
    async with gw.http() as c:
        assert (await c.get("/v1/models")).status_code == 200
    assert_quiet(caplog)


# -- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/api/runs/%C2%B2", "run_id"),  # "²": str.isdigit says yes, int() says no
        ("GET", "/api/runs/9223372036854775808", "run_id"),  # one over SQLite's INTEGER
        ("GET", "/api/runs/99999999999999999999", "run_id"),
        ("POST", "/api/runs/%C2%B2/rerun", "run_id"),
        ("POST", "/api/runs/9223372036854775808/rerun", "run_id"),
        ("GET", "/api/runs?limit=%C2%B2", "limit"),
        ("GET", "/api/runs?limit=99999999999999999999", "limit"),
        ("GET", "/api/usage?since=100000000d", "since"),  # past datetime's year 9999
        ("GET", "/api/usage?since=%C2%B2d", "since"),
        ("GET", "/api/route?tier=%C2%B2", "tier"),
    ],
)
async def test_numbers_that_overflow_or_are_not_ascii_are_4xx_naming_the_param(
    gateway: Running, caplog: pytest.LogCaptureFixture, method: str, path: str, param: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with gateway.http() as c:
        r = await c.request(method, path)
    assert r.status_code in (400, 404), r.text
    err = assert_openai_error(r.json())
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert_quiet(caplog)


@pytest.mark.parametrize("model", ["tier:²", "tier:٣", "tier:99999999999999999999999", "tier:"])
async def test_a_tier_model_that_is_not_a_number_is_unknown(
    gateway: Running, caplog: pytest.LogCaptureFixture, model: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with gateway.http() as c:
        r = await c.post("/v1/chat/completions", json={**CHAT, "model": model})
    assert r.status_code in (400, 404), r.text
    assert assert_openai_error(r.json())["param"] == "model"
    assert gateway.fake.requests == []
    assert_quiet(caplog)


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", ["0", "-1", "2147483648", "1" + "0" * 30, "1.5", "true", '"5"'])
async def test_a_token_budget_is_a_whole_number_up_to_2_31(
    gateway: Running, key: str, value: str
) -> None:
    raw = json.dumps(CHAT)[:-1] + f', "{key}": {value}}}'  # the value as raw JSON
    async with gateway.http() as c:
        r = await c.post(
            "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 400, r.text
    err = assert_openai_error(r.json())
    assert err["param"] == key and "2147483647" in str(err["message"])
    assert gateway.fake.requests == []  # 10**30 never goes upstream


async def test_the_largest_token_budget_is_accepted(gateway: Running) -> None:
    async with gateway.http() as c:
        r = await c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 2**31 - 1})
    assert r.status_code == 200, r.text


# -- clients that leave -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["reset", "close"])
async def test_a_client_leaving_mid_body_is_no_server_error(
    gateway: Running, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.gateway.port)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        "Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    # the 100 comes once the headers are parsed, as the request goes into the handlers
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
    writer.write(b'{"model": "auto", "messages": [')  # a start of the body, then gone
    await writer.drain()
    if how == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()
    async with gateway.http() as c:

        async def counted() -> str | None:
            text = (await c.get("/metrics")).text
            return text if 'route="/v1/chat/completions"' in text else None

        text = await until(counted, what="the request counted in /metrics")
    assert 'route="/v1/chat/completions",status="499"' in text, text
    assert 'route="/v1/chat/completions",status="500"' not in text
    assert gateway.fake.requests == []
    assert_quiet(caplog)


# -- what aiohttp's parser refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        # an over-long Authorization: aiohttp quoted its first 100 bytes (a token's start)
        request("GET", "/v1/models", {"Authorization": f"Bearer {SECRET_START}" + "x" * 9000}),
        request("GET", "/v1/models", {"X-Long": SECRET_START + "x" * 9000}),
        request("GET", "/v1/models?q=" + SECRET_START + "x" * 9000),  # the request line
    ],
    ids=["authorization", "other header", "request line"],
)
async def test_an_over_long_header_is_431_json_quoting_nothing(
    gateway: Running, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await exchange(gateway.gateway.port, data)
    assert r.status in (400, 431)
    assert_json_error(r, r.status)
    assert SECRET_START[:8] not in r.raw.decode("latin-1")
    assert SECRET_START[:8] not in caplog.text
    assert_quiet(caplog)


@pytest.mark.parametrize(
    "data",
    [
        b"HELLO\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # TLS to the HTTP port
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header Name: "
        + SECRET_START.encode()
        + b"\r\n\r\n",
    ],
    ids=["garbage", "tls", "bad header"],
)
async def test_a_malformed_request_is_400_json_quoting_nothing(
    gateway: Running, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await exchange(gateway.gateway.port, data)
    assert_json_error(r, 400, "bad_request")
    assert SECRET_START[:8].encode() not in r.raw
    assert SECRET_START[:8] not in caplog.text
    assert_quiet(caplog)


async def test_405_names_the_allowed_methods(gateway: Running) -> None:
    async with gateway.http() as c:
        r = await c.get("/v1/chat/completions")
        assert r.status_code == 405 and r.headers["Allow"] == "POST"
        assert_openai_error(r.json(), "method_not_allowed")
        r = await c.post("/api/status")
        assert r.status_code == 405
        assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET", "HEAD"}


async def test_a_body_that_comes_after_the_headers_still_reaches_the_handler(
    start_gateway: GatewayFactory,
) -> None:
    """The body deadline reads a late body before the handler runs; the handler must still
    see it (it checked ``can_read_body``, false once the body was read, and started the run
    without its message — a field silently dropped, depending on packet timing)."""
    gw = await start_gateway(
        agents=[{"name": "echo", "message": "echo {{ message }}", "task": "chat", "deliver": []}]
    )
    body = json.dumps({"message": "late body"}).encode()
    head = request(
        "POST",
        "/api/agents/echo/run",
        {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            # the server answers 100 once it has parsed the headers, right before its
            # middlewares (the body deadline among them) run: the body then comes after
            "Expect": "100-continue",
        },
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.gateway.port)
    try:
        writer.write(head)  # the headers alone, then the body in its own packet
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        writer.write(body)
        await writer.drain()
        answer = parse(await asyncio.wait_for(reader.read(), 10))
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer.status == 202, answer.body
    run = await gw.app.runner.runs.get(int(answer.json()["run_id"]))
    assert run is not None and run.message == "late body"
    async with gw.http() as c:  # no body at all is still "no message", not a 400
        bare = await c.post("/api/agents/echo/run")
    assert bare.status_code == 202, bare.text
