"""Google Generative Language API (Gemini): generateContent and streamGenerateContent.

Tools go out as ``functionDeclarations`` and come back as ``functionCall`` parts, each call
whole in one part (streams too). A call's ``thoughtSignature`` is kept on the ToolCall and
sent back on the same part of the same turn: Gemini 3 refuses a function-call step without it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from core.providers.base import (
    Chunk,
    HttpCall,
    Malformed,
    Provider,
    ToolCallPart,
    UpstreamError,
    as_count,
    as_dict,
    as_list,
    as_text,
    iter_sse,
    load_json,
)
from core.types import Message, ModelCall, ToolChoice, ToolSpec

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


# Gemini 3 answers 400 when the first functionCall of a step in the current turn comes back
# without a thoughtSignature, which history Gemini did not write (another provider's turns,
# after a failover) never has. The FAQ of https://ai.google.dev/gemini-api/docs/thought-signatures
# names two dummy values that skip the check ("context_engineering_is_the_way_to_go" or this one);
# Vertex AI's page documents only this one, so it is the one sent. It goes as this literal text
# over REST, as the Vercel AI SDK sends it (vercel/ai#15560: a replay without signatures to
# gemini-3-flash-preview went from 400 to 200 with it).
SKIP_SIGNATURE = "skip_thought_signature_validator"

# tool_choice -> functionCallingConfig.mode; "tool" is ANY limited by allowedFunctionNames
TOOL_MODES: dict[str, str] = {"auto": "AUTO", "required": "ANY", "tool": "ANY", "none": "NONE"}


def _model_path(model: str) -> str:
    # "tunedModels/x" names its own collection; a bare id lives under models/
    path = model if "/" in model else f"models/{model}"
    return quote(path, safe="/-._~")


def _args(arguments: str) -> dict[str, Any]:
    """A call's arguments as the object Gemini wants. Text that is not a JSON object (a model's
    broken arguments, kept in history beside the error they caused) travels under one key, so
    the model still sees what it wrote instead of an empty call."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def _result(content: str) -> dict[str, Any]:
    """A tool result as ``functionResponse.response``: a JSON object as is, else wrapped as
    ``{"result": text}``, the key the SDK's own function calling and the docs' examples use."""
    try:
        value = json.loads(content)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"result": content}


def _model_parts(message: Message) -> list[dict[str, Any]]:
    """An assistant turn: its text, then one functionCall part per call with its signature.

    Only the first call of a step must carry one (Gemini signs only the first of parallel
    calls), so a step without any gets the dummy on its first call only.
    """
    parts: list[dict[str, Any]] = []
    if message.content or not message.tool_calls:
        parts.append({"text": message.content})
    for i, call in enumerate(message.tool_calls):
        function: dict[str, Any] = {"name": call.name, "args": _args(call.arguments)}
        if call.id:
            function["id"] = call.id
        part: dict[str, Any] = {"functionCall": function}
        signature = call.signature or (SKIP_SIGNATURE if i == 0 else "")
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: Message, names: Mapping[str, str]) -> dict[str, Any]:
    """A ``tool`` turn. Gemini matches results by name (``id`` when the call had one); a
    result without ``name`` takes the name of the call it answers."""
    call_id = message.tool_call_id or ""
    name = message.name or names.get(call_id, "")
    response: dict[str, Any] = {"name": name, "response": _result(message.content)}
    if call_id:
        response["id"] = call_id
    return {"functionResponse": response}


