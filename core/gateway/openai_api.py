"""The OpenAI-compatible surface: body → ChatRequest, Result → chat.completion / chunks."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from core.config.models import Config
from core.parsing import parse_int
from core.types import ChatRequest, Message, Role, Usage

ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call")
# a signed 32-bit int, far over any model's output; the engine caps at the model's own limit
MAX_TOKENS = 2**31 - 1


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
    valid = ", ".join(route_names(config))
    raise GatewayError(
        404,
        f"The model {model!r} does not exist. Valid models: {valid}",
        param="model",
        code="model_not_found",
    )


def _content(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise GatewayError(
                    400,
                    f"{where}[{i}]: only text parts are supported "
                    '({"type": "text", "text": "..."})',
                    param=f"{where}[{i}]",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise GatewayError(400, f"{where} must be a string or a list of text parts", param=where)


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
    """Validate an OpenAI chat-completions body. Raises GatewayError (400/404)."""
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object")
    for key in UNSUPPORTED:
        if body.get(key):
            raise GatewayError(400, f"{key} is not supported by this gateway", param=key)
    if body.get("n") not in (None, 1):
        raise GatewayError(400, "only n = 1 is supported", param="n")
    task, tier = resolve_model(config, body.get("model"))
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise GatewayError(400, "messages must be a non-empty array", param="messages")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise GatewayError(
                400,
                f"messages[{i}].role must be one of {', '.join(ROLES)}",
                param=f"messages[{i}].role",
            )
        messages.append(
            Message(ROLES[m["role"]], _content(m.get("content"), f"messages[{i}].content"))
        )
    max_tokens = _token_count(body, "max_completion_tokens") or _token_count(body, "max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        raise GatewayError(400, "temperature must be a number from 0 to 2", param="temperature")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise GatewayError(400, "stream must be a boolean", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise GatewayError(400, "stream_options must be an object", param="stream_options")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise GatewayError(400, "user must be a string", param="user")
    req = ChatRequest(
        tuple(messages),
        task=task,
        tier=tier,
        max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None,
        request_id=request_id,
        caller=user,
    )
    model = body.get("model") or "auto"
    return ChatCall(req, str(model), stream, bool(options.get("include_usage")))


def usage_json(u: Usage) -> dict[str, Any]:
    """OpenAI usage object (reasoning is part of completion_tokens, as OpenAI counts it)."""
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def completion_json(
    request_id: str, model: str, content: str, finish_reason: str | None, usage: Usage
) -> dict[str, Any]:
    """A whole ``chat.completion``."""
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish_reason or "stop",
            }
        ],
        "usage": usage_json(usage),
    }


class ChunkWriter:
    """Builds ``chat.completion.chunk`` SSE lines for one stream."""

    def __init__(self, request_id: str, model: str, include_usage: bool) -> None:
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

    def finish(self, finish_reason: str | None, usage: Usage) -> bytes:
        """The closing chunk(s) and ``[DONE]``."""
        out = self._line(
            [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason or "stop"}]
        )
        if self.include_usage:
            out += self._line([], usage)
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(message: str, code: str) -> bytes:
        """An error event: the stream broke after it began."""
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
        return b"data: " + json.dumps(body).encode() + b"\n\n"
