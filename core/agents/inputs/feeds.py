"""RSS 2.0, RSS 1.0 (RDF) and Atom feeds read with the standard library, refusing DTDs;
item summaries as plain text."""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from itertools import islice
from typing import Any

SUMMARY_CHARS = 500

_ATOM = "{http://www.w3.org/2005/Atom}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"

_FEED_STARTS = (b"<?xml", b"<rss", b"<feed", b"<rdf:RDF")
_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_SPACES = re.compile(r"\s+")


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
