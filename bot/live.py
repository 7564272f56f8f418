"""A message kept up to date by edits: at most one edit a second, the final text always lands."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from bot.sending import describe

log = logging.getLogger("openclaw.bot")
EDIT_EVERY_S = 1.0  # Telegram allows about one edit a second per chat
# pauses between tries of the final edit, after the send path's own short retries
FINAL_RETRY_S = (1.0, 3.0, 10.0)


class LiveMessage:
    """One message that shows the latest of many states.

    :meth:`show` only records the text; a background edit shows the latest one after at
    most ``every_s`` (states in between are skipped, not queued). :meth:`finish` stops
    that and makes the final edit, retried until it lands or cannot (a 400: deleted).
    Nothing here raises a Bot API error: a state that could not be shown is logged.
    """

    def __init__(self, bot: Bot, chat_id: int, every_s: float = EDIT_EVERY_S) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.every_s = every_s
        self.message_id: int | None = None
        self._wanted: str | None = None
        self._shown: str | None = None
        self._pump: asyncio.Task[None] | None = None

    async def post(self, text: str) -> bool:
        """Send the message (once); False, logged, when it could not be sent."""
        try:
            msg = await self.bot.send_message(self.chat_id, text)
        except TelegramAPIError as e:
            log.warning(
                "could not post a status message in chat %s: %s",
                self.chat_id,
                describe(self.bot, e),
            )
            return False
        self.message_id = msg.message_id
        self._shown = text
        if self._wanted is not None and self._wanted != text:
            self._start()
        return True

    def show(self, text: str) -> None:
        """Show ``text`` soon (coalesced with other states within ``every_s``)."""
        self._wanted = text
        if self.message_id is not None:
            self._start()

    def _start(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._edits())

    async def _edits(self) -> None:
        while self._wanted != self._shown:
            await asyncio.sleep(self.every_s)  # gathers a second's states into one edit
            text = self._wanted
            assert text is not None and self.message_id is not None
            try:
                await self.bot.edit_message_text(
                    text, chat_id=self.chat_id, message_id=self.message_id
                )
                self._shown = text
            except TelegramAPIError as e:  # the next state, or the final one, will try again
                log.info("progress edit in chat %s failed: %s", self.chat_id, describe(self.bot, e))
                if not isinstance(
                    e, (TelegramRetryAfter, TelegramServerError, TelegramNetworkError)
                ):
                    return

    async def finish(self, text: str) -> bool:
        """Stop the progress edits and show ``text``; whether it is shown."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._wanted = text
        if self.message_id is None:
            return False
        if self._shown == text:
            return True
        for pause in (*FINAL_RETRY_S, None):
            try:
                await self.bot.edit_message_text(
                    text, chat_id=self.chat_id, message_id=self.message_id
                )
                self._shown = text
                return True
            except TelegramRetryAfter as e:  # longer than the send path waits
                if pause is not None:
                    pause = max(pause, float(e.retry_after))
                error: TelegramAPIError = e
            except (TelegramServerError, TelegramNetworkError) as e:
                error = e
            except TelegramAPIError as e:  # deleted, or not ours: retrying cannot help
                error = e
                break
            if pause is None:
                break
            await asyncio.sleep(pause)
        log.warning(
            "could not show the final state in chat %s: %s", self.chat_id, describe(self.bot, error)
        )
        return False
