"""The <think> splitter: a table of texts, whole and cut into every possible chunking."""

from __future__ import annotations

import pytest

from core.providers.think import ThinkSplitter, split_think

# (pieces fed in order, expected content, expected reasoning)
CASES: list[tuple[list[str], str, str]] = [
    (["plain answer"], "plain answer", ""),
    (["<think>hmm</think>answer"], "answer", "hmm"),
    (["<think>hmm</think>\n\nanswer"], "answer", "hmm"),
    (["<think>\nstep 1\n</think>\n\nanswer"], "answer", "\nstep 1\n"),
    (["<th", "ink>hm", "m</th", "ink>ans", "wer"], "answer", "hmm"),
    (["<", "t", "h", "i", "n", "k", ">", "x", "<", "/", "think", ">", "y"], "y", "x"),
    (["<think>still thinking"], "", "still thinking"),  # unclosed = all reasoning
    (["<think>still thin", "king</thi"], "", "still thinking</thi"),
    (["before <think>mid</think> after"], "before after", "mid"),
    (["a<think>1</think>b<think>2</think>c"], "abc", "12"),
    (["thinking done</think>\n\nanswer"], "thinking doneanswer", ""),  # stray close dropped
    (["a < b and c > d"], "a < b and c > d", ""),
    (["x <", "3 y"], "x <3 y", ""),
    (["ends with <"], "ends with <", ""),  # a partial tag that never completes is content
    (["ends with </thi"], "ends with </thi", ""),
    (["<THINK>shouty</THINK>"], "<THINK>shouty</THINK>", ""),  # tags are lower-case only
    (["<think></think>answer"], "answer", ""),
    (["", "<think>", "", "r", "</think>", "", "c"], "c", "r"),
    (["<think>a</think>", "   ", "\n", "b"], "b", "a"),  # whitespace after </think> spans chunks
]


def _run(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    content, reasoning = "", ""
    for piece in pieces:
        c, r = splitter.feed(piece)
        content, reasoning = content + c, reasoning + r
    c, r = splitter.flush()
    return content + c, reasoning + r


@pytest.mark.parametrize(("pieces", "content", "reasoning"), CASES)
def test_split_table(pieces: list[str], content: str, reasoning: str) -> None:
    assert _run(pieces) == (content, reasoning)


@pytest.mark.parametrize(("pieces", "content", "reasoning"), CASES)
@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_any_chunking_gives_the_same_split(
    pieces: list[str], content: str, reasoning: str, size: int
) -> None:
    text = "".join(pieces)
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    assert _run(chunks) == (content, reasoning)
    assert split_think(text) == (content, reasoning)


def test_partial_tag_is_held_back_until_decided() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("hello <thi") == ("hello ", "")
    assert splitter.feed("nk>r") == ("", "r")
    assert splitter.feed("</") == ("", "")
    assert splitter.feed("think>ok") == ("ok", "")
    assert splitter.flush() == ("", "")
