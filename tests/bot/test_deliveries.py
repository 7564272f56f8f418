"""Deliveries whose outcome is unknown, in Telegram (issue 18): the admins' card, its
Resend / Mark delivered / Show buttons, /deliveries, and who may press them.

The real bot (aiogram Dispatcher, polling) against the fake Bot API. A row "the process
died with" is made as it happens in serve: claimed by an owner that is gone, then
released by the worker's stale-claim sweep; the worker's asking and sending are driven
by the test (``ask``, ``drain``) instead of its loop.
"""

from __future__ import annotations

import socket
from typing import Any

from bot.answering import UNKNOWN_BUTTON
from bot.callbacks import DeliveryCb
from tests.bot.conftest import ADMIN, VIEWER, BotRig, RigFactory

CHAT = 4242  # where the digests go (not an admin: what reaches it is the digest only)
# an owner on this host whose process is gone (a pid above Linux's pid_max): on SQLite a
# claim on another host counts as alive, the host cannot tell
DEAD = f"{socket.gethostname()}:{2**22 + 7}:1"


def buttons(message: dict[str, Any]) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
    return {b["text"]: b["callback_data"] for row in rows for b in row}


async def row_to(rig: BotRig, text: str, chat: int = CHAT) -> int:
    """A pending row to ``chat``; returns its id."""
    ctx = {"agent": "digest", "run_id": None, "status": "ok", "text": text}
    await rig.app.outbox.enqueue(None, "result", [f"telegram:{chat}"], ctx)
    rows = await rig.app.store.fetchall("SELECT MAX(id) FROM outbox")
    return int(rows[0][0])


async def unknown_row(rig: BotRig, text: str, chat: int = CHAT) -> int:
    """A row whose sender died mid-send: claimed by a dead owner, its claim expired."""
    row_id = await row_to(rig, text, chat)
    assert len(await rig.app.outbox.claim(DEAD, run_id=None)) == 1
    assert await rig.app.outbox.release_stale(older_than_s=0) == 1
    return row_id


async def failed_row(rig: BotRig, text: str, chat: int = CHAT) -> int:
    row_id = await row_to(rig, text, chat)
    (row,) = await rig.app.outbox.claim("proc-a")
    await rig.app.outbox.failed_attempt(row, "Telegram refused", permanent=True, retry_after_s=None)
    return row_id


async def status_of(rig: BotRig, row_id: int) -> dict[str, Any]:
    rows = await rig.app.store.fetchall("SELECT * FROM outbox WHERE id = ?", (row_id,))
    return dict(rows[0])


async def card(rig: BotRig) -> dict[str, Any]:
    assert await rig.app.delivery.deliveries.ask() == 1
    return await rig.said(ADMIN, "Delivery may not have arrived")


async def answered(rig: BotRig, needle: str) -> None:
    await rig.tg.wait_for(
        lambda t: any(needle in (c.get("text") or "") for c in t.answered_callbacks())
    )


