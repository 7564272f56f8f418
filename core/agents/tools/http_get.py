"""``http_get``: one GET for the model, refused for loopback, private, link-local and metadata
addresses (after DNS resolution) unless the operator allowed the host.

The connection goes only to the addresses that were checked: the session's connector asks a
resolver that answers from the vetted list and never looks a name up itself, so a DNS answer
that changes between the check and the connect (rebinding) cannot reach an internal address.
Redirects are followed here, one at a time, each Location checked by the same rules.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from core.agents.inputs.base import _CHUNK_BYTES
from core.agents.inputs.feeds import _codec
from core.agents.tools.base import ToolContext, ToolFailure, ToolResult, human_size
from core.config.tools import HttpGetConfig
from core.types import ToolSpec

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port → the addresses it resolves to (injectable: tests stand in for a DNS server)
Lookup = Callable[[str, int], Awaitable[list[str]]]

_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SHOWN_HEADERS = ("Content-Type", "Content-Length", "Last-Modified", "Location", "Retry-After")
_SCHEMES = ("http", "https")

SPEC = ToolSpec(
    name="http_get",
    description=(
        "Fetch a public http or https URL with GET and return its status, content type and "
        "body text (long bodies are cut). Private and internal addresses are refused."
    ),
    parameters={
        "type": "object",
        "properties": {"url": {"type": "string", "description": "an http:// or https:// URL"}},
        "required": ["url"],
        "additionalProperties": False,
    },
)


def refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched (``"loopback"``, ``"private"``, …), or None if public.

    An IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4, NAT64) is judged by the
    IPv4 address it reaches: ``::ffff:127.0.0.1`` is loopback.
    """
    inner = _embedded_v4(ip)
    if inner is not None:
        return refusal(inner)
    if ip in _METADATA:
        return "cloud metadata"
    checks = (
        (ip.is_loopback, "loopback"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.version == 4 and ip in _CGNAT, "shared (CGNAT)"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        # documentation, benchmarking and other special ranges none of the above names
        (not ip.is_global, "non-public"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


async def _getaddrinfo(host: str, port: int) -> list[str]:
    # The loop's getaddrinfo runs in its executor: the event loop never blocks on DNS.
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _connector_host(url: URL) -> str:
    # The key the connector asks the resolver with (aiohttp collapses trailing dots to one).
    host = url.raw_host or ""
    return host.rstrip(".") + "." if host.endswith("..") else host


class _PinnedResolver(AbstractResolver):
    """Answers the connector only with addresses the tool vetted; any other name fails."""

    def __init__(self) -> None:
        self.pins: dict[str, list[IPAddress]] = {}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The vetted addresses of ``host`` (of ``family`` unless it is AF_UNSPEC)."""
        results: list[ResolveResult] = []
        for ip in self.pins.get(host, []):
            ip_family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, ip_family):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": str(ip),
                    "port": port,
                    "family": ip_family,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        if not results:
            raise OSError(f"{host} was not checked before connecting")
        return results

    async def close(self) -> None:
        """Nothing to release: the resolver holds no sockets."""


class HttpGet:
    """The ``http_get`` tool."""

    def __init__(self, config: HttpGetConfig, *, lookup: Lookup | None = None) -> None:
        self._cfg = config
        self._lookup = lookup or _getaddrinfo
        self._allowed = {a.strip().lower() for a in config.allow_private}

    @property
    def spec(self) -> ToolSpec:
        """Name, description and the one ``url`` argument."""
        return SPEC

    @property
    def timeout_s(self) -> float:
        """The whole call, redirects and body included."""
        return self._cfg.timeout_s

    @property
    def approval(self) -> bool:
        """A GET of a public address needs no admin."""
        return False

    def target(self, args: Mapping[str, Any]) -> str:
        """The URL's host."""
        raw = str(args.get("url", ""))
        try:
            return URL(raw).host or raw[:60]
        except ValueError:
            return raw[:60]

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """GET the URL (following checked redirects) and return status, headers and body."""
        url = _parse(str(args.get("url", "")))
        limit = self._cfg.timeout_s
        resolver = _PinnedResolver()
        try:
            async with asyncio.timeout(limit):
                # Its own session: the shared one resolves names itself, which would undo
                # the pinning. The connector never caches, so each hop uses its own check.
                connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
                async with aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=limit)
                ) as session:
                    return await self._follow(session, resolver, url)
        except TimeoutError:  # before ClientError: aiohttp's timeouts are both
            raise ToolFailure(f"GET {url.host} timed out after {limit:g}s") from None
        except aiohttp.ClientError as e:
            raise ToolFailure(f"GET {url.host} failed: {_reason(e)}") from None

    async def _follow(
        self, session: aiohttp.ClientSession, resolver: _PinnedResolver, url: URL
    ) -> ToolResult:
        redirects = 0
        while True:
            resolver.pins[_connector_host(url)] = await self._vet(url)
            async with session.get(url, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    if redirects >= self._cfg.max_redirects:
                        raise ToolFailure(
                            f"GET {url} redirects to {location}, over max_redirects "
                            f"({self._cfg.max_redirects})"
                        )
                    redirects += 1
                    url = _parse(str(resp.url.join(URL(location))))
                    continue
                body, cut = await _read_capped(resp, self._cfg.max_bytes)
                return _result(resp, url, redirects, body, cut, self._cfg.max_bytes)

    async def _vet(self, url: URL) -> list[IPAddress]:
        """The addresses ``url``'s host may be reached at; ToolFailure if any is internal."""
        host, port = url.raw_host or "", url.port or 0
        addresses = await self._addresses(host, port)
        if self._is_allowed(host, port):
            return addresses
        for ip in addresses:
            reason = refusal(ip)
            if reason is not None:
                shown = host if str(ip) == host else f"{host} resolves to {ip}, which"
                raise ToolFailure(
                    f"refused: {shown} is a {reason} address; http_get fetches public "
                    "addresses only (an operator may list the host in "
                    "[tools.http_get] allow_private)"
                )
        return addresses

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]  # a literal: nothing to resolve
        except ValueError:
            pass
        try:
            found = await self._lookup(host, port)
        except OSError as e:
            raise ToolFailure(f"{host} could not be resolved: {_reason(e)}") from None
        if not found:
            raise ToolFailure(f"{host} resolves to no address")
        return [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]

    def _is_allowed(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        names = {host, f"{host}:{port}"}
        if ":" in host:  # IPv6, which an operator may have written in brackets
            names |= {f"[{host}]", f"[{host}]:{port}"}
        return not names.isdisjoint(self._allowed)


def _parse(raw: str) -> URL:
    try:
        url = URL(raw)
    except ValueError:
        raise ToolFailure(f"{raw[:200]!r} is not a URL") from None
    if url.scheme not in _SCHEMES:
        shown = f"{url.scheme}: URLs" if url.scheme else f"{raw[:200]!r} (no scheme)"
        raise ToolFailure(f"only http and https URLs can be fetched, not {shown}")
    if not url.raw_host:
        raise ToolFailure(f"{raw[:200]!r} has no host")
    return url


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    """At most ``max_bytes`` of the body, and whether there was more (left unread)."""
    body = bytearray()
    while len(body) <= max_bytes:
        chunk = await resp.content.read(min(_CHUNK_BYTES, max_bytes + 1 - len(body)))
        if not chunk:
            return bytes(body), False
        body += chunk
    return bytes(body[:max_bytes]), True


def _result(
    resp: aiohttp.ClientResponse, url: URL, redirects: int, body: bytes, cut: bool, cap: int
) -> ToolResult:
    lines = [f"HTTP {resp.status} {resp.reason or ''}".rstrip()]
    if redirects:
        lines.append(f"URL: {url} (after {redirects} redirect{'s' if redirects > 1 else ''})")
    lines += [f"{h}: {resp.headers[h]}" for h in _SHOWN_HEADERS if h in resp.headers]
    text = body.decode(_codec(resp.charset) or "utf-8", "replace")
    lines += ["", text]
    if cut:
        lines.append(f"[body cut at {human_size(cap)}; the rest was not read]")
    size = human_size(len(body)) + (" (cut)" if cut else "")
    return ToolResult("\n".join(lines), summary=f"{resp.status}, {size}")


def _reason(e: BaseException) -> str:
    if isinstance(e, aiohttp.ClientConnectorError):
        return e.os_error.strerror or str(e.os_error) or type(e).__name__
    text = str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:199] + "…"
