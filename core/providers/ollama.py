"""Ollama's native chat API: POST {base}/api/chat, NDJSON when streaming.

Tools go out as ``tools`` and come back in ``message.tool_calls``, each call whole, its
arguments a JSON object (streams too: a line carries whole calls). A result names its tool
with ``tool_name``. Requests hold to the official client's types (``ollama._types``, which
tests/wire.py checks): the server's ``api/types.go`` also defines a call's ``id`` (v0.12.10)
and ``function.index`` (v0.4.7) and a result's ``tool_call_id`` (v0.12.10), but the client
does not, so they are not sent. Of the server's renderers that read them, gemma4 and
glimmer name a result by ``tool_name`` just as well; cohere (Command R) then writes results
without their call's id. Answers carry the ``id`` since v0.12.10: it is kept, and a call
without one gets one from the Accumulator.

What the API lacks, and how it is handled:

- ``tool_choice``: /api/chat has no such field (ollama/ollama#11171). ``none`` sends no
  tools; ``tool`` sends only the named tool, so no other can be called; ``required`` and
  ``tool`` cannot force a call: the engine checks the answer and escalates.
- ``parallel_tool_calls``: no such field either; a model may answer with several calls
  whatever it is told, and the engine judges them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
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
    iter_ndjson,
)
from core.types import Message, ModelCall, ResponseFormat, ToolCall, ToolChoice, ToolSpec


def _tool_call(data: Any, index: int) -> ToolCallPart:
    """One ``message.tool_calls`` entry. Arguments arrive as an object and leave as its JSON
    text; a string (a server or proxy that sends text) is passed on as is."""
    call = as_dict(data, "tool_call")
    function = as_dict(call.get("function"), "tool_call.function")
    arguments = function.get("arguments", {})
    return ToolCallPart(
        index,
        id=as_text(call.get("id"), "tool_call.id"),
        name=as_text(function.get("name"), "tool_call.function.name"),
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
    )


def _parse(data: Any, *, streamed: bool, first_call: int = 0) -> Chunk:
    """One answer, or one NDJSON line of a streamed answer: the same shape. ``first_call``:
    the index of the first tool call in it (the calls of earlier lines come before)."""
    data = as_dict(data, "response")
    if "error" in data:
        # Ollama reports failures mid-stream (e.g. the runner crashed) as {"error": "…"}
        raise UpstreamError(500, as_text(data["error"], "error") or "error")
    if "message" not in data and not streamed:
        raise Malformed("response has no message")
    message = as_dict(data.get("message") or {}, "message")
    calls = message.get("tool_calls")
    calls = [] if calls is None else as_list(calls, "message.tool_calls")
    chunk = Chunk(
        text=as_text(message.get("content"), "message.content"),
        reasoning=as_text(message.get("thinking"), "message.thinking"),
        # function.index is not used: a running count is the same in bodies and streams
        tool_calls=[_tool_call(c, first_call + i) for i, c in enumerate(calls)],
    )
    if data.get("done") is True:
        chunk.done = True
        # "stop" with tool calls too: the Accumulator makes that "tool_calls"
        chunk.finish_reason = as_text(data.get("done_reason"), "done_reason") or "stop"
        # eval_count includes the thinking tokens; Ollama does not count them apart
        chunk.input_tokens = as_count(data.get("prompt_eval_count"), "prompt_eval_count")
        chunk.output_tokens = as_count(data.get("eval_count"), "eval_count")
    return chunk


def _arguments(text: str) -> dict[str, Any]:
    """A call's arguments as the object Ollama wants (it refuses text with a 400). Text that
    is not a JSON object (a model's broken arguments, kept in history) travels under one
    key, so the model still sees what it wrote instead of an empty call."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": text}


