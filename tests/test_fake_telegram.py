"""The fake Telegram Bot API agrees with the real aiogram Bot and Dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from tests.fakes.telegram import ApiError, FakeTelegram, parse_html

CHAT = 4242
# A valid 1x1 PNG: the fake reads its size from the header.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a5f0d1a10000000049454e44ae426082"
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as tg:
        yield tg


def make_bot(fake: FakeTelegram, token: str | None = None) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.url))
    return Bot(
        token=token or fake.token,
        session=session,
        default=DefaultBotProperties(parse_mode="HTML"),
    )


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    b = make_bot(fake)
    yield b
    await b.session.close()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=d[:10] or "x", callback_data=d)] for d in data]
    )


async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (fake.bot_id, fake.bot_username, True)
    assert bot.id == fake.bot_id
    assert fake.calls[0].method == "getMe" and fake.calls[0].ok


async def test_send_and_edit_message(fake: FakeTelegram, bot: Bot) -> None:
    msg = await bot.send_message(
        CHAT, "<b>Hi</b> &amp; 😀 <i>there</i>", reply_markup=keyboard("a:1")
    )
    assert msg.chat.id == CHAT and msg.from_user is not None and msg.from_user.is_bot
    assert msg.text == "Hi & 😀 there"
    assert msg.entities is not None
    assert [(e.type, e.offset, e.length) for e in msg.entities] == [
        ("bold", 0, 2),
        ("italic", 8, 5),  # the emoji counts as two UTF-16 units
    ]
    assert msg.html_text == "<b>Hi</b> &amp; 😀 <i>there</i>"
    assert msg.reply_markup is not None
    assert msg.reply_markup.inline_keyboard[0][0].callback_data == "a:1"

    [sent] = fake.sent(CHAT)
    assert sent["text"] == "<b>Hi</b> &amp; 😀 <i>there</i>"
    assert sent["parse_mode"] == "HTML" and sent["message_id"] == msg.message_id
    assert sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "a:1"
    assert fake.sent(CHAT + 1) == []

    edited = await bot.edit_message_text(
        text="done", chat_id=CHAT, message_id=msg.message_id, reply_markup=keyboard("a:2")
    )
    assert isinstance(edited, Message) and edited.text == "done" and edited.edit_date
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            text="done", chat_id=CHAT, message_id=msg.message_id, reply_markup=keyboard("a:2")
        )
    await bot.edit_message_reply_markup(chat_id=CHAT, message_id=msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="x", chat_id=CHAT, message_id=999)

    assert [e["method"] for e in fake.edits(CHAT, msg.message_id)] == [
        "editMessageText",
        "editMessageReplyMarkup",
    ]
    current = fake.message(CHAT, msg.message_id)
    assert current is not None and current["text"] == "done" and "reply_markup" not in current

    # message ids increase per chat; a plain-text 4096 is allowed, tags are not counted
    second = await bot.send_message(CHAT, "<b>" + "x" * 4096 + "</b>")
    assert second.message_id == msg.message_id + 1
    other = await bot.send_message(CHAT + 1, "x", parse_mode=None)
    assert other.message_id == 1

    await bot.send_chat_action(CHAT, "typing")
    assert await bot.delete_message(CHAT, second.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, second.message_id)
    assert fake.calls_of("sendChatAction")[0].params["action"] == "typing"


@pytest.mark.parametrize(
    "html",
    [
        "<b>unclosed",
        "<b><i>crossed</b></i>",
        "stray </b>",
        "<div>no</div>",
        "<br/>",
        "fish & chips",
        "&nbsp;",
        "1 < 2",
        "2 > 1",
        "<span>needs class</span>",
        '<a href="x"',
        "<tg-emoji>no id</tg-emoji>",
    ],
)
def test_bad_html_is_refused(html: str) -> None:
    with pytest.raises(ApiError, match="Bad Request: can't parse entities: ") as caught:
        parse_html(html)
    assert caught.value.error_code == 400


async def test_bad_html_surfaces_in_aiogram(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match='expected "</i>", found "</b>"'):
        await bot.send_message(CHAT, "<b><i>crossed</b></i>")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(CHAT, "fish & chips")
    await bot.send_message(CHAT, "fish & chips", parse_mode=None)  # plain text is not parsed
    assert [c.error_code for c in fake.calls] == [400, 400, None]
    assert [s["text"] for s in fake.sent()] == ["fish & chips"]


@pytest.mark.parametrize(
    "html",
    [
        "&lt;b&gt; &amp; &quot; &#128512; &#x1F600;",
        '<a href="https://example.com/?a=1&amp;b=2">link</a>',
        '<span class="tg-spoiler">s</span> <tg-spoiler>t</tg-spoiler>',
        '<pre><code class="language-python">x = 1</code></pre>',
        "<blockquote expandable>q</blockquote> <u>u</u><s>s</s><del>d</del><ins>i</ins>",
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>',
        "<B>case</B> <strong><em>nested</em></strong>",
    ],
)
def test_good_html_is_accepted(html: str) -> None:
    text, _ = parse_html(html)
    assert text


def test_parse_html_entities() -> None:
    text, entities = parse_html(
        '<pre><code class="language-py">a&lt;b</code></pre><a href="u">l</a>'
    )
    assert text == "a<bl"
    assert entities == [
        {"offset": 0, "length": 3, "type": "pre", "language": "py"},
        {"offset": 3, "length": 1, "type": "text_link", "url": "u"},
    ]


async def test_length_limits(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(CHAT, "x" * 4096)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "😀" * 2049)  # 4098 UTF-16 units
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(CHAT, "<b></b>")
    assert len(fake.sent()) == 1


async def test_callback_data_limit(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(CHAT, "ok", reply_markup=keyboard("d" * 64))
    for data in ("d" * 65, "é" * 33, ""):  # 65 bytes, 66 bytes, empty
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.send_message(CHAT, "no", reply_markup=keyboard(data))
    assert [s["text"] for s in fake.sent()] == ["ok"]


async def test_fail_next(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7, times=2)
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(CHAT, "hi")
        assert caught.value.retry_after == 7
    await bot.send_message(CHAT, "hi")

    fake.fail_next("sendmessage", 403, "Forbidden: bot was blocked by the user")
    with pytest.raises(TelegramForbiddenError, match="bot was blocked"):
        await bot.send_message(CHAT, "hi")
    assert [c.error_code for c in fake.calls_of("sendMessage")] == [429, 429, None, 403]
    assert len(fake.sent()) == 1


async def test_down_and_up(fake: FakeTelegram, bot: Bot) -> None:
    fake.set_down(True)
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.get_me()
    fake.set_down(True, plain=True)
    with pytest.raises(ClientDecodeError):
        await bot.send_message(CHAT, "hi")
    fake.set_down(False)
    await bot.send_message(CHAT, "hi")
    assert [c.error_code for c in fake.calls] == [502, 502, None]


async def test_hanging_outage_times_out_and_carries_nothing_out(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.set_down(True, hang=True)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(CHAT, "lost in the outage", request_timeout=0.2)
    held = asyncio.create_task(bot.send_message(CHAT, "held", request_timeout=30))
    await fake.wait_for(lambda f: len(f.calls_of("sendMessage")) == 2)
    assert not held.done()
    fake.set_down(False)  # the held request is answered 502, and was never carried out
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await held
    await bot.send_message(CHAT, "after")
    assert [m["text"] for m in fake.sent()] == ["after"]


async def test_wrong_token_and_unknown_method(fake: FakeTelegram) -> None:
    intruder = make_bot(fake, token="999:WRONG-token")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await intruder.get_me()
    finally:
        await intruder.session.close()

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.url}/bot{fake.token}/sendTelepathy", json={}) as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        # JSON and urlencoded bodies are accepted too; a text of digits stays a string
        async with http.post(
            f"{fake.url}/bot{fake.token}/sendMessage", json={"chat_id": CHAT, "text": "42"}
        ) as resp:
            body = await resp.json()
            assert body["ok"] and body["result"]["text"] == "42"
        async with http.post(
            f"{fake.url}/bot{fake.token}/sendMessage", data={"chat_id": str(CHAT), "text": "7"}
        ) as resp:
            assert (await resp.json())["result"]["chat"]["id"] == CHAT
    assert [s["text"] for s in fake.sent(CHAT)] == ["42", "7"]


async def test_send_photo(fake: FakeTelegram, bot: Bot) -> None:
    msg = await bot.send_photo(
        CHAT, BufferedInputFile(PNG, filename="chart.png"), caption="<b>chart</b>"
    )
    assert msg.photo is not None and msg.caption == "chart"
    assert (msg.photo[-1].width, msg.photo[-1].file_size) == (1, len(PNG))
    [sent] = fake.sent(CHAT)
    assert sent["photo"] is True and sent["size"] == len(PNG)
    assert sent["message_id"] == msg.message_id

    downloaded = await bot.download(msg.photo[-1].file_id)
    assert downloaded is not None and downloaded.read() == PNG
    again = await bot.send_photo(CHAT, msg.photo[-1].file_id)  # re-send by file_id
    assert again.photo is not None

    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.send_photo(CHAT, BufferedInputFile(PNG, filename="c.png"), caption="x" * 1025)
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(CHAT, "no-such-file-id")


async def test_set_my_commands(fake: FakeTelegram, bot: Bot) -> None:
    commands = [
        BotCommand(command="start", description="Start"),
        BotCommand(command="cost_7d", description="Spend"),
    ]
    await bot.set_my_commands(commands)
    await bot.set_my_commands(commands[:1], scope=BotCommandScopeChat(chat_id=CHAT))
    assert [c["command"] for c in fake.commands()] == ["start", "cost_7d"]
    assert fake.commands(f"chat:{CHAT}") == [{"command": "start", "description": "Start"}]
    got = await bot.get_my_commands()
    assert [(c.command, c.description) for c in got] == [("start", "Start"), ("cost_7d", "Spend")]

    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])
    with pytest.raises(TelegramBadRequest, match="DESCRIPTION_INVALID"):
        await bot.set_my_commands([BotCommand(command="ok", description="x" * 257)])


async def test_rate_limits() -> None:
    now = [100.0]
    async with FakeTelegram(clock=lambda: now[0]) as fake:
        b = make_bot(fake)
        try:
            fake.enforce_rate_limits(per_chat_per_s=1.0, global_per_s=2.0)
            await b.send_message(1, "a")
            with pytest.raises(TelegramRetryAfter) as caught:
                await b.send_message(1, "b")
            assert caught.value.retry_after == 1
            await b.send_message(2, "c")  # another chat is not held back
            with pytest.raises(TelegramRetryAfter):  # but 2 sends a second is all, globally
                await b.send_message(3, "d")
            now[0] += 1.0
            await b.send_message(1, "e")
            assert fake.rate_limited == 2
            assert [s["text"] for s in fake.sent()] == ["a", "c", "e"]
        finally:
            await b.session.close()


async def test_the_group_limit() -> None:
    now = [100.0]
    group, supergroup = -4001, -1004002
    async with FakeTelegram(clock=lambda: now[0]) as fake:
        b = make_bot(fake)
        try:
            fake.enforce_rate_limits()  # Telegram's: 1/s per chat, 30/s, 20/min per group
            for n in range(20):  # one every 1.5 s: within the per-chat limit
                await b.send_message(group, f"g{n}")
                await b.send_message(supergroup, f"s{n}")
                now[0] += 1.5
            # 20 in the last 30 s: the 21st waits until the first is a minute old
            with pytest.raises(TelegramRetryAfter) as caught:
                await b.send_message(group, "g20")
            assert caught.value.retry_after == 30
            with pytest.raises(TelegramRetryAfter):
                await b.send_message(supergroup, "s20")
            await b.send_message(7, "a private chat has no such limit")
            now[0] += 30.0
            await b.send_message(group, "g20")
            assert fake.rate_limited == 2
            assert [s["text"] for s in fake.sent(group)][-1] == "g20"
        finally:
            await b.session.close()


async def test_get_updates_long_poll_and_offsets(fake: FakeTelegram, bot: Bot) -> None:
    assert await bot.get_updates(timeout=0) == []

    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_for(lambda t: bool(t.calls_of("getUpdates")[1:]))
    update_id = fake.user_message(7, "hello")  # wakes the waiting poll at once
    [update] = await asyncio.wait_for(poll, 10)
    assert update.update_id == update_id and update.message is not None
    assert update.message.text == "hello" and update.message.chat.type == "private"

    [again] = await bot.get_updates(timeout=0)  # not confirmed yet: served again
    assert again.update_id == update_id
    assert await bot.get_updates(offset=update_id + 1, timeout=0) == []
    assert fake.pending_updates == []

    # a second poller ends the first with 409, as Telegram does
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_for(lambda t: not t.calls_of("getUpdates")[-1].done)
    second = asyncio.create_task(bot.get_updates(timeout=30))
    with pytest.raises(TelegramConflictError):
        await asyncio.wait_for(first, 10)
    fake.user_message(7, "/status now")
    [cmd] = await asyncio.wait_for(second, 10)
    assert cmd.message is not None and cmd.message.entities is not None
    assert (cmd.message.entities[0].type, cmd.message.entities[0].length) == ("bot_command", 7)


async def test_dispatcher_polling(fake: FakeTelegram, bot: Bot) -> None:
    router = Router()
    seen: list[str] = []

    @router.message(Command("start"))
    async def on_start(message: Message) -> None:
        seen.append(f"message:{message.text}")
        await message.answer("Pick one", reply_markup=keyboard("pick:1", "pick:2"))

    @router.callback_query(F.data.startswith("pick:"))
    async def on_pick(query: CallbackQuery) -> None:
        seen.append(f"press:{query.data}")
        await query.answer("Picked")
        if isinstance(query.message, Message):
            await query.message.edit_text(f"Picked {query.data}")

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        fake.user_message(CHAT, "/start")
        await fake.wait_for(lambda t: len(t.sent(CHAT)) == 1)
        [menu] = fake.sent(CHAT)
        assert menu["text"] == "Pick one"

        query_id = fake.user_press(CHAT, menu, "pick:2")
        await fake.wait_for(lambda t: len(t.edits(CHAT)) == 1)
        [answer] = fake.answered_callbacks()
        assert (answer["callback_query_id"], answer["text"], answer["data"]) == (
            query_id,
            "Picked",
            "pick:2",
        )
        assert fake.edits(CHAT)[0]["text"] == "Picked pick:2"

        # both updates are confirmed by a later offset, and each was served exactly once
        await fake.wait_for(lambda t: not t.pending_updates)
        assert seen == ["message:/start", "press:pick:2"]
        served = [u["update_id"] for c in fake.calls_of("getUpdates") if c.ok for u in c.result]
        assert len(served) == len(set(served)) == 2
        offsets = [c.params.get("offset", 0) for c in fake.calls_of("getUpdates")]
        assert offsets == sorted(offsets) and offsets[-1] == max(served) + 1
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)


async def test_wait_for_reports_recent_calls(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(CHAT, "hello")
    with pytest.raises(AssertionError, match="sendMessage") as caught:
        await fake.wait_for(lambda t: len(t.sent()) > 1, timeout_s=0.05)
    assert "-> ok" in str(caught.value)
