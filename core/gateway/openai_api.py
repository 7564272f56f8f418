"""The OpenAI-compatible surface: body → ChatRequest, Result → chat.completion / chunks."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, get_args

from core.config.models import Config
from core.engine.routing import plan
from core.gateway import openai_fields as of
from core.gateway.openai_fields import FieldError
from core.parsing import parse_int
from core.types import ChatRequest, FinishReason, ToolCall, Usage

# a signed 32-bit int, far over any model's output; the engine caps at the model's own limit
MAX_TOKENS = 2**31 - 1
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class GatewayError(Exception):
    """An error answered as OpenAI-shaped JSON with this status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.close = close  # end the connection after answering (the client is broken)

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def route_names(config: Config) -> list[str]:
    """Every ``model`` value the gateway accepts."""
    return (
        ["auto"]
        + [f"task:{t}" for t in sorted(config.tasks)]
        + [f"tier:{lv}" for lv in config.levels]
        + [f"agent:{a.name}" for a in config.agents]  # core/gateway/agent_model.py
    )


def resolve_model(config: Config, model: Any) -> tuple[str | None, int | None]:
    """``auto`` / ``task:T`` / ``tier:N`` → (task, tier). Unknown → 404 listing valid ones."""
    if model is None or model == "auto":
        return None, None
    if isinstance(model, str):
        kind, _, value = model.partition(":")
        if kind == "task" and value in config.tasks:
            return value, None
        if kind == "tier":
            with suppress(ValueError):  # not a number ("tier:²") is not a model either
                level = parse_int(value, "tier")
                if config.tier(level) is not None:
                    return None, level
    raise model_not_found(config, model)


def model_not_found(config: Config, model: Any) -> GatewayError:
    """The 404 for a ``model`` that names no route or agent, listing the valid ones."""
    valid = ", ".join(route_names(config))
    return GatewayError(
        404,
        f"The model {model!r} does not exist. Valid models: {valid}",
        param="model",
        code="model_not_found",
    )


