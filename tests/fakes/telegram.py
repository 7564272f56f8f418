"""A fake Telegram Bot API on 127.0.0.1, for driving the real aiogram Bot and Dispatcher.

The bot talks to it through ``TelegramAPIServer.from_base(fake.url)``. It validates what
Telegram validates (text length in UTF-16 units, HTML entities, inline keyboard
callback_data, command names), answers Bot-API-shaped JSON, and records every call.
Users act by queueing updates that ``getUpdates`` serves (a long poll with offsets).

    async with FakeTelegram() as tg:
        bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))
        tg.user_message(42, "/start")
        await tg.wait_for(lambda t: t.sent(42))
        tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

DEFAULT_TOKEN = "123456:TEST-token-abc"
MAX_TEXT_UTF16 = 4096
MAX_CAPTION_UTF16 = 1024
MAX_CALLBACK_DATA_BYTES = 64
GROUP_WINDOW_S = 60.0  # Telegram: about twenty messages a minute to one group


@dataclass
class Call:
    """One method call the bot made, in arrival order."""

    method: str  # canonical Bot API spelling ("sendMessage"), or the raw name when unknown
    params: dict[str, Any]  # parsed; uploaded files as :class:`Upload`
    error_code: int | None = None  # set when it was answered with an error
    description: str | None = None  # the error's description
    result: Any = None  # the "result" answered on success
    done: bool = False  # False while a getUpdates long poll is still waiting

    @property
    def ok(self) -> bool:
        return self.done and self.error_code is None


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    data: bytes


@dataclass
class _Fault:
    error_code: int
    description: str
    retry_after: int | None


@dataclass
class _Stored:
    """A message as the fake keeps it, to check edits and build callback queries."""

    message: dict[str, Any]  # the Bot API Message object
    markup: dict[str, Any] | None = None


@dataclass
class _File:
    file_id: str
    unique_id: str
    data: bytes
    path: str


class ApiError(Exception):
    """Raised inside method handlers; becomes a Bot-API-shaped error answer."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def response(self) -> web.Response:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return web.json_response(body, status=self.error_code)


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


# ---------------------------------------------------------------- HTML parse mode

_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)")
_ATTR_RE = re.compile(
    r"([a-zA-Z][a-zA-Z0-9_-]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>\"']+)))?"
)
_CHAR_REF_RE = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,7}));")
_NAMED_REFS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _unescape(value: str) -> str:
    def one(m: re.Match[str]) -> str:
        return _char_ref(m) or m.group(0)

    return _CHAR_REF_RE.sub(one, value)


