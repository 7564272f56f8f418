"""Gather an agent's named inputs (HTTP, feeds, commands, files) before its prompt renders.

Every expected failure becomes an :class:`InputError` naming the input and the reason, raised
from one place (:func:`gather_one`); helpers raise the private ``_Failure`` with the reason only.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from html.parser import HTMLParser
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from core.config_agents import InputConfig
from core.errors import OpenClawError

T = TypeVar("T")

SUMMARY_CHARS = 500
STDERR_LINE_CHARS = 200
_STDERR_TAIL_BYTES = 16 * 1024  # enough for the last line; a chatty command can't fill memory
_CHUNK_BYTES = 64 * 1024

_ATOM = "{http://www.w3.org/2005/Atom}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"

_FEED_STARTS = (b"<?xml", b"<rss", b"<feed", b"<rdf:RDF")
_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_SPACES = re.compile(r"\s+")


class InputError(OpenClawError):
    """An input could not be gathered; ``str(e)`` is ``input <name>: <reason>``."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"input {name}: {message}")


class _Failure(Exception):
    """An expected failure of one fetch; gather_one turns it into an InputError."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def gather_inputs(
    inputs: Mapping[str, InputConfig], *, session: aiohttp.ClientSession, base_dir: Path
) -> dict[str, Any]:
    """Gather every input concurrently and return ``{name: value}``.

    The first input to fail raises its :class:`InputError`; the others are cancelled (their
    subprocesses killed) before it propagates.
    """
    names = list(inputs)
    values = await _all_or_first_error(
        [gather_one(n, inputs[n], session=session, base_dir=base_dir) for n in names]
    )
    return dict(zip(names, values, strict=True))


async def gather_one(
    name: str, cfg: InputConfig, *, session: aiohttp.ClientSession, base_dir: Path
) -> Any:
    """Gather one input: the parsed feed / JSON / text of a URL, a list of those for a list of
    URLs, a command's stdout, or a file's text (parsed if ``.json``). Raises :class:`InputError`.
    """
    try:
        if cfg.http is not None:
            if isinstance(cfg.http, str):
                value, _ = await _fetch(cfg.http, cfg, session)
                return value
            return await _fetch_many(cfg.http, cfg, session)
        if cfg.command is not None:
            return await _run_command(cfg.command, cfg, base_dir)
        assert cfg.file is not None  # InputConfig guarantees exactly one kind
        return await _read_file(cfg.file, cfg, base_dir)
    except _Failure as e:
        raise InputError(name, e.reason) from None


async def _all_or_first_error(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on the first exception cancel (and await) the rest, then raise it.

    Unlike asyncio.gather this leaves nothing running behind a failure, and unlike TaskGroup
    it raises the error itself rather than an ExceptionGroup.
    """
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        pending: set[asyncio.Task[T]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:  # config order breaks ties between failures seen together
                error = task.exception() if task in done else None
                if error is not None:
                    raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [t.result() for t in tasks]


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


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


# --- feeds --------------------------------------------------------------------------------


def parse_feed(body: bytes, max_items: int) -> dict[str, Any] | None:
    """Parse RSS 2.0, Atom or RSS 1.0 (RDF) into ``{"title", "link", "items"}``, or None.

    Each item is ``{"title", "link", "summary", "published"}``; summaries have HTML removed,
    whitespace collapsed and are cut to about 500 characters; ``published`` is the feed's own
    string. At most ``max_items`` items. A body declaring a DTD is never parsed (None), so
    entity expansion can't blow up memory.
    """
    try:
        return _read_feed(body, max_items)
    except _DtdDeclared:
        return None


class _DtdDeclared(Exception):
    """The body declares a DTD: refused unparsed, so entity expansion can't blow up memory."""


def _read_feed(body: bytes, max_items: int) -> dict[str, Any] | None:
    """The one feed path, for a fetched body and for :func:`parse_feed`: decode, refuse a DTD
    (raise :class:`_DtdDeclared`), parse; None if the body is no feed."""
    text = _xml_text(body)
    if text is None:
        return None
    if _DTD.search(text):
        raise _DtdDeclared
    return _parse_feed_text(text, max_items)


def _xml_text(body: bytes) -> str | None:
    """The body decoded by its XML declaration, or None if it can't be an ASCII-compatible doc.

    Decoding here (rather than letting expat do it) means the DTD check sees the same text
    the parser will: an EBCDIC or UTF-16 body can't hide a declaration from it.
    """
    if b"\x00" in body:  # UTF-16/32: no feed we fetch uses them
        return None
    body = body.removeprefix(codecs.BOM_UTF8)
    m = _XML_ENCODING.match(body)
    codec = _codec(m.group(1).decode("ascii")) if m else "utf-8"
    if codec is None:
        return None
    return body.decode(codec, "replace")


def _parse_feed_text(text: str, max_items: int) -> dict[str, Any] | None:
    try:
        # expat ignores the declared encoding of a str and reads it as the text it is.
        root = ET.fromstring(text.lstrip())
    except ET.ParseError:
        return None
    if root.tag == "rss":
        channel = root.find("channel")
        if channel is None:
            return None
        title, link = _plain(channel.find("title")), _plain(channel.find("link"))
        return _feed(title, link, channel.iter("item"), _rss_item, max_items)
    if root.tag == f"{_ATOM}feed":
        title = _atom_text(root.find(f"{_ATOM}title"))
        return _feed(title, _atom_link(root), root.iter(f"{_ATOM}entry"), _atom_entry, max_items)
    if root.tag == f"{_RDF}RDF":
        channel = root.find(f"{_RSS1}channel")
        title = _plain(channel.find(f"{_RSS1}title")) if channel is not None else ""
        link = _plain(channel.find(f"{_RSS1}link")) if channel is not None else ""
        return _feed(title, link, root.iter(f"{_RSS1}item"), _rdf_item, max_items)
    return None


def _feed(
    title: str,
    link: str,
    elements: Iterator[ET.Element],
    to_item: Callable[[ET.Element], dict[str, str]],
    max_items: int,
) -> dict[str, Any]:
    # Only the items kept become text: stripping their HTML is most of the parse (a 2.4 MB
    # feed of 300 items with 6 kB descriptions took 760 ms when all were stripped to keep 50).
    items = [to_item(e) for e in islice(elements, max(max_items, 0))]
    return {"title": title, "link": link, "items": items}


def _rss_item(item: ET.Element) -> dict[str, str]:
    summary = item.find("description")
    if summary is None or not (summary.text or "").strip():
        summary = item.find(f"{_CONTENT}encoded")
    published = item.find("pubDate")
    if published is None:
        published = item.find(f"{_DC}date")
    return {
        "title": _plain(item.find("title")),
        "link": _plain(item.find("link")),
        "summary": _summary(_inner(summary)),
        "published": _plain(published),
    }


def _rdf_item(item: ET.Element) -> dict[str, str]:
    return {
        "title": _plain(item.find(f"{_RSS1}title")),
        "link": _plain(item.find(f"{_RSS1}link")),
        "summary": _summary(_inner(item.find(f"{_RSS1}description"))),
        "published": _plain(item.find(f"{_DC}date")),
    }


def _atom_entry(entry: ET.Element) -> dict[str, str]:
    summary = entry.find(f"{_ATOM}summary")
    if summary is None:
        summary = entry.find(f"{_ATOM}content")
    published = entry.find(f"{_ATOM}published")
    if published is None:
        published = entry.find(f"{_ATOM}updated")
    return {
        "title": _atom_text(entry.find(f"{_ATOM}title")),
        "link": _atom_link(entry),
        "summary": _summary(_inner(summary)),
        "published": _plain(published),
    }


def _atom_link(el: ET.Element) -> str:
    links = [link for link in el.findall(f"{_ATOM}link") if link.get("href")]
    for link in links:
        if link.get("rel", "alternate") == "alternate":
            return link.get("href", "").strip()
    return links[0].get("href", "").strip() if links else ""


def _atom_text(el: ET.Element | None) -> str:
    if el is not None and el.get("type") in ("html", "xhtml"):
        return strip_html(_inner(el))
    return _plain(el)


def _plain(el: ET.Element | None) -> str:
    return "" if el is None else _SPACES.sub(" ", "".join(el.itertext())).strip()


def _inner(el: ET.Element | None) -> str:
    """The element's content as markup: escaped HTML stays a string, XHTML is re-serialised."""
    if el is None:
        return ""
    return (el.text or "") + "".join(ET.tostring(c, encoding="unicode") for c in el)


def _summary(markup: str) -> str:
    text = strip_html(markup)
    if len(text) > SUMMARY_CHARS:
        text = text[: SUMMARY_CHARS - 1].rstrip() + "…"
    return text


_INLINE_TAGS = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd"}
    | {"mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time"}
    | {"tt", "u", "var"}
)
_HIDDEN_TAGS = frozenset({"script", "style", "template", "noscript"})


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag not in _INLINE_TAGS:
            self.parts.append(" ")  # block tags separate words: <p>a</p><p>b</p> is "a b"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE_TAGS and tag not in _HIDDEN_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden = max(0, self._hidden - 1)
        elif tag not in _INLINE_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def strip_html(markup: str) -> str:
    """Text of an HTML fragment: tags dropped, entities decoded, whitespace collapsed."""
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    return _SPACES.sub(" ", "".join(parser.parts)).strip()


