"""/start and /help."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.views import help_text

start_router = Router(name="start")


@start_router.message(CommandStart())
@start_router.message(Command("help"))
async def start(message: Message, is_admin: bool) -> None:
    """What the bot does and the commands this user may use."""
    await message.answer(help_text(is_admin))
