"""Runs started from the chat: a status message edited as attempts happen, then the result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import RunCb
from bot.text import escape, split_html
from bot.views import attempt_line, progress_text, run_result
from core.app import App
from core.ledger import RequestMeta
from core.runs import Run
from core.types import Attempt

log = logging.getLogger("openclaw.bot")
EDIT_EVERY_S = 1.0  # Telegram allows about one edit a second per chat


@dataclass
class Progress:
    chat_id: int
    message_id: int
    agent: str
    run_id: int
    lines: list[str] = field(default_factory=list)
    editing: asyncio.Task[None] | None = None


def result_keyboard(run_id: int) -> InlineKeyboardMarkup:
    """*Rerun* and *Details* under a result."""
    kb = InlineKeyboardBuilder()
    kb.button(text="🔁 Rerun", callback_data=RunCb(action="rerun", run_id=run_id))
    kb.button(text="🧭 Details", callback_data=RunCb(action="details", run_id=run_id))
    return kb.as_markup()


class RunReporter:
    """Tracks chat-started runs; an engine observer feeds it the attempts."""

    def __init__(self, app: App, bot: Bot) -> None:
        self.app = app
        self.bot = bot
        self.tracked: dict[str, Progress] = {}
        self._tasks: set[asyncio.Task[Run]] = set()

    def spawn(self, chat_id: int, agent: str, start: Callable[[], Awaitable[int]]) -> None:
        """Report a run from a task of its own: it outlives the update that started it."""
        task = asyncio.create_task(self.run_in_chat(chat_id, agent, start))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Run]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reporting a run failed", exc_info=task.exception())

    async def close(self) -> None:
        """Stop reporting (the runs themselves belong to the runner)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def observe(self, meta: RequestMeta, attempt: Attempt) -> None:
        """Engine observer: note an attempt of a tracked run and schedule an edit."""
        prog = self.tracked.get(meta.run_id or "")
        if prog is not None:
            self.note(prog, attempt_line(attempt))

    def note_run(self, run_id: str | None, line: str) -> None:
        """A line for a tracked run from elsewhere (e.g. waiting for an approval)."""
        prog = self.tracked.get(run_id or "")
        if prog is not None:
            self.note(prog, line)

    def note(self, prog: Progress, line: str) -> None:
        prog.lines.append(line)
        if prog.editing is None or prog.editing.done():
            prog.editing = asyncio.create_task(self._edit_soon(prog))

    async def _edit_soon(self, prog: Progress) -> None:
        await asyncio.sleep(EDIT_EVERY_S)  # gather the attempts of a second into one edit
        with contextlib.suppress(TelegramAPIError):
            await self.bot.edit_message_text(
                progress_text(prog.agent, prog.run_id, prog.lines),
                chat_id=prog.chat_id,
                message_id=prog.message_id,
            )

    async def run_in_chat(
        self, chat_id: int, agent: str, start: Callable[[], Awaitable[int]]
    ) -> Run:
        """Post a status message, start the run, keep ``typing`` on, then post the result."""
        status = await self.bot.send_message(chat_id, progress_text(agent, None, []))
        async with ChatActionSender.typing(bot=self.bot, chat_id=chat_id):
            run_id = await start()
            prog = Progress(chat_id, status.message_id, agent, run_id)
            self.tracked[str(run_id)] = prog
            try:
                with contextlib.suppress(TelegramAPIError):
                    await self.bot.edit_message_text(
                        progress_text(agent, run_id, []),
                        chat_id=chat_id,
                        message_id=status.message_id,
                    )
                run = await self.app.runner.wait(run_id)
            finally:
                self.tracked.pop(str(run_id), None)
                if prog.editing is not None:
                    prog.editing.cancel()
        done = "\n".join([f"Run #{run.id} of {agent}: {run.status}", *prog.lines[-8:]])
        with contextlib.suppress(TelegramAPIError):
            await self.bot.edit_message_text(
                escape(done), chat_id=chat_id, message_id=status.message_id
            )
        parts = split_html(run_result(run))
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            await self.bot.send_message(
                chat_id, part, reply_markup=result_keyboard(run.id) if last else None
            )
        return run
