"""/usage [today|7d|30d]: tier shares vs the target pyramid, cost per model, a chart."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message

from bot.chart import usage_png
from bot.routers.runs import UsageError
from bot.views import model_costs_text, usage_text
from core.facade import Facade

PERIODS = {"today": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


async def usage(message: Message, command: CommandObject, facade: Facade) -> None:
    """A text table, then the PNG chart."""
    period = (command.args or "7d").strip()
    if period not in PERIODS:
        raise UsageError("Usage: /usage [today|7d|30d]")
    since = PERIODS[period]
    by_tier = await facade.ledger.report(since, "tier")
    by_model = await facade.ledger.report(since, "model")
    by_day = await facade.ledger.report(since, "day")
    await message.answer(usage_text(by_tier, period) + "\n" + model_costs_text(by_model))
    png = await asyncio.to_thread(usage_png, by_tier, by_day, period)
    await message.answer_photo(
        BufferedInputFile(png, filename=f"usage-{period}.png"),
        caption=f"Tier share and daily cost, {period}",
    )


def make_usage_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="usage")
    router.message.register(usage, Command("usage"))
    return router
