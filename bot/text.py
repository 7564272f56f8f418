"""Telegram message text: UTF-16 lengths, escaping, truncation and splitting long HTML.

Telegram caps a message at 4096 UTF-16 code units and rejects HTML whose tags don't
balance, so a long reply is cut into parts that each fit and each parse on their own:
an element open at a cut is closed at the end of one part and reopened, with its
original attributes, at the start of the next. Lengths here are counted on the HTML as
sent, tags and entities included, which is never less than what Telegram counts.
"""

from __future__ import annotations

import html as _html
import re
from dataclasses import dataclass
from enum import IntEnum

TELEGRAM_LIMIT = 4096
ELLIPSIS = "…"

# A tag, an entity, or one character: the atoms a cut never goes inside. One Python
# character is one code point, so a cut between atoms never splits a surrogate pair.
_TOKEN_RE = re.compile(
    r"</?[a-zA-Z][\w-]*(?:\s[^<>]*)?/?>"
    r"|&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);"
    r"|.",
    re.DOTALL,
)
_TAG_NAME_RE = re.compile(r"</?([a-zA-Z][\w-]*)")
# Inside these, leading spaces on a line are indentation, not layout.
_VERBATIM = frozenset({"pre", "code"})


def utf16_len(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units, as Telegram counts it.

    A character outside the Basic Multilingual Plane (most emoji) counts as 2.
    """
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` so plain text can go into a Telegram HTML message."""
    return _html.escape(text, quote=False)


def truncate(text: str, limit: int) -> str:
    """Shorten plain ``text`` to at most ``limit`` UTF-16 units, ending it with "…".

    Text that already fits is returned unchanged; a cut never splits a character.
    """
    if limit < 1:
        raise ValueError(f"truncate: limit must be at least 1, got {limit}")
    if utf16_len(text) <= limit:
        return text
    budget = limit - utf16_len(ELLIPSIS)
    used = 0
    end = 0
    for char in text:
        used += _char_units(char)
        if used > budget:
            break
        end += 1
    return text[:end].rstrip() + ELLIPSIS


def split_html(html: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split Telegram HTML into balanced parts of at most ``limit`` UTF-16 units each.

    A cut goes at the last paragraph break (blank line) that fits, else the last line
    break, else the last space, else between any two characters; never inside a tag,
    an entity or a character. Elements open at a cut are closed at the end of the part
    and reopened at the start of the next; those added tags count toward the limit.
    Whitespace at a cut is dropped, except the indentation of a line inside
    ``<pre>``/``<code>``. A message that fits is returned unchanged; a blank one gives
    ``[]``. Raises ``ValueError`` when ``limit`` leaves no room for text beside the
    tags that have to be reopened.
    """
    if limit < 1:
        raise ValueError(f"split_html: limit must be at least 1, got {limit}")
    if not html.strip():
        return []
    if utf16_len(html) <= limit:
        return [html]
    return _Splitter(_tokenize(html), limit).split()


class _Kind(IntEnum):
    TEXT = 0  # a visible character, an entity, or a self-closing tag
    SPACE = 1  # one whitespace character
    OPEN = 2
    CLOSE = 3


class _Level(IntEnum):
    """How good a place to cut is; higher is better."""

    ANYWHERE = 0
    SPACE = 1
    LINE = 2
    PARAGRAPH = 3


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    kind: _Kind
    units: int
    name: str = ""  # the tag name, for OPEN and CLOSE

    @property
    def close_units(self) -> int:
        """Units of the ``</name>`` that closes this opening tag."""
        return len(self.name) + 3


def _char_units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _tokenize(html: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN_RE.finditer(html):
        text = match.group()
        if len(text) == 1:
            kind = _Kind.SPACE if text.isspace() else _Kind.TEXT
            tokens.append(_Token(text, kind, _char_units(text)))
        elif text[0] == "&" or text.endswith("/>"):
            tokens.append(_Token(text, _Kind.TEXT, utf16_len(text)))
        else:
            name_match = _TAG_NAME_RE.match(text)
            assert name_match is not None  # _TOKEN_RE only lets such tags through
            kind = _Kind.CLOSE if text[1] == "/" else _Kind.OPEN
            tokens.append(_Token(text, kind, utf16_len(text), name_match.group(1).lower()))
    return tokens


def _close(stack: list[_Token]) -> str:
    return "".join(f"</{tag.name}>" for tag in reversed(stack))


def _pop(stack: list[_Token], name: str) -> None:
    """Close the innermost open ``name`` (and whatever mis-nested tags it encloses)."""
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].name == name:
            del stack[i:]
            return
    # a stray closing tag: nothing to close, it stays in the text as it came


class _Splitter:
    """One pass over the tokens, emitting parts greedily from left to right."""

    def __init__(self, tokens: list[_Token], limit: int) -> None:
        self.tokens = tokens
        self.limit = limit
        n = len(tokens)
        # run_start[j]..run_end[j] is the run of whitespace around the boundary before
        # token j; newlines_before[j] counts line breaks in tokens[:j].
        self.run_start = [0] * (n + 1)
        for j in range(1, n + 1):
            self.run_start[j] = self.run_start[j - 1] if tokens[j - 1].kind is _Kind.SPACE else j
        self.run_end = [n] * (n + 1)
        for j in range(n - 1, -1, -1):
            self.run_end[j] = self.run_end[j + 1] if tokens[j].kind is _Kind.SPACE else j
        self.newlines_before = [0] * (n + 1)
        for j, token in enumerate(tokens):
            self.newlines_before[j + 1] = self.newlines_before[j] + (token.text == "\n")
        self.last_text = max((i for i, t in enumerate(tokens) if t.kind is _Kind.TEXT), default=-1)

    def split(self) -> list[str]:
        parts: list[str] = []
        pos = 0
        stack: list[_Token] = []
        while True:
            pos = self._skip_space(pos, stack)
            if pos > self.last_text:  # only tags and whitespace left: nothing to send
                return parts
            cut, cut_stack = self._best_cut(pos, stack)
            end = cut
            while end > pos and self.tokens[end - 1].kind is _Kind.SPACE:
                end -= 1
            body = "".join(t.text for t in self.tokens[pos:end])
            parts.append("".join(t.text for t in stack) + body + _close(cut_stack))
            pos, stack = cut, cut_stack

    def _skip_space(self, pos: int, stack: list[_Token]) -> int:
        end = self.run_end[pos]
        if end == pos or not any(tag.name in _VERBATIM for tag in stack):
            return end
        # keep the next line's indentation: drop only up to the last line break
        newlines = [i for i in range(pos, end) if self.tokens[i].text == "\n"]
        return newlines[-1] + 1 if newlines else pos

    def _level(self, j: int) -> _Level:
        start, end = self.run_start[j], self.run_end[j]
        newlines = self.newlines_before[end] - self.newlines_before[start]
        if newlines >= 2:
            return _Level.PARAGRAPH
        if newlines == 1:
            return _Level.LINE
        return _Level.SPACE if end > start else _Level.ANYWHERE

    def _tidy(self, j: int) -> bool:
        """Whether a cut before token ``j`` avoids leaving an element empty on either side."""
        after = self.run_end[j]
        opens_before = self.tokens[j - 1].kind is _Kind.OPEN
        # (an element closing with no text after it is the end: nothing is left behind)
        closes_after = after <= self.last_text and self.tokens[after].kind is _Kind.CLOSE
        return not opens_before and not closes_after

    def _best_cut(self, pos: int, stack: list[_Token]) -> tuple[int, list[_Token]]:
        """Pick where the part starting at ``pos`` ends, and the tags open there."""
        n = len(self.tokens)
        reopen_units = sum(tag.units for tag in stack)
        open_tags = list(stack)
        close_units = sum(tag.close_units for tag in stack)
        units = 0
        kept_units = 0  # units up to the last non-whitespace token: what the part keeps
        has_text = False
        best_key: tuple[bool, _Level, int, int] | None = None
        best: tuple[int, list[_Token]] | None = None
        for j in range(pos + 1, n + 1):
            token = self.tokens[j - 1]
            units += token.units
            if token.kind is _Kind.OPEN:
                open_tags.append(token)
            elif token.kind is _Kind.CLOSE:
                _pop(open_tags, token.name)
            if token.kind is not _Kind.SPACE:
                kept_units = units
                has_text = has_text or token.kind is _Kind.TEXT
            if token.kind in (_Kind.OPEN, _Kind.CLOSE):
                close_units = sum(tag.close_units for tag in open_tags)
            if reopen_units + kept_units > self.limit:
                break  # the part only grows from here
            if not has_text or reopen_units + kept_units + close_units > self.limit:
                continue
            if j == n:
                return j, open_tags
            # latest run of the best kind; within a run, its start, so that the next
            # part keeps its leading spaces where they are indentation
            key = (self._tidy(j), self._level(j), self.run_start[j], -j)
            if best_key is None or key > best_key:
                best_key, best = key, (j, list(open_tags))
        if best is None:
            here = "".join(tag.text for tag in stack) + "".join(
                t.text for t in self.tokens[pos : pos + 10]
            )
            raise ValueError(
                f"split_html: limit={self.limit} is too small for the text at "
                f"{truncate(here, 60)!r} with the tags open around it; raise the limit"
            )
        return best
