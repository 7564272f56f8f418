"""/approvals and the Approve / Deny buttons; messages to admins when one is needed.

Approval requests go only to admins' private chats (an admin id is a user id, and a
private chat's id is the user's id); group chats never see a preview. Every copy is
recorded with the broker as soon as it is sent, so a decision closes all of them.

Every instance plugs these in; on a shared database the broker calls ``notify`` and
``close`` on the leader only (its sends count against the one Telegram limit), and
``watch`` where the run waits (the progress of a run this instance reports).
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import ApprovalCb
from bot.middlewares import admin_only
from bot.reporter import RunReporter
from bot.views import approval_outcome, approval_text
from core.engine.approvals import ApprovalRecord, Copy, CopyShown
from core.facade import Facade

log = logging.getLogger("openclaw.bot")
NOT_MODIFIED = "message is not modified"  # the copy already shows this: done
GONE = ("message to edit not found", "message can't be edited")  # nothing left to close


def approval_keyboard(approval_id: int) -> InlineKeyboardMarkup:
    """Approve / Deny."""
    kb = InlineKeyboardBuilder()
    kb.button(
        text="✅ Approve", callback_data=ApprovalCb(action="approve", approval_id=approval_id)
    )
    kb.button(text="❌ Deny", callback_data=ApprovalCb(action="deny", approval_id=approval_id))
    return kb.as_markup()


def _why(bot: Bot, e: Exception) -> str:
    """A failed send, said briefly and without the bot token (a network error may quote
    the request URL, which holds it)."""
    text = e.message if isinstance(e, TelegramAPIError) else f"{type(e).__name__}: {e}"
    return text.replace(bot.token, "<token>")[:200]


class ApprovalMessages:
    """The bot's side of the approval broker: ask every admin, then show the outcome."""

    def __init__(self, bot: Bot, admins: list[int], reporter: RunReporter) -> None:
        self.bot = bot
        self.admins = admins
        self.reporter = reporter

    async def notify(self, record: ApprovalRecord, shown: CopyShown) -> list[str]:
        """Send each admin the request with buttons, all at once (the send path paces and
        retries each); ``shown`` records each copy as it lands. Returns why each admin who
        could not be reached was not."""
        if not self.admins:
            return ["[telegram] admins is empty"]
        results = await asyncio.gather(*(self._ask(record, admin, shown) for admin in self.admins))
        return [why for why in results if why is not None]

    async def _ask(self, record: ApprovalRecord, admin: int, shown: CopyShown) -> str | None:
        if admin <= 0:  # a group or channel id: previews never go where others read them
            log.warning("approval #%s: not sent to %s, which is not a user id", record.id, admin)
            return f"admin {admin}: not a user id (approvals go to private chats only)"
        try:
            msg = await self.bot.send_message(
                admin, approval_text(record), reply_markup=approval_keyboard(record.id)
            )
        except Exception as e:  # one blocked admin must not stop the others
            why = _why(self.bot, e)
            log.warning("approval #%s could not be sent to admin %s: %s", record.id, admin, why)
            return f"admin {admin}: {why}"
        await shown(admin, msg.message_id)
        return None

    def watch(self, record: ApprovalRecord) -> None:
        """A run here waits for the approval, or got its outcome: a line in its progress."""
        if record.status == "pending":
            line = f"waiting for an admin to approve {record.request.subject} (#{record.id})"
        else:
            line = f"approval #{record.id}: {record.status}"
        self.reporter.note_run(record.request.run_id, line)

    async def close(self, record: ApprovalRecord, copies: list[Copy] | None = None) -> None:
        """Edit copies to the outcome (who decided, or expired), with no buttons left:
        every copy on the decision itself, or the late ``copies`` given."""
        if copies is None:
            copies = record.messages
        await asyncio.gather(*(self._close_copy(record, chat, mid) for chat, mid in copies))

    async def _close_copy(self, record: ApprovalRecord, chat_id: int, message_id: int) -> None:
        try:
            # no reply_markup: the edit removes the inline keyboard
            await self.bot.edit_message_text(
                approval_outcome(record), chat_id=chat_id, message_id=message_id
            )
        except TelegramBadRequest as e:
            if NOT_MODIFIED in e.message:
                return
            level = logging.INFO if any(g in e.message for g in GONE) else logging.WARNING
            log.log(level, "approval #%s: copy in %s not closed: %s", record.id, chat_id, e.message)
        except Exception as e:
            log.warning(
                "approval #%s: copy in %s not closed: %s", record.id, chat_id, _why(self.bot, e)
            )


async def pending(message: Message, facade: Facade) -> None:
    """Pending approvals, each with its buttons (admins only); each copy is recorded, so
    a decision closes it too."""
    records = await facade.approvals.pending()
    if not records:
        await message.answer("No approvals are pending.")
        return
    for record in records:
        sent = await message.answer(
            approval_text(record), reply_markup=approval_keyboard(record.id)
        )
        await facade.approvals.add_copy(record.id, sent.chat.id, sent.message_id)


async def decide(query: CallbackQuery, callback_data: ApprovalCb, facade: Facade) -> None:
    """First decision wins; later presses are told what happened. Admins only: that is
    also every press in a group chat (see AccessMiddleware)."""
    if callback_data.action not in ("approve", "deny"):  # crafted: never read it as a deny
        await query.answer("Unknown action; use the Approve or Deny button.", show_alert=True)
        return
    by = f"@{query.from_user.username}" if query.from_user.username else str(query.from_user.id)
    taken, text = await facade.approvals.resolve(
        callback_data.approval_id, callback_data.action == "approve", by
    )
    await query.answer(text, show_alert=True)
    if not taken and query.message is not None:
        # a press on a copy that still has buttons: its closing failed earlier, retry it
        await facade.approvals.close_copy(
            callback_data.approval_id, query.message.chat.id, query.message.message_id
        )


def make_approvals_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="approvals")
    admin_only(
        router.message, pending, "Only admins can see and decide approvals.", Command("approvals")
    )
    admin_only(
        router.callback_query, decide, "Only admins can approve or deny.", ApprovalCb.filter()
    )
    return router