def _char_ref(m: re.Match[str]) -> str | None:
    if m.group(1):
        return _NAMED_REFS[m.group(1)]
    code = int(m.group(2), 10) if m.group(2) else int(m.group(3), 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram's HTML parse mode into (plain text, entities), as Telegram does.

    Raises :class:`ApiError` 400 "Bad Request: can't parse entities: ..." on anything
    Telegram refuses: unknown tags, bad nesting, unclosed tags, a bare ``&`` or ``<``.
    """

    def at(i: int) -> str:
        return f"byte offset {len(source[:i].encode())}"

    def fail(why: str) -> ApiError:
        return _bad(f"can't parse entities: {why}")

    out: list[str] = []
    out_len = 0  # UTF-16 units written so far
    stack: list[tuple[str, int, dict[str, Any]]] = []  # tag, start offset, entity extras
    entities: list[dict[str, Any]] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "&":
            m = _CHAR_REF_RE.match(source, i)
            decoded = _char_ref(m) if m else None
            if m is None or decoded is None:
                raise fail(f'Character "&" at {at(i)} must be escaped as "&amp;"')
            out.append(decoded)
            out_len += utf16_len(decoded)
            i = m.end()
            continue
        if ch == ">":
            raise fail(f'Character ">" at {at(i)} must be escaped as "&gt;"')
        if ch != "<":
            j = i
            while j < n and source[j] not in "&<>":
                j += 1
            out.append(source[i:j])
            out_len += utf16_len(source[i:j])
            i = j
            continue
        m = _TAG_RE.match(source, i)
        if m is None:
            raise fail(f'Character "<" at {at(i)} must be escaped as "&lt;"')
        closing, name = m.group(1) == "/", m.group(2).lower()
        j = m.end()
        attrs: dict[str, str] = {}
        while True:
            while j < n and source[j].isspace():
                j += 1
            if j >= n:
                raise fail(f"Unclosed start tag at {at(i)}")
            if source[j] == ">":
                j += 1
                break
            a = None if closing else _ATTR_RE.match(source, j)
            if a is None:
                raise fail(f'Unexpected character "{source[j]}" in a tag at {at(j)}')
            value = next((g for g in a.groups()[1:] if g is not None), "")
            attrs[a.group(1).lower()] = _unescape(value)
            j = a.end()
        if closing:
            if not stack:
                raise fail(f'Unexpected end tag "{name}" at {at(i)}')
            top, start, opened = stack.pop()
            if top != name:
                raise fail(f'Unmatched end tag at {at(i)}, expected "</{top}>", found "</{name}>"')
            if opened.get("type") and out_len > start:
                entities.append({"offset": start, "length": out_len - start, **opened})
            i = j
            continue
        if name not in _ENTITY_TYPES:
            raise fail(f'Unsupported start tag "{name}" at {at(i)}')
        extra: dict[str, Any] = {"type": _ENTITY_TYPES[name]}
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise fail(f'Tag "span" must have class "tg-spoiler" at {at(i)}')
        if name == "a":
            if "href" in attrs:
                extra["url"] = attrs["href"]
            else:
                extra = {}  # Telegram keeps the text and drops the link
        if name == "tg-emoji":
            if "emoji-id" not in attrs:
                raise fail(f'Tag "tg-emoji" must have attribute "emoji-id" at {at(i)}')
            extra["custom_emoji_id"] = attrs["emoji-id"]
        if name == "blockquote" and "expandable" in attrs:
            extra["type"] = "expandable_blockquote"
        if name == "code" and stack and stack[-1][0] == "pre":
            lang = attrs.get("class", "")
            if lang.startswith("language-"):
                stack[-1][2]["language"] = lang.removeprefix("language-")
            extra = {}  # folded into the enclosing pre entity
        stack.append((name, out_len, extra))
        i = j
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# ---------------------------------------------------------------- the server

_METHODS = (
    "getMe",
    "getUpdates",
    "deleteWebhook",
    "setWebhook",
    "getWebhookInfo",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "answerCallbackQuery",
    "sendChatAction",
    "sendPhoto",
    "deleteMessage",
    "getFile",
)
_CANONICAL = {m.lower(): m for m in _METHODS}
# Sent verbatim by aiogram (a str is never JSON-encoded), so never JSON-decoded here:
# otherwise a text of "42" or "true" would come back as a number or a bool.
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "url",
        "inline_message_id",
        "secret_token",
        "language_code",
        "business_connection_id",
        "message_effect_id",
        "action",
        "ip_address",
        "photo",
        "file_id",
    }
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_DUMP_CALLS = 20


def _as_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad("can't parse JSON object") from None
    return value


def _decode_field(key: str, raw: str) -> Any:
    if key in _STRING_PARAMS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _int_param(params: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise _bad(f"{key} is empty")
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        if key == "chat_id":
            raise _bad("chat not found") from None
        raise _bad(f"invalid {key} specified") from None


def _png_size(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 1, 1


def _scope_key(scope: Any, language_code: str | None) -> str:
    scope = _as_json(scope) or {"type": "default"}
    if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
        raise _bad("can't parse BotCommandScope JSON object")
    key = ":".join([scope["type"]] + [str(scope[k]) for k in ("chat_id", "user_id") if k in scope])
    return f"{key}/{language_code}" if language_code else key


class FakeTelegram:
    """A real aiohttp server on a free port of 127.0.0.1 speaking the Bot API."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "openclaw_test_bot",
        clock: Callable[[], float] = time.monotonic,  # seconds; only rate limits read it
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.url = ""
        self.calls: list[Call] = []
        self.webhook: dict[str, Any] | None = None  # setWebhook's params while one is set
        self.my_commands: dict[str, list[dict[str, str]]] = {}  # by scope key, see commands()
        self.rate_limited = 0
        self._clock = clock
        self._sent: list[dict[str, Any]] = []
        self._edits: list[dict[str, Any]] = []
        self._answered: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._query_ids = itertools.count(7_000_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._message_ids: defaultdict[int, itertools.count[int]] = defaultdict(
            lambda: itertools.count(1)
        )
        self._messages: dict[tuple[int, int], _Stored] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._open_queries: dict[str, dict[str, Any]] = {}
        self._files: dict[str, _File] = {}
        self._faults: defaultdict[str, deque[_Fault]] = defaultdict(deque)
        self._delays: defaultdict[str, deque[float]] = defaultdict(deque)
        self._down: str | None = None  # None, "api" (Bot-API-shaped 502), "plain", "hang"
        self._up = asyncio.Event()  # set while not hanging: wakes the requests held
        self._up.set()
        self._limits: tuple[float, float, int] | None = None
        self._last_send: dict[int, float] = {}
        self._recent_sends: deque[float] = deque()
        self._group_sends: defaultdict[int, deque[float]] = defaultdict(deque)  # last minute's
        self._wakeup = asyncio.Event()  # replaced each time it fires
        self._poll_generation = 0
        self._closing = False
        self._closed = asyncio.Event()  # wakes the delayed answers (see delay_next)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        self._closing = True
        self._closed.set()
        self._wake()  # long polls answer [] at once
        self._up.set()  # held requests answer 502 at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ what the bot did

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Successful sendMessage and sendPhoto calls, in order: params + "message_id".

        Photos have "photo": True, "size" (bytes) and "file_id" instead of the upload.
        """
        return [s for s in self._sent if chat_id is None or s["chat_id"] == chat_id]

    def edits(
        self, chat_id: int | None = None, message_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Successful editMessageText / editMessageReplyMarkup calls: params + "method"."""
        return [
            e
            for e in self._edits
            if (chat_id is None or e["chat_id"] == chat_id)
            and (message_id is None or e["message_id"] == message_id)
        ]

    def answered_callbacks(self) -> list[dict[str, Any]]:
        """Successful answerCallbackQuery calls: params + the query's "data" and "user_id"."""
        return list(self._answered)

    def calls_of(self, method: str) -> list[Call]:
        """Every call of one method (e.g. "sendChatAction"), answered or not."""
        return [c for c in self.calls if c.method == method]

    def commands(self, scope: str = "default", language_code: str = "") -> list[dict[str, str]]:
        """Commands last set for a scope key: "default", "all_private_chats", "chat:<id>",
        "chat_member:<chat_id>:<user_id>"…; with a language, "<key>/<code>"."""
        key = f"{scope}/{language_code}" if language_code else scope
        return self.my_commands.get(key, [])

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The current Bot API Message object of a live message (after edits), or None."""
        stored = self._messages.get((chat_id, message_id))
        return stored.message if stored else None

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    async def wait_for(
        self, predicate: Callable[[FakeTelegram], bool], timeout_s: float = 10
    ) -> None:
        """Poll until ``predicate(self)`` is true; else AssertionError with the recent calls."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate(self):
            if loop.time() >= deadline:
                raise AssertionError(
                    f"condition not met within {timeout_s} s; recent calls:\n{self.dump_calls()}"
                )
            await asyncio.sleep(0.005)

    def dump_calls(self, last: int = _DUMP_CALLS) -> str:
        lines = []
        for c in self.calls[-last:]:
            shown = {k: v for k, v in c.params.items() if not isinstance(v, Upload)}
            state = "…" if not c.done else ("ok" if c.ok else f"{c.error_code} {c.description}")
            lines.append(f"  {c.method} {json.dumps(shown, default=str)[:300]} -> {state}")
        return "\n".join(lines) or "  (none)"

    # ------------------------------------------------------------ what users do

    def user_message(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        username: str = "op",
        reply_to: int | None = None,
    ) -> int:
        """Queue a text message from a user (``reply_to``: a reply to that message id of the
        chat, as Telegram sends it); returns its update_id."""
        chat_id = user_id if chat_id is None else chat_id
        user = self._user(user_id, username)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids[chat_id]),
            "date": int(time.time()),
            "chat": self._chat(chat_id, user),
            "from": user,
            "text": text,
        }
        if reply_to is not None:
            replied = self._messages.get((chat_id, reply_to))
            message["reply_to_message"] = (
                replied.message
                if replied
                else {"message_id": reply_to, "date": 0, "chat": message["chat"]}
            )
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0] if text.strip() else text
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": utf16_len(command)}
            ]
        self._messages[(chat_id, message["message_id"])] = _Stored(message)
        return self._queue({"message": message})

    def user_press(
        self, user_id: int, message: dict[str, Any], data: str, chat_id: int | None = None
    ) -> str:
        """Queue a button press on a message the bot sent (a dict from :meth:`sent`).

        Returns the callback query id; the bot answers it with answerCallbackQuery.
        """
        if chat_id is None:
            chat_id = int(message.get("chat_id", user_id))
        message_id = int(message["message_id"])
        user = self._user(user_id, None)
        stored = self._messages.get((chat_id, message_id))
        body = (
            stored.message
            if stored
            else {"chat": self._chat(chat_id, user), "message_id": message_id, "date": 0}
        )
        query_id = str(next(self._query_ids))
        query = {
            "id": query_id,
            "from": user,
            "message": body,
            "chat_instance": str(abs(chat_id) * 7919),
            "data": data,
        }
        self._open_queries[query_id] = query
        self._queue({"callback_query": query})
        return query_id

    # ------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with this Bot API error."""
        name = _CANONICAL.get(method.lower(), method)
        self._faults[name].extend(
            _Fault(error_code, description, retry_after) for _ in range(times)
        )

    def delay_next(self, method: str, delay_s: float, times: int = 1) -> None:
        """Carry out the next ``times`` calls of ``method`` at once, and answer each only
        after ``delay_s`` (cut short when the server closes): a client that dies meanwhile
        sent a message it never saw confirmed."""
        name = _CANONICAL.get(method.lower(), method)
        self._delays[name].extend(delay_s for _ in range(times))

    hang_get_updates = False  # True: getUpdates never answers (until cleared or closed)

    def set_down(self, down: bool, plain: bool = False, hang: bool = False) -> None:
        """While down, every request answers 502 Bad Gateway: Bot-API-shaped JSON, or with
        ``plain`` the HTML page a proxy in front of Telegram answers. With ``hang`` no
        request is answered at all (the client times out); each one held is answered 502
        when the outage ends, without being carried out: Telegram never saw it."""
        self._down = ("hang" if hang else "plain" if plain else "api") if down else None
        if self._down == "hang":
            self._up.clear()
        else:
            self._up.set()

    def enforce_rate_limits(
        self,
        per_chat_per_s: float = 1.0,
        global_per_s: float = 30.0,
        group_per_minute: int = 20,
    ) -> None:
        """From now on, sends (sendMessage, sendPhoto) faster than this answer 429 with a
        ``retry_after``, as Telegram does: per chat, in all, and to a group, supergroup or
        channel (``chat_id < 0``) more than ``group_per_minute`` in any 60 s."""
        self._limits = (per_chat_per_s, global_per_s, group_per_minute)

    # ------------------------------------------------------------ HTTP

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return ApiError(404, "Not Found").response()

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        path = request.match_info["path"]
        for f in self._files.values():
            if f.path == path:
                return web.Response(body=f.data, content_type="application/octet-stream")
        return ApiError(404, "Not Found").response()

    async def _handle_api(self, request: web.Request) -> web.Response:
        raw_name = request.match_info["method"]
        try:
            params = await self._read_params(request)
        except ApiError as e:
            self.calls.append(Call(raw_name, {}, e.error_code, e.description, done=True))
            return e.response()
        name = _CANONICAL.get(raw_name.lower(), raw_name)
        call = Call(name, params)
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if self._down == "hang":
                await self._up.wait()
                raise ApiError(502, "Bad Gateway")
            if self._down == "plain":
                call.error_code, call.description, call.done = 502, "Bad Gateway", True
                html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
                return web.Response(status=502, text=html, content_type="text/html")
            if self._down:
                raise ApiError(502, "Bad Gateway")
            handler = getattr(self, f"_m_{name}", None) if name in _METHODS else None
            if handler is None:
                raise ApiError(404, "Not Found")
            if self._faults[name]:
                fault = self._faults[name].popleft()
                raise ApiError(fault.error_code, fault.description, fault.retry_after)
            result = await handler(params)
            if self._delays[name]:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), self._delays[name].popleft())
        except ApiError as e:
            call.error_code, call.description, call.done = e.error_code, e.description, True
            return e.response()
        call.result, call.done = result, True
        return web.json_response({"ok": True, "result": result})

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _decode_field(k, v) for k, v in request.query.items()}
        if not request.body_exists:
            return params
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad("can't parse JSON request body") from None
            if not isinstance(body, dict):
                raise _bad("request body must be a JSON object")
            params.update(body)
        elif ctype == "multipart/form-data":
            files: dict[str, Upload] = {}
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    files[part.name] = Upload(part.filename, bytes(await part.read()))
                else:
                    params[part.name] = _decode_field(part.name, await part.text())
            for key, value in list(params.items()):  # aiogram's "attach://<part name>"
                if isinstance(value, str) and value.startswith("attach://"):
                    if value[len("attach://") :] not in files:
                        raise _bad(f"file {value} not found in the request")
                    params[key] = files[value[len("attach://") :]]
            for key, upload in files.items():  # a file sent directly as the parameter
                if key in _STRING_PARAMS and key not in params:
                    params[key] = upload
        else:
            form = await request.post()
            params.update({k: _decode_field(k, v) for k, v in form.items() if isinstance(v, str)})
        return params

    # ------------------------------------------------------------ helpers

    def _queue(self, body: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **body})
        self._wake()
        return update_id

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _user(self, user_id: int, username: str | None) -> dict[str, Any]:
        user = self._users.get(user_id)
        if user is None or (username is not None and user.get("username") != username):
            user = {
                "id": user_id,
                "is_bot": False,
                "first_name": (username or "user").capitalize(),
                "username": username or f"user{user_id}",
                "language_code": "en",
            }
            self._users[user_id] = user
        return user

    def _chat(self, chat_id: int, user: dict[str, Any] | None = None) -> dict[str, Any]:
        if chat_id in self._chats:
            return self._chats[chat_id]
        if chat_id > 0:
            user = user or self._users.get(chat_id) or self._user(chat_id, None)
            chat = {
                "id": chat_id,
                "type": "private",
                "first_name": user["first_name"],
                "username": user["username"],
            }
        else:
            kind = "supergroup" if str(chat_id).startswith("-100") else "group"
            chat = {"id": chat_id, "type": kind, "title": f"Test {kind}"}
        self._chats[chat_id] = chat
        return chat

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "OpenClaw Test",
            "username": self.bot_username,
        }

    def _chat_id(self, params: dict[str, Any]) -> int:
        chat_id = _int_param(params, "chat_id")
        assert chat_id is not None
        params["chat_id"] = chat_id
        return chat_id

    def _formatted(
        self, params: dict[str, Any], key: str, limit: int, too_long: str, empty: str | None
    ) -> tuple[str, list[dict[str, Any]]]:
        """Text (or caption) after its parse mode, checked the way Telegram checks it."""
        source = params.get(key)
        if source is None:
            source = ""
        if not isinstance(source, str):
            source = json.dumps(source)  # a JSON body may carry a number as the text
        mode = str(params.get("parse_mode") or "")
        if mode.lower() == "html":
            text, entities = parse_html(source)
        elif mode.lower() in ("", "markdown", "markdownv2"):
            # Markdown is not checked; explicit entities are echoed as given.
            given = params.get("entities" if key == "text" else "caption_entities")
            text, entities = source, list(_as_json(given) or [])
        else:
            raise _bad(f"unsupported parse_mode {mode}")
        if empty is not None and not text.strip():
            raise _bad(empty)
        if utf16_len(text) > limit:
            raise _bad(too_long)
        return text, entities

    def _markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The inline keyboard to echo, validated; None for no or a non-inline keyboard."""
        markup = _as_json(params.get("reply_markup"))
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return None
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad('can\'t parse inline keyboard button: Field "text" must be String')
                if not any(a in button for a in _BUTTON_ACTIONS):
                    raise _bad(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in button:
                    data = button["callback_data"]
                    size = len(data.encode()) if isinstance(data, str) else 0
                    if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                        raise _bad("BUTTON_DATA_INVALID")
                url = button.get("url")
                if url is not None and not re.match(r"^(https?|tg)://\S+$", str(url)):
                    raise _bad(f"inline keyboard button URL '{url}' is invalid")
        return {"inline_keyboard": rows} if any(rows) else None

    def _check_rate(self, chat_id: int) -> None:
        if self._limits is None:
            return
        per_chat, per_global, per_group_minute = self._limits
        now = self._clock()
        while self._recent_sends and now - self._recent_sends[0] >= 1.0:
            self._recent_sends.popleft()
        group = self._group_sends[chat_id] if chat_id < 0 else None
        while group and now - group[0] >= GROUP_WINDOW_S:
            group.popleft()
        wait_s = 0.0
        last = self._last_send.get(chat_id)
        if last is not None and now - last < 1.0 / per_chat:
            wait_s = 1.0 / per_chat - (now - last)
        if len(self._recent_sends) >= per_global:
            wait_s = max(wait_s, 1.0 - (now - self._recent_sends[0]))
        if group is not None and len(group) >= per_group_minute:
            wait_s = max(wait_s, GROUP_WINDOW_S - (now - group[-per_group_minute]))
        if wait_s > 0:
            self.rate_limited += 1
            retry_after = max(1, math.ceil(wait_s))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        self._last_send[chat_id] = now
        self._recent_sends.append(now)
        if group is not None:
            group.append(now)

    def _new_message(self, chat_id: int, content: dict[str, Any]) -> dict[str, Any]:
        message = {
            "message_id": next(self._message_ids[chat_id]),
            "from": self._bot_user(),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            **content,
        }
        self._messages[(chat_id, message["message_id"])] = _Stored(
            message, content.get("reply_markup")
        )
        return message

    def _stored_for_edit(self, params: dict[str, Any]) -> tuple[int, int, _Stored]:
        if params.get("inline_message_id"):
            raise _bad("inline messages are not supported by the fake")
        chat_id = self._chat_id(params)
        message_id = _int_param(params, "message_id")
        assert message_id is not None
        params["message_id"] = message_id
        stored = self._messages.get((chat_id, message_id))
        if stored is None or stored.message["from"].get("id") != self.bot_id:
            raise _bad("message to edit not found")
        return chat_id, message_id, stored

    # ------------------------------------------------------------ methods

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        for _ in range(100_000):  # a stalled connection: no answer while hanging
            if not self.hang_get_updates or self._closing:
                break
            await asyncio.sleep(0.05)
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int_param(params, "offset", required=False) or 0
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        limit = min(max(_int_param(params, "limit", required=False) or 100, 1), 100)
        timeout_s = max(float(params.get("timeout") or 0), 0.0)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake()  # an older long poll now answers 409, as Telegram does
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._updates and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
        return self._updates[:limit]

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        url = params.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = dict(params) if url else None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_getWebhookInfo(self, params: dict[str, Any]) -> Any:
        url = (self.webhook or {}).get("url", "")
        return {"url": url, "has_custom_certificate": False, "pending_update_count": 0}

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        commands = _as_json(params.get("commands"))
        if not isinstance(commands, list):
            raise _bad('field "commands" must be an Array')
        if len(commands) > 100:
            raise _bad("too many commands specified")
        clean = []
        for c in commands:
            if not isinstance(c, dict) or not _COMMAND_RE.match(str(c.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            description = c.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": c["command"], "description": description})
        self.my_commands[_scope_key(params.get("scope"), params.get("language_code"))] = clean
        return True

    async def _m_getMyCommands(self, params: dict[str, Any]) -> Any:
        return self.my_commands.get(
            _scope_key(params.get("scope"), params.get("language_code")), []
        )

    async def _m_deleteMyCommands(self, params: dict[str, Any]) -> Any:
        self.my_commands.pop(_scope_key(params.get("scope"), params.get("language_code")), None)
        return True

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat_id(params)
        text, entities = self._formatted(
            params, "text", MAX_TEXT_UTF16, "message is too long", "message text is empty"
        )
        markup = self._markup(params)
        self._check_rate(chat_id)
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        if markup:
            content["reply_markup"] = markup
        message = self._new_message(chat_id, content)
        self._sent.append({**params, "message_id": message["message_id"]})
        return message

    async def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat_id(params)
        photo = params.get("photo")
        if isinstance(photo, Upload):
            if not photo.data:
                raise _bad("file must be non-empty")
            n = next(self._file_ids)
            file = _File(f"AgACfake{n:06d}", f"AQADfake{n:06d}", photo.data, f"photos/file_{n}.jpg")
        elif isinstance(photo, str) and photo in self._files:
            file = self._files[photo]
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        caption, entities = self._formatted(
            params, "caption", MAX_CAPTION_UTF16, "message caption is too long", None
        )
        markup = self._markup(params)
        self._check_rate(chat_id)
        self._files[file.file_id] = file
        width, height = _png_size(file.data)
        content: dict[str, Any] = {
            "photo": [
                {
                    "file_id": file.file_id,
                    "file_unique_id": file.unique_id,
                    "width": width,
                    "height": height,
                    "file_size": len(file.data),
                }
            ]
        }
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        if markup:
            content["reply_markup"] = markup
        message = self._new_message(chat_id, content)
        self._sent.append(
            {
                **params,
                "photo": True,
                "size": len(file.data),
                "file_id": file.file_id,
                "message_id": message["message_id"],
            }
        )
        return message

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        chat_id, message_id, stored = self._stored_for_edit(params)
        text, entities = self._formatted(
            params, "text", MAX_TEXT_UTF16, "message is too long", "message text is empty"
        )
        markup = self._markup(params)
        old = stored.message
        if "text" not in old:
            raise _bad("there is no text in the message to edit")
        if old["text"] == text and old.get("entities", []) == entities and stored.markup == markup:
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        message = {k: v for k, v in old.items() if k not in ("entities", "reply_markup")}
        message.update(text=text, edit_date=int(time.time()))
        if entities:
            message["entities"] = entities
        if markup:
            message["reply_markup"] = markup
        self._messages[(chat_id, message_id)] = _Stored(message, markup)
        self._edits.append({**params, "method": "editMessageText"})
        return message

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        chat_id, message_id, stored = self._stored_for_edit(params)
        markup = self._markup(params)
        if stored.markup == markup:
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        message = {k: v for k, v in stored.message.items() if k != "reply_markup"}
        message["edit_date"] = int(time.time())
        if markup:
            message["reply_markup"] = markup
        self._messages[(chat_id, message_id)] = _Stored(message, markup)
        self._edits.append({**params, "method": "editMessageReplyMarkup"})
        return message

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        query = self._open_queries.pop(str(params.get("callback_query_id", "")), None)
        if query is None:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self._answered.append({**params, "data": query["data"], "user_id": query["from"]["id"]})
        return True

    async def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        self._chat_id(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _m_deleteMessage(self, params: dict[str, Any]) -> Any:
        chat_id = self._chat_id(params)
        message_id = _int_param(params, "message_id")
        if self._messages.pop((chat_id, message_id or 0), None) is None:
            raise _bad("message to delete not found")
        return True

    async def _m_getFile(self, params: dict[str, Any]) -> Any:
        file = self._files.get(str(params.get("file_id", "")))
        if file is None:
            raise _bad("invalid file_id")
        return {
            "file_id": file.file_id,
            "file_unique_id": file.unique_id,
            "file_size": len(file.data),
            "file_path": file.path,
        }
