"""``remember`` and ``recall``: an agent's notes to its own later runs.

Both act on the calling agent's memory only (``ctx.agent``): one agent cannot read or
overwrite another's keys. What is stored outlives the run and the process (the
agent_memory table), so a scheduled agent can compare this run with the last one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.agents.memory import MAX_KEY_CHARS, MAX_KEYS, MAX_VALUE_CHARS, Memory
from core.agents.tools.base import ToolContext, ToolFailure, ToolResult, human_size
from core.types import ToolSpec

KEYS_LISTED = 50  # on a missed recall: enough to pick from, short enough for one turn
TIMEOUT_S = 5.0  # one SQLite row; anything slower is a stuck store, not a busy one


def _key(description: str) -> dict[str, Any]:
    """The JSON Schema of a memory key."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_CHARS,
        "description": description,
    }


_REMEMBER = ToolSpec(
    name="remember",
    description=(
        "Store a fact for your own later runs, under a key you choose. It is kept after this "
        "run ends and is there the next time you run (e.g. key 'last_status' with the status "
        "you saw, to tell next time whether it changed). Storing under an existing key "
        "replaces its value. Use short, stable keys and reuse them; values are plain text "
        f"(over {MAX_VALUE_CHARS} characters is cut)."
    ),
    parameters={
        "type": "object",
        "properties": {
            "key": _key("the name to store it under, e.g. 'last_status'"),
            "value": {"type": "string", "description": "what to keep"},
        },
        "required": ["key", "value"],
        "additionalProperties": False,
    },
)

_RECALL = ToolSpec(
    name="recall",
    description=(
        "Read back a fact you stored with `remember` in this or an earlier run (e.g. key "
        "'last_status'), with when it was stored. If nothing is stored under the key, the "
        "answer lists the keys you do have."
    ),
    parameters={
        "type": "object",
        "properties": {
            "key": _key("the key it was stored under"),
        },
        "required": ["key"],
        "additionalProperties": False,
    },
)


class Remember:
    """The ``remember`` tool: store one value under a key, for the calling agent."""

    spec = _REMEMBER
    timeout_s = TIMEOUT_S
    approval = False  # the agent's own table, bounded by MAX_KEYS: nothing to approve

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def target(self, args: Mapping[str, Any]) -> str:
        """The key."""
        return str(args.get("key", ""))

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Store ``args["value"]`` under ``args["key"]``; a value that is too long is cut
        (and the model told), a new key past MAX_KEYS is refused."""
        key, value = str(args["key"]), str(args["value"])
        cut = len(value) > MAX_VALUE_CHARS
        kept = value[:MAX_VALUE_CHARS] if cut else value
        if not await self.memory.put(ctx.agent, key, kept, ctx.run_id):
            raise ToolFailure(
                f"not stored: you already have {MAX_KEYS} keys, the most there can be. Reuse "
                "one of your existing keys (storing under it replaces its value); call recall "
                "with any key to see which you have."
            )
        size = human_size(len(kept.encode()))
        note = (
            f" The value was cut to its first {MAX_VALUE_CHARS} of {len(value)} characters;"
            " store less, or split it over several keys."
            if cut
            else ""
        )
        return ToolResult(
            f"Stored under {key!r} ({size}).{note}",
            summary=f"stored {size}" + (", cut" if cut else ""),
        )


class Recall:
    """The ``recall`` tool: read back one of the calling agent's values."""

    spec = _RECALL
    timeout_s = TIMEOUT_S
    approval = False

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def target(self, args: Mapping[str, Any]) -> str:
        """The key."""
        return str(args.get("key", ""))

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """The value under ``args["key"]`` and when it was stored; a missing key is an
        answer (with the keys the agent has), not a failure: the model picks again."""
        key = str(args["key"])
        entry = await self.memory.get(ctx.agent, key)
        if entry is not None:
            run = f" by run {entry.run_id}" if entry.run_id is not None else ""
            return ToolResult(
                f"{key!r}, stored {entry.updated_at}{run}:\n{entry.value}",
                summary=f"found, {human_size(len(entry.value.encode()))}",
            )
        # the missed path only: entries() reads values too, at most MAX_KEYS rows
        keys = [e.key for e in await self.memory.entries(ctx.agent)]
        if not keys:
            have = "You have not stored anything yet (use remember)."
        else:
            more = f" (and {len(keys) - KEYS_LISTED} more)" if len(keys) > KEYS_LISTED else ""
            listed = ", ".join(repr(k) for k in keys[:KEYS_LISTED])
            have = f"Your keys, newest first: {listed}{more}."
        return ToolResult(f"Nothing is stored under {key!r}. {have}", summary="not found")
