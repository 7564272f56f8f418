"""Telegram text helpers: UTF-16 lengths, escaping, truncation, splitting HTML into parts."""

from __future__ import annotations

import random
import re

import pytest

from bot.text import TELEGRAM_LIMIT, escape, split_html, truncate, utf16_len

TAG = re.compile(r"<(/?)([a-zA-Z][\w-]*)[^<>]*>")
ENTITY = re.compile(r"&(?:#[0-9]+|[a-z]+);")
PRE = '<pre><code class="language-python">'


def balanced(part: str) -> bool:
    """Every closing tag closes the innermost open one, and nothing stays open."""
    stack: list[str] = []
    for match in TAG.finditer(part):
        closing, name = match.groups()
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack


def content(html: str) -> str:
    """The text without tags and without whitespace (cuts may drop whitespace)."""
    return re.sub(r"\s+", "", TAG.sub("", html))


def check_invariants(html: str, parts: list[str], limit: int) -> None:
    assert parts, "a non-blank message gives at least one part"
    original_tags = {m.group() for m in TAG.finditer(html)}
    for part in parts:
        assert utf16_len(part) <= limit, part
        assert part == part.strip() or len(parts) == 1, part
        assert balanced(part), part
        # an "&" only ever starts a whole entity: none is cut in two
        assert all(ENTITY.match(part, m.start()) for m in re.finditer("&", part)), part
        # reopened tags are copies of the original ones, attributes and all
        for match in TAG.finditer(part):
            assert match.group() in original_tags or match.group(1), match.group()
    assert "".join(content(p) for p in parts) == content(html)


