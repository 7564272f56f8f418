"""/schedule [24h|7d|…]: each scheduled agent's expected fires vs what happened to them
(ok, late, failed, missed, quiet, or no run at all), the problems listed."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.routers.runs import UsageError
from bot.sending import send_parts
from bot.text import escape
from core.agents.assurance import parse_period, schedule_lines, summary
from core.facade import Facade

USAGE = "Usage: /schedule [period], e.g. /schedule 24h or /schedule 7d (at most 31d)"


async def schedule(message: Message, command: CommandObject, facade: Facade, bot: Bot) -> None:
    """The summary, a line per agent, the problem fires newest first."""
    period = (command.args or "24h").strip()
    try:
        since = parse_period(period)
    except ValueError as e:
        raise UsageError(f"{escape(str(e))}\n{USAGE}") from None
    now = facade.schedule.clock()
    fires = await facade.schedule.fires(now - since, now)
    if not fires:
        await message.answer(f"No fires expected over the last {escape(period)}.")
        return
    lines = schedule_lines(fires, facade.config.reports.timezone)
    html = (
        f"<b>Schedule, last {escape(period)}</b>: {escape(summary(fires))}\n"
        f"<pre>{escape(chr(10).join(lines))}</pre>"
    )
    await send_parts(bot, message.chat.id, html)


def make_schedule_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="schedule")
    router.message.register(schedule, Command("schedule"))
    return router
