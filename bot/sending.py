"""The one path every Bot API send and edit takes: paced, ordered per chat, retried.

:class:`SendPath` is an aiogram request middleware (``bot.session.middleware``), so every
``send_message``, ``edit_message_text``, ``send_photo`` … of the bot goes through it, the
outbox channel's, the command replies', the reporter's and the approval messages' alike.
It keeps one :class:`~bot.limiter.SendLimiter` (about 1/s per chat, 20/min per group,
30/s in all) and one :class:`~bot.limiter.AnswerWindow` for all of them, so digests and
replies together stay under Telegram's limits; it waits out a 429's ``retry_after`` (up
to ``RetryPolicy.max_wait_s``) and retries a 5xx or a connection error a few times after
a short pause; a 400 or 403 is raised at once.

Order in a chat: a new message takes the chat's *turn* (:class:`ChatTurns`), one message
at a time; all parts of a split message are sent under one turn (:func:`send_parts`), so
nothing lands between them. Waiting turns go replies first (:data:`PRIORITY`), then
digests in the order they asked: an interactive reply overtakes digests still queued for
its chat but never splits one that is being sent. Edits, button answers and chat actions
add no message to the chat and take no turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    CopyMessage,
    EditMessageCaption,
    EditMessageMedia,
    EditMessageReplyMarkup,
    EditMessageText,
    ForwardMessage,
    SendAnimation,
    SendAudio,
    SendChatAction,
    SendDocument,
    SendMediaGroup,
    SendMessage,
    SendPhoto,
    SendVideo,
    SendVoice,
    TelegramMethod,
)
from aiogram.methods.base import TelegramType
from aiogram.types import InlineKeyboardMarkup

from bot.limiter import AnswerWindow, SendLimiter, wait_turn
from bot.text import split_html
from core.delivery.channels import off_the_wire, on_the_wire, parts_sent

log = logging.getLogger("openclaw.bot.sending")

# methods that add a message to a chat: they take the chat's turn
MESSAGE_METHODS: tuple[type[TelegramMethod[Any]], ...] = (
    SendMessage,
    SendPhoto,
    SendDocument,
    SendAnimation,
    SendAudio,
    SendVideo,
    SendVoice,
    SendMediaGroup,
    CopyMessage,
    ForwardMessage,
)
# methods that change a message in place: paced like a send, no turn
EDIT_METHODS: tuple[type[TelegramMethod[Any]], ...] = (
    EditMessageText,
    EditMessageReplyMarkup,
    EditMessageCaption,
    EditMessageMedia,
)
NOT_MODIFIED = "message is not modified"
_TIMEOUT = "Request timeout error"  # aiogram's TelegramNetworkError text for a timeout


class Priority(IntEnum):
    """Who goes first for a chat's turn: lower first."""

    REPLY = 0  # a command's answer, a run's progress and result, an approval request
    BULK = 1  # outbox digests


