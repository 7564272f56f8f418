"""/memory <agent>: what an agent stored with its ``remember`` tool (read-only)."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.routers.runs import NAME_SHOWN, UsageError, closest
from bot.sending import send_parts
from bot.text import escape, truncate
from core.agents.memory import Entry
from core.facade import Facade

VALUE_SHOWN = 300  # characters of one value: a glance, not the page an agent may have kept


def memory_text(agent: str, entries: list[Entry]) -> str:
    """The /memory reply: one block per entry, newest first (HTML)."""
    if not entries:
        return f"<b>{escape(agent)}</b> remembers nothing yet."
    lines = [f"<b>{escape(agent)}</b> remembers {len(entries)} key{'s' * (len(entries) != 1)}:"]
    for e in entries:
        run = f" · run #{e.run_id}" if e.run_id is not None else ""
        lines += [
            "",
            f"<code>{escape(e.key)}</code> · {escape(e.updated_at)}{run}",
            escape(truncate(e.value, VALUE_SHOWN)),
        ]
    return "\n".join(lines)


async def show_memory(message: Message, command: CommandObject, facade: Facade, bot: Bot) -> None:
    """/memory <agent>: its entries, split over messages when long."""
    name = (command.args or "").strip()
    if not name or facade.config.agent(name) is None:
        what = f"No agent named <code>{escape(truncate(name, NAME_SHOWN))}</code>. " if name else ""
        raise UsageError(f"{what}Usage: /memory &lt;agent&gt;\nAgents: {closest(facade, name)}")
    entries = await facade.memory.entries(name)
    await send_parts(bot, message.chat.id, memory_text(name, entries))


def make_memory_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="memory")
    router.message.register(show_memory, Command("memory"))
    return router
