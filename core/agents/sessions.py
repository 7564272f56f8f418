"""Sessions: the messages one run sent and received, stored so runs never share by accident.

An isolated run gets ``cron:<agent>:<run id>``; its subagents get child sessions
``…:sub:<n>``. ``shared`` agents use ``shared:<agent>``: the explicit opt-in to a
history across runs, which the runner serializes one run at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from core.store.base import Store
from core.store.times import utcnow_iso
from core.types import Message, Role, ToolCall

Mode = Literal["isolated", "shared", "child", "chat"]
# what SQLite's CAST(text AS INTEGER) reads of a text: its leading signed digits
_LEADING_INT = re.compile(r"\s*[+-]?\d+")


def session_id(agent: str, run_id: int, mode: str) -> str:
    """The session a run of ``agent`` uses."""
    return f"shared:{agent}" if mode == "shared" else f"cron:{agent}:{run_id}"


def child_session_id(parent: str, index: int) -> str:
    """The session of a run's ``index``-th subagent."""
    return f"{parent}:sub:{index}"


class Sessions:
    """Session rows and their messages, stamped with ``clock``'s time."""

    def __init__(
        self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock

    async def open(
        self,
        sid: str,
        *,
        mode: Mode,
        agent: str | None,
        run_id: int | None,
        parent_id: str | None = None,
    ) -> None:
        """Create the session if it does not exist yet (shared ones persist)."""
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO sessions (id, agent, run_id, parent_id, mode, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (sid, agent, run_id, parent_id, mode, utcnow_iso(self.clock())),
            )

    async def append(self, sid: str, role: Role, content: str) -> None:
        """Store one message of the session."""
        await self.add(sid, Message(role, content))

    async def add(self, sid: str, message: Message) -> None:
        """Store one message of the session, with its tool calls or the call it answers."""
        calls = (
            json.dumps(
                [
                    {"id": c.id, "name": c.name, "arguments": c.arguments, "signature": c.signature}
                    for c in message.tool_calls
                ]
            )
            if message.tool_calls
            else None
        )
        await self.store.insert(
            "INSERT INTO messages (session_id, role, content, ts, tool_calls, tool_call_id, name)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
                message.role,
                message.content,
                utcnow_iso(self.clock()),
                calls,
                message.tool_call_id,
                message.name,
            ),
        )

    async def history(self, sid: str, limit: int = 50) -> list[Message]:
        """The last ``limit`` messages of the session, oldest first (never starting with a
        tool result whose call was cut off: providers refuse an orphaned result)."""
        rows = await self.store.fetchall(
            "SELECT role, content, tool_calls, tool_call_id, name FROM messages"
            " WHERE session_id = ? ORDER BY id DESC LIMIT ?",
            (sid, limit),
        )
        out = [
            Message(
                r[0],
                r[1],
                tuple(ToolCall(**c) for c in json.loads(r[2])) if r[2] else (),
                r[3],
                r[4],
            )
            for r in reversed(rows)
        ]
        while out and out[0].role == "tool":
            out.pop(0)
        return out

    async def newest(self, prefix: str) -> int | None:
        """The highest ``n`` of the sessions named ``<prefix><n>`` (a chat's current one)."""
        # the number is read here, not CAST in SQL: PostgreSQL refuses a tail that is not
        # all digits ("…:3:sub:1"), where SQLite reads its leading digits (and 0 for none)
        rows = await self.store.fetchall(
            "SELECT id FROM sessions WHERE substr(id, 1, length(?)) = ?", (prefix, prefix)
        )
        tails = (_LEADING_INT.match(str(r[0])[len(prefix) :]) for r in rows)
        return max((int(m.group(0)) if m else 0 for m in tails), default=None)
