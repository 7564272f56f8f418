"""/deliveries, the unknown-delivery cards, and their Resend / Mark delivered / Show buttons.

A delivery whose outcome is unknown (the sending process stopped between the send and
the channel's confirmation) is shown to every admin once, in a private chat, as a card
(sent by the leader's worker through :class:`UnknownCards`). Only admins may press its
buttons, and only in a private chat (see bot/middlewares.py); the first press settles
the row, later ones are told what happened. Stale or crafted data is answered as an
unknown button, never a crash.
"""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import DeliveriesPageCb, DeliveryCb
from bot.middlewares import admin_only
from bot.routers.runs import UsageError
from bot.sending import send_parts
from bot.views import (
    deliveries_text,
    delivery_full,
    delivery_outcome,
    unknown_card_text,
)
from core.delivery.deliveries import CONFIRMABLE, RESENDABLE, Delivery
from core.facade import Facade

log = logging.getLogger("openclaw.bot")
USAGE = "Usage: /deliveries [page] — failed and unknown deliveries, newest first"
ACTIONS = ("resend", "delivered", "show")
MAX_PAGE = 1_000_000  # as the ◀ ▶ buttons' bound: a page's offset stays far from overflow


def _buttons(kb: InlineKeyboardBuilder, d: Delivery, at: int, numbered: bool) -> None:
    """Resend and Show; Mark delivered too while its outcome is unknown."""
    tag = f" #{d.id}" if numbered else ""
    if d.status in RESENDABLE:
        kb.button(
            text=f"🔁 Resend{tag}", callback_data=DeliveryCb(action="resend", row_id=d.id, at=at)
        )
    if d.status in CONFIRMABLE:
        kb.button(
            text=f"✅ Mark delivered{tag}",
            callback_data=DeliveryCb(action="delivered", row_id=d.id, at=at),
        )
    kb.button(text=f"📄 Show{tag}", callback_data=DeliveryCb(action="show", row_id=d.id, at=at))


def card_keyboard(d: Delivery) -> InlineKeyboardMarkup:
    """A card's buttons."""
    kb = InlineKeyboardBuilder()
    _buttons(kb, d, 0, numbered=False)
    return kb.as_markup()


class UnknownCards:
    """The bot's side of :meth:`core.delivery.deliveries.Deliveries.ask`: a card to each
    admin's private chat."""

    def __init__(self, bot: Bot, admins: list[int]) -> None:
        self.bot = bot
        self.admins = admins

    async def notify(self, d: Delivery) -> bool:
        """Send the card to every admin; True when at least one got it."""
        reached = False
        for admin in self.admins:
            if admin <= 0:  # a group: a message's text goes to private chats only
                continue
            try:
                await self.bot.send_message(
                    admin, unknown_card_text(d), reply_markup=card_keyboard(d)
                )
                reached = True
            except Exception as e:  # one blocked admin must not stop the others
                log.warning("delivery #%s: card not sent to admin %s: %s", d.id, admin, e)
        return reached


async def deliveries_page(facade: Facade, page: int) -> tuple[str, InlineKeyboardMarkup]:
    """Page ``page`` (from 1) of failed and unknown rows, with each row's buttons, ◀ ▶."""
    size = facade.config.telegram.page_size
    rows, total = await facade.deliveries.attention(size, (page - 1) * size)
    pages = max(1, -(-total // size))
    if not rows and page > pages:  # past the end (rows settled meanwhile): the last page
        page = pages
        rows, total = await facade.deliveries.attention(size, (page - 1) * size)
    kb = InlineKeyboardBuilder()
    widths = []
    for d in rows:
        _buttons(kb, d, page, numbered=True)
        widths.append(3 if d.status in CONFIRMABLE else 2)
    nav = []
    if page > 1:
        kb.button(text="◀", callback_data=DeliveriesPageCb(page=page - 1))
        nav.append(1)
    if page < pages:
        kb.button(text="▶", callback_data=DeliveriesPageCb(page=page + 1))
        nav.append(1)
    if nav:
        widths.append(len(nav))
    if widths:
        kb.adjust(*widths)
    return deliveries_text(rows, page, pages, total), kb.as_markup()


async def list_deliveries(message: Message, command: CommandObject, facade: Facade) -> None:
    """/deliveries [page] (admins only)."""
    arg = (command.args or "").strip()
    if arg and not (arg.isdecimal() and arg.isascii() and 1 <= int(arg) <= MAX_PAGE):
        raise UsageError(USAGE)
    text, kb = await deliveries_page(facade, int(arg) if arg else 1)
    await message.answer(text, reply_markup=kb)


async def turn_deliveries_page(
    query: CallbackQuery, callback_data: DeliveriesPageCb, facade: Facade
) -> None:
    """◀ / ▶."""
    text, kb = await deliveries_page(facade, max(1, callback_data.page))
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=kb)
    await query.answer()


async def delivery_button(
    query: CallbackQuery, callback_data: DeliveryCb, facade: Facade, bot: Bot
) -> None:
    """Resend / Mark delivered / Show (admins only). The first Resend or Mark delivered
    settles the row; the card (or the /deliveries page) is redrawn to say so."""
    action, row_id = callback_data.action, callback_data.row_id
    if action not in ACTIONS:  # crafted: never guess what it meant
        await query.answer("Unknown action; use the buttons.", show_alert=True)
        return
    if action == "show":
        d = await facade.deliveries.get(row_id)
        if d is None:
            await query.answer(f"No delivery #{row_id}.", show_alert=True)
            return
        await query.answer()
        chat_id = query.message.chat.id if query.message else query.from_user.id
        await send_parts(bot, chat_id, delivery_full(d))
        return
    by = f"@{query.from_user.username}" if query.from_user.username else str(query.from_user.id)
    if action == "resend":
        settled = await facade.deliveries.resend(row_id, by)
    else:
        settled = await facade.deliveries.mark_delivered(row_id, by)
    d = settled.delivery
    if d is None:
        await query.answer(f"No delivery #{row_id}.", show_alert=True)
        return
    if not settled.done:
        await query.answer(
            f"Delivery #{row_id} is {d.status} now: nothing to do.{_note(d)}", show_alert=True
        )
        return
    done = "will be sent again" if action == "resend" else "is recorded delivered (your word)"
    await query.answer(f"Delivery #{row_id} {done}.")
    if not isinstance(query.message, Message):
        return
    if callback_data.at:  # a /deliveries page: redraw it without the row
        text, kb = await deliveries_page(facade, callback_data.at)
        await query.message.edit_text(text, reply_markup=kb)
    else:  # a card: the outcome, no buttons left
        await query.message.edit_text(delivery_outcome(d, action, by))


def _note(d: Delivery) -> str:
    return f" ({d.note})" if d.note else ""


def make_deliveries_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="deliveries")
    admin_only(
        router.message,
        list_deliveries,
        "Only admins can see and settle deliveries.",
        Command("deliveries"),
    )
    admin_only(
        router.callback_query,
        turn_deliveries_page,
        "Only admins can see and settle deliveries.",
        DeliveriesPageCb.filter(),
    )
    admin_only(
        router.callback_query,
        delivery_button,
        "Only admins can resend, confirm or show deliveries.",
        DeliveryCb.filter(),
    )
    return router
