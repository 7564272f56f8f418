"""The steps of a run's tool loop: each model turn and each tool call, one row each.

Rows are written as steps finish, so a run killed in the middle of its loop keeps the
steps it took (for audit; a recovery run starts a fresh loop). Arguments are stored with
secrets taken out: the process's own (keys, tokens) and any argument whose name says it
holds one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from core.ops.redaction import REDACTED, redact
from core.store.base import Store
from core.store.times import utcnow_iso

StepKind = Literal["model", "tool"]
# an argument named like this holds a secret whatever its value looks like
SECRET_NAME = re.compile(r"pass(word)?|secret|token|api[_-]?key|auth|credential", re.I)
EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class Step:
    """One recorded step. ``outcome``: a model turn's ``ok``/``failed``; a tool call's
    ``ok``, ``error`` (the tool failed or refused), ``denied`` (an admin said no),
    ``timeout``."""

    run_id: int
    step: int  # the model turn it belongs to, from 1
    kind: StepKind
    outcome: str
    tier: int | None = None
    model: str | None = None
    tool: str | None = None
    call_id: str | None = None
    arguments: str | None = None  # JSON, redacted
    detail: str = ""  # a model turn's route, or a tool's short outcome ("200, 1.2 KB")
    size: int = 0  # bytes of the tool's result
    excerpt: str = ""
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    ts: str = ""
    id: int | None = None
    target: str = ""  # what a tool call was about ("status.example.com")

    def line(self) -> str:
        """One line for a progress message or a trace (plain text, not markup)."""
        if self.kind == "model":
            return f"🧠 step {self.step} · tier {self.tier} {self.model} → {self.detail}"
        about = f" {self.target}" if self.target else ""
        if self.outcome == "waiting":
            return f"⏳ {self.tool}{about}: waiting for {self.detail}"
        said = self.detail if self.outcome == "ok" else f"{self.outcome}: {self.detail}"
        return f"🔧 {self.tool}{about} → {said}"


def redact_arguments(arguments: str, secrets: Iterable[str]) -> str:
    """A tool call's JSON arguments as they may be stored and shown."""
    try:
        doc = json.loads(arguments)
    except ValueError:
        return redact(arguments, secrets)

    def clean(node: Any, name: str = "") -> Any:
        if isinstance(node, dict):
            return {k: clean(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [clean(v, name) for v in node]
        if name and SECRET_NAME.search(name) and node not in (None, ""):
            return REDACTED
        return node

    return redact(json.dumps(clean(doc), ensure_ascii=False), secrets)


class RunSteps:
    """The run_steps table."""

    def __init__(
        self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock

    async def add(self, step: Step) -> Step:
        """Record a finished step (stamped now); returns it with its id and time."""
        ts = utcnow_iso(self.clock())
        async with self.store.transaction() as tx:
            sid = await tx.insert_id(
                "INSERT INTO run_steps (run_id, step, kind, tier, model, tool, call_id,"
                " arguments, outcome, detail, size, excerpt, latency_ms, cost_usd, ts, target)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    step.run_id,
                    step.step,
                    step.kind,
                    step.tier,
                    step.model,
                    step.tool,
                    step.call_id,
                    step.arguments,
                    step.outcome,
                    step.detail,
                    step.size,
                    step.excerpt[:EXCERPT_CHARS],
                    step.latency_ms,
                    step.cost_usd,
                    ts,
                    step.target,
                ),
            )
        return replace(step, id=sid, ts=ts)

    async def for_run(self, run_id: int) -> list[Step]:
        """A run's steps in the order they were taken."""
        rows = await self.store.fetchall(
            "SELECT id, run_id, step, kind, tier, model, tool, call_id, arguments, outcome,"
            " detail, size, excerpt, latency_ms, cost_usd, ts, target FROM run_steps"
            " WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        return [
            Step(
                run_id=r[1],
                step=r[2],
                kind=r[3],
                tier=r[4],
                model=r[5],
                tool=r[6],
                call_id=r[7],
                arguments=r[8],
                outcome=r[9],
                detail=r[10],
                size=r[11],
                excerpt=r[12],
                latency_ms=r[13],
                cost_usd=r[14],
                ts=r[15],
                id=r[0],
                target=r[16],
            )
            for r in rows
        ]
