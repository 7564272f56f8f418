"""The Telegram channel of the delivery outbox."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from bot.limiter import AnswerWindow, SendLimiter, wait_turn
from bot.text import split_html
from core.delivery import DeliveryError

log = logging.getLogger("openclaw.bot.channel")
MAX_IN_CHANNEL_WAIT_S = 60.0  # a longer retry_after goes back to the outbox's schedule


class TelegramChannel:
    """Sends HTML messages within Telegram's limits; confirmation = the message ids."""

    def __init__(self, bot: Bot, limiter: SendLimiter | None = None) -> None:
        self.bot = bot
        self.limiter = limiter or SendLimiter()
        # the slots above pace the sends; this keeps the global limit when some of them
        # arrive late (a busy loop, a slow network) and would crowd a later window
        self.window = AnswerWindow(self.limiter.global_count, self.limiter.global_window_s)
        # one message at a time per chat: parts and rows arrive in order, even when one
        # waits out a 429, and the next send is spaced from the previous one's answer
        self._chat_locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _chat_turn(self, chat_id: int) -> AsyncIterator[None]:
        lock, users = self._chat_locks.get(chat_id) or (asyncio.Lock(), 0)
        self._chat_locks[chat_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._chat_locks[chat_id]
            if users > 1:
                self._chat_locks[chat_id] = (lock, users - 1)
            else:  # nobody waits for this chat: keep no state for it
                del self._chat_locks[chat_id]

    async def send(self, name: str, body: str, sent: str = "") -> str:
        """Send ``body`` (Telegram HTML) to chat ``name``, split at 4096 UTF-16 units.

        ``sent`` lists the message ids of parts an earlier try delivered: those are not
        sent again. A 429 waits the given time and retries the same part; 403 (blocked,
        kicked) fails for good.
        """
        try:
            chat_id = int(name)
        except ValueError:
            raise DeliveryError(
                f"telegram target {name!r} is not a chat id", permanent=True
            ) from None
        ids = [i for i in sent.split(",") if i]
        async with self._chat_turn(chat_id):
            for part in split_html(body)[len(ids) :]:
                try:
                    ids.append(str(await self._send_part(chat_id, part)))
                except DeliveryError as e:
                    e.sent = ",".join(ids)  # resume here next time, not from the first part
                    raise
        return ",".join(ids)

    async def _send_part(self, chat_id: int, part: str) -> int:
        while True:
            slot = await wait_turn(self.limiter, chat_id)
            try:
                async with self.window.send():
                    msg = await self.bot.send_message(chat_id, part, disable_web_page_preview=True)
                return msg.message_id
            except TelegramRetryAfter as e:
                self.limiter.penalize(chat_id, float(e.retry_after), time.monotonic())
                if e.retry_after > MAX_IN_CHANNEL_WAIT_S:
                    raise DeliveryError(
                        f"Telegram asks to wait {e.retry_after}s",
                        retry_after_s=float(e.retry_after),
                    ) from None
                log.info("telegram 429 for chat %s: waiting %ss", chat_id, e.retry_after)
            except TelegramForbiddenError as e:
                raise DeliveryError(
                    f"Telegram refused chat {chat_id}: {e.message}", permanent=True
                ) from None
            except TelegramBadRequest as e:
                raise DeliveryError(
                    f"Telegram rejected the message: {e.message}", permanent=True
                ) from None
            except (TelegramServerError, TelegramNetworkError) as e:
                # network errors may quote the request URL, which holds the bot token
                text = str(e).replace(self.bot.token, "<token>")
                raise DeliveryError(f"Telegram unavailable: {text}") from None
            finally:
                self.limiter.settle(chat_id, slot, time.monotonic())
