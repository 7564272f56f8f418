"""OpenAI Chat Completions, and the many servers that copy it (DeepSeek, llama.cpp, vLLM)."""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator, Mapping
from typing import Any

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
from core.types import Message, ModelCall, ResponseFormat, ToolChoice, ToolSpec


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
        raise UpstreamError(status, message, err)
    raise UpstreamError(500, str(err))


def _message(m: Message) -> dict[str, Any]:
    """One turn: an assistant turn's calls as ``tool_calls`` (its content null when it has
    no text), a tool result as ``role: tool`` with the ``tool_call_id`` it answers."""
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    if m.role == "assistant" and m.tool_calls:
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
        return {"role": "assistant", "content": m.content or None, "tool_calls": calls}
    return {"role": m.role, "content": m.content}


def _tool(spec: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": spec.name}
    if spec.description:
        function["description"] = spec.description
    # "omitting parameters defines a function with an empty parameter list" (OpenAI); servers
    # that render tools into a chat template (llama.cpp, vLLM) get that list spelled out
    function["parameters"] = dict(spec.parameters) or {"type": "object", "properties": {}}
    if spec.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name or ""}}
    return choice.mode


def _response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    # name is required (^[a-zA-Z0-9_-]{1,64}$): a schema without one is called "response"
    spec: dict[str, Any] = {"name": fmt.name or "response", "strict": fmt.strict}
    if fmt.description:
        spec["description"] = fmt.description
    if fmt.schema is not None:
        spec["schema"] = dict(fmt.schema)
    return {"type": "json_schema", "json_schema": spec}


def _tool_calls(value: Any, where: str, *, streamed: bool) -> list[ToolCallPart]:
    """``message.tool_calls`` (whole calls, numbered by position) or ``delta.tool_calls``
    (pieces numbered by ``index``: the id and name come first, the arguments in fragments).

    The arguments stay text as the model wrote them, valid JSON or not: the engine judges.
    """
    if value is None:
        return []
    parts = []
    for position, item in enumerate(as_list(value, f"{where}.tool_calls")):
        what = f"{where}.tool_calls[{position}]"
        item = as_dict(item, what)
        index = item.get("index", position) if streamed else position
        if isinstance(index, bool) or not isinstance(index, int):
            raise Malformed(f"{what}.index is not an integer")
        function = item.get("function")
        if function is None and not streamed:
            raise Malformed(f"{what} has no function")
        function = as_dict(function or {}, f"{what}.function")
        parts.append(
            ToolCallPart(
                index,
                id=as_text(item.get("id"), f"{what}.id"),
                name=as_text(function.get("name"), f"{what}.function.name"),
                arguments=as_text(function.get("arguments"), f"{what}.function.arguments"),
            )
        )
    return parts


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
        chunk.tool_calls = _tool_calls(message.get("tool_calls"), key, streamed=streamed)
        chunk.finish_reason = as_text(choice.get("finish_reason"), "finish_reason") or None
        chunk.done = chunk.finish_reason is not None
    _usage(chunk, data.get("usage"))
    return chunk


# error.code / error.type of a key with no money or quota left (a 429, like a rate limit)
_NO_MONEY = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_usage_limit_exceeded",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
    }
)


class OpenAICompletions(Provider):
    """POST {base}/chat/completions; SSE ``data:`` lines ending with ``data: [DONE]``."""

    api = "openai-completions"

    def auth_headers(self) -> dict[str, str]:
        """Bearer auth, only when a key is set (local servers need none)."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def is_billing(self, status: int, error: Mapping[str, Any]) -> bool:
        """402 (DeepSeek "Insufficient Balance": api-docs.deepseek.com/quick_start/error_codes),
        or OpenAI's ``insufficient_quota``, which arrives as a 429 with ``error.type`` and
        ``error.code`` both "insufficient_quota" ("You exceeded your current quota, please
        check your plan and billing details": platform.openai.com/docs/guides/error-codes):
        not a rate, so waiting seconds and retrying only hammers the spent key. Also the
        429 codes of a spent credit balance, usage limit or hard spend limit (see
        ``_NO_MONEY``; help.openai.com "Troubleshooting API usage and spend limits")."""
        codes = (error.get("code"), error.get("type"))
        return status == 402 or any(c in _NO_MONEY for c in codes if isinstance(c, str))

    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """Messages, tool calls and results in OpenAI's shapes; tools, tool choice, response
        format, stop, top_p and seed only when set; usage is asked for in streams too."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [_message(m) for m in call.messages],
            "max_tokens": call.max_tokens,
            "stream": stream,
        }
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if call.top_p is not None:
            body["top_p"] = call.top_p
        if call.seed is not None:
            body["seed"] = call.seed
        if call.stop:
            body["stop"] = list(call.stop)
        if call.tools:
            body["tools"] = [_tool(t) for t in call.tools]
            # OpenAI refuses both without tools ("only allowed when 'tools' are specified")
            if call.tool_choice is not None:
                body["tool_choice"] = _tool_choice(call.tool_choice)
            if call.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = call.parallel_tool_calls
        if call.response_format is not None:
            body["response_format"] = _response_format(call.response_format)
        if stream:
            body["stream_options"] = {"include_usage": True}
        off = self.config.no_think_body
        if off is not None and (call.no_think or any(m.tool_calls for m in call.messages)):
            # the server's own switch ([providers] no_think_body): a task that says
            # think = false, or a tool conversation, whose earlier tool-call turns come
            # without their reasoning (DeepSeek's thinking mode refuses those with a 400)
            body.update(copy.deepcopy(off))
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
