"""The tool loop of an agent with ``tools``: model turn → the tool calls it asked for →
their results → the next turn, in the run's own session, until a final answer.

The engine judges each turn: a malformed call, an unknown tool, arguments that fail the
tool's schema or an empty answer are unusable there and climb the pyramid like any
unusable answer. The loop then keeps the tier that answered as the floor of every later
turn: within one run the tier never goes down again (a model that failed at a step once
would likely fail at the next one too, and each failure is a wasted, paid call).

Limits stop the loop as a failed run that names the limit: ``max_steps`` model turns,
``max_cost_usd`` spent by the run's calls, and the run's ``timeout_s`` (the runner's).
Tool results are data: nothing a tool returns changes the tools offered or the limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from core.agents.sessions import Sessions
from core.agents.steps import RunSteps, Step, redact_arguments
from core.agents.tool_approval import approve_tool_call
from core.agents.tools.base import Tool, ToolContext, ToolFailure, ToolResult, human_size
from core.config.agents import AgentConfig
from core.engine.approvals import Approver
from core.engine.engine import Engine, Result
from core.errors import OpenClawError
from core.ops.redaction import redact
from core.types import ChatRequest, Message, ToolCall

log = logging.getLogger("openclaw.agents")


class LoopStopped(OpenClawError):
    """A limit stopped the loop; the message names it (the run's error)."""


class ToolLoop:
    """Runs one agent's loop; the runner makes one per run."""

    def __init__(
        self,
        engine: Engine,
        sessions: Sessions,
        steps: RunSteps,
        *,
        approver: Approver,
        secrets: Sequence[str] = (),
        observers: Sequence[Callable[[Step], None]] = (),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.steps = steps
        self.approver = approver
        self.secrets = tuple(secrets)
        self.observers = observers
        self.clock = clock

    async def run(
        self,
        agent: AgentConfig,
        run_id: int,
        sid: str,
        messages: Sequence[Message],
        tools: Mapping[str, Tool],
        ctx: ToolContext,
    ) -> Result:
        """Turns until the model answers without tool calls; returns that turn's result.
        The prompt is already in the session; every later message is stored as it comes."""
        history = list(messages)
        specs = tuple(t.spec for t in tools.values())
        floor: int | None = agent.tier  # None: the task's minimum tier
        spent = 0.0
        for step in range(1, agent.max_steps + 1):
            result = await self.engine.complete(
                ChatRequest(
                    tuple(history),
                    task=agent.task,
                    tier=floor,
                    max_tokens=agent.max_tokens,
                    run_id=str(run_id),
                    agent=agent.name,
                    keep_lower_on_deny=agent.keep_lower_on_deny,
                    tools=specs,
                ),
                rules=agent.validators,
            )
            spent += result.cost_usd
            # the tier never goes down within a run; task rules stay the task's
            floor = max(result.answered_by.tier, result.plan.min_tier)
            await self._record_turn(run_id, step, result)
            reply = Message("assistant", result.content, result.tool_calls)
            history.append(reply)
            await self.sessions.add(sid, reply)
            if not result.tool_calls:
                return result
            if agent.max_cost_usd is not None and spent >= agent.max_cost_usd:
                raise LoopStopped(
                    f"stopped at step {step}: the run's calls cost ${spent:.4f},"
                    f" max_cost_usd is ${agent.max_cost_usd:g}"
                )
            if step == agent.max_steps:
                break
            answers = await asyncio.gather(
                *(self._call(run_id, step, result, c, tools, ctx) for c in result.tool_calls)
            )
            for message in answers:
                history.append(message)
                await self.sessions.add(sid, message)
        raise LoopStopped(
            f"stopped: max_steps = {agent.max_steps} model turns reached and the model"
            " still asks for tools (raise max_steps, or make the prompt ask for an answer)"
        )

    async def _record_turn(self, run_id: int, step: int, result: Result) -> None:
        a = result.answered_by
        n = len(result.tool_calls)
        detail = (
            f"{n} tool call{'s' if n != 1 else ''}"
            if n
            else f"answer, {human_size(len(result.content.encode()))}"
        )
        tried = [x for x in result.attempts if x.outcome not in ("skipped", "denied")]
        if len(tried) > 1:
            detail += f" (after {len(tried) - 1} failed attempt{'s' if len(tried) > 2 else ''})"
        await self._add(
            Step(
                run_id,
                step,
                "model",
                "ok",
                tier=a.tier,
                model=a.ref,
                detail=detail,
                size=len(result.content.encode()),
                excerpt=redact(result.content[:400], self.secrets),
                latency_ms=sum(x.latency_ms for x in result.attempts),
                cost_usd=result.cost_usd,
            )
        )

    async def _call(
        self,
        run_id: int,
        step: int,
        turn: Result,
        call: ToolCall,
        tools: Mapping[str, Tool],
        ctx: ToolContext,
    ) -> Message:
        """One tool call, recorded; its answer as the tool message the model gets next."""
        tool = tools[call.name]  # the engine refused a turn that named another
        args: dict[str, Any] = json.loads(call.arguments.strip() or "{}")
        arguments = redact_arguments(call.arguments.strip() or "{}", self.secrets)
        base = Step(
            run_id,
            step,
            "tool",
            "ok",
            tier=turn.answered_by.tier,
            model=turn.answered_by.ref,
            tool=call.name,
            call_id=call.id,
            arguments=arguments,
            target=_safe_target(tool, arguments),
        )
        t0 = self.clock()
        outcome, summary = "ok", ""
        try:
            if tool.approval and not await self._approved(base, ctx):
                outcome, content = "denied", "an admin denied this call; do not retry it"
                summary = "denied by an admin"
            else:
                async with asyncio.timeout(tool.timeout_s):
                    result: ToolResult = await tool(args, ctx)
                content, summary = result.content, result.summary
        except ToolFailure as e:
            outcome, content, summary = "error", f"error: {e}", str(e)
        except TimeoutError:
            outcome, summary = "timeout", f"no answer in {tool.timeout_s:g}s"
            content = f"error: the tool gave no answer in {tool.timeout_s:g}s"
        except Exception as e:  # a tool's bug is the model's information, and logged
            log.exception("run %s: tool %s failed", run_id, call.name)
            outcome, summary = "error", f"the tool failed ({type(e).__name__})"
            content = f"error: {summary}"
        size = len(content.encode())
        await self._add(
            replace(
                base,
                outcome=outcome,
                detail=summary or human_size(size),
                size=size,
                excerpt=redact(content[:400], self.secrets),
                latency_ms=(self.clock() - t0) * 1000,
            )
        )
        return Message("tool", content, tool_call_id=call.id, name=call.name)

    async def _approved(self, step: Step, ctx: ToolContext) -> bool:
        """An admin's decision on one call of an ``approval = true`` tool (the run waits,
        and its progress says so)."""
        self._tell(replace(step, outcome="waiting", detail="an admin's approval"))
        decision = await approve_tool_call(
            self.approver,
            agent=ctx.agent,
            run_id=ctx.run_id,
            tool=step.tool or "",
            arguments=step.arguments or "{}",
            request_id=f"run{ctx.run_id}:{step.call_id}",
        )
        return decision.approved

    async def _add(self, step: Step) -> None:
        self._tell(await self.steps.add(step))

    def _tell(self, step: Step) -> None:
        for observe in self.observers:
            try:
                observe(step)
            except Exception:  # an observer (the chat's progress) must not stop a run
                log.exception("a step observer failed")


def _safe_target(tool: Tool, redacted: str) -> str:
    """What the call is about, from its redacted arguments: the target is stored and shown
    like them, so a secret argument must not come back through it."""
    try:
        return tool.target(json.loads(redacted))[:80]
    except Exception:  # a target is a label: a bad argument must not stop the call
        return ""
