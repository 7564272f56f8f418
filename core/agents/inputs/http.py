"""HTTP inputs: fetch one URL or several, then read the body as JSON, a feed or text."""

from __future__ import annotations

import asyncio
import codecs
import json
from typing import Any

import aiohttp

from core.agents.inputs.base import _CHUNK_BYTES, _all_or_first_error, _Failure
from core.agents.inputs.feeds import _FEED_STARTS, _codec, _DtdDeclared, _read_feed
from core.config.agents import InputConfig

# --- http ---------------------------------------------------------------------------------


async def _fetch_many(urls: list[str], cfg: InputConfig, session: aiohttp.ClientSession) -> Any:
    if not urls:
        raise _Failure("http lists no URLs: give at least one, or remove the input")

    async def entry(url: str) -> dict[str, Any]:
        try:
            value, is_feed = await _fetch(url, cfg, session)
        except _Failure as e:
            return {"url": url, "error": e.reason}
        return {"url": url, **value} if is_feed else {"url": url, "data": value}

    entries = await _all_or_first_error([entry(u) for u in urls])
    if all("error" in e for e in entries):
        raise _Failure("every URL failed: " + "; ".join(e["error"] for e in entries))
    return entries


async def _fetch(url: str, cfg: InputConfig, session: aiohttp.ClientSession) -> tuple[Any, bool]:
    """The URL's value, and whether it is a parsed feed (a JSON object could look like one)."""
    label = f"http GET {url}"
    try:
        # asyncio.timeout bounds the body read too; ClientTimeout overrides the session default.
        async with (
            asyncio.timeout(cfg.timeout_s),
            session.get(
                url, headers=cfg.headers, timeout=aiohttp.ClientTimeout(total=cfg.timeout_s)
            ) as resp,
        ):
            if not 200 <= resp.status < 300:
                raise _Failure(f"{label} answered {resp.status}")
            too_big = f"{label} body over max_bytes ({cfg.max_bytes})"
            if resp.content_length is not None and resp.content_length > cfg.max_bytes:
                raise _Failure(too_big)
            body = bytearray()
            while chunk := await resp.content.read(_CHUNK_BYTES):
                body += chunk
                if len(body) > cfg.max_bytes:
                    raise _Failure(too_big)
            content_type, charset = resp.content_type, resp.charset
    except TimeoutError:  # before ClientError: aiohttp's timeouts are both
        raise _Failure(f"{label} timed out after {cfg.timeout_s:g}s") from None
    except aiohttp.ClientError as e:
        raise _Failure(f"{label} failed: {str(e) or type(e).__name__}") from None
    except ValueError as e:  # a URL aiohttp can't even parse
        raise _Failure(f"{label} failed: {e}") from None
    # A 2 MB feed takes ~100 ms to parse (HTML stripping of the kept items): off the loop.
    return await asyncio.to_thread(
        _interpret, bytes(body), content_type, charset, cfg.max_items, label
    )


def _interpret(
    body: bytes, content_type: str, charset: str | None, max_items: int, label: str
) -> tuple[Any, bool]:
    head = body.removeprefix(codecs.BOM_UTF8).lstrip()
    if any(k in content_type for k in ("xml", "rss", "atom")) or head.startswith(_FEED_STARTS):
        try:
            feed = _read_feed(body, max_items)
        except _DtdDeclared:
            raise _Failure(f"{label}: feed declares a DTD; refused") from None
        if feed is not None:
            return feed, True
    # Sniff JSON only for bodies that look like documents: a text/plain "42" stays text.
    if "json" in content_type or head.startswith((b"{", b"[")):
        try:
            return json.loads(body), False
        except ValueError:
            pass
    return body.decode(_codec(charset) or "utf-8-sig", "replace"), False
