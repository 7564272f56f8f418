"""/budget: caps, spent, reserved, remaining, and the month-end forecast."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.views import budget_text
from core.facade import Facade


async def budget(message: Message, facade: Facade) -> None:
    """The same figures as GET /api/budget."""
    rows = await facade.budget.report() if facade.budget else []
    await message.answer(budget_text(rows, facade.config.budgets.timezone))


def make_budget_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="budget")
    router.message.register(budget, Command("budget"))
    return router
