"""OpenAI Chat Completions, and the many servers that copy it (DeepSeek, llama.cpp, vLLM)."""

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


def _usage(chunk: Chunk, usage: Any) -> None:
    """completion_tokens already includes reasoning_tokens, as Usage wants it."""
    if usage is None:
        return
    usage = as_dict(usage, "usage")
    details = usage.get("completion_tokens_details") or {}
    chunk.input_tokens = as_count(usage.get("prompt_tokens"), "usage.prompt_tokens")
    chunk.output_tokens = as_count(usage.get("completion_tokens"), "usage.completion_tokens")
    chunk.reasoning_tokens = as_count(
        as_dict(details, "completion_tokens_details").get("reasoning_tokens"),
        "usage.completion_tokens_details.reasoning_tokens",
    )
    prompt = as_dict(usage.get("prompt_tokens_details") or {}, "prompt_tokens_details")
    chunk.cached_tokens = as_count(
        prompt.get("cached_tokens"), "usage.prompt_tokens_details.cached_tokens"
    )


def _raise_if_error(data: dict[str, Any]) -> None:
    err = data.get("error")
    if err is None:
        return
    if isinstance(err, dict):
        code = err.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        message = as_text(err.get("message"), "error.message") or str(err.get("type", ""))
        raise UpstreamError(status, message)
    raise UpstreamError(500, str(err))


def _parse(data: Any, *, key: str, streamed: bool) -> Chunk:
    """One completion (``key="message"``) or one stream chunk (``key="delta"``)."""
    data = as_dict(data, "response")
    _raise_if_error(data)
    if "choices" not in data and not streamed:
        raise Malformed("response has no choices")
    choices = as_list(data.get("choices") or [], "choices")
    if not choices and not streamed:
        raise Malformed("response has no choices")
    chunk = Chunk()
    if choices:
        choice = as_dict(choices[0], "choices[0]")
        if key not in choice and not streamed:
            raise Malformed(f"choices[0] has no {key}")
        message = as_dict(choice.get(key) or {}, f"choices[0].{key}")
        chunk.text = as_text(message.get("content"), f"{key}.content")
        # DeepSeek says reasoning_content; OpenRouter, vLLM and others say reasoning
        chunk.reasoning = as_text(
            message.get("reasoning_content"), f"{key}.reasoning_content"
        ) or as_text(message.get("reasoning"), f"{key}.reasoning")
        chunk.finish_reason = as_text(choice.get("finish_reason"), "finish_reason") or None
        chunk.done = chunk.finish_reason is not None
    _usage(chunk, data.get("usage"))
    return chunk


class OpenAICompletions(Provider):
    """POST {base}/chat/completions; SSE ``data:`` lines ending with ``data: [DONE]``."""

    api = "openai-completions"

    def auth_headers(self) -> dict[str, str]:
        """Bearer auth, only when a key is set (local servers need none)."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """Messages pass through unchanged; usage is asked for in streams too."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            "max_tokens": call.max_tokens,
            "stream": stream,
        }
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if stream:
            body["stream_options"] = {"include_usage": True}
        return HttpCall("/chat/completions", body)

    def parse_body(self, data: Any) -> list[Chunk]:
        """A whole chat.completion."""
        return [_parse(data, key="message", streamed=False)]

    async def parse_stream(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Chunk, None]:
        """chat.completion.chunk events; the usage comes in a last chunk without choices."""
        async for event in iter_sse(response):
            if event.data.strip() == "[DONE]":
                yield Chunk(done=True, end=True)
                return
            yield _parse(load_json(event.data), key="delta", streamed=True)

    def models_call(self) -> HttpCall:
        """GET {base}/models."""
        return HttpCall("/models")

    def parse_models(self, data: Any) -> list[str]:
        """``{"data": [{"id": …}]}``."""
        items = as_list(as_dict(data, "response").get("data"), "data")
        return [as_text(as_dict(m, "model").get("id"), "id") for m in items]