def _token_count(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
        raise GatewayError(400, f"{key} must be a whole number from 1 to {MAX_TOKENS}", param=key)
    return value


@dataclass(frozen=True, slots=True)
class ChatCall:
    request: ChatRequest
    model: str  # as the client named it
    stream: bool
    include_usage: bool


def parse_chat(config: Config, body: Any, request_id: str) -> ChatCall:
    """Validate an OpenAI chat-completions body and map every field of it onto a
    ChatRequest; a field that cannot be honoured is refused (see openai_fields).
    Raises GatewayError (400/404)."""
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object")
    fields = {k: v for k, v in body.items() if v is not None}  # null counts as absent
    try:
        return _parse(config, fields, request_id)
    except FieldError as e:
        raise GatewayError(400, e.message, param=e.param, code=e.code) from None


def _parse(config: Config, body: dict[str, Any], request_id: str) -> ChatCall:
    of.check_fields(body)
    task, tier = resolve_model(config, body.get("model"))
    messages = of.messages(body.get("messages"))
    max_tokens = _token_count(body, "max_completion_tokens") or _token_count(body, "max_tokens")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise GatewayError(400, "stream must be a boolean", param="stream")
    tools = of.tools(body["tools"]) if "tools" in body else ()
    choice = of.tool_choice(body["tool_choice"], tools) if "tool_choice" in body else None
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        parallel = of.flag(parallel, "parallel_tool_calls")
    req = ChatRequest(
        messages,
        task=task,
        tier=tier,
        max_tokens=max_tokens,
        temperature=of.number(body, "temperature", 0, 2),
        request_id=request_id,
        caller=of.caller(body),
        tools=tools,
        tool_choice=choice,
        # without tools there is nothing to call in parallel: asks for nothing
        parallel_tool_calls=parallel if tools else None,
        response_format=(
            of.response_format(body["response_format"]) if "response_format" in body else None
        ),
        stop=of.stop(body["stop"]) if "stop" in body else (),
        top_p=of.number(body, "top_p", 0, 1),
        seed=of.seed(body["seed"]) if "seed" in body else None,
    )
    include_usage = (
        of.stream_options(body["stream_options"], stream) if "stream_options" in body else False
    )
    return ChatCall(req, str(body.get("model") or "auto"), stream, include_usage)


def capabilities(config: Config, name: str) -> dict[str, bool]:
    """Whether the route ``name`` can offer tools and JSON output: any model of its plan
    (from the config, not the moment's health: a cooldown passes) that can. An
    ``agent:`` model offers neither: the agent decides."""
    if name.startswith("agent:"):
        return {"tools": False, "json_schema": False, "json_object": False}
    task, tier = resolve_model(config, name)
    cands = plan(config, task=task, tier=tier).candidates
    return {
        "tools": any(c.tools for c in cands),
        "json_schema": any(c.json == "schema" for c in cands),
        # a model that enforces a schema has JSON mode too
        "json_object": any(c.json in ("schema", "object") for c in cands),
    }


def tool_calls_json(calls: Sequence[ToolCall], request_id: str) -> list[dict[str, Any]]:
    """OpenAI ``tool_calls``; each id carries the call's signature (openai_fields)."""
    return [
        {
            "id": of.encode_call_id(c.id or f"call_{request_id[4:]}_{i}", c.signature),
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for i, c in enumerate(calls)
    ]


FINISH_REASONS = frozenset(get_args(FinishReason))


def finish_reason(reason: str | None, calls: Sequence[ToolCall]) -> str:
    """The choice's finish_reason, always one of OpenAI's: a turn that ends in tool calls
    says ``tool_calls`` (Gemini and Ollama say stop), none given is ``stop``, and a
    provider's own word (Anthropic's pause_turn, model_context_window_exceeded; Gemini's
    lowercased extras) is ``length`` when it ran out of room, else ``stop``."""
    if calls and reason in (None, "stop"):
        return "tool_calls"
    if reason is None or reason in FINISH_REASONS:
        return reason or "stop"
    return "length" if "context" in reason or "token" in reason else "stop"


def usage_json(u: Usage) -> dict[str, Any]:
    """OpenAI usage object (reasoning is part of completion_tokens, as OpenAI counts it)."""
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def completion_json(
    request_id: str,
    model: str,
    content: str,
    reason: str | None,
    usage: Usage,
    calls: Sequence[ToolCall] = (),
) -> dict[str, Any]:
    """A whole ``chat.completion``; with tool calls, content is null when empty."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["content"] = content or None
        message["tool_calls"] = tool_calls_json(calls, request_id)
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(reason, calls),
            }
        ],
        "usage": usage_json(usage),
    }


class ChunkWriter:
    """Builds ``chat.completion.chunk`` SSE lines for one stream."""

    def __init__(self, request_id: str, model: str, include_usage: bool) -> None:
        self.request_id = request_id
        self.id = f"chatcmpl-{request_id}"
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def _line(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            obj["usage"] = usage_json(usage) if usage is not None else None
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def delta(self, content: str, *, first: bool = False) -> bytes:
        """A content piece; the first one also carries the role."""
        d: dict[str, Any] = {"content": content}
        if first:
            d["role"] = "assistant"
        return self._line([{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}])

    def tool_calls(self, calls: Sequence[ToolCall], *, first: bool = False) -> bytes:
        """One chunk per call, each whole (``index``, ``id``, ``type``, the name and all of
        its arguments): OpenAI's delta format, which clients merge by index. The first
        one carries the role when no content came before it."""
        out = b""
        for i, call in enumerate(tool_calls_json(calls, self.request_id)):
            d: dict[str, Any] = {"tool_calls": [{"index": i, **call}]}
            if first and i == 0:
                d = {"role": "assistant", "content": None, **d}
            out += self._line([{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}])
        return out

    def finish(self, reason: str | None, usage: Usage, calls: Sequence[ToolCall] = ()) -> bytes:
        """The closing chunk(s) and ``[DONE]``."""
        out = self._line(
            [
                {
                    "index": 0,
                    "delta": {},
                    "logprobs": None,
                    "finish_reason": finish_reason(reason, calls),
                }
            ]
        )
        if self.include_usage:
            out += self._line([], usage)
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(message: str, code: str) -> bytes:
        """An error event: the stream broke after it began."""
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
        return b"data: " + json.dumps(body).encode() + b"\n\n"
