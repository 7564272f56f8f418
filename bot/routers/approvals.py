"""/approvals and the Approve / Deny buttons; messages to admins when one is needed."""

from __future__ import annotations

import contextlib

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import ApprovalCb
from bot.reporter import RunReporter
from bot.views import approval_outcome, approval_text
from core.app import App
from core.approvals import ApprovalRecord


def approval_keyboard(approval_id: int) -> InlineKeyboardMarkup:
    """Approve / Deny."""
    kb = InlineKeyboardBuilder()
    kb.button(
        text="✅ Approve", callback_data=ApprovalCb(action="approve", approval_id=approval_id)
    )
    kb.button(text="❌ Deny", callback_data=ApprovalCb(action="deny", approval_id=approval_id))
    return kb.as_markup()


class ApprovalMessages:
    """The bot's side of the approval broker: ask every admin, then show the outcome."""

    def __init__(self, bot: Bot, admins: list[int], reporter: RunReporter) -> None:
        self.bot = bot
        self.admins = admins
        self.reporter = reporter

    async def notify(self, record: ApprovalRecord) -> list[tuple[int, int]]:
        """Send each admin the request with buttons; returns where they were sent."""
        self.reporter.note_run(
            record.request.run_id,
            f"waiting for an admin to approve tier {record.request.tier} (#{record.id})",
        )
        shown = []
        for admin in self.admins:
            with contextlib.suppress(TelegramAPIError):  # one blocked admin must not stop it
                msg = await self.bot.send_message(
                    admin, approval_text(record), reply_markup=approval_keyboard(record.id)
                )
                shown.append((admin, msg.message_id))
        return shown

    async def close(self, record: ApprovalRecord) -> None:
        """Edit every admin's message: who decided, or expired; no more buttons."""
        self.reporter.note_run(record.request.run_id, f"approval #{record.id}: {record.status}")
        for chat_id, message_id in record.messages:
            with contextlib.suppress(TelegramAPIError):
                await self.bot.edit_message_text(
                    approval_outcome(record), chat_id=chat_id, message_id=message_id
                )


async def pending(message: Message, app: App, is_admin: bool) -> None:
    """Pending approvals, each with its buttons (admins only)."""
    if not is_admin:
        await message.answer("Only admins can see and decide approvals.")
        return
    records = await app.approvals.pending()
    if not records:
        await message.answer("No approvals are pending.")
        return
    for record in records:
        await message.answer(approval_text(record), reply_markup=approval_keyboard(record.id))


async def decide(query: CallbackQuery, callback_data: ApprovalCb, app: App, is_admin: bool) -> None:
    """First decision wins; later presses are told what happened."""
    if not is_admin:
        await query.answer("Only admins can approve or deny.", show_alert=True)
        return
    if callback_data.action not in ("approve", "deny"):  # crafted: never read it as a deny
        await query.answer("Unknown action; use the Approve or Deny button.", show_alert=True)
        return
    by = f"@{query.from_user.username}" if query.from_user.username else str(query.from_user.id)
    _, text = await app.approvals.resolve(
        callback_data.approval_id, callback_data.action == "approve", by
    )
    await query.answer(text, show_alert=True)


def make_approvals_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="approvals")
    router.message.register(pending, Command("approvals"))
    router.callback_query.register(decide, ApprovalCb.filter())
    return router
