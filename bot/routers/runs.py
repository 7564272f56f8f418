"""/run, /runs, and the Rerun / Details buttons."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import RunCb
from bot.middlewares import admin_only
from bot.reporter import RunReporter
from bot.sending import send_parts
from bot.text import escape, truncate
from bot.views import run_line, trace_text
from core.agents.runs import Trigger
from core.facade import Facade
from core.parsing import shown
from core.suggest import close_matches

NAME_SHOWN = 40  # characters of a wrong agent name quoted back; the rest is noise


class UsageError(Exception):
    """A command with wrong arguments: the message is the usage to show."""


def closest(facade: Facade, name: str) -> str:
    """The configured agents closest to ``name`` (else the first few), as HTML."""
    names = [a.name for a in facade.config.agents]
    pick = close_matches(name, names) or names[:8]
    return ", ".join(f"<code>{escape(n)}</code>" for n in pick) or "none configured"


def split_args(args: str | None) -> tuple[str, str]:
    """``"<agent> [message]"`` → (agent, message); the name ends at any whitespace, so a
    message on the next line is the message, not part of the name."""
    words = (args or "").split(maxsplit=1)
    return (words[0] if words else ""), (words[1].strip() if len(words) > 1 else "")


async def run_agent(
    message: Message, command: CommandObject, facade: Facade, reporter: RunReporter
) -> None:
    """/run <agent> [extra message] (admins only): progress edits, then the result with
    Rerun."""
    name, extra = split_args(command.args)
    if not name or facade.config.agent(name) is None:
        what = f"No agent named <code>{escape(truncate(name, NAME_SHOWN))}</code>. " if name else ""
        raise UsageError(
            f"{what}Usage: /run &lt;agent&gt; [extra message]\nAgents: {closest(facade, name)}"
        )
    await reporter.start(
        message.chat.id,
        name,
        lambda: facade.runner.start(name, Trigger.CHAT, message=extra or None),
    )


async def list_runs(message: Message, command: CommandObject, facade: Facade) -> None:
    """/runs [agent]: recent runs, each with Rerun."""
    name = (command.args or "").strip() or None
    if name is not None and facade.config.agent(name) is None:
        raise UsageError(
            f"No agent named {escape(shown(name))}. Usage: /runs [agent]\n"
            f"Agents: {closest(facade, name)}"
        )
    runs = await facade.runs.recent(name, limit=10)
    if not runs:
        await message.answer("No runs yet.")
        return
    kb = InlineKeyboardBuilder()
    for run in runs:
        kb.button(text=f"🔁 #{run.id}", callback_data=RunCb(action="rerun", run_id=run.id))
    kb.adjust(5)
    await message.answer("\n".join(run_line(r) for r in runs), reply_markup=kb.as_markup())


async def rerun(
    query: CallbackQuery, callback_data: RunCb, facade: Facade, reporter: RunReporter
) -> None:
    """A new run of the same agent and message (admins only); its parent is the old one.
    The run starts before the press is answered: a failed or late answer cannot stop it."""
    old = await facade.runs.get(callback_data.run_id)
    if old is None or facade.config.agent(old.agent) is None:
        await query.answer("That run's agent is gone.", show_alert=True)
        return
    chat_id = query.message.chat.id if query.message else query.from_user.id
    run_id = await reporter.start(chat_id, old.agent, lambda: facade.runner.rerun(old.id))
    await query.answer(f"Rerunning #{old.id} as #{run_id}…")


async def details(query: CallbackQuery, callback_data: RunCb, facade: Facade, bot: Bot) -> None:
    """The route trace: every attempt with tier, model, outcome, latency, tokens, cost;
    then the tool-loop steps."""
    run = await facade.runs.get(callback_data.run_id)
    if run is None:
        await query.answer("No such run.", show_alert=True)
        return
    steps = await facade.ledger.trace(run.id)
    run_steps = await facade.steps.for_run(run.id)
    await query.answer()
    if query.message is not None:
        await send_parts(bot, query.message.chat.id, trace_text(run, steps, run_steps))


def make_runs_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="runs")
    admin_only(router.message, run_agent, "Only admins can run agents.", Command("run"))
    router.message.register(list_runs, Command("runs"))
    admin_only(
        router.callback_query, rerun, "Only admins can rerun.", RunCb.filter(F.action == "rerun")
    )
    router.callback_query.register(details, RunCb.filter(F.action == "details"))
    return router