PRIORITY: ContextVar[Priority] = ContextVar("openclaw_send_priority", default=Priority.REPLY)


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Sends made inside go after waiting replies (the outbox channel's)."""
    token = PRIORITY.set(Priority.BULK)
    try:
        yield
    finally:
        PRIORITY.reset(token)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long one call may wait for Telegram before its error reaches the caller."""

    max_wait_s: float = 60.0  # a 429 asking for longer is raised (the outbox reschedules)
    max_429s: int = 5  # 429s waited out in one call
    # pauses before retrying a 5xx or a connection error; a timeout is not retried, the
    # request may have arrived, and it already took the whole timeout
    server_backoff_s: tuple[float, ...] = (0.5, 1.5)
    answer_max_wait_s: float = 5.0  # a button press expires; waiting longer is pointless


@dataclass
class _Turn:
    owner: asyncio.Task[Any] | None = None
    waiters: list[tuple[int, int, asyncio.Future[None]]] = field(default_factory=list)


class ChatTurns:
    """One message at a time per chat; waiting turns go by priority, then by arrival."""

    def __init__(self) -> None:
        self._chats: dict[int, _Turn] = {}
        self._seq = itertools.count()

    def held(self, chat_id: int) -> bool:
        """Whether the running task holds ``chat_id``'s turn."""
        turn = self._chats.get(chat_id)
        return turn is not None and turn.owner is asyncio.current_task()

    @asynccontextmanager
    async def turn(self, chat_id: int, priority: Priority) -> AsyncIterator[None]:
        """Hold ``chat_id``'s turn (re-entrant for the task that holds it)."""
        if self.held(chat_id):
            yield
            return
        me = asyncio.current_task()
        state = self._chats.setdefault(chat_id, _Turn())
        if state.owner is None and not state.waiters:
            state.owner = me
        else:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (int(priority), next(self._seq), granted)
            heapq.heappush(state.waiters, entry)
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release(chat_id)  # granted just as it was cancelled: pass it on
                else:
                    state.waiters.remove(entry)
                    heapq.heapify(state.waiters)
                raise
            state.owner = me
        try:
            yield
        finally:
            self._release(chat_id)

    def _release(self, chat_id: int) -> None:
        state = self._chats[chat_id]
        state.owner = None
        while state.waiters:
            _, _, granted = heapq.heappop(state.waiters)
            if not granted.done():
                granted.set_result(None)
                state.owner = _PENDING  # taken; the waiter's task sets itself as owner
                return
        del self._chats[chat_id]  # nobody waits: keep no state for the chat


# a turn handed to a waiter that has not resumed yet: nobody else may take it meanwhile
_PENDING: Any = object()


@dataclass
class Press:
    """A button press being handled: whether its callback query was answered yet."""

    query_id: str
    answered: bool = False


# the button press being handled in this context (see bot/answering.py)
PRESS: ContextVar[Press | None] = ContextVar("openclaw_press", default=None)


def chat_key(chat_id: int | str) -> int:
    """The limiter's key for a chat: the id, or for ``@channel`` a stable negative number
    (a channel has a group's limits)."""
    if isinstance(chat_id, int):
        return chat_id
    try:
        return int(chat_id)
    except ValueError:
        return -(10**15) - zlib.crc32(chat_id.encode())


class SendPath(BaseRequestMiddleware):
    """The bot's send path (see the module doc); one per bot session."""

    def __init__(
        self,
        limiter: SendLimiter | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.turns = ChatTurns()
        self.clock = clock
        self.sleep = sleep
        self.use(limiter or SendLimiter())

    def use(self, limiter: SendLimiter) -> None:
        """Pace with ``limiter`` from now on (tests and benchmarks scale the limits)."""
        self.limiter = limiter
        # the slots pace the sends; this keeps the global limit when some of them arrive
        # late (a busy loop, a slow network) and would crowd a later window
        self.window = AnswerWindow(limiter.global_count, limiter.global_window_s)

    @classmethod
    def of(cls, bot: Bot) -> SendPath:
        """The send path installed on ``bot``'s session; installed now if there is none."""
        for middleware in bot.session.middleware:
            if isinstance(middleware, SendPath):
                return middleware
        path = cls()
        bot.session.middleware(path)
        return path

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        if isinstance(method, AnswerCallbackQuery):
            return await self._answer(make_request, bot, method, method.callback_query_id)
        if isinstance(method, SendChatAction):
            try:  # "typing…" is a nicety: never paced, retried or raised
                return await make_request(bot, method)  # type: ignore[arg-type]
            except TelegramAPIError as e:
                log.debug("chat action in %s failed: %s", method.chat_id, e.message)
                return False
        chat_id = getattr(method, "chat_id", None)
        if not isinstance(method, MESSAGE_METHODS + EDIT_METHODS) or chat_id is None:
            return await make_request(bot, method)  # polling, commands, webhook set-up
        key = chat_key(chat_id)
        if isinstance(method, MESSAGE_METHODS):
            async with self.turns.turn(key, PRIORITY.get()):
                return await self._paced(make_request, bot, method, key)
        return await self._paced(make_request, bot, method, key)

    async def _paced(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
        chat_id: int,
    ) -> Any:
        limited = troubles = 0
        while True:
            slot = await wait_turn(self.limiter, chat_id, self.clock, self.sleep)
            try:
                async with self.window.send():
                    if isinstance(method, MESSAGE_METHODS):
                        on_the_wire()  # an outbox row cut off from here may have arrived
                    return await make_request(bot, method)
            except TelegramRetryAfter as e:
                off_the_wire()  # refused, not sent: cut off while waiting, it never arrived
                # the next slot of this chat comes after the wait (see SendLimiter.penalize)
                self.limiter.penalize(chat_id, float(e.retry_after), self.clock())
                limited += 1
                if e.retry_after > self.retry.max_wait_s or limited > self.retry.max_429s:
                    raise
                log.info("telegram 429 for chat %s: waiting %ss", chat_id, e.retry_after)
            except TelegramBadRequest as e:
                if isinstance(method, EDIT_METHODS) and NOT_MODIFIED in e.message:
                    return True  # the message already shows this: the edit's goal is met
                raise
            except (TelegramServerError, TelegramNetworkError) as e:
                if troubles >= len(self.retry.server_backoff_s) or e.message == _TIMEOUT:
                    raise
                log.info(
                    "telegram unavailable for chat %s (%s): retrying", chat_id, describe(bot, e)
                )
                await self.sleep(self.retry.server_backoff_s[troubles])
                troubles += 1
            finally:
                self.limiter.settle(chat_id, slot, self.clock())

    async def _answer(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
        query_id: str,
    ) -> Any:
        """A button press's answer: retried briefly; a failure is logged, never raised (the
        press did its work; only the spinner is left)."""
        press = PRESS.get()
        if press is not None and press.query_id == query_id:
            press.answered = True  # tried: an expired query must not be answered twice
        backoff = iter(self.retry.server_backoff_s)
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as e:
                if e.retry_after > self.retry.answer_max_wait_s:
                    error: TelegramAPIError = e
                    break
                await self.sleep(float(e.retry_after))
            except (TelegramServerError, TelegramNetworkError) as e:
                pause = next(backoff, None)
                if pause is None or e.message == _TIMEOUT:
                    error = e
                    break
                await self.sleep(pause)
            except TelegramAPIError as e:  # too old, invalid: retrying cannot help
                error = e
                break
        log.warning("could not answer a button press: %s", describe(bot, error))
        return False


def describe(bot: Bot, error: TelegramAPIError) -> str:
    """A Bot API error for a log line: a network error may quote the request URL, which
    holds the bot token."""
    return str(error).replace(bot.token, "<token>")


class PartialSend(Exception):
    """A split message stopped at a part: ``sent`` holds the ids of the parts delivered."""

    def __init__(self, sent: list[int], cause: TelegramAPIError) -> None:
        super().__init__(cause.message)
        self.sent = sent
        self.cause = cause


async def send_parts(
    bot: Bot,
    chat_id: int,
    html: str,
    *,
    done: Sequence[int] = (),
    markup: InlineKeyboardMarkup | None = None,
) -> list[int]:
    """Send Telegram HTML split at 4096 UTF-16 units, all parts under one turn of the chat;
    ``markup`` goes on the last part. ``done`` are ids of parts an earlier try delivered:
    those are skipped. Returns the ids of all parts; raises :class:`PartialSend`."""
    path = SendPath.of(bot)
    parts = split_html(html)
    ids = list(done)
    async with path.turns.turn(chat_key(chat_id), PRIORITY.get()):
        for i in range(len(ids), len(parts)):
            try:
                msg = await bot.send_message(
                    chat_id,
                    parts[i],
                    reply_markup=markup if i == len(parts) - 1 else None,
                    disable_web_page_preview=True,
                )
            except TelegramAPIError as e:
                raise PartialSend(ids, e) from e
            ids.append(msg.message_id)
            if len(parts) > 1:
                parts_sent(ids)  # an outbox send cut off after this part keeps it
    return ids
