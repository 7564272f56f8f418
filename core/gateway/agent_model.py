"""``model = "agent:<name>"`` on ``/v1/chat/completions``: run an agent for the last user
message and answer with the run's final output.

The run is an ordinary run with trigger ``api`` (like ``POST /api/agents/{name}/run``
with a message, a disabled agent included), awaited to its end: the agent decides the
route, the prompt and the limits, so the fields that would steer a model (``tools``,
``temperature``…) are refused rather than dropped. A stream is the whole output as one
delta: the answer exists only once the run (validators and verdict included) is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from core.agents.runs import Run, Status, Trigger
from core.facade import Facade
from core.gateway import openai_fields as of
from core.gateway.openai_api import (
    SSE_HEADERS,
    ChunkWriter,
    GatewayError,
    completion_json,
    model_not_found,
)
from core.gateway.openai_fields import FieldError
from core.types import Usage

PREFIX = "agent:"

# field -> why it does not apply to an agent run; every other mapped field is honoured
NOT_FOR_AGENTS: dict[str, str] = {
    "tools": "the agent's config decides what the model is offered",
    "tool_choice": "the agent's config decides what the model is offered",
    "parallel_tool_calls": "the agent's config decides what the model is offered",
    "response_format": "the agent's validators judge its output",
    "temperature": "the agent's task decides how the model samples",
    "top_p": "the agent's task decides how the model samples",
    "seed": "the agent's task decides how the model samples",
    "stop": "the agent's prompt decides where the answer ends",
    "max_tokens": "the agent's max_tokens applies",
    "max_completion_tokens": "the agent's max_tokens applies",
    "user": "a run records its trigger (api), not a caller",
    "safety_identifier": "a run records its trigger (api), not a caller",
}


@dataclass(frozen=True, slots=True)
class AgentCall:
    agent: str
    message: str  # the request's last user message: the run's message
    stream: bool
    include_usage: bool

    @property
    def model(self) -> str:
        return PREFIX + self.agent


def parse_agent_chat(facade: Facade, body: Any) -> AgentCall | None:
    """The agent call a chat-completions body asks for, or None when its ``model`` is not
    ``agent:<name>``. Raises GatewayError: 400 for a field that does not apply to an
    agent run, 404 ``model_not_found`` for an agent that is not configured."""
    if not isinstance(body, dict):
        return None
    model = body.get("model")
    if not isinstance(model, str) or not model.startswith(PREFIX):
        return None
    fields = {k: v for k, v in body.items() if v is not None}  # null counts as absent
    try:
        return _parse(facade, fields, model)
    except FieldError as e:
        raise GatewayError(400, e.message, param=e.param, code=e.code) from None


def _parse(facade: Facade, body: dict[str, Any], model: str) -> AgentCall:
    of.check_fields(body)
    name = model.removeprefix(PREFIX)
    if facade.config.agent(name) is None:
        raise model_not_found(facade.config, model)
    for key, why in NOT_FOR_AGENTS.items():
        if key in body:
            raise FieldError(
                key, f"{key} does not apply to an agent: model: {why}", "unsupported_parameter"
            )
    users = [m.content for m in of.messages(body.get("messages")) if m.role == "user"]
    if not users:
        raise FieldError(
            "messages", "an agent: model runs the agent for the last user message; send one"
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise FieldError("stream", "stream must be a boolean")
    include_usage = (
        of.stream_options(body["stream_options"], stream) if "stream_options" in body else False
    )
    return AgentCall(name, users[-1], stream, include_usage)


async def answer_agent(
    request: web.Request, facade: Facade, call: AgentCall, rid: str
) -> web.StreamResponse:
    """Run the agent to its end, then answer its output as a chat.completion or as SSE;
    a run that did not succeed is an OpenAI-shaped 502 (failed) or 503 (interrupted)."""
    # awaited, not polled: the runner shields the run, so a client that leaves mid-run
    # does not stop it, and its record is complete either way
    run = await facade.runner.run(call.agent, Trigger.API, message=call.message)
    headers = {"x-openclaw-request-id": rid, "x-openclaw-run-id": str(run.id)}
    if run.status not in (Status.OK, Status.LATE):
        raise _run_failed(run, headers)
    headers["x-openclaw-route"] = run.route or "no model call"
    headers["x-openclaw-cost-usd"] = f"{run.cost_usd:.8f}"
    usage = await run_usage(facade, run.id)
    output = run.output or ""  # a quiet run (NO_REPLY) still answers its text here
    if not call.stream:
        body = completion_json(rid, call.model, output, "stop", usage)
        return web.json_response(body, headers=headers)
    writer = ChunkWriter(rid, call.model, call.include_usage)
    resp = web.StreamResponse(headers=SSE_HEADERS | headers)
    await resp.prepare(request)
    await resp.write(writer.delta(output, first=True) + writer.finish("stop", usage))
    await resp.write_eof()
    return resp


async def run_usage(facade: Facade, run_id: int) -> Usage:
    """Tokens of every attempt of the run (subagents' too), from the ledger."""
    steps = await facade.ledger.trace(run_id)
    return Usage(
        input_tokens=sum(s.input_tokens for s in steps),
        output_tokens=sum(s.output_tokens for s in steps),
    )


def _run_failed(run: Run, headers: dict[str, str]) -> GatewayError:
    interrupted = run.status == Status.INTERRUPTED
    return GatewayError(
        503 if interrupted else 502,
        f"agent {run.agent} run {run.id} {run.status}: {run.error or 'no error recorded'}",
        type_="server_error",
        code="agent_run_interrupted" if interrupted else "agent_run_failed",
        # the SDKs retry 502/503; a retry would run the agent again: rerun it on purpose
        headers=headers
        | {"x-should-retry": "false", "x-openclaw-route": run.route or str(run.status)},
    )
