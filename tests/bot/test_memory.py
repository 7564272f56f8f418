"""/memory <agent>: the real bot against the fake Bot API, on the app's SQLite store."""

from __future__ import annotations

import asyncio

from bot.routers.memory import VALUE_SHOWN
from tests.bot.conftest import ADMIN, STRANGER, VIEWER, RigFactory
from tests.bot.test_bot import agent


async def test_a_viewer_sees_the_entries_escaped(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("watch"), agent("digest")])
    memory = rig.app.facade.memory
    await memory.put("watch", "<status>", "a < b & c", 7)
    await memory.put("watch", "page", "y" * 1000, None)
    await memory.put("digest", "other", "not watch's", 1)
    rig.tg.user_message(VIEWER, "/memory watch")
    msg = await rig.said(VIEWER, "remembers 2 keys")
    text = msg["text"]
    assert "<code>&lt;status&gt;</code>" in text and "run #7" in text
    assert "a &lt; b &amp; c" in text
    assert "y" * (VALUE_SHOWN - 1) + "…" in text and "y" * VALUE_SHOWN not in text
    assert "not watch's" not in text
    # read-only, so everyone's command list has it
    assert "memory" in [c["command"] for c in rig.tg.commands("default")]


async def test_many_entries_are_split_over_messages(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("watch")])
    for i in range(40):
        await rig.app.facade.memory.put("watch", f"key{i:02}", "z" * 250, i + 1)
    rig.tg.user_message(ADMIN, "/memory watch")
    await rig.said(ADMIN, "remembers 40 keys")
    await rig.tg.wait_for(lambda tg: "key00" in "".join(rig.texts(ADMIN)))
    texts = rig.texts(ADMIN)
    assert len(texts) > 1 and all(len(t) <= 4096 for t in texts)
    assert all(f"key{i:02}" in "".join(texts) for i in range(40))


async def test_no_name_or_a_wrong_one_answers_with_the_usage(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("watch"), agent("digest")])
    rig.tg.user_message(VIEWER, "/memory")
    msg = await rig.said(VIEWER, "Usage: /memory &lt;agent&gt;")
    assert "<code>watch</code>" in msg["text"] and "<code>digest</code>" in msg["text"]
    rig.tg.user_message(VIEWER, "/memory wacth")
    msg = await rig.said(VIEWER, "No agent named <code>wacth</code>")
    assert "Agents: <code>watch</code>" in msg["text"]
    rig.tg.user_message(VIEWER, "/memory digest")
    await rig.said(VIEWER, "<b>digest</b> remembers nothing yet.")


async def test_a_stranger_is_ignored(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("watch")])
    await rig.app.facade.memory.put("watch", "k", "private", 1)
    rig.tg.user_message(STRANGER, "/memory watch")
    rig.tg.user_message(ADMIN, "/help")  # a marker: the bot has handled what came before
    await rig.said(ADMIN, "OpenClaw")
    await asyncio.sleep(0.2)
    assert rig.tg.sent(STRANGER) == []
