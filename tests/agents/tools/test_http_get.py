"""http_get against real aiohttp servers on 127.0.0.1: what it refuses, it never sends."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from core.agents.tools.base import ToolContext, ToolFailure
from core.agents.tools.http_get import HttpGet, refusal
from core.config.tools import HttpGetConfig

CTX = ToolContext(agent="tester", run_id=1)


@dataclass
class Server:
    port: int
    hits: list[str] = field(default_factory=list)  # path of every request that arrived
    hosts: list[str] = field(default_factory=list)  # its Host header
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow(self) -> list[str]:
        return [f"127.0.0.1:{self.port}"]


ServerFactory = Callable[[], Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    runners: list[web.AppRunner] = []
    servers: list[Server] = []

    async def start() -> Server:
        srv = Server(port=0)

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            srv.hits.append(request.path)
            srv.hosts.append(request.host)
            resp: web.StreamResponse = await handler(request)
            return resp

        async def text(request: web.Request) -> web.StreamResponse:
            return web.Response(text="hello from the server", content_type="text/plain")

        async def missing(request: web.Request) -> web.StreamResponse:
            return web.Response(status=404, text="no such page")

        async def big(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()  # no Content-Length: the cap must hold while reading
            await resp.prepare(request)
            for _ in range(10):
                await resp.write(b"x" * 1000)
            await resp.write_eof()
            return resp

        async def slow(request: web.Request) -> web.StreamResponse:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(srv.release.wait(), 5)
            return web.Response(text="late")

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(request.query["to"])

        app = web.Application(middlewares=[count])
        app.router.add_get("/text", text)
        app.router.add_get("/missing", missing)
        app.router.add_get("/big", big)
        app.router.add_get("/slow", slow)
        app.router.add_get("/redirect", redirect)
        runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        srv.port = runner.addresses[0][1]
        runners.append(runner)
        servers.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in servers:
            srv.release.set()
        for runner in runners:
            await runner.cleanup()


def tool(allow: list[str] | None = None, **config: Any) -> HttpGet:
    return HttpGet(HttpGetConfig(allow_private=allow or [], **config))


async def refused(t: HttpGet, url: str) -> str:
    with pytest.raises(ToolFailure) as e:
        await t({"url": url}, CTX)
    return str(e.value)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.100.100.200", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),  # reserved; Python files 240/4 under private too
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "cloud metadata"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("8.8.8.8", None),
        ("::ffff:8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_refusal_table(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


async def test_loopback_refused_and_nothing_sent(start_server: ServerFactory) -> None:
    srv = await start_server()
    message = await refused(tool(), f"{srv.base}/text")
    assert "loopback" in message and "allow_private" in message
    assert srv.hits == []


async def test_loopback_allowed_by_host_and_port(start_server: ServerFactory) -> None:
    srv = await start_server()
    t = tool(srv.allow)
    result = await t({"url": f"{srv.base}/text"}, CTX)
    assert result.content.startswith("HTTP 200 OK\n")
    assert "Content-Type: text/plain" in result.content
    assert result.content.endswith("hello from the server")
    assert result.summary == "200, 21 B"
    assert srv.hits == ["/text"]


async def test_allow_private_is_case_insensitive_and_host_only(
    start_server: ServerFactory,
) -> None:
    srv = await start_server()
    result = await tool(["LOCALHOST"])({"url": f"http://localhost:{srv.port}/text"}, CTX)
    assert "hello from the server" in result.content
    # another port of an allowed host:port is not allowed
    await refused(tool([f"127.0.0.1:{srv.port + 1}"]), f"{srv.base}/text")
    assert srv.hits == ["/text"]


async def test_name_resolving_to_loopback_refused(start_server: ServerFactory) -> None:
    srv = await start_server()
    # the address is allowed, the name is not: allow_private names what the URL says
    message = await refused(tool(srv.allow), f"http://localhost:{srv.port}/text")
    assert "localhost resolves to" in message and "loopback" in message
    assert srv.hits == []


async def test_metadata_address_refused() -> None:
    message = await refused(tool(), "http://169.254.169.254/latest/meta-data/")
    assert "cloud metadata" in message
    assert "metadata" in await refused(tool(), "http://[fd00:ec2::254]/")


async def test_ipv4_mapped_ipv6_refused(start_server: ServerFactory) -> None:
    srv = await start_server()
    message = await refused(tool(srv.allow), f"http://[::ffff:127.0.0.1]:{srv.port}/text")
    assert "loopback" in message
    assert srv.hits == []


async def test_legacy_numeric_ipv4_refused(start_server: ServerFactory) -> None:
    srv = await start_server()
    # 2130706433 is 127.0.0.1: getaddrinfo maps it, and the check sees the address
    for url in (f"http://2130706433:{srv.port}/text", f"http://127.1:{srv.port}/text"):
        with pytest.raises(ToolFailure):
            await tool(srv.allow)({"url": url}, CTX)
    assert srv.hits == []


async def test_redirect_to_private_refused(start_server: ServerFactory) -> None:
    allowed, other = await start_server(), await start_server()
    url = f"{allowed.base}/redirect?to={other.base}/text"
    message = await refused(tool(allowed.allow), url)
    assert "loopback" in message
    assert allowed.hits == ["/redirect"]
    assert other.hits == []


async def test_redirect_followed_and_rechecked(start_server: ServerFactory) -> None:
    srv = await start_server()
    result = await tool(srv.allow)({"url": f"{srv.base}/redirect?to=/text"}, CTX)
    assert "hello from the server" in result.content
    assert f"URL: {srv.base}/text (after 1 redirect)" in result.content
    assert srv.hits == ["/redirect", "/text"]


async def test_redirects_bounded(start_server: ServerFactory) -> None:
    srv = await start_server()
    message = await refused(tool(srv.allow, max_redirects=0), f"{srv.base}/redirect?to=/text")
    assert "max_redirects (0)" in message
    assert srv.hits == ["/redirect"]


async def test_non_2xx_is_a_result(start_server: ServerFactory) -> None:
    srv = await start_server()
    result = await tool(srv.allow)({"url": f"{srv.base}/missing"}, CTX)
    assert result.content.startswith("HTTP 404 Not Found\n")
    assert result.content.endswith("no such page")
    assert result.summary == "404, 12 B"


async def test_body_cap(start_server: ServerFactory) -> None:
    srv = await start_server()
    result = await tool(srv.allow, max_bytes=2048)({"url": f"{srv.base}/big"}, CTX)
    body = result.content.split("\n\n", 1)[1]
    assert body == "x" * 2048 + "\n[body cut at 2.0 KB; the rest was not read]"
    assert result.summary == "200, 2.0 KB (cut)"


async def test_timeout(start_server: ServerFactory) -> None:
    srv = await start_server()
    message = await refused(tool(srv.allow, timeout_s=0.3), f"{srv.base}/slow")
    assert message == "GET 127.0.0.1 timed out after 0.3s"


async def test_connect_error_is_a_failure(closed_port: int) -> None:
    message = await refused(tool([f"127.0.0.1:{closed_port}"]), f"http://127.0.0.1:{closed_port}/")
    assert message.startswith("GET 127.0.0.1 failed: ")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/file", "only http and https URLs can be fetched, not ftp: URLs"),
        ("file:///etc/passwd", "only http and https URLs can be fetched, not file: URLs"),
        ("example.com/page", "(no scheme)"),
        ("http:///path", "has no host"),
    ],
)
async def test_unusable_urls(url: str, expected: str) -> None:
    assert expected in await refused(tool(), url)


# --- DNS answers a loopback server can't give: a lookup that stands in for the DNS server ---


class FakeDNS:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.answers[host]


async def test_any_internal_address_of_a_name_refuses_it() -> None:
    dns = FakeDNS({"mixed.example": ["93.184.215.14", "10.0.0.7"]})
    t = HttpGet(HttpGetConfig(), lookup=dns)
    with pytest.raises(ToolFailure, match=r"resolves to 10\.0\.0\.7, which is a private"):
        await t({"url": "http://mixed.example/"}, CTX)


async def test_connection_goes_to_the_checked_address(start_server: ServerFactory) -> None:
    # pinned.test exists in no real DNS: reaching the server proves the connector used the
    # address the tool checked and made no lookup of its own (which rebinding could switch)
    srv = await start_server()
    dns = FakeDNS({"pinned.test": ["127.0.0.1"]})
    t = HttpGet(HttpGetConfig(allow_private=["pinned.test"]), lookup=dns)
    result = await t({"url": f"http://pinned.test:{srv.port}/redirect?to=/text"}, CTX)
    assert "hello from the server" in result.content
    assert dns.asked == ["pinned.test", "pinned.test"]  # once per hop, by the check only
    assert srv.hosts == [f"pinned.test:{srv.port}"] * 2


def test_target_is_the_host() -> None:
    t = tool()
    assert t.target({"url": "https://Status.Example.com/api?x=1"}) == "status.example.com"
    assert t.spec.name == "http_get"
    assert t.spec.parameters["required"] == ["url"]
    assert t.approval is False
