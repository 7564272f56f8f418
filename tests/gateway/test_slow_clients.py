"""Slow clients (issue 13): headers or a body at a byte a second, or a chunked body that
never ends, held a connection open forever. The gateway closes each within its deadline;
the tests shorten the deadlines and check that the connection is closed, not how fast."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from core.gateway.limits import Limits
from tests.gateway.conftest import TOKEN, GatewayFactory, Running
from tests.gateway.raw import RawResponse, parse

SHORT = Limits(header_timeout_s=0.5, body_timeout_s=0.5, linger_s=0.5)
BOUND_S = 20  # far over any deadline here: reaching it means the server never closed


async def trickle(port: int, head: bytes, drip: bytes) -> bytes:
    """Send ``head``, then ``drip`` a byte at a time (one every 0.1 s) until the server
    answers or closes; return everything it sent before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    answered = asyncio.Event()

    async def drip_bytes() -> None:
        writer.write(head)
        for i in range(len(drip)):
            if answered.is_set():
                return  # stop sending once the answer is here: its close stays clean
            writer.write(drip[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.1)

    async def read_all() -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)
            answered.set()

    sender = asyncio.create_task(drip_bytes())
    try:
        async with asyncio.timeout(BOUND_S):
            with contextlib.suppress(ConnectionError):
                await read_all()
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bytes(received)


@pytest.fixture
async def gw(start_gateway: GatewayFactory) -> Running:
    return await start_gateway(limits=SHORT)


async def test_headers_at_a_byte_a_second_are_cut_off(gw: Running) -> None:
    head = b"GET /health HTTP/1.1\r\n"
    drip = b"Host: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    got = await trickle(gw.gateway.port, head, drip)  # returns: the server closed
    assert got == b""  # no request was ever complete, so nothing to answer


async def test_an_idle_connection_is_closed(gw: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.gateway.port)
    try:
        async with asyncio.timeout(BOUND_S):
            assert await reader.read() == b""
    finally:
        writer.close()


async def test_a_kept_alive_connection_that_trickles_its_next_request_is_closed(
    gw: Running,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.gateway.port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND_S)
        assert head.startswith(b"HTTP/1.1 200")
        writer.write(b"GET /health HTTP/1.1\r\n")  # and never the rest
        async with asyncio.timeout(BOUND_S):
            while await reader.read(65536):
                pass  # the first answer's body, then the close
    finally:
        writer.close()


def post_head(extra: str) -> bytes:
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def assert_408(raw: bytes) -> RawResponse:
    r = parse(raw)
    assert r.status == 408, raw[:300]
    err = r.json()["error"]
    assert err["code"] == "request_timeout" and err["type"] == "invalid_request_error"
    assert r.headers.get("connection", "").lower() == "close"
    return r


async def test_a_body_at_a_byte_a_second_gets_408_and_the_connection_closes(
    gw: Running,
) -> None:
    body = b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
    got = await trickle(gw.gateway.port, post_head(f"Content-Length: {len(body)}\r\n"), body)
    assert_408(got)
    assert gw.fake.requests == []


async def test_a_chunked_body_that_never_ends_gets_408_and_the_connection_closes(
    gw: Running,
) -> None:
    head = post_head("Transfer-Encoding: chunked\r\n") + b'5\r\n{"mod\r\n'
    got = await trickle(gw.gateway.port, head, b"1\r\na\r\n" * 200)  # a chunk a byte at a time
    assert_408(got)
    assert gw.fake.requests == []


async def test_a_body_that_stops_arriving_gets_408(gw: Running) -> None:
    got = await trickle(gw.gateway.port, post_head("Content-Length: 100\r\n") + b"{", b"")
    assert_408(got)


async def test_the_default_deadlines_are_a_few_seconds_for_headers_and_bounded_for_bodies(
    gateway: Running,
) -> None:
    limits = gateway.gateway.limits
    assert 0 < limits.header_timeout_s <= 15
    assert limits.header_timeout_s > 5  # the SDK's httpx drops idle connections at 5 s first
    assert 0 < limits.body_timeout_s <= 120


async def test_a_prompt_body_within_its_deadline_is_served(gw: Running) -> None:
    async with gw.http() as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "x" * 50_000}]},
        )
    assert r.status_code == 200, r.text


async def test_the_deadlines_come_from_the_gateway_config(start_gateway: GatewayFactory) -> None:
    """``[gateway] header_timeout_s`` and ``body_timeout_s`` set what serve's gateway uses."""
    gw = await start_gateway(gateway={"header_timeout_s": 0.5, "body_timeout_s": 0.7})
    assert (gw.gateway.limits.header_timeout_s, gw.gateway.limits.body_timeout_s) == (0.5, 0.7)
    head = b"GET /health HTTP/1.1\r\n"
    got = await trickle(gw.gateway.port, head, b"Host: 127.0.0.1\r\nX-Slow: " + b"a" * 1000)
    assert got == b""  # closed at the configured header deadline, long before BOUND_S