async def test_an_unknown_row_reaches_the_admin_as_a_card_not_a_second_send(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    row_id = await unknown_row(rig, "Markets are <up> & calm")
    msg = await card(rig)
    assert f"#{row_id} to <code>telegram:{CHAT}</code>" in msg["text"]  # as sent: HTML
    # the message's start as text: the template's tags gone, its escapes kept
    assert "Starts: <i>digest Markets are &lt;up&gt; &amp; calm</i>" in msg["text"]
    assert set(buttons(msg)) == {"🔁 Resend", "✅ Mark delivered", "📄 Show"}
    assert await rig.app.delivery.deliveries.ask() == 0  # once
    assert await rig.app.delivery.drain() == 0
    assert rig.tg.sent(CHAT) == []
    assert rig.tg.sent(VIEWER) == []  # cards go to admins only


async def test_resend_sends_it_once_more_and_closes_the_card(make_rig: RigFactory) -> None:
    rig = await make_rig()
    row_id = await unknown_row(rig, "the digest")
    msg = await card(rig)
    rig.tg.user_press(ADMIN, msg, buttons(msg)["🔁 Resend"])
    await answered(rig, f"Delivery #{row_id} will be sent again")
    await rig.said(ADMIN, "🔁 Resent by @user1001")
    assert buttons(rig.tg.message(ADMIN, msg["message_id"]) or {}) == {}
    assert await rig.app.delivery.drain() == 1
    assert await rig.app.delivery.drain() == 0
    assert ["the digest" in m["text"] for m in rig.tg.sent(CHAT)] == [True]
    assert (await status_of(rig, row_id))["status"] == "delivered"
    rig.tg.user_press(ADMIN, msg, buttons(msg)["🔁 Resend"])  # a second press: nothing
    await answered(rig, f"Delivery #{row_id} is delivered now: nothing to do")
    assert await rig.app.delivery.drain() == 0


async def test_mark_delivered_records_the_admins_word_and_sends_nothing(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    row_id = await unknown_row(rig, "the digest")
    msg = await card(rig)
    rig.tg.user_press(ADMIN, msg, buttons(msg)["✅ Mark delivered"])
    await answered(rig, f"Delivery #{row_id} is recorded delivered")
    await rig.said(ADMIN, "✅ Marked delivered by @user1001")
    row = await status_of(rig, row_id)
    assert (row["status"], row["note"]) == ("delivered", "confirmed by admin @user1001")
    assert await rig.app.delivery.drain() == 0
    assert rig.tg.sent(CHAT) == []


async def test_show_answers_with_the_full_text_split_under_the_limit(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    long = "\n\n".join(f"paragraph {i} " + "words " * 60 for i in range(30))  # ~11k chars
    await unknown_row(rig, long)
    msg = await card(rig)
    rig.tg.user_press(ADMIN, msg, buttons(msg)["📄 Show"])
    await rig.said(ADMIN, "paragraph 29")
    parts = [m["text"] for m in rig.tg.sent(ADMIN)][1:]
    assert len(parts) >= 3 and all(len(p) <= 4096 for p in parts)
    assert "paragraph 0" in parts[0] and "paragraph 29" in parts[-1]
    assert rig.tg.sent(CHAT) == []


async def test_a_viewers_press_and_crafted_or_stale_data_are_refused(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    row_id = await unknown_row(rig, "the digest")
    msg = await card(rig)
    for action in ("resend", "delivered", "show"):
        data = DeliveryCb(action=action, row_id=row_id).pack()
        rig.tg.user_press(VIEWER, msg, data, chat_id=VIEWER)
    await rig.tg.wait_for(
        lambda t: sum("Only admins" in (c.get("text") or "") for c in t.answered_callbacks()) == 3
    )
    assert (await status_of(rig, row_id))["status"] == "unknown"
    rig.tg.user_press(ADMIN, msg, "dl:resend:99999999999999999999:0")  # out of range
    await answered(rig, UNKNOWN_BUTTON)
    rig.tg.user_press(ADMIN, msg, "dl:explode:1:0")
    await answered(rig, "Unknown action")
    rig.tg.user_press(ADMIN, msg, DeliveryCb(action="resend", row_id=999).pack())  # stale
    await answered(rig, "No delivery #999")
    assert (await status_of(rig, row_id))["status"] == "unknown"


async def test_deliveries_lists_failed_and_unknown_rows_with_their_buttons(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(telegram={"page_size": 2})
    failed = await failed_row(rig, "refused one")
    ok = await row_to(rig, "fine one", chat=CHAT + 1)
    assert await rig.app.delivery.drain() == 1
    unknown = await unknown_row(rig, "maybe one", chat=CHAT + 2)
    newest = await unknown_row(rig, "maybe two", chat=CHAT + 3)
    rig.tg.user_message(ADMIN, "/deliveries")
    page = await rig.said(ADMIN, "Deliveries to look at")
    assert "3 (page 1/2, newest first)" in page["text"]
    text = page["text"]
    assert text.index(f"#{newest}") < text.index(f"#{unknown}") and f"#{ok} " not in text
    keys = buttons(page)
    assert {f"🔁 Resend #{newest}", f"✅ Mark delivered #{newest}", f"📄 Show #{newest}"} <= set(
        keys
    )
    rig.tg.user_press(ADMIN, page, keys["▶"])
    await rig.tg.wait_for(
        lambda t: "page 2/2" in (t.message(ADMIN, page["message_id"]) or {}).get("text", "")
    )
    second = rig.tg.message(ADMIN, page["message_id"]) or {}
    keys = buttons(second)
    assert f"#{failed}" in second["text"]
    assert f"🔁 Resend #{failed}" in keys and f"📄 Show #{failed}" in keys
    assert f"✅ Mark delivered #{failed}" not in keys  # refused: it never arrived
    rig.tg.user_press(ADMIN, second, keys[f"🔁 Resend #{failed}"])
    await answered(rig, f"Delivery #{failed} will be sent again")
    await rig.tg.wait_for(
        lambda t: "page 2/2" not in (t.message(ADMIN, page["message_id"]) or {}).get("text", "")
    )
    assert (await status_of(rig, failed))["status"] == "pending"


async def test_deliveries_usage_refusal_empty_and_commands(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.tg.user_message(ADMIN, "/deliveries")
    await rig.said(ADMIN, "No failed or unknown deliveries.")
    bad = ("x", "0", "-1", "1 2", "²", "9223372036854775807", "99999999999999999999")
    for arg in bad:
        rig.tg.user_message(ADMIN, f"/deliveries {arg}")
    await rig.tg.wait_for(
        lambda t: sum("Usage: /deliveries [page]" in m["text"] for m in t.sent(ADMIN)) == len(bad)
    )
    rig.tg.user_message(ADMIN, "/deliveries 999999")  # past the end: the last page
    await rig.tg.wait_for(
        lambda t: sum("No failed or unknown deliveries." in m["text"] for m in t.sent(ADMIN)) == 2
    )
    rig.tg.user_message(VIEWER, "/deliveries")
    await rig.said(VIEWER, "Only admins can see and settle deliveries.")
    assert "deliveries" in {c["command"] for c in rig.tg.commands(f"chat:{ADMIN}")}
    assert "deliveries" not in {c["command"] for c in rig.tg.commands("default")}
    rig.tg.user_message(ADMIN, "/help")
    assert "/deliveries —" in (await rig.said(ADMIN, "OpenClaw"))["text"]


async def test_status_counts_unknown_deliveries(make_rig: RigFactory) -> None:
    rig = await make_rig()
    await unknown_row(rig, "maybe")
    rig.tg.user_message(ADMIN, "/status")
    msg = await rig.said(ADMIN, "Pending:")
    assert "0 deliveries, 1 unknown" in msg["text"] and "/deliveries" in msg["text"]
