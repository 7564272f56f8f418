"""Anthropic Messages API: POST {base}/v1/messages, typed SSE events.

Tool calls are content blocks: ``tool_use`` blocks in the assistant's turn, ``tool_result``
blocks in the user's turn after it. Streamed, a call is a ``content_block_start`` (id and
name, ``input: {}``) and then ``input_json_delta`` fragments of its arguments, keyed by the
block's ``index``; the arguments stay the text the model wrote, valid JSON or not (the
engine judges them).
"""

from __future__ import annotations

import hashlib
import json
import re
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
    iter_sse,
    load_json,
)
from core.types import Message, ModelCall, ResponseFormat, ToolChoice, ToolSpec

# the current version (platform.claude.com/docs/en/api/versioning), the one the official
# SDK sends and whose request types tests/wire.py holds every body to; it has no
# temperature, top_p or top_k, which drop_params leaves out by default for this API
ANTHROPIC_VERSION = "2026-10-21"
MIN_THINKING_BUDGET = 1024  # the API refuses less

# error.type -> the HTTP status Anthropic uses for it, so stream errors map like HTTP ones
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
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

# said in the system prompt for json_object: Anthropic has no "any JSON object" mode
# (output_config.format takes a schema whose objects are closed: see _closed), so the
# model is told, and the engine checks the answer is an object
JSON_OBJECT_NOTE = "Answer with a single JSON object and nothing else."

# the older answer of an account out of credit: HTTP 400 invalid_request_error, "Your credit
# balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or
# purchase credits." (the current one is 402 billing_error: platform.claude.com/docs/en/api/errors)
# Also no money left, in the error reference's words: a spend limit an admin set on the
# organization or a workspace (400 invalid_request_error, "You have reached your specified
# API usage limits. You will regain access on …", or "… specified workspace API usage
# limits …") and usage blocked for want of credits; a plain rate limit says none of these
_NO_CREDIT = re.compile(
    r"credit balance is too low|reached your specified (?:workspace )?API usage limits"
    r"|insufficient credits",
    re.IGNORECASE,
)
# a 429 rate_limit_error whose ``details.error_code`` is a spent monthly cap, not a rate:
# the tier's (until the 1st of next month, no retry-after) or the contract's (the SDKs'
# EnforcedSpendLimitReachedErrorDetails and ContractSpendLimitReachedErrorDetails)
_SPEND_CAPS = ("enforced_spend_limit_reached", "contract_spend_limit_reached")

_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")
# keys whose values are data, not subschemas: never closed by _closed
_SCHEMA_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})


# -- the request -------------------------------------------------------------------


def tool_use_id(call_id: str) -> str:
    """``call_id`` as Anthropic takes it (``^[a-zA-Z0-9_-]+$``). Another API's id (a failover
    mid-conversation) with other characters becomes its allowed ones plus a hash of the
    whole id: the same for the ``tool_use`` and its ``tool_result``, and apart for two ids
    that differ only in the characters dropped."""
    if _TOOL_ID.fullmatch(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:16]
    kept = _NOT_ID.sub("", call_id)[:40]
    return f"{kept}_{digest}" if kept else f"toolu_{digest}"


def _input(arguments: str) -> dict[str, Any]:
    """A past call's arguments as ``tool_use.input``, which must be an object. Text that is
    not a JSON object (broken JSON another model wrote) goes as ``{}``: the API refuses
    anything else, and the tool result that follows says what came of the call."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _blocks(m: Message, *, tools: bool) -> list[dict[str, Any]]:
    """One message's content blocks. Without tools in the request, past calls and results
    are text: the API refuses tool_use and tool_result blocks when no tools are defined."""
    if m.role == "tool":
        if not tools:
            return [_text(f"[result of tool call {m.name or m.tool_call_id or ''}]\n{m.content}")]
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": tool_use_id(m.tool_call_id or ""),
        }
        if m.content:
            result["content"] = m.content
        return [result]
    blocks = [_text(m.content)]
    for call in m.tool_calls:
        if tools:
            use = {"id": tool_use_id(call.id), "name": call.name, "input": _input(call.arguments)}
            blocks.append({"type": "tool_use", **use})
        else:
            blocks.append(_text(f"[tool call {call.name} {call.arguments}]"))
    return blocks


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _content(role: str, blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A turn's content: a lone text as a plain string; else its blocks without empty texts
    (the API refuses those), a user turn's tool results first (the API wants them before
    any text of the turn)."""
    kept = [b for b in blocks if b["type"] != "text" or b["text"]]
    if not kept:
        return ""
    if len(kept) == 1 and kept[0]["type"] == "text":
        return str(kept[0]["text"])
    if role == "user":
        kept.sort(key=lambda b: b["type"] != "tool_result")  # stable: order kept otherwise
    return kept


