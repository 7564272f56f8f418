"""/ask, /new, plain text, and replies to a run's message: talking to the models from the chat.

Each chat has one conversation at a time, the session ``chat:<chat id>:<n>``; /new opens
``n + 1``. The newest session of the chat is the current one, so a restart keeps the
conversation without any other state. A reply to a message the outbox delivered for a
run starts a child run of that agent which sees that run's messages only.
"""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command, CommandObject
from aiogram.types import Message as TgMessage
from aiogram.utils.chat_action import ChatActionSender

from bot.routers.runs import UsageError
from bot.sending import send_parts
from bot.text import escape, truncate
from core.agents.runs import Status
from core.errors import OpenClawError
from core.facade import Facade
from core.types import ChatRequest, Message

log = logging.getLogger("openclaw.bot")
HISTORY_MESSAGES = 20  # of the chat's session sent with each question (10 exchanges)
USAGE = "Usage: /ask [task:&lt;task&gt;|tier:&lt;n&gt;] &lt;question&gt;"
SHOWN = 40  # characters of a wrong task name quoted back


def session_prefix(chat_id: int) -> str:
    return f"chat:{chat_id}:"


def parse_ask(facade: Facade, args: str | None) -> tuple[str | None, int | None, str]:
    """``"[task:<t>|tier:<n>] <question>"`` → (task, tier, question); wrong arguments raise
    UsageError naming the valid values."""
    text = (args or "").strip()
    head, _, rest = text.partition(" ") if text[:5] in ("task:", "tier:") else ("", "", text)
    task: str | None = None
    tier: int | None = None
    cfg = facade.config
    if head.startswith("task:"):
        task = head[5:]
        if task not in cfg.tasks:
            names = ", ".join(f"<code>{escape(t)}</code>" for t in cfg.tasks) or "none"
            raise UsageError(
                f"No task named <code>{escape(truncate(task, SHOWN))}</code>. {USAGE}\n"
                f"Tasks: {names}"
            )
    elif head.startswith("tier:"):
        levels = ", ".join(map(str, cfg.levels))
        if not head[5:].isdigit() or cfg.tier(int(head[5:])) is None:
            raise UsageError(
                f"No tier <code>{escape(truncate(head[5:], SHOWN))}</code>. {USAGE}\n"
                f"Tiers: {levels}"
            )
        tier = int(head[5:])
    question = rest.strip()
    if not question:
        raise UsageError(USAGE)
    return task, tier, question


async def current_session(facade: Facade, chat_id: int) -> str:
    """The chat's conversation, opened if it has none yet."""
    n = await facade.sessions.newest(session_prefix(chat_id)) or 1
    sid = f"{session_prefix(chat_id)}{n}"
    await facade.sessions.open(sid, mode="chat", agent=None, run_id=None)
    return sid


async def answer(
    message: TgMessage, bot: Bot, facade: Facade, task: str | None, tier: int | None, text: str
) -> None:
    """Ask the engine with the chat's history; the exchange is kept only once answered."""
    chat_id = message.chat.id
    sid = await current_session(facade, chat_id)
    history = await facade.sessions.history(sid, limit=HISTORY_MESSAGES)
    user = message.from_user
    caller = f"telegram:{user.id}" if user else f"telegram:chat:{chat_id}"
    request = ChatRequest((*history, Message("user", text)), task=task, tier=tier, caller=caller)
    try:
        async with ChatActionSender.typing(bot=bot, chat_id=chat_id):
            result = await facade.engine.complete(request)
    except OpenClawError as e:  # all models failed, an approval denied, a budget cap
        await send_parts(bot, chat_id, f"❌ No answer: {escape(str(e))}")
        return
    except Exception:
        log.exception("/ask in chat %s failed", chat_id)
        await send_parts(bot, chat_id, "❌ No answer: an internal error (it is in the log).")
        return
    await facade.sessions.append(sid, "user", text)
    await facade.sessions.append(sid, "assistant", result.content)
    await send_parts(bot, chat_id, escape(result.content) or "<i>(an empty answer)</i>")


async def ask(message: TgMessage, command: CommandObject, bot: Bot, facade: Facade) -> None:
    """/ask [task:<t>|tier:<n>] <question>: an answer in the chat's conversation."""
    task, tier, question = parse_ask(facade, command.args)
    await answer(message, bot, facade, task, tier, question)


async def new(message: TgMessage, facade: Facade) -> None:
    """/new: the chat's next conversation; the old one stays stored."""
    prefix = session_prefix(message.chat.id)
    n = (await facade.sessions.newest(prefix) or 0) + 1
    await facade.sessions.open(f"{prefix}{n}", mode="chat", agent=None, run_id=None)
    await message.answer("New conversation started.")


async def plain(message: TgMessage, bot: Bot, facade: Facade) -> None:
    """Text in a private chat: a reply to a run's delivered message continues that run;
    anything else is an /ask."""
    text = message.text or ""
    replied = message.reply_to_message
    if replied is not None:
        target = f"telegram:{message.chat.id}"
        rid = await facade.runner.reply(target, str(replied.message_id), text)
        if rid is not None:
            await follow_reply(message, bot, facade, rid)
            return
    await answer(message, bot, facade, None, None, text)


async def follow_reply(message: TgMessage, bot: Bot, facade: Facade, rid: int) -> None:
    """The answer comes through the outbox; a failed run is told here, never silence."""
    async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id):
        run = await facade.runner.wait(rid)
    if run.status == Status.FAILED:
        await send_parts(
            bot,
            message.chat.id,
            f"❌ {escape(run.agent)} #{run.id} failed: {escape(run.error or 'no reason')}",
        )


def make_ask_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="ask")
    router.message.register(ask, Command("ask"))
    router.message.register(new, Command("new"))
    router.message.register(plain, F.chat.type == ChatType.PRIVATE, F.text, ~F.text.startswith("/"))
    return router