@pytest.mark.parametrize(
    ("text", "units"),
    [("", 0), ("abc", 3), ("привет", 6), ("😀", 2), ("a😀b", 4), ("👍🏽", 4), ("日本", 2)],
)
def test_utf16_len_counts_code_units(text: str, units: int) -> None:
    assert utf16_len(text) == units


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ('say "hi" it\'s', 'say "hi" it\'s'),  # quotes stay: Telegram doesn't need them escaped
        ("<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("hello world", 8, "hello w…"),
        ("hello world", 6, "hello…"),  # the space before the ellipsis goes
        ("ab😀cd", 4, "ab…"),  # the emoji would need 2 units: never half of it
        ("ab😀cd", 5, "ab😀…"),
        ("abc", 1, "…"),
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    assert truncate(text, limit) == expected
    assert utf16_len(truncate(text, limit)) <= limit


@pytest.mark.parametrize(
    ("html", "limit", "parts"),
    [
        # a paragraph break wins over a later line break
        (
            "Para one.\n\nPara two is here\nwith a line and more words.",
            40,
            ["Para one.", "Para two is here", "with a line and more words."],
        ),
        # no blank line in reach: the last line break
        (
            "First paragraph here.\nStill the first one.\n\nSecond paragraph.",
            40,
            ["First paragraph here.", "Still the first one.\n\nSecond paragraph."],
        ),
        # no line break: the last space
        (
            "one two three four five six seven eight nine ten eleven twelve",
            40,
            ["one two three four five six seven eight", "nine ten eleven twelve"],
        ),
        # no space at all: anywhere
        ("x" * 50, 40, ["x" * 40, "x" * 10]),
        # whitespace at a cut is dropped, a run of blank lines included
        ("   lead and trail   ", 10, ["lead and", "trail"]),
        ("a\n\n\n\nb" + "c" * 40, 40, ["a", "b" + "c" * 39, "c"]),
    ],
)
def test_split_plain_text(html: str, limit: int, parts: list[str]) -> None:
    assert split_html(html, limit) == parts
    check_invariants(html, parts, limit)


@pytest.mark.parametrize(
    ("html", "limit", "parts"),
    [
        # a code block cut between functions: <pre><code class=…> closed and reopened
        (
            f"{PRE}def f(x):\n    return x + 1\n\ndef g(y):\n    return y * 2\n</code></pre>",
            80,
            [
                f"{PRE}def f(x):\n    return x + 1</code></pre>",
                f"{PRE}def g(y):\n    return y * 2\n</code></pre>",
            ],
        ),
        # a line break in a code block: the next line keeps its indentation
        (
            f"{PRE}if ready:\n    launch(rockets)\n    wait()</code></pre>",
            70,
            [
                f"{PRE}if ready:</code></pre>",
                f"{PRE}    launch(rockets)</code></pre>",
                f"{PRE}    wait()</code></pre>",
            ],
        ),
        # a link spanning cuts is reopened with its href
        (
            'See <a href="https://t.me/x">a link whose text is long enough to cut</a> here.',
            40,
            [
                'See <a href="https://t.me/x">a link</a>',
                '<a href="https://t.me/x">whose text</a>',
                '<a href="https://t.me/x">is long</a>',
                '<a href="https://t.me/x">enough to</a>',
                '<a href="https://t.me/x">cut</a> here.',
            ],
        ),
        # nested tags close innermost first; a cut just after an element closes nothing
        (
            "<b>bold <i>both at once here</i> bold again</b> and plain text after it",
            40,
            [
                "<b>bold <i>both at once here</i></b>",
                "<b>bold again</b> and plain text after",
                "it",
            ],
        ),
        (
            "<b>aaa <i>bbb ccc ddd eee fff ggg hhh iii</i></b>",
            30,
            ["<b>aaa <i>bbb ccc ddd</i></b>", "<b><i>eee fff ggg hhh</i></b>", "<b><i>iii</i></b>"],
        ),
        # attributes without a value, and tag names with a hyphen
        (
            "<blockquote expandable>quoted line one\nquoted line two</blockquote>",
            60,
            [
                "<blockquote expandable>quoted line one</blockquote>",
                "<blockquote expandable>quoted line two</blockquote>",
            ],
        ),
        (
            "<tg-spoiler>secret words hidden behind a spoiler mark</tg-spoiler>",
            40,
            [
                "<tg-spoiler>secret words</tg-spoiler>",
                "<tg-spoiler>hidden behind a</tg-spoiler>",
                "<tg-spoiler>spoiler mark</tg-spoiler>",
            ],
        ),
        # a cut lands between elements rather than leaving an empty one behind
        (
            "Intro words here, <b>bold</b>",
            20,
            ["Intro words here,", "<b>bold</b>"],
        ),
    ],
)
def test_split_closes_and_reopens_tags(html: str, limit: int, parts: list[str]) -> None:
    assert split_html(html, limit) == parts
    check_invariants(html, parts, limit)


@pytest.mark.parametrize(
    ("html", "limit", "parts"),
    [
        (
            "Tom &amp; Jerry &lt;3 cheese &amp; crackers &quot;and&quot; milk",
            20,
            ["Tom &amp; Jerry", "&lt;3 cheese &amp;", "crackers", "&quot;and&quot; milk"],
        ),
        ("ab&amp;cd", 5, ["ab", "&amp;", "cd"]),
        ("ab&#128512;cd", 12, ["ab&#128512;c", "d"]),
        ("ab&#128512;cd", 10, ["ab", "&#128512;c", "d"]),
        ("x&lt;y" * 3, 8, ["x&lt;yx", "&lt;yx", "&lt;y"]),
    ],
)
def test_split_never_cuts_an_entity(html: str, limit: int, parts: list[str]) -> None:
    assert split_html(html, limit) == parts
    check_invariants(html, parts, limit)


@pytest.mark.parametrize(
    ("html", "limit", "parts"),
    [
        ("😀" * 25, 40, ["😀" * 20, "😀" * 5]),
        ("a" + "😀" * 20, 40, ["a" + "😀" * 19, "😀"]),  # 39 units: one more would be 41
        ("<b>" + "😀" * 10 + "</b>", 15, ["<b>😀😀😀😀</b>", "<b>😀😀😀😀</b>", "<b>😀😀</b>"]),
    ],
)
def test_split_counts_emoji_as_two_units_and_never_halves_one(
    html: str, limit: int, parts: list[str]
) -> None:
    assert split_html(html, limit) == parts
    check_invariants(html, parts, limit)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("", []),
        ("  \n\n ", []),  # Telegram refuses a blank message
        ("short <b>text</b>", ["short <b>text</b>"]),
        ("  fits, with its whitespace  ", ["  fits, with its whitespace  "]),
        ("x" * 40, ["x" * 40]),
    ],
)
def test_split_leaves_what_fits_alone(html: str, expected: list[str]) -> None:
    assert split_html(html, 40) == expected