def _turns(messages: Sequence[Message], *, tools: bool) -> list[dict[str, Any]]:
    """User and assistant turns, strictly alternating: tool results are user turns, and
    adjacent turns of one role (a tool result, then a user's text) are merged into one."""
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m, tools=tools)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return [{"role": role, "content": _content(role, blocks)} for role, blocks in turns]


def _tool(spec: ToolSpec) -> dict[str, Any]:
    schema = dict(spec.parameters) or {"type": "object", "properties": {}}
    tool: dict[str, Any] = {"name": spec.name, "input_schema": schema}
    if spec.description:
        tool["description"] = spec.description
    if spec.strict:
        tool["strict"] = True
    return tool


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    """``tool_choice``, or None for the API's default (auto). Parallel calls are turned off
    on the choice object itself (``disable_parallel_tool_use``), which "none" has not."""
    mode = choice.mode if choice is not None else "auto"
    if mode == "none":
        return {"type": "none"}
    if choice is None and parallel is not False:
        return None
    wire: dict[str, Any] = {"type": {"auto": "auto", "required": "any", "tool": "tool"}[mode]}
    if mode == "tool":
        wire["name"] = (choice.name if choice is not None else None) or ""
    if parallel is False:
        wire["disable_parallel_tool_use"] = True
    return wire