# --- command ------------------------------------------------------------------------------


async def _run_command(argv: list[str], cfg: InputConfig, base_dir: Path) -> str:
    label = f"command {argv!r}"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=base_dir,
            # Its own process group, so a timeout also kills whatever it spawned.
            start_new_session=True,
        )
    except FileNotFoundError as e:
        if str(e.filename) == str(base_dir):
            raise _Failure(f"{label}: working directory {base_dir} does not exist") from None
        raise _Failure(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise _Failure(f"{label}: {argv[0]} is not executable") from None
    except OSError as e:
        raise _Failure(f"{label} could not start: {e.strerror or e}") from None
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    async def read_stdout() -> bytes:
        out = bytearray()
        while chunk := await stdout.read(_CHUNK_BYTES):
            out += chunk
            if len(out) > cfg.max_bytes:
                raise _Failure(f"{label} output over max_bytes ({cfg.max_bytes})")
        return bytes(out)

    async def read_stderr_tail() -> bytes:
        tail = b""
        while chunk := await stderr.read(_CHUNK_BYTES):
            tail = (tail + chunk)[-_STDERR_TAIL_BYTES:]
        return tail

    try:
        async with asyncio.timeout(cfg.timeout_s):
            out, err = await _all_or_first_error([read_stdout(), read_stderr_tail()])
            code = await proc.wait()
    except TimeoutError:
        raise _Failure(f"{label} timed out after {cfg.timeout_s:g}s") from None
    finally:
        if proc.returncode is None:  # timed out, too much output, or cancelled
            _kill_group(proc)
            await proc.wait()
    if code < 0:
        raise _Failure(f"{label} was killed by signal {-code}")
    if code != 0:
        last = _last_line(err)
        raise _Failure(f"{label} exited {code}" + (f": {last}" if last else ""))
    return out.decode("utf-8", "replace").rstrip()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        if sys.platform == "win32":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= STDERR_LINE_CHARS else last[: STDERR_LINE_CHARS - 1] + "…"


# --- file ---------------------------------------------------------------------------------


async def _read_file(file: str, cfg: InputConfig, base_dir: Path) -> Any:
    path = _resolve(file, base_dir)
    try:
        # A FIFO or a hung network mount would block the thread forever; don't wait for it.
        async with asyncio.timeout(cfg.timeout_s):
            return await asyncio.to_thread(_load_file, path, cfg.max_bytes)
    except TimeoutError:
        raise _Failure(f"file {path} timed out after {cfg.timeout_s:g}s") from None


def _resolve(file: str, base_dir: Path) -> Path:
    path = Path(file).expanduser()
    return path if path.is_absolute() else base_dir / path


def _load_file(path: Path, max_bytes: int) -> Any:
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise _Failure(f"file {path} does not exist") from None
    except IsADirectoryError:
        raise _Failure(f"file {path} is a directory") from None
    except PermissionError:
        raise _Failure(f"file {path} is not readable (permission denied)") from None
    except OSError as e:
        raise _Failure(f"file {path} could not be read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise _Failure(f"file {path} is over max_bytes ({max_bytes})")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(data)
        except ValueError as e:
            raise _Failure(f"file {path} is not valid JSON: {e}") from None
    return data.decode("utf-8-sig", "replace")