def _message(m: Message, names: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [_call_out(c) for c in m.tool_calls]
    if m.role == "tool":
        # the only link from a result to its call the client defines: a result without a
        # name takes the name of the call it answers
        name = m.name or names.get(m.tool_call_id or "", "")
        if name:
            out["tool_name"] = name
    return out


def _call_out(call: ToolCall) -> dict[str, Any]:
    return {"function": {"name": call.name, "arguments": _arguments(call.arguments)}}


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    return [_message(m, names) for m in messages]


def _tools(tools: Sequence[ToolSpec], choice: ToolChoice | None) -> list[dict[str, Any]]:
    """The tools to send: none for ``none``, only the named one for ``tool`` (when it is
    offered: else all, and the engine judges the answer)."""
    if choice is not None and choice.mode == "none":
        return []
    if choice is not None and choice.mode == "tool":
        named = [t for t in tools if t.name == choice.name]
        tools = named or tools
    out = []
    for tool in tools:
        # parameters.type must be "object" (api.ToolFunctionParameters; the client's
        # Literal['object']); strict has no counterpart and is left out
        function: dict[str, Any] = {"name": tool.name, "parameters": _parameters(tool.parameters)}
        if tool.description:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


# what Ollama's server reads of a tool's JSON Schema (api/types.go: ToolFunctionParameters,
# ToolProperty); it decodes into those structs and drops every other keyword (title,
# minimum, format, additionalProperties …) without a word, so they are not sent at all
_PARAMETER_KEYS = ("type", "$defs", "items", "required", "properties")
_PROPERTY_KEYS = ("anyOf", "type", "items", "description", "enum", "properties", "required")


def _parameters(schema: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: schema[k] for k in _PARAMETER_KEYS if k in schema}
    out["type"] = "object"  # the server and the client both require an object
    out["properties"] = _properties(schema.get("properties"))
    return out


def _properties(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {}
    return {name: _property(prop) for name, prop in value.items()}


def _property(prop: Any) -> Any:
    if not isinstance(prop, Mapping):
        return prop
    out = {k: prop[k] for k in _PROPERTY_KEYS if k in prop}
    if "properties" in out:
        out["properties"] = _properties(out["properties"])
    if isinstance(out.get("anyOf"), list):
        out["anyOf"] = [_property(p) for p in out["anyOf"]]
    return out


def _format(fmt: ResponseFormat | None) -> str | dict[str, Any] | None:
    """``format``: "json" for any JSON object, the JSON Schema itself for a schema."""
    if fmt is None or not fmt.wants_json:
        return None
    if fmt.type == "json_schema" and fmt.schema is not None:
        return dict(fmt.schema)
    return "json"


def _options(call: ModelCall) -> dict[str, Any]:
    options: dict[str, Any] = {"num_predict": call.max_tokens}
    if call.context is not None:  # else Ollama's default (4k on small GPUs) cuts the
        options["num_ctx"] = call.context  # prompt from its start, system prompt first
    if call.temperature is not None:
        options["temperature"] = call.temperature
    if call.top_p is not None:
        options["top_p"] = call.top_p
    if call.seed is not None:
        options["seed"] = call.seed
    if call.stop:
        options["stop"] = list(call.stop)
    return options


class Ollama(Provider):
    """``stream`` is always sent: Ollama streams unless told not to."""

    api = "ollama"
    stream_media_types = ("application/x-ndjson", "application/json")

    def auth_headers(self) -> dict[str, str]:
        """Bearer auth when a key is set (Ollama behind a proxy, or its cloud)."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """messages with their tool calls and results, tools, format, options (num_predict;
        num_ctx from the model's ``context``; sampling), and ``think`` for thinking models."""
        body: dict[str, Any] = {
            "model": model,
            "messages": _messages(call.messages),
            "stream": stream,
            "options": _options(call),
        }
        tools = _tools(call.tools, call.tool_choice)
        if tools:
            body["tools"] = tools
        fmt = _format(call.response_format)
        if fmt is not None:
            body["format"] = fmt
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
        """NDJSON lines; the one with ``done: true`` carries the counts. Each tool call comes
        whole in some line, and gets the next index of the answer."""
        calls = 0
        async for data in iter_ndjson(response):
            chunk = _parse(data, streamed=True, first_call=calls)
            calls += len(chunk.tool_calls)
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
