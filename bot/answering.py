"""Every button press is answered, also when no handler took it or the handler failed.

Telegram shows a spinner on a pressed button until the bot answers the callback query.
Handlers answer with their own text; this outer middleware answers the presses they did
not: an unknown or expired button (stale or crafted callback data that no filter
accepts, such as ``rn:rerun:99999999999999999999``), or a handler that raised. Whether a
press was answered is noted by the send path (:data:`bot.sending.PRESS`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import CallbackQuery, TelegramObject

from bot.sending import PRESS, Press

log = logging.getLogger("openclaw.bot")
UNKNOWN_BUTTON = "This button is unknown or has expired."
FAILED = "That did not work; the error is in the log."


class AnswerEveryPress(BaseMiddleware):
    """Outer middleware on callback queries: answers what the handler left unanswered."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, CallbackQuery):
            return await handler(event, data)
        press = Press(event.id)
        token = PRESS.set(press)
        text: str | None = None
        try:
            result = await handler(event, data)
            if result is UNHANDLED:
                text = UNKNOWN_BUTTON
            return result
        except Exception:
            text = FAILED
            raise
        finally:
            PRESS.reset(token)
            if not press.answered:
                # the send path logs a failure to answer; it never raises
                await event.answer(text, show_alert=text is not None)
