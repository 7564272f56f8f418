"""Raw HTTP/1.1 over a socket on 127.0.0.1: requests no client library would send."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    raw: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes) -> RawResponse:
    """One HTTP/1.1 response (Content-Length or read to close; not chunked)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None:
        body = body[: int(length)]
    return RawResponse(int(lines[0].split()[1]), headers, body, raw)


async def exchange(port: int, data: bytes, timeout_s: float = 10) -> RawResponse:
    """Send ``data`` as is and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
        await writer.wait_closed()
    return parse(raw)


def request(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """A request that asks the server to close after answering."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
