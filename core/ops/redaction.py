"""Taking secrets out of text: whole ones, and the pieces of them that errors quote.

Providers quote keys in their errors, often cut or masked ("Incorrect API key provided:
sk-proj-********abcd"), and error details are cut to a length, which may cut a key in
two. Replacing only whole secrets leaves those pieces in logs and answers. Here any run
of 8 or more characters of a secret goes too, wherever it stands, and a shorter run (4
or more) that stands against a mask (``***``, ``…``, ``...``): the shape of a masked key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"
MIN_PIECE = 8  # a random key shares no run this long with ordinary text
# visible key characters around a mask, e.g. sk-ab****wxyz, …wxyz, sk-ab...
_MASKED = re.compile(r"([A-Za-z0-9_\-]*)((?:\*{2,}|…|\.{3})+)([A-Za-z0-9_\-]*)")


def _covered(text: str, secret: str, marks: bytearray) -> None:
    """Mark each character of ``text`` inside a run of ``MIN_PIECE`` from ``secret``."""
    for i in range(len(secret) - MIN_PIECE + 1):
        window = secret[i : i + MIN_PIECE]
        at = text.find(window)
        while at >= 0:
            marks[at : at + MIN_PIECE] = b"\x01" * MIN_PIECE
            at = text.find(window, at + 1)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret, and every piece of one, replaced by ``***``."""
    keys = [s for s in secrets if s]
    if not keys or not text:
        return text
    for secret in sorted(keys, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    marks = bytearray(len(text))
    for secret in keys:
        _covered(text, secret, marks)
    if any(marks):
        out, i = [], 0
        while i < len(text):
            if marks[i]:
                while i < len(text) and marks[i]:
                    i += 1
                out.append(REDACTED)
            else:
                out.append(text[i])
                i += 1
        text = "".join(out)

    def masked(m: re.Match[str]) -> str:
        before, _, after = m.groups()
        shown = [p for p in (before, after) if len(p) >= 4]
        return REDACTED if any(p in s for p in shown for s in keys) else m.group(0)

    return _MASKED.sub(masked, text)
