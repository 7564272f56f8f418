"""Google Generative Language API (Gemini): generateContent and streamGenerateContent."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

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

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}

# google.rpc status -> HTTP status, for errors that arrive inside a stream
ERROR_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def _model_path(model: str) -> str:
    # "tunedModels/x" names its own collection; a bare id lives under models/
    path = model if "/" in model else f"models/{model}"
    return quote(path, safe="/-._~")


def _usage(chunk: Chunk, meta: Any) -> None:
    """candidatesTokenCount excludes thoughts; Usage.output_tokens includes them."""
    if meta is None:
        return
    meta = as_dict(meta, "usageMetadata")
    thoughts = as_count(meta.get("thoughtsTokenCount"), "thoughtsTokenCount")
    chunk.input_tokens = as_count(meta.get("promptTokenCount"), "promptTokenCount")
    chunk.output_tokens = as_count(meta.get("candidatesTokenCount"), "candidatesTokenCount") + (
        thoughts
    )
    chunk.reasoning_tokens = thoughts
    chunk.cached_tokens = as_count(meta.get("cachedContentTokenCount"), "cachedContentTokenCount")


def _raise_if_error(data: dict[str, Any]) -> None:
    if "error" not in data:
        return
    err = as_dict(data["error"], "error")
    status = err.get("code")
    label = as_text(err.get("status"), "error.status")
    if not isinstance(status, int) or not 400 <= status < 600:
        status = ERROR_STATUS.get(label, 500)
    message = as_text(err.get("message"), "error.message")
    raise UpstreamError(status, f"{label}: {message}" if label else message)


def _parse(data: Any, *, streamed: bool) -> Chunk:
    """One GenerateContentResponse: the whole answer, or one streamed piece of it."""
    data = as_dict(data, "response")
    _raise_if_error(data)
    chunk = Chunk()
    candidates = as_list(data.get("candidates") or [], "candidates")
    block = as_dict(data.get("promptFeedback") or {}, "promptFeedback").get("blockReason")
    if candidates:
        candidate = as_dict(candidates[0], "candidates[0]")
        content = as_dict(candidate.get("content") or {}, "content")
        for part in as_list(content.get("parts") or [], "parts"):
            part = as_dict(part, "part")
            text = as_text(part.get("text"), "part.text")
            if part.get("thought") is True:
                chunk.reasoning += text
            else:
                chunk.text += text
        raw = as_text(candidate.get("finishReason"), "finishReason")
        if raw:
            chunk.finish_reason = FINISH_REASONS.get(raw, raw.lower())
            chunk.done = True
    elif block:
        chunk.finish_reason = "content_filter"  # the prompt itself was blocked
        chunk.done = True
    elif not streamed:
        raise Malformed("response has no candidates")
    _usage(chunk, data.get("usageMetadata"))
    return chunk


class GoogleGenerativeAI(Provider):
    """The key travels in ``x-goog-api-key``, never in the URL, so logs cannot leak it."""

    api = "google-generative-ai"

    def auth_headers(self) -> dict[str, str]:
        """``x-goog-api-key`` when a key is set."""
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """contents (roles user/model), systemInstruction, generationConfig."""
        system = "\n\n".join(m.content for m in call.messages if m.role == "system")
        contents = [
            {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
            for m in call.messages
            if m.role != "system"
        ]
        config: dict[str, Any] = {"maxOutputTokens": call.max_tokens}
        if call.temperature is not None:
            config["temperature"] = call.temperature
        if call.reasoning:
            config["thinkingConfig"] = {"includeThoughts": True}
        body: dict[str, Any] = {"contents": contents, "generationConfig": config}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if stream:
            return HttpCall(
                f"/{_model_path(model)}:streamGenerateContent", body, params={"alt": "sse"}
            )
        return HttpCall(f"/{_model_path(model)}:generateContent", body)

    def parse_body(self, data: Any) -> list[Chunk]:
        """A whole GenerateContentResponse."""
        return [_parse(data, streamed=False)]

    async def parse_stream(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Chunk, None]:
        """SSE ``data:`` events, each a GenerateContentResponse; the last usage wins."""
        async for event in iter_sse(response):
            yield _parse(load_json(event.data), streamed=True)

    def models_call(self) -> HttpCall:
        """GET {base}/models."""
        return HttpCall("/models", params={"pageSize": "1000"})

    def parse_models(self, data: Any) -> list[str]:
        """``{"models": [{"name": "models/…"}]}``, returned without the ``models/`` prefix."""
        items = as_list(as_dict(data, "response").get("models") or [], "models")
        names = [as_text(as_dict(m, "model").get("name"), "name") for m in items]
        return [n.removeprefix("models/") for n in names]
