"""/agents: a paginated list; each agent opens a detail with Run now and Enable/Disable."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import AgentCb
from bot.middlewares import admin_only
from bot.reporter import RunReporter
from bot.text import truncate
from bot.views import agent_detail, agents_text
from core.agents.runs import Trigger
from core.facade import Facade


async def agents_page(facade: Facade, page: int) -> tuple[str, InlineKeyboardMarkup]:
    """One page of the agent list, with a button per agent and ◀ ▶."""
    rows = await facade.overview.agents()
    size = facade.config.telegram.page_size
    pages = max(1, -(-len(rows) // size))
    page = min(max(page, 0), pages - 1)
    shown = rows[page * size : (page + 1) * size]
    kb = InlineKeyboardBuilder()
    for i, row in enumerate(shown, start=page * size):
        kb.button(text=row.name, callback_data=AgentCb(action="open", idx=i))
    kb.adjust(2)
    nav = InlineKeyboardBuilder()
    if page > 0:
        nav.button(text="◀", callback_data=AgentCb(action="page", page=page - 1))
    if page < pages - 1:
        nav.button(text="▶", callback_data=AgentCb(action="page", page=page + 1))
    kb.attach(nav)
    return agents_text(shown, page, pages), kb.as_markup()


async def list_agents(message: Message, facade: Facade) -> None:
    """The first page."""
    text, kb = await agents_page(facade, 0)
    await message.answer(text, reply_markup=kb)


async def turn_page(query: CallbackQuery, callback_data: AgentCb, facade: Facade) -> None:
    """◀ / ▶."""
    text, kb = await agents_page(facade, callback_data.page)
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=kb)
    await query.answer()


async def _detail(facade: Facade, idx: int, is_admin: bool) -> tuple[str, InlineKeyboardMarkup]:
    rows = await facade.overview.agents()
    row = rows[idx]
    runs = await facade.runs.recent(row.name, limit=5)
    kb = InlineKeyboardBuilder()
    if is_admin:
        kb.button(text="▶️ Run now", callback_data=AgentCb(action="run", idx=idx))
        toggle = "disable" if row.enabled else "enable"
        kb.button(
            text=f"{'⏸ Disable' if row.enabled else '⏯ Enable'}",
            callback_data=AgentCb(action=toggle, idx=idx),
        )
    kb.button(text="⬅ All agents", callback_data=AgentCb(action="page", page=0))
    kb.adjust(2)
    return agent_detail(row, runs), kb.as_markup()


async def open_agent(
    query: CallbackQuery, callback_data: AgentCb, facade: Facade, is_admin: bool
) -> None:
    """An agent's detail."""
    if not 0 <= callback_data.idx < len(facade.config.agents):
        await query.answer("that agent is gone from the config", show_alert=True)
        return
    text, kb = await _detail(facade, callback_data.idx, is_admin)
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=kb)
    await query.answer()


async def admin_action(
    query: CallbackQuery, callback_data: AgentCb, facade: Facade, reporter: RunReporter
) -> None:
    """Run now / Enable / Disable (admins only: the buttons are checked again here)."""
    if not 0 <= callback_data.idx < len(facade.config.agents):
        await query.answer("that agent is gone from the config", show_alert=True)
        return
    name = facade.config.agents[callback_data.idx].name
    if callback_data.action == "run":
        # the run starts before the press is answered: a failed answer cannot stop it
        chat_id = query.message.chat.id if query.message else query.from_user.id
        run_id = await reporter.start(
            chat_id, name, lambda: facade.runner.start(name, Trigger.CHAT)
        )
        await query.answer(truncate(f"Started {name} as #{run_id}", 200))
        return
    disabled = callback_data.action == "disable"
    by = f"@{query.from_user.username or query.from_user.id}"
    await facade.states.set_disabled(name, disabled, f"disabled from Telegram by {by}")
    await query.answer(truncate(f"{name} {'disabled' if disabled else 'enabled'}", 200))
    text, kb = await _detail(facade, callback_data.idx, True)
    if isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=kb)


def make_agents_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="agents")
    router.message.register(list_agents, Command("agents"))
    router.callback_query.register(turn_page, AgentCb.filter(F.action == "page"))
    router.callback_query.register(open_agent, AgentCb.filter(F.action == "open"))
    admin_only(
        router.callback_query,
        admin_action,
        "Only admins can do that.",
        AgentCb.filter(F.action.in_({"run", "enable", "disable"})),
    )
    return router