def _contents(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Roles user/model; the results of one step's calls share one user content."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    contents: list[dict[str, Any]] = []
    previous = ""
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            part = _function_response(m, names)
            if previous == "tool":
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        elif m.role == "assistant":
            contents.append({"role": "model", "parts": _model_parts(m)})
        else:
            contents.append({"role": "user", "parts": [{"text": m.content}]})
        previous = m.role
    return contents


def _tools(tools: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    """One Tool with every declaration. ``parametersJsonSchema`` takes the JSON Schema as
    is; ``parameters`` takes only the SDK's OpenAPI-3.0 subset (no oneOf/allOf/const, no type
    lists) and would need a lossy conversion."""
    declarations: list[dict[str, Any]] = []
    for tool in tools:
        declaration: dict[str, Any] = {"name": tool.name}
        if tool.description:
            declaration["description"] = tool.description
        if tool.parameters:  # a function without parameters leaves them unset
            declaration["parametersJsonSchema"] = dict(tool.parameters)
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


def _tool_config(choice: ToolChoice) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": TOOL_MODES[choice.mode]}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": config}


def _generation_config(call: ModelCall) -> dict[str, Any]:
    config: dict[str, Any] = {"maxOutputTokens": call.max_tokens}
    if call.temperature is not None:
        config["temperature"] = call.temperature
    if call.top_p is not None:
        config["topP"] = call.top_p
    if call.seed is not None:
        config["seed"] = call.seed
    if call.stop:
        config["stopSequences"] = list(call.stop)
    if call.reasoning:
        config["thinkingConfig"] = {"includeThoughts": True}
    fmt = call.response_format
    if fmt is not None and fmt.wants_json:
        config["responseMimeType"] = "application/json"
        # responseJsonSchema takes standard JSON Schema; responseSchema only the OpenAPI subset
        if fmt.type == "json_schema" and fmt.schema is not None:
            config["responseJsonSchema"] = dict(fmt.schema)
    return config


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
    raise UpstreamError(status, f"{label}: {message}" if label else message, err)


_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
# a quota over a window this short comes back within a minute: a rate, not a spent quota
_SHORT_WINDOWS = ("PerMinute", "PerSecond")


def _quota_ids(details: Any) -> list[str]:
    """The ``quotaId`` of each QuotaFailure violation in an error's ``details``."""
    ids: list[str] = []
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or detail.get("@type") != _QUOTA_FAILURE:
            continue
        violations = detail.get("violations")
        for v in violations if isinstance(violations, list) else []:
            quota_id = v.get("quotaId") if isinstance(v, dict) else None
            if isinstance(quota_id, str):
                ids.append(quota_id)
    return ids


_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
# a google.protobuf.Duration in JSON: decimal seconds with an "s" ("22s", "0.5s", "1.000340012s")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")


def _retry_delay(details: Any) -> float | None:
    """The ``retryDelay`` of a google.rpc.RetryInfo in an error's ``details``, in seconds."""
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or detail.get("@type") != _RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and (m := _DURATION.match(delay)):
            return float(m.group(1))
        if isinstance(delay, dict):  # the proto's own field names, as some proxies relay it
            seconds, nanos = delay.get("seconds", 0), delay.get("nanos", 0)
            try:
                return max(0.0, float(seconds) + float(nanos) / 1e9)
            except (TypeError, ValueError):
                return None
    return None


def _long_window(quota_id: str) -> bool:
    return not any(window in quota_id for window in _SHORT_WINDOWS)


def _call(part: dict[str, Any], index: int) -> ToolCallPart:
    """A functionCall part: always a whole call (args an object, id rarely given)."""
    function = as_dict(part["functionCall"], "functionCall")
    args = as_dict(function.get("args") or {}, "functionCall.args")
    return ToolCallPart(
        index,
        as_text(function.get("id"), "functionCall.id"),
        as_text(function.get("name"), "functionCall.name"),
        json.dumps(args, ensure_ascii=False),
        as_text(part.get("thoughtSignature"), "thoughtSignature"),
    )


def _parse(data: Any, *, streamed: bool, first_call: int = 0) -> Chunk:
    """One GenerateContentResponse: the whole answer, or one streamed piece of it.

    ``first_call``: the index of this piece's first call (calls earlier in the stream count).
    """
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
            if part.get("functionCall") is not None:
                chunk.tool_calls.append(_call(part, first_call + len(chunk.tool_calls)))
                continue
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

    def is_billing(self, status: int, error: Mapping[str, Any]) -> bool:
        """A 402, or a 429 ``RESOURCE_EXHAUSTED`` whose ``google.rpc.QuotaFailure`` names a
        spent quota that is not a per-minute (or per-second) rate: e.g. ``quotaId``
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier", which resets at midnight
        Pacific, against "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", which
        stays ``rate_limited``. The shape: google.rpc.Status ``details`` holding
        ``{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [...]}``
        (ai.google.dev/gemini-api/docs/troubleshooting, googleapis google/rpc/error_details.proto,
        and the 429 bodies Gemini sends: per-day and per-minute violations side by side)."""
        if status == 402:
            return True
        if status != 429 or error.get("status") != "RESOURCE_EXHAUSTED":
            return False
        return any(_long_window(quota_id) for quota_id in _quota_ids(error.get("details")))

    def body_retry_after(self, error: Mapping[str, Any]) -> float | None:
        """A 429 ``RESOURCE_EXHAUSTED`` says how long to wait in its body, not in a header:
        ``details`` holds ``{"@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "22s"}`` (googleapis google/rpc/error_details.proto; the 429 bodies
        Gemini sends, beside the QuotaFailure). Read on the JSON and the stream paths."""
        return _retry_delay(error.get("details"))

    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """contents (roles user/model), systemInstruction, tools, toolConfig, generationConfig.

        ``parallel_tool_calls`` is not sent: FunctionCallingConfig has only mode,
        allowedFunctionNames and (Vertex only) streamFunctionCallArguments, so Gemini has no
        switch for it and may answer with several calls whatever was asked.
        """
        system = "\n\n".join(m.content for m in call.messages if m.role == "system")
        body: dict[str, Any] = {
            "contents": _contents(call.messages),
            "generationConfig": _generation_config(call),
        }
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if call.tools:
            body["tools"] = _tools(call.tools)
            if call.tool_choice is not None:
                body["toolConfig"] = _tool_config(call.tool_choice)
        if stream:
            return HttpCall(
                f"/{_model_path(model)}:streamGenerateContent", body, params={"alt": "sse"}
            )
        return HttpCall(f"/{_model_path(model)}:generateContent", body)

    def parse_body(self, data: Any) -> list[Chunk]:
        """A whole GenerateContentResponse."""
        return [_parse(data, streamed=False)]

    async def parse_stream(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Chunk, None]:
        """SSE ``data:`` events, each a GenerateContentResponse; the last usage wins. Each
        functionCall part is a whole call: calls get a running index across events."""
        calls = 0
        async for event in iter_sse(response):
            chunk = _parse(load_json(event.data), streamed=True, first_call=calls)
            calls += len(chunk.tool_calls)
            yield chunk

    def models_call(self) -> HttpCall:
        """GET {base}/models."""
        return HttpCall("/models", params={"pageSize": "1000"})

    def parse_models(self, data: Any) -> list[str]:
        """``{"models": [{"name": "models/…"}]}``, returned without the ``models/`` prefix."""
        items = as_list(as_dict(data, "response").get("models") or [], "models")
        names = [as_text(as_dict(m, "model").get("name"), "name") for m in items]
        return [n.removeprefix("models/") for n in names]
