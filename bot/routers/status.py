"""/status: provider health per tier, breakers, queues, approvals, deliveries, uptime."""

from __future__ import annotations

import time

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.views import status_text
from core.facade import Facade


async def status(message: Message, facade: Facade, started_at: float) -> None:
    """The same snapshot as /api/status, as text."""
    snap = await facade.overview.status(round(time.monotonic() - started_at, 1))
    await message.answer(status_text(snap))


def make_status_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="status")
    router.message.register(status, Command("status"))
    return router
