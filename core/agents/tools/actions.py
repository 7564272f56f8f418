"""Tools that act through the runner: ``notify`` (a message now, through the outbox) and
``run_agent`` (another agent's run, its final answer back)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.agents.tools.base import ToolContext, ToolFailure, ToolResult, human_size
from core.types import ToolSpec

MAX_DEPTH = 2  # a run started by run_agent may start one more, and that one none
NOTIFY_CHARS = 4000


class Notify:
    """``notify``: send a message now to one of the agent's ``deliver`` targets."""

    timeout_s = 10.0
    approval = False

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(
            "notify",
            "Send a short message now (before the final answer) to one of your delivery "
            "targets, e.g. to warn about something urgent. The final answer is delivered "
            "anyway; do not notify it twice.",
            {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "the message", "minLength": 1},
                    "target": {
                        "type": "string",
                        "enum": self.targets,
                        "description": "where to send it (default: the first target)",
                    },
                },
                "required": ["text"],
                "additionalProperties": False,
            },
        )

    def target(self, args: Mapping[str, Any]) -> str:
        return str(args.get("target") or self.targets[0])

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        if ctx.notify is None:
            raise ToolFailure("notify is not available here")
        target, text = self.target(args), str(args["text"])[:NOTIFY_CHARS]
        await ctx.notify(target, text)
        return ToolResult(f"queued for {target}", f"queued, {human_size(len(text.encode()))}")


class RunAgent:
    """``run_agent``: run another configured agent with a message; its answer comes back."""

    timeout_s = 600.0  # bounded by the called agent's own timeout_s first
    approval = False

    def __init__(self, agents: Mapping[str, str]) -> None:
        self.agents = dict(agents)  # name → description, the caller itself left out

    @property
    def spec(self) -> ToolSpec:
        listing = "; ".join(f"{n}: {d}" if d else n for n, d in self.agents.items())
        return ToolSpec(
            "run_agent",
            f"Run another agent and get its final answer. Agents: {listing or 'none'}.",
            {
                "type": "object",
                "properties": {
                    # an empty enum is not valid JSON Schema: no other agent, no list
                    "agent": {
                        "type": "string",
                        **({"enum": sorted(self.agents)} if self.agents else {}),
                    },
                    "message": {"type": "string", "description": "what to ask it"},
                },
                "required": ["agent", "message"],
                "additionalProperties": False,
            },
        )

    def target(self, args: Mapping[str, Any]) -> str:
        return str(args.get("agent", ""))

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        if ctx.run_agent is None:
            raise ToolFailure("run_agent is not available here")
        if ctx.depth >= MAX_DEPTH:
            raise ToolFailure(
                f"run_agent nests at most {MAX_DEPTH} deep; answer with what you have"
            )
        answer = await ctx.run_agent(str(args["agent"]), str(args["message"]))
        return ToolResult(answer, f"answered, {human_size(len(answer.encode()))}")