def _closed(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that does not say
    otherwise. Structured outputs only take closed objects: the official SDK closes every
    object of a schema it sends (anthropic/lib/_parse/_transform.py); an answer that fits
    the closed schema fits the open one too."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {k: v if k in _SCHEMA_DATA_KEYS else _closed(v) for k, v in schema.items()}
    kind = out.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if is_object and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _output_config(fmt: ResponseFormat) -> dict[str, Any] | None:
    """``output_config`` for a JSON schema; None for text and json_object (see
    JSON_OBJECT_NOTE: a permissive ``{"type": "object"}`` would be closed to ``{}``)."""
    if fmt.type != "json_schema" or fmt.schema is None:
        return None
    return {"format": {"type": "json_schema", "schema": _closed(fmt.schema)}}


def _wants_object(fmt: ResponseFormat | None) -> bool:
    return fmt is not None and (
        fmt.type == "json_object" or (fmt.type == "json_schema" and fmt.schema is None)
    )


def _forces_tool(call: ModelCall) -> bool:
    choice = call.tool_choice
    return bool(call.tools) and choice is not None and choice.mode in ("required", "tool")


def _continues_tool_loop(turns: list[dict[str, Any]]) -> bool:
    """The request answers tool calls: its last turn carries tool results."""
    if not turns or not isinstance(turns[-1]["content"], list):
        return False
    return any(b["type"] == "tool_result" for b in turns[-1]["content"])


# -- the answer --------------------------------------------------------------------


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


def _block(chunk: Chunk, block: Any, index: int | None, *, streamed: bool) -> None:
    """A content block: of a whole message, or a content_block_start's (whose tool_use
    input is ``{}``: streamed, the arguments come in input_json_delta fragments)."""
    block = as_dict(block, "content block")
    kind = block.get("type")
    if kind == "text":
        chunk.text += as_text(block.get("text"), "text")
    elif kind == "thinking":
        chunk.reasoning += as_text(block.get("thinking"), "thinking")
    elif kind == "tool_use":
        name = as_text(block.get("name"), "tool_use.name")
        if not name:
            raise Malformed("tool_use block has no name")
        arguments = ""
        if not streamed:
            value = as_dict(block.get("input"), "tool_use.input")
            arguments = json.dumps(value, ensure_ascii=False)
        call_id = as_text(block.get("id"), "tool_use.id")
        part = ToolCallPart(_call_index(index), id=call_id, name=name, arguments=arguments)
        chunk.tool_calls.append(part)
    # redacted_thinking, server_tool_use …: nothing to show


def _delta(chunk: Chunk, delta: Any, index: int | None) -> None:
    delta = as_dict(delta, "delta")
    kind = delta.get("type")
    if kind == "text_delta":
        chunk.text += as_text(delta.get("text"), "text")
    elif kind == "thinking_delta":
        chunk.reasoning += as_text(delta.get("thinking"), "thinking")
    elif kind == "input_json_delta":
        fragment = as_text(delta.get("partial_json"), "partial_json")
        chunk.tool_calls.append(ToolCallPart(_call_index(index), arguments=fragment))
    # signature_delta, citations_delta …: nothing to show


def _index(data: dict[str, Any]) -> int | None:
    index = data.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise Malformed("index is not an integer")
    return index


def _call_index(index: int | None) -> int:
    """The block index a tool call's pieces are merged by: a streamed call needs one."""
    if index is None:
        raise Malformed("a tool_use block event has no index")
    return index


def _raise_error(data: dict[str, Any]) -> None:
    err = as_dict(data.get("error") or {}, "error")
    kind = as_text(err.get("type"), "error.type")
    message = as_text(err.get("message"), "error.message")
    detail = f"{kind}: {message}" if kind else message
    raise UpstreamError(ERROR_STATUS.get(kind, 500), detail, err)


def _parse_message(data: Any) -> Chunk:
    data = as_dict(data, "response")
    if data.get("type") == "error":
        _raise_error(data)
    if "content" not in data:
        raise Malformed("message has no content")
    chunk = Chunk(finish_reason=_finish(data.get("stop_reason")))
    for index, block in enumerate(as_list(data["content"], "content")):
        _block(chunk, block, index, streamed=False)
    _usage(chunk, data.get("usage"))
    return chunk


class _StreamState:
    """Tool blocks of a stream that got no arguments yet: a call of a tool without
    parameters may close with no fragment at all, and then its arguments are ``{}``."""

    def __init__(self) -> None:
        self.empty_calls: set[int] = set()

    def event(self, name: str, data: Any) -> Chunk:
        data = as_dict(data, "event")
        kind = data.get("type", name)
        chunk = Chunk()
        if kind == "message_start":
            _usage(chunk, as_dict(data.get("message"), "message").get("usage"))
        elif kind == "content_block_start":
            index = _index(data)
            _block(chunk, data.get("content_block"), index, streamed=True)
            if chunk.tool_calls:
                self.empty_calls.add(_call_index(index))
        elif kind == "content_block_delta":
            index = _index(data)
            _delta(chunk, data.get("delta"), index)
            if any(p.arguments for p in chunk.tool_calls):
                self.empty_calls.discard(_call_index(index))
        elif kind == "content_block_stop":
            index = _index(data)
            if index is not None and index in self.empty_calls:
                self.empty_calls.discard(index)
                chunk.tool_calls.append(ToolCallPart(index, arguments="{}"))
        elif kind == "message_delta":
            delta = as_dict(data.get("delta") or {}, "delta")
            chunk.finish_reason = _finish(delta.get("stop_reason"))
            _usage(chunk, data.get("usage"))
        elif kind == "message_stop":
            chunk.done = chunk.end = True
        elif kind == "error":
            _raise_error(data)
        # ping and event types added later carry nothing for us
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

    def is_billing(self, status: int, error: Mapping[str, Any]) -> bool:
        """``billing_error`` on any status (HTTP 402 in the current error reference, and in
        stream error events); a message that says there is no money left (the older 400
        "Your credit balance is too low", a spend limit reached: see ``_NO_CREDIT``); or a
        429 whose ``details.error_code`` is a spent monthly cap. A 429
        ``rate_limit_error`` without such a code is a rate: not billing."""
        message = error.get("message")
        no_credit = isinstance(message, str) and _NO_CREDIT.search(message) is not None
        details = error.get("details")
        code = details.get("error_code") if isinstance(details, dict) else None
        capped = code in _SPEND_CAPS
        return status == 402 or error.get("type") == "billing_error" or no_credit or capped

    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """The Messages body: turns with tool_use/tool_result blocks, tools and tool_choice,
        output_config for a JSON schema, stop_sequences; extended thinking when asked for
        and the request allows it."""
        systems = [m.content for m in call.messages if m.role == "system"]
        if _wants_object(call.response_format) and JSON_OBJECT_NOTE not in systems:
            systems.append(JSON_OBJECT_NOTE)
        system = "\n\n".join(s for s in systems if s)
        tools = bool(call.tools)
        turns = _turns(call.messages, tools=tools)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": call.max_tokens,
            "messages": turns,
            "stream": stream,
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [_tool(t) for t in call.tools]
            choice = _tool_choice(call.tool_choice, call.parallel_tool_calls)
            if choice is not None:  # the API refuses a tool_choice without tools
                body["tool_choice"] = choice
        if call.response_format is not None:
            output_config = _output_config(call.response_format)
            if output_config is not None:
                body["output_config"] = output_config
        if call.stop:
            body["stop_sequences"] = list(call.stop)
        # Extended thinking ("enabled" with a budget) needs budget_tokens >= 1024 and below
        # max_tokens, and is off, answering plainly, where the API would refuse the call:
        # - a forced tool (tool_choice any/tool): manual thinking allows only auto and none
        #   (400 "Thinking may not be enabled when tool_choice forces tool use"); the caller
        #   asked for the call, thinking is only a means;
        # - answering tool results: with thinking on, the assistant turn that made the calls
        #   must start with its signed thinking block, and we keep none (Message has no
        #   place for them; another API's turn never had one), so the API would refuse
        #   (400 "a final `assistant` message must start with a thinking block"); the docs
        #   also keep one thinking configuration per assistant turn, a tool loop being one.
        #   So a tool loop thinks on its first step only.
        thinking = (
            call.reasoning
            and call.max_tokens > MIN_THINKING_BUDGET
            and not _forces_tool(call)
            and not _continues_tool_loop(turns)
        )
        if thinking:
            budget = max(MIN_THINKING_BUDGET, call.max_tokens // 2)
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            # with thinking, top_p may only be 0.95 to 1, temperature not at all
            if call.top_p is not None and call.top_p >= 0.95:
                body["top_p"] = call.top_p
        else:
            if call.temperature is not None:
                body["temperature"] = call.temperature
            if call.top_p is not None:
                body["top_p"] = call.top_p
        return HttpCall("/v1/messages", body)

    def parse_body(self, data: Any) -> list[Chunk]:
        """A whole message: its content blocks (tool_use ones as calls) and usage."""
        return [_parse_message(data)]

    async def parse_stream(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Chunk, None]:
        """message_start … content_block_start/delta/stop … message_delta, message_stop."""
        state = _StreamState()
        async for event in iter_sse(response):
            yield state.event(event.event, load_json(event.data))

    def models_call(self) -> HttpCall:
        """GET {base}/v1/models (first page, up to 1000)."""
        return HttpCall("/v1/models", params={"limit": "1000"})

    def parse_models(self, data: Any) -> list[str]:
        """``{"data": [{"id": …}]}``."""
        items = as_list(as_dict(data, "response").get("data"), "data")
        return [as_text(as_dict(m, "model").get("id"), "id") for m in items]
