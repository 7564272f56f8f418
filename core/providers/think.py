"""Split ``<think>…</think>`` out of model text, safely across stream chunks.

Some models (qwen3 and DeepSeek-R1 behind OpenAI-compatible servers, llama.cpp)
put their thinking inline in the answer. It must never reach a user, so every
adapter runs its visible text through one :class:`ThinkSplitter`.
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
_HOLD_MAX = max(len(OPEN_TAG), len(CLOSE_TAG)) - 1  # the longest tail a tag's start can be


def _partial_tag_len(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that could be the start of one of ``tags``."""
    # every tag starts with "<": with none in the last few characters (almost every
    # piece of text), no tail can be a tag's start, and the slicing below is skipped
    if "<" not in text[-_HOLD_MAX:]:
        return 0
    longest = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), longest, -1):
            if text.endswith(tag[:n]):
                longest = n
                break
    return longest


class ThinkSplitter:
    """Feed text pieces in order; get back ``(content, reasoning)`` for each piece.

    A tail that may be the start of a tag is held back until the next piece
    decides it, so a tag split across chunks is still recognised. ``<think>``
    may appear anywhere; an unclosed one makes the rest reasoning. A stray
    ``</think>`` (its opening tag was in the prompt template) is dropped.
    Whitespace right after ``</think>`` is dropped: models put a blank line there.
    """

    def __init__(self) -> None:
        self._inside = False
        self._pending = ""
        self._skip_space = False

    def feed(self, text: str) -> tuple[str, str]:
        """Split the next piece of text. Returns the content and reasoning it completes."""
        buf = self._pending + text
        self._pending = ""
        content: list[str] = []
        reasoning: list[str] = []
        while buf:
            if self._inside:
                end = buf.find(CLOSE_TAG)
                if end >= 0:
                    reasoning.append(buf[:end])
                    buf = buf[end + len(CLOSE_TAG) :]
                    self._inside = False
                    self._skip_space = True
                    continue
                keep = _partial_tag_len(buf, (CLOSE_TAG,))
                reasoning.append(buf[: len(buf) - keep])
                self._pending = buf[len(buf) - keep :]
                break
            if self._skip_space:
                buf = buf.lstrip()
                if not buf:
                    break
                self._skip_space = False
            start, stray = buf.find(OPEN_TAG), buf.find(CLOSE_TAG)
            if start >= 0 and (stray < 0 or start < stray):
                content.append(buf[:start])
                buf = buf[start + len(OPEN_TAG) :]
                self._inside = True
                continue
            if stray >= 0:
                content.append(buf[:stray])
                buf = buf[stray + len(CLOSE_TAG) :]
                self._skip_space = True
                continue
            keep = _partial_tag_len(buf, (OPEN_TAG, CLOSE_TAG))
            content.append(buf[: len(buf) - keep])
            self._pending = buf[len(buf) - keep :]
            break
        return "".join(content), "".join(reasoning)

    def flush(self) -> tuple[str, str]:
        """End of text: release what was held back (inside an open think block = reasoning)."""
        pending, self._pending = self._pending, ""
        return ("", pending) if self._inside else (pending, "")


def split_think(text: str) -> tuple[str, str]:
    """Split a whole text at once. Returns ``(content, reasoning)``."""
    splitter = ThinkSplitter()
    content, reasoning = splitter.feed(text)
    tail_content, tail_reasoning = splitter.flush()
    return content + tail_content, reasoning + tail_reasoning
