"""What every tool shares: the call's context, its result, and its refusal.

A tool is handed arguments the engine already checked against the tool's JSON Schema
(an unusable call escalates before it gets here). It returns a :class:`ToolResult` or
raises :class:`ToolFailure`, whose message the model sees as the tool's answer: a refused
address or a missing file is information for the next turn, not a crashed run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from core.errors import OpenClawError
from core.types import ToolSpec

EXCERPT_CHARS = 200  # of a result, kept in its run_steps row


class ToolFailure(OpenClawError):
    """A tool refused or failed; ``str(e)`` is what the model (and the step) is told."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's answer: ``content`` goes back to the model as the tool message."""

    content: str
    summary: str = ""  # the short outcome for a progress line, e.g. "200, 1.2 KB"

    @property
    def size(self) -> int:
        return len(self.content.encode())


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a call may use: who is calling, and the process's shared parts."""

    agent: str
    run_id: int
    depth: int = 0  # 0: a run started by a trigger; 1: a run started by run_agent; …
    http: Callable[[], aiohttp.ClientSession] | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    # the runner's callbacks for tools that act through it (notify, run_agent)
    notify: Callable[[str, str], Awaitable[None]] | None = None
    run_agent: Callable[[str, str], Awaitable[str]] | None = None


class Tool(Protocol):
    """One callable tool."""

    @property
    def spec(self) -> ToolSpec:
        """Name, description and JSON Schema of the arguments, as offered to the model."""
        ...

    @property
    def timeout_s(self) -> float:
        """How long one call may take before it is a failure."""
        ...

    @property
    def approval(self) -> bool:
        """True: an admin approves each call first."""
        ...

    def target(self, args: Mapping[str, Any]) -> str:
        """What the call is about, for a progress line (``status.example.com``)."""
        ...

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Do it; raise ToolFailure with what the model should be told when it cannot."""
        ...


def human_size(n: int) -> str:
    """``1234`` → ``1.2 KB`` (the unit a progress line shows)."""
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