def test_split_defaults_to_telegrams_limit() -> None:
    html = "\n\n".join(f"<b>Section {i}</b>\n" + "word " * 300 for i in range(10))
    parts = split_html(html)
    assert len(parts) > 1
    check_invariants(html, parts, TELEGRAM_LIMIT)
    assert split_html("x" * TELEGRAM_LIMIT) == ["x" * TELEGRAM_LIMIT]


@pytest.mark.parametrize(
    ("html", "limit"),
    [
        ('<a href="https://example.com/a/long/path">' + "text " * 20 + "</a>", 46),
        ("&amp;" * 20, 4),  # an entity is bigger than the whole limit
    ],
)
def test_split_raises_when_the_limit_leaves_no_room_for_text(html: str, limit: int) -> None:
    with pytest.raises(ValueError, match="raise the limit"):
        split_html(html, limit)


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_html("text", limit)
    with pytest.raises(ValueError, match="at least 1"):
        truncate("text", limit)


WORDS = ["a", "to", "the", "word", "longer", "splitting", "Telegram", "привет", "x" * 30]
PIECES = ["😀", "👍🏽", "&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#128512;", "日本語"]
SPACES = [" ", " ", " ", "  ", "\n", "\n\n", "\n\n\n", " \n "]
INLINE = [
    ("<b>", "</b>"),
    ("<i>", "</i>"),
    ("<u>", "</u>"),
    ("<s>", "</s>"),
    ("<code>", "</code>"),
    ("<tg-spoiler>", "</tg-spoiler>"),
    ('<span class="tg-spoiler">', "</span>"),
    ('<a href="https://t.me/q?a=1&amp;b=2">', "</a>"),
    ('<tg-emoji emoji-id="5368324170671202286">', "</tg-emoji>"),
]
BLOCK = [
    ("<blockquote>", "</blockquote>"),
    ("<blockquote expandable>", "</blockquote>"),
    ("<pre>", "</pre>"),
    ('<pre><code class="language-python">', "</code></pre>"),
]


def random_text(rng: random.Random, depth: int) -> str:
    out: list[str] = []
    for _ in range(rng.randint(1, 12)):
        roll = rng.random()
        if roll < 0.15 and depth < 2:
            opening, closing = rng.choice(INLINE)
            out.append(opening + random_text(rng, depth + 1) + closing)
        elif roll < 0.3:
            out.append(rng.choice(PIECES))
        else:
            out.append(rng.choice(WORDS))
        out.append(rng.choice(SPACES))
    return "".join(out)


def random_html(rng: random.Random) -> str:
    blocks: list[str] = []
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.3:
            opening, closing = rng.choice(BLOCK)
            blocks.append(opening + random_text(rng, 1) + closing)
        else:
            blocks.append(random_text(rng, 0))
    return rng.choice(["\n\n", "\n", " ", ""]).join(blocks)


@pytest.mark.parametrize("seed", range(400))
def test_split_invariants_on_generated_messages(seed: int) -> None:
    rng = random.Random(seed)
    html = random_html(rng)
    # room for the deepest reopened tags (a block, a link, one more inline) plus text
    limit = rng.randint(130, 400) if rng.random() < 0.8 else rng.randint(400, 2000)
    parts = split_html(html, limit)
    if utf16_len(html) <= limit:
        assert parts == [html]
    else:  # one part when only whitespace made it too long
        check_invariants(html, parts, limit)
