"""What a drilled model answers, in its adapter's wire format: the faults a drill injects.

Each answer is what the real upstream sends for that failure (status, headers, body; a
stream where the request asked for one), so the adapter's own parsing and error mapping
turn it into the ProviderError a real outage would give. ``refused`` and ``timeout`` are
not answers: the drill server's closed port and its held request produce them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Fault(StrEnum):
    """The faults a drill injects into a model's transport."""

    REFUSED = "refused"  # connection refused: a closed port
    TIMEOUT = "timeout"  # the request is held until the client's own timeout fires
    RATE_LIMITED = "429"  # 429 with Retry-After
    SERVER_ERROR = "500"
    EMPTY = "empty"  # a 200 with no content
    REASONING_ONLY = "reasoning_only"  # only reasoning, no answer
    BILLING = "billing"  # the format's "no credit / no quota" answer
    MALFORMED = "malformed"  # a 200 whose body cannot be parsed


FAULTS: tuple[str, ...] = tuple(f.value for f in Fault)

OPENAI = "openai-completions"
ANTHROPIC = "anthropic-messages"
GOOGLE = "google-generative-ai"
OLLAMA = "ollama"

# seconds the 429 asks to wait: short, so that a drill's breaker opens on its Retry-After
# and the model is probed again soon after the drill
RETRY_AFTER_S = 1
REASONING = "Let me think about this step by step. The budget is almost spent"


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer of the drill server."""

    status: int
    media_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def is_stream(api: str, path: str, body: Any) -> bool:
    """Whether the adapter asked for a stream (Gemini by its path, Ollama unless told
    not to, the others by ``stream: true``)."""
    if api == GOOGLE:
        return path.endswith(":streamGenerateContent")
    asked = body.get("stream") if isinstance(body, dict) else None
    if api == OLLAMA:
        return asked is not False
    return asked is True


def answer(api: str, fault: Fault, model: str, stream: bool) -> Answer:
    """The answer of ``model`` (speaking ``api``) under ``fault``; not for refused/timeout."""
    if fault is Fault.RATE_LIMITED:
        return _error(api, 429, _rate_limited(api), {"Retry-After": str(RETRY_AFTER_S)})
    if fault is Fault.SERVER_ERROR:
        return _error(api, 500, _server_error(api))
    if fault is Fault.BILLING:
        status, body = _billing(api)
        return _error(api, status, body)
    if fault is Fault.MALFORMED:
        if stream:
            media = "application/x-ndjson" if api == OLLAMA else "text/event-stream"
            line = b'{"choices": [{"delta": \n' if api == OLLAMA else b'data: {"choices": [\n\n'
            return Answer(200, media, line)
        return Answer(200, "application/json", b'{"id": "drill", "choices": [{"message": ')
    if fault in (Fault.EMPTY, Fault.REASONING_ONLY):
        reasoning = REASONING if fault is Fault.REASONING_ONLY else ""
        if stream:
            media = "application/x-ndjson" if api == OLLAMA else "text/event-stream"
            return Answer(200, media, b"".join(_FRAMES[api](model, reasoning)))
        return Answer(200, "application/json", json.dumps(_BODIES[api](model, reasoning)).encode())
    raise ValueError(f"{fault.value} is not answered by the drill server")


def _error(
    api: str, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Answer:
    return Answer(status, "application/json", json.dumps(body).encode(), headers or {})


def _rate_limited(api: str) -> dict[str, Any]:
    msg = "Rate limit reached (failure drill)"
    if api == ANTHROPIC:
        return {"type": "error", "error": {"type": "rate_limit_error", "message": msg}}
    if api == GOOGLE:
        # a per-minute quota: a rate, not billing (see GoogleGenerativeAI.is_billing)
        return {
            "error": {
                "code": 429,
                "message": msg,
                "status": "RESOURCE_EXHAUSTED",
                "details": [_quota_failure("GenerateRequestsPerMinutePerProjectPerModel")],
            }
        }
    if api == OPENAI:
        return {
            "error": {
                "message": msg,
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    return {"error": msg}


def _server_error(api: str) -> dict[str, Any]:
    msg = "Internal server error (failure drill)"
    if api == ANTHROPIC:
        return {"type": "error", "error": {"type": "api_error", "message": msg}}
    if api == GOOGLE:
        return {"error": {"code": 500, "message": msg, "status": "INTERNAL"}}
    if api == OPENAI:
        return {"error": {"message": msg, "type": "server_error", "param": None, "code": None}}
    return {"error": msg}


def _billing(api: str) -> tuple[int, dict[str, Any]]:
    """The real "no credit / no quota" answers each adapter's ``is_billing`` recognises:
    DeepSeek's 402 "Insufficient Balance" (OpenAI's format), Anthropic's 402
    ``billing_error``, Gemini's 429 RESOURCE_EXHAUSTED on a per-day quota, and a 402 for
    Ollama (whose base rule is that a 402 is billing)."""
    if api == ANTHROPIC:
        msg = "Your credit balance is too low to access the Anthropic API (failure drill)"
        return 402, {"type": "error", "error": {"type": "billing_error", "message": msg}}
    if api == GOOGLE:
        body = {
            "code": 429,
            "message": "You exceeded your current quota (failure drill)",
            "status": "RESOURCE_EXHAUSTED",
            "details": [_quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier")],
        }
        return 429, {"error": body}
    if api == OPENAI:
        err = {
            "message": "Insufficient Balance",
            "type": "unknown_error",
            "param": None,
            "code": "invalid_request_error",
        }
        return 402, {"error": err}
    return 402, {"error": "payment required (failure drill)"}


def _quota_failure(quota_id: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                "quotaId": quota_id,
            }
        ],
    }


# -- 200 answers without content: whole bodies and streams -------------------------


def _openai_body(model: str, reasoning: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    if reasoning:
        message["reasoning_content"] = reasoning
    finish = "length" if reasoning else "stop"
    out = len(reasoning.split())
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": out,
        "total_tokens": 5 + out,
        "completion_tokens_details": {"reasoning_tokens": out},
    }
    return {
        "id": "chatcmpl-drill",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def _anthropic_body(model: str, reasoning: str) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if reasoning:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": "drill"})
    return {
        "id": "msg_drill",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": "max_tokens" if reasoning else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": len(reasoning.split())},
    }


def _google_body(model: str, reasoning: str) -> dict[str, Any]:
    parts = [{"text": reasoning, "thought": True}] if reasoning else [{"text": ""}]
    usage: dict[str, Any] = {"promptTokenCount": 5, "candidatesTokenCount": 0}
    if reasoning:
        usage["thoughtsTokenCount"] = len(reasoning.split())
    cand = {
        "content": {"parts": parts, "role": "model"},
        "finishReason": "MAX_TOKENS" if reasoning else "STOP",
        "index": 0,
    }
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model}


def _ollama_body(model: str, reasoning: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    if reasoning:
        message["thinking"] = reasoning
    return {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": message,
        "done": True,
        "done_reason": "length" if reasoning else "stop",
        "prompt_eval_count": 5,
        "eval_count": len(reasoning.split()),
    }


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def _openai_frames(model: str, reasoning: str) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(
            {"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [choice]}
        )

    frames = [chunk({"role": "assistant", "content": ""})]
    if reasoning:
        frames.append(chunk({"reasoning_content": reasoning}))
    frames.append(chunk({}, "length" if reasoning else "stop"))
    frames.append(
        _sse({"id": "c", "choices": [], "usage": _openai_body(model, reasoning)["usage"]})
    )
    return [*frames, _sse("[DONE]")]


def _anthropic_frames(model: str, reasoning: str) -> list[bytes]:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_drill",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    }
    frames = [_sse(start, "message_start")]
    if reasoning:
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        }
        frames += [
            _sse(block, "content_block_start"),
            _sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": reasoning},
                },
                "content_block_delta",
            ),
            _sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "signature_delta", "signature": "drill"},
                },
                "content_block_delta",
            ),
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        ]
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens" if reasoning else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": len(reasoning.split())},
    }
    return [*frames, _sse(delta, "message_delta"), _sse({"type": "message_stop"}, "message_stop")]


def _google_frames(model: str, reasoning: str) -> list[bytes]:
    return [_sse(_google_body(model, reasoning))]


def _ollama_frames(model: str, reasoning: str) -> list[bytes]:
    return [(json.dumps(_ollama_body(model, reasoning)) + "\n").encode()]


_BODIES = {
    OPENAI: _openai_body,
    ANTHROPIC: _anthropic_body,
    GOOGLE: _google_body,
    OLLAMA: _ollama_body,
}
_FRAMES = {
    OPENAI: _openai_frames,
    ANTHROPIC: _anthropic_frames,
    GOOGLE: _google_frames,
    OLLAMA: _ollama_frames,
}
