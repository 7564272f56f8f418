"""/tune [30d]: the routing advisor — per task, the share answered at each tier, the
escalations and why, the waste; the suggested tier changes with their effect per month.
Applying one stays on the machine with the config file (`openclaw tune --apply TASK`)."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.routers.runs import UsageError
from bot.sending import send_parts
from bot.text import escape
from core.engine.advisor import parse_period, tune_lines
from core.engine.tuning import tune_report
from core.facade import Facade

USAGE = "Usage: /tune [period], e.g. /tune 7d or /tune 30d (at most 365d)"


async def tune(message: Message, command: CommandObject, facade: Facade, bot: Bot) -> None:
    """The advisor's table and suggestions, as `openclaw tune` prints them."""
    period = (command.args or "30d").strip()
    try:
        since = parse_period(period)
    except ValueError as e:
        raise UsageError(f"{escape(str(e))}\n{USAGE}") from None
    report = await tune_report(facade.ledger, since)
    if not report.tasks:
        await message.answer(f"No task requests over the last {escape(period)}.")
        return
    n = len(report.suggestions)
    head = f"<b>Routing advisor, last {escape(period)}</b>: {n} suggestion" + "s" * (n != 1)
    body = escape("\n".join(tune_lines(report, period)))
    await send_parts(bot, message.chat.id, f"{head}\n<pre>{body}</pre>")


def make_tune_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="tune")
    router.message.register(tune, Command("tune"))
    return router
