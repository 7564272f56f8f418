"""Anthropic Messages API: POST {base}/v1/messages, typed SSE events."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from core.providers.base import (
    Chunk,
    HttpCall,
    Malformed,
    Provider,
    UpstreamError,
    as_count,
    as_dict,
    as_list,
    as_text,
    iter_sse,
    load_json,
)
from core.types import ModelCall

ANTHROPIC_VERSION = "2023-06-01"
MIN_THINKING_BUDGET = 1024  # the API refuses less

# error.type -> the HTTP status Anthropic uses for it, so stream errors map like HTTP ones
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _finish(reason: Any) -> str | None:
    raw = as_text(reason, "stop_reason")
    return FINISH_REASONS.get(raw, raw) or None


def _usage(chunk: Chunk, usage: Any) -> None:
    """output_tokens includes thinking; cache reads and writes are billed input too."""
    if usage is None:
        return
    usage = as_dict(usage, "usage")
    if "input_tokens" in usage:
        chunk.input_tokens = sum(
            as_count(usage.get(k), f"usage.{k}")
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        chunk.cached_tokens = as_count(
            usage.get("cache_read_input_tokens"), "usage.cache_read_input_tokens"
        )
    if "output_tokens" in usage:
        chunk.output_tokens = as_count(usage.get("output_tokens"), "usage.output_tokens")


def _block(chunk: Chunk, block: Any) -> None:
    """A content block, or a content_block_delta's delta: same fields either way."""
    block = as_dict(block, "content block")
    kind = block.get("type")
    if kind in ("text", "text_delta"):
        chunk.text += as_text(block.get("text"), "text")
    elif kind in ("thinking", "thinking_delta"):
        chunk.reasoning += as_text(block.get("thinking"), "thinking")
    # redacted_thinking, signature_delta, tool_use …: nothing to show


def _raise_error(data: dict[str, Any]) -> None:
    err = as_dict(data.get("error") or {}, "error")
    kind = as_text(err.get("type"), "error.type")
    message = as_text(err.get("message"), "error.message")
    raise UpstreamError(ERROR_STATUS.get(kind, 500), f"{kind}: {message}" if kind else message)


def _parse_message(data: Any) -> Chunk:
    data = as_dict(data, "response")
    if data.get("type") == "error":
        _raise_error(data)
    if "content" not in data:
        raise Malformed("message has no content")
    chunk = Chunk(finish_reason=_finish(data.get("stop_reason")))
    for block in as_list(data["content"], "content"):
        _block(chunk, block)
    _usage(chunk, data.get("usage"))
    return chunk


def _parse_event(name: str, data: Any) -> Chunk:
    data = as_dict(data, "event")
    kind = data.get("type", name)
    chunk = Chunk()
    if kind == "message_start":
        _usage(chunk, as_dict(data.get("message"), "message").get("usage"))
    elif kind == "content_block_start":
        _block(chunk, data.get("content_block"))
    elif kind == "content_block_delta":
        _block(chunk, data.get("delta"))
    elif kind == "message_delta":
        chunk.finish_reason = _finish(as_dict(data.get("delta") or {}, "delta").get("stop_reason"))
        _usage(chunk, data.get("usage"))
    elif kind == "message_stop":
        chunk.done = chunk.end = True
    elif kind == "error":
        _raise_error(data)
    # ping, content_block_stop and event types added later carry nothing for us
    return chunk


class AnthropicMessages(Provider):
    """System messages go to the top-level ``system``; ``max_tokens`` is required."""

    api = "anthropic-messages"

    def auth_headers(self) -> dict[str, str]:
        """``x-api-key`` (when set) and the API version (unless config.headers sets one)."""
        headers = {}
        if "anthropic-version" not in self._client.headers:  # config.headers may pin another
            headers["anthropic-version"] = ANTHROPIC_VERSION
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """The Messages body; extended thinking when asked for and the budget allows it."""
        system = "\n\n".join(m.content for m in call.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": call.max_tokens,
            "messages": [
                {"role": m.role, "content": m.content} for m in call.messages if m.role != "system"
            ],
            "stream": stream,
        }
        if system:
            body["system"] = system
        # thinking needs budget_tokens >= 1024 and < max_tokens; below that, answer plainly
        thinking = call.reasoning and call.max_tokens > MIN_THINKING_BUDGET
        if thinking:
            budget = max(MIN_THINKING_BUDGET, call.max_tokens // 2)
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        elif call.temperature is not None:
            body["temperature"] = call.temperature  # not allowed together with thinking
        return HttpCall("/v1/messages", body)

    def parse_body(self, data: Any) -> list[Chunk]:
        """A whole message: its content blocks and usage."""
        return [_parse_message(data)]

    async def parse_stream(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Chunk, None]:
        """message_start … content_block_delta … message_delta, message_stop."""
        async for event in iter_sse(response):
            yield _parse_event(event.event, load_json(event.data))

    def models_call(self) -> HttpCall:
        """GET {base}/v1/models (first page, up to 1000)."""
        return HttpCall("/v1/models", params={"limit": "1000"})

    def parse_models(self, data: Any) -> list[str]:
        """``{"data": [{"id": …}]}``."""
        items = as_list(as_dict(data, "response").get("data"), "data")
        return [as_text(as_dict(m, "model").get("id"), "id") for m in items]
