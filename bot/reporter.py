"""Runs started from the chat: a status message edited as attempts happen, then the result.

The run is created first, before any message about it: nothing the chat does (a 429, a
502, a deleted status message) can stop it. Reporting runs in a task of its own, through
the bot's send path; the result goes out split like a digest, whole, with *Rerun* and
*Details* under its last part.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import RunCb
from bot.live import LiveMessage
from bot.sending import PartialSend, describe, send_parts
from bot.text import escape
from bot.views import attempt_line, progress_lines, progress_text, run_result
from core.agents.runner import AgentRunner
from core.agents.runs import Run
from core.agents.steps import Step
from core.engine.ledger import RequestMeta
from core.types import Attempt

log = logging.getLogger("openclaw.bot")
# pauses before resuming a result whose send failed (after the send path's own retries)
RESULT_RETRY_S = (2.0, 10.0, 30.0)


@dataclass
class Progress:
    agent: str
    run_id: int
    live: LiveMessage
    lines: list[str] = field(default_factory=list)


def result_keyboard(run_id: int) -> InlineKeyboardMarkup:
    """*Rerun* and *Details* under a result."""
    kb = InlineKeyboardBuilder()
    kb.button(text="🔁 Rerun", callback_data=RunCb(action="rerun", run_id=run_id))
    kb.button(text="🧭 Details", callback_data=RunCb(action="details", run_id=run_id))
    return kb.as_markup()


class RunReporter:
    """Tracks chat-started runs; an engine observer feeds it the attempts."""

    def __init__(self, runner: AgentRunner, bot: Bot) -> None:
        self.runner = runner
        self.bot = bot
        self.tracked: dict[str, Progress] = {}
        self._tasks: set[asyncio.Task[Run]] = set()

    async def start(self, chat_id: int, agent: str, start: Callable[[], Awaitable[int]]) -> int:
        """Create the run (``start`` returns its id), then report it to ``chat_id`` from a
        task of its own, which outlives the update that started it. Returns the run id."""
        run_id = await start()
        # tracked before anything else awaits: the run's first attempt is not missed
        prog = Progress(agent, run_id, LiveMessage(self.bot, chat_id))
        self.tracked[str(run_id)] = prog
        task = asyncio.create_task(self._report(prog))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return run_id

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

    def observe_step(self, step: Step) -> None:
        """Step observer: a tool call of a tracked run, one line as it happens (a model
        turn is left out: its attempts are shown already)."""
        if step.kind == "tool":
            self.note_run(str(step.run_id), step.line())

    def note_run(self, run_id: str | None, line: str) -> None:
        """A line for a tracked run from elsewhere (e.g. waiting for an approval)."""
        prog = self.tracked.get(run_id or "")
        if prog is not None:
            self.note(prog, line)

    def note(self, prog: Progress, line: str) -> None:
        """Add a progress line; the status message shows it within about a second."""
        prog.lines.append(line)
        prog.live.show(progress_text(prog.agent, prog.run_id, prog.lines))

    async def _report(self, prog: Progress) -> Run:
        """Status message, ``typing`` while the run goes on, the final state, the result."""
        live = prog.live
        try:
            await live.post(progress_text(prog.agent, prog.run_id, prog.lines))
            async with ChatActionSender.typing(bot=self.bot, chat_id=live.chat_id):
                run = await self.runner.wait(prog.run_id)
        finally:
            self.tracked.pop(str(prog.run_id), None)
        head = escape(f"Run #{run.id} of {prog.agent}: {run.status}")
        await live.finish("\n".join([head, *progress_lines(prog.lines)]))
        await self._send_result(live.chat_id, run)
        return run

    async def _send_result(self, chat_id: int, run: Run) -> None:
        """The result, whole: a part that fails is resumed, not sent again from the top."""
        sent: list[int] = []
        for pause in (*RESULT_RETRY_S, None):
            try:
                await send_parts(
                    self.bot, chat_id, run_result(run), done=sent, markup=result_keyboard(run.id)
                )
                return
            except PartialSend as e:
                sent, error = e.sent, e.cause
                if pause is None or isinstance(error, TelegramBadRequest | TelegramForbiddenError):
                    break
                await asyncio.sleep(pause)
        log.warning(
            "run %s: result not shown in chat %s after %d of its parts: %s",
            run.id,
            chat_id,
            len(sent),
            describe(self.bot, error),
        )
