"""The Telegram channel of the delivery outbox: digests through the bot's one send path."""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)

from bot.limiter import SendLimiter
from bot.sending import PartialSend, SendPath, bulk, send_parts
from core.delivery.errors import DeliveryError


class TelegramChannel:
    """Sends HTML messages within Telegram's limits; confirmation = the message ids.

    Pacing, 429 waits and short retries are the bot's :class:`~bot.sending.SendPath`,
    shared with every other send of the bot; digests go as ``bulk``, after replies that
    wait for the same chat. A ``limiter`` given here becomes that path's (tests and
    benchmarks scale the limits). The send path marks each Bot API request that may
    deliver (:func:`core.delivery.channels.on_the_wire`): a row cut off while it waited
    its turn or a 429 was not sent.
    """

    reports_wire = True

    def __init__(self, bot: Bot, limiter: SendLimiter | None = None) -> None:
        self.bot = bot
        self.path = SendPath.of(bot)
        if limiter is not None:
            self.path.use(limiter)

    @property
    def limiter(self) -> SendLimiter:
        """The limiter shared by every send of the bot."""
        return self.path.limiter

    async def send(self, name: str, body: str, sent: str = "", key: str = "") -> str:
        """Send ``body`` (Telegram HTML) to chat ``name``, split at 4096 UTF-16 units.

        ``sent`` lists the message ids of parts an earlier try delivered: those are not
        sent again. A 429 is waited out by the send path (a longer one than it waits goes
        back to the outbox's schedule); 403 (blocked, kicked) and 400 fail for good.
        """
        try:
            chat_id = int(name)
        except ValueError:
            raise DeliveryError(
                f"telegram target {name!r} is not a chat id", permanent=True
            ) from None
        done = [int(i) for i in sent.split(",") if i]
        try:
            with bulk():
                ids = await send_parts(self.bot, chat_id, body, done=done)
        except PartialSend as e:
            error = self._error(chat_id, e.cause)
            error.sent = ",".join(map(str, e.sent))  # resume here next time, not at part one
            raise error from None
        return ",".join(map(str, ids))

    def _error(self, chat_id: int, e: TelegramAPIError) -> DeliveryError:
        if isinstance(e, TelegramRetryAfter):
            return DeliveryError(
                f"Telegram asks to wait {e.retry_after}s", retry_after_s=float(e.retry_after)
            )
        if isinstance(e, TelegramForbiddenError):
            return DeliveryError(f"Telegram refused chat {chat_id}: {e.message}", permanent=True)
        if isinstance(e, TelegramBadRequest):
            return DeliveryError(f"Telegram rejected the message: {e.message}", permanent=True)
        # 5xx and network errors (after the send path's retries), and anything unforeseen;
        # network errors may quote the request URL, which holds the bot token
        text = str(e).replace(self.bot.token, "<token>")
        return DeliveryError(f"Telegram unavailable: {text}")
