"""Access control: who may use the bot, and where admins act as admins.

Updates from users on neither list are dropped, silently. Admin rights hold only in a
private chat with the bot: in a group everything the bot answers is read by members
who may not be on any list, so there an admin is treated as a read-only user, and the
admin-only commands and buttons get a short "use a private chat" answer instead.

Every admin-only handler is registered with :func:`admin_only`: one filter
(:data:`IS_ADMIN`) guards them all, and whoever else sends the command or presses the
button gets that handler's refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.event.telegram import TelegramEventObserver
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, Filter
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, Update, User

from bot.callbacks import AgentCb, ApprovalCb, DeliveriesPageCb, DeliveryCb, RunCb
from core.cluster.updates import UpdateLog
from core.config.models import TelegramConfig
from core.errors import StoreUnavailable

log = logging.getLogger("openclaw.bot")

ADMIN_ONLY_COMMANDS = Command("run", "approvals", "deliveries", "drill")
# (callback prefix, action) of admin-only buttons; None: every action of that prefix
ADMIN_ONLY_BUTTONS: frozenset[tuple[str, str | None]] = frozenset(
    {
        (AgentCb.__prefix__, "run"),
        (AgentCb.__prefix__, "enable"),
        (AgentCb.__prefix__, "disable"),
        (RunCb.__prefix__, "rerun"),
        (ApprovalCb.__prefix__, None),
        (DeliveryCb.__prefix__, None),  # Show too: a message's text is not every viewer's
        (DeliveriesPageCb.__prefix__, None),
    }
)
PRIVATE_ONLY = "Admin commands work only in a private chat with me"


def is_private(chat: Chat | None) -> bool:
    """A one-to-one chat with the bot (a button on an inline message has no chat: not one)."""
    return chat is not None and chat.type == ChatType.PRIVATE


def admin_only_button(data: str | None) -> bool:
    """Whether callback data (as packed by aiogram: ``prefix:action:…``) is an admin-only
    button. Crafted data with an admin-only prefix counts as one."""
    if not data:
        return False
    prefix, _, rest = data.partition(":")
    action = rest.partition(":")[0]
    return (prefix, None) in ADMIN_ONLY_BUTTONS or (prefix, action) in ADMIN_ONLY_BUTTONS


class AccessMiddleware(BaseMiddleware):
    """Outer middleware on every update: the allowlist, and ``is_admin`` for handlers —
    true only for an admin in a private chat, so every handler's admin check also holds
    in groups."""

    def __init__(self, config: TelegramConfig) -> None:
        self.admins = set(config.admins)
        self.allowed = self.admins | set(config.allowed_users)
        self._logged: set[int] = set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.id not in self.allowed:
            if user is not None and user.id not in self._logged:  # once per user
                self._logged.add(user.id)
                log.warning(
                    "ignoring Telegram user %s (@%s): not in admins or allowed_users",
                    user.id,
                    user.username,
                )
            return None
        private = is_private(data.get("event_chat"))
        data["is_admin"] = private and user.id in self.admins
        admin_in_group = not private and user.id in self.admins
        if admin_in_group and isinstance(event, Update) and await self._refused(event, data["bot"]):
            return None
        return await handler(event, data)

    async def _refused(self, update: Update, bot: Bot) -> bool:
        """An admin used an admin-only command or button outside a private chat: say where
        it works instead (the handlers would only say "Only admins")."""
        try:
            if update.message is not None and await ADMIN_ONLY_COMMANDS(update.message, bot):
                await _refuse_message(update.message, bot)
                return True
            query = update.callback_query
            if query is not None and admin_only_button(query.data):
                await _refuse_button(query)
                return True
        except TelegramAPIError as e:  # the refusal itself could not be sent: still refused
            log.info("could not send the private-chat note: %s", e.message)
            return True
        return False


async def _refuse_message(message: Message, bot: Bot) -> None:
    me = await bot.me()
    where = f": open @{me.username} and send it there." if me.username else "."
    await message.reply(PRIVATE_ONLY + where)


async def _refuse_button(query: CallbackQuery) -> None:
    await query.answer(PRIVATE_ONLY + ".", show_alert=True)


class IsAdmin(Filter):
    """Passes an admin in a private chat (``is_admin``, set by :class:`AccessMiddleware`)."""

    async def __call__(self, event: TelegramObject, is_admin: bool = False) -> bool:
        return is_admin


IS_ADMIN = IsAdmin()


def admin_only(
    observer: TelegramEventObserver,
    handler: Callable[..., Awaitable[Any]],
    refusal: str,
    *filters: Any,
) -> None:
    """Register ``handler`` for admins only; anyone else whose update passes ``filters``
    is answered ``refusal`` (on a button, as an alert) and nothing else happens."""
    observer.register(handler, *filters, IS_ADMIN)

    async def refuse(event: Message | CallbackQuery) -> None:
        if isinstance(event, CallbackQuery):
            await event.answer(refusal, show_alert=True)
        else:
            await event.answer(refusal)

    observer.register(refuse, *filters)


class PolledOnce(BaseMiddleware):
    """Outer middleware on polled updates when instances share the database: each
    ``update_id`` is handled by one instance. A leader frozen (SIGSTOP) inside getUpdates
    and replaced may wake up with an answer the new leader was given too; without this
    both would run the same /run. A store that cannot record lets it through (handled
    at least once, as on one instance) with one warning per outage."""

    def __init__(self, updates: UpdateLog) -> None:
        self.updates = updates
        self._down = False

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, Update):
            try:
                first = await self.updates.first_time(event.update_id)
            except StoreUnavailable as e:
                if not self._down:
                    log.warning("Telegram: polled updates cannot be recorded (%s)", e)
                self._down, first = True, True
            else:
                self._down = False
            if not first:
                log.info("Telegram: update %s was taken by another instance", event.update_id)
                return None
        return await handler(event, data)
