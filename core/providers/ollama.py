"""Ollama's native chat API: POST {base}/api/chat, NDJSON when streaming."""

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
    iter_ndjson,
)
from core.types import ModelCall


def _parse(data: Any, *, streamed: bool) -> Chunk:
    """One answer, or one NDJSON line of a streamed answer: the same shape."""
    data = as_dict(data, "response")
    if "error" in data:
        # Ollama reports failures mid-stream (e.g. the runner crashed) as {"error": "…"}
        raise UpstreamError(500, as_text(data["error"], "error") or "error")
    if "message" not in data and not streamed:
        raise Malformed("response has no message")
    message = as_dict(data.get("message") or {}, "message")
    chunk = Chunk(
        text=as_text(message.get("content"), "message.content"),
        reasoning=as_text(message.get("thinking"), "message.thinking"),
    )
    if data.get("done") is True:
        chunk.done = True
        chunk.finish_reason = as_text(data.get("done_reason"), "done_reason") or "stop"
        # eval_count includes the thinking tokens; Ollama does not count them apart
        chunk.input_tokens = as_count(data.get("prompt_eval_count"), "prompt_eval_count")
        chunk.output_tokens = as_count(data.get("eval_count"), "eval_count")
    return chunk


class Ollama(Provider):
    """``stream`` is always sent: Ollama streams unless told not to."""

    api = "ollama"
    stream_media_types = ("application/x-ndjson", "application/json")

    def auth_headers(self) -> dict[str, str]:
        """Bearer auth when a key is set (Ollama behind a proxy, or its cloud)."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """messages, options (num_predict; num_ctx from the model's ``context``), and
        ``think`` for thinking models."""
        options: dict[str, Any] = {"num_predict": call.max_tokens}
        if call.context is not None:  # else Ollama's default (4k on small GPUs) cuts the
            options["num_ctx"] = call.context  # prompt from its start, system prompt first
        if call.temperature is not None:
            options["temperature"] = call.temperature
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            "stream": stream,
            "options": options,
        }
        if call.reasoning:
            body["think"] = True  # thinking arrives in message.thinking, not as <think> text
        elif call.no_think:
            body["think"] = False  # a thinking model thinks unless told not to
        if self.config.keep_alive is not None:  # how long the model stays loaded afterwards
            body["keep_alive"] = _keep_alive(self.config.keep_alive)
        return HttpCall("/api/chat", body)

    def parse_body(self, data: Any) -> list[Chunk]:
        """A whole (``stream: false``) answer."""
        return [_parse(data, streamed=False)]

    async def parse_stream(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Chunk, None]:
        """NDJSON lines; the one with ``done: true`` carries the counts."""
        async for data in iter_ndjson(response):
            chunk = _parse(data, streamed=True)
            chunk.end = chunk.done
            yield chunk

    def models_call(self) -> HttpCall:
        """GET {base}/api/tags."""
        return HttpCall("/api/tags")

    def parse_models(self, data: Any) -> list[str]:
        """``{"models": [{"name": …}]}``."""
        items = as_list(as_dict(data, "response").get("models") or [], "models")
        return [as_text(as_dict(m, "model").get("name"), "name") for m in items]


def _keep_alive(value: str) -> str | int | float:
    """A bare number is seconds, sent as a number (Ollama reads a string as a duration)."""
    try:
        seconds = float(value)
    except ValueError:
        return value
    return int(seconds) if seconds.is_integer() else seconds
