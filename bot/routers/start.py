"""/start and /help."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.views import help_text


async def start(message: Message, is_admin: bool) -> None:
    """What the bot does and the commands this user may use."""
    await message.answer(help_text(is_admin))


def make_start_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="start")
    router.message.register(start, CommandStart())
    router.message.register(start, Command("help"))
    return router
