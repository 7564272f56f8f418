"""/drill MODEL FAULT [60s|N] (admins): fault one model for a while, then the report; and
/drills [id]: the kept drills, or one report. The same table as `openclaw drill`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.middlewares import admin_only
from bot.routers.runs import UsageError
from bot.sending import send_parts
from bot.text import escape
from core.drills.board import DEFAULT_FOR_S, MAX_REQUESTS, DrillError, parse_for
from core.drills.report import report_lines
from core.drills.wire import FAULTS
from core.facade import Facade
from core.parsing import parse_id

log = logging.getLogger("openclaw.bot")

USAGE = (
    "Usage: /drill &lt;provider/model&gt; &lt;fault&gt; [60s|5m|N requests], e.g."
    " /drill deep/deepseek-chat timeout 60s\nFaults: " + ", ".join(FAULTS)
)
# after the drill: how long the report waits for its alert's delivery and the first answer
SETTLE_S = 3.0


def parse_drill(args: str | None) -> tuple[str, str, float, int | None]:
    """``MODEL FAULT [60s|N]`` → (model, fault, seconds, requests); UsageError otherwise."""
    words = (args or "").split()
    if len(words) not in (2, 3):
        raise UsageError(USAGE)
    model, fault = words[0], words[1]
    for_s, requests = DEFAULT_FOR_S, None
    if len(words) == 3:
        bound = words[2]
        try:
            if bound.isdigit():
                requests = int(bound)
                if not 1 <= requests <= MAX_REQUESTS:
                    raise ValueError(f"requests must be 1 to {MAX_REQUESTS}")
            else:
                for_s = parse_for(bound)
        except ValueError as e:
            raise UsageError(f"{escape(str(e))}\n{USAGE}") from None
    return model, fault, for_s, requests


def report_html(report: dict[str, object]) -> str:
    """A report as the chat shows it: the CLI's table in a <pre>."""
    return f"<pre>{escape(chr(10).join(report_lines(report)))}</pre>"


def make_drills_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="drills")
    waiting: set[asyncio.Task[None]] = set()  # reports still to send (kept from the GC)

    async def drill(message: Message, command: CommandObject, facade: Facade, bot: Bot) -> None:
        model, fault, for_s, requests = parse_drill(command.args)
        try:
            started = await facade.drills.start(model, fault, for_s, requests)
        except DrillError as e:
            raise UsageError(f"{escape(str(e))}\n{USAGE}") from None
        bound = f"{for_s:.0f}s" + (f" or {requests} requests" if requests else "")
        await message.answer(
            f"🧯 Drill {started.id}: <code>{escape(model)}</code> faulted with"
            f" <b>{escape(fault)}</b> for {bound}. The report follows when it ends."
        )
        task = asyncio.create_task(_report_when_done(facade, bot, message.chat.id, started.id))
        waiting.add(task)
        task.add_done_callback(waiting.discard)

    async def drills(message: Message, command: CommandObject, facade: Facade, bot: Bot) -> None:
        arg = (command.args or "").strip()
        if arg:
            try:
                report = await facade.drills.report(parse_id(arg))
            except (ValueError, DrillError) as e:
                raise UsageError(f"{escape(str(e))}\nUsage: /drills [id]") from None
            await send_parts(bot, message.chat.id, report_html(report))
            return
        rows = await facade.drills.reports(limit=10)
        if not rows:
            await message.answer("No drills yet. Start one with /drill.")
            return
        lines = []
        for r in rows:
            state = r["state"] if r["state"] == "running" else f"ended ({r['end_reason']})"
            lines.append(f"#{r['id']} {r['model']} {r['fault']} {r['started_at'][:19]} {state}")
        await send_parts(bot, message.chat.id, f"<pre>{escape(chr(10).join(lines))}</pre>")

    admin_only(router.message, drill, "Only admins can start drills.", Command("drill"))
    router.message.register(drills, Command("drills"))
    return router


async def _report_when_done(facade: Facade, bot: Bot, chat_id: int, drill_id: int) -> None:
    """Wait for the drill to end (it always does: at most 15 min), then send its report."""
    try:
        while not await facade.drills.wait(drill_id, 60.0):
            pass
        report = await facade.drills.report(drill_id)
        for _ in range(int(SETTLE_S / 0.25)):
            alerts_in = all(a["delivered_after_s"] is not None for a in report["alerts"])
            if alerts_in and report["healthy_after_s"] is not None:
                break
            await asyncio.sleep(0.25)
            report = await facade.drills.report(drill_id)
        await send_parts(bot, chat_id, report_html(report))
    except asyncio.CancelledError:
        raise
    except Exception:  # the drill is over either way; the report stays in /drills
        with contextlib.suppress(Exception):
            log.exception("the report of drill %d could not be sent", drill_id)
