"""A fake LLM server on 127.0.0.1 that speaks all four provider wire formats at once.

Script answers per model name with :class:`Reply`; every request is recorded.
Streams are cut into 3-character pieces so tags and words straddle chunk edges.

    async with FakeLLM() as fake:
        fake.script("m", Reply(text="hi", reasoning="hmm"))
        ProviderConfig(api="ollama", base_url=fake.base_url("ollama"))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.wire import WireError, check_request, warm

OPENAI = "openai-completions"
ANTHROPIC = "anthropic-messages"
GOOGLE = "google-generative-ai"
OLLAMA = "ollama"
APIS = (OPENAI, ANTHROPIC, GOOGLE, OLLAMA)
_SHORT = {"openai": OPENAI, "anthropic": ANTHROPIC, "google": GOOGLE, "ollama": OLLAMA}
PIECE_CHARS = 3


@dataclass
class FakeToolCall:
    """A tool call in a scripted answer. ``arguments``: a dict is sent as the format's JSON
    (an object for Anthropic, Gemini and Ollama, JSON text for OpenAI); a str is sent as is
    where the format carries text (OpenAI, Anthropic's input_json_delta), to script broken
    arguments. ``id``: None lets the format's default stand (formats without ids send none);
    ``signature``: Gemini's thoughtSignature on the functionCall part."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None
    signature: str | None = None


@dataclass
class Reply:
    """One scripted answer. Token counts default to word counts, so stream == non-stream."""

    text: str = "ok"
    reasoning: str = ""  # sent in the format's native reasoning field
    think_inline: bool = False  # instead put it in <think>…</think> at the start of the content
    status: int = 200  # non-200: an error body in that provider's real shape
    error_message: str = ""  # the message inside that error body
    # non-200: this exact JSON body instead of the generic one (a provider's own shape, e.g.
    # OpenAI's insufficient_quota or Gemini's QuotaFailure details); streams send it too
    error_json: Any = None
    retry_after: float | None = None  # sets the Retry-After header
    retry_after_ms: float | None = None  # sets retry-after-ms (OpenAI's SDKs read it first)
    delay_s: float = 0.0  # before sending headers
    # before sending headers, until the test sets it (or the server closes): a reply that
    # waits for the test's own steps instead of a delay a loaded machine may outrun
    hold: asyncio.Event | None = field(default=None, compare=False)
    hang: bool = False  # never answer (until the client gives up or the server closes)
    stall: bool = False  # send part of the answer (JSON: half the body; streams: one piece),
    # then go quiet until the client gives up: a read timeout mid-answer
    cut_body: bool = False  # JSON: half the body, then the connection drops
    frame_delay_s: float = 0.0  # streaming: a pause before each frame after the first
    malformed: bool = False  # 200 with a body that is not JSON (streams: a garbage event)
    content_type: str | None = None  # override the response content-type
    cut_stream: bool = False  # streaming: one content piece, then a clean end, no terminal event
    abort_stream: bool = False  # streaming: one content piece, then the connection is dropped
    stream_error: str | None = None  # streaming: after one piece, an in-stream error of this type
    # (the frame: ``error_json`` when given, else the format's generic error of that type)
    error_body: bool = False  # JSON: HTTP 200 carrying the format's error body (a proxy's habit)
    redirect: bool = False  # 307 to the same path at another origin (localhost, not 127.0.0.1)
    finish_reason: str | None = None  # in the format's own words; default: its "stop"
    input_tokens: int | None = None
    output_tokens: int | None = None  # the visible answer only; reasoning is counted apart
    reasoning_tokens: int | None = None
    cached_tokens: int = 0  # of the input, read from the prompt cache (reported per format)
    # tool calls after the text, in the format's own shape (JSON and streamed); with them the
    # default finish is the format's tool-call reason (tool_calls, tool_use; Gemini and
    # Ollama say STOP/stop)
    tool_calls: list[FakeToolCall] = field(default_factory=list)


@dataclass
class RecordedRequest:
    api: str
    model: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-cased names
    body: Any
    stream: bool

    def texts(self) -> list[str]:
        """Every message text of the request, system prompt included."""
        body = self.body if isinstance(self.body, dict) else {}
        if self.api == GOOGLE:
            out = [p.get("text", "") for p in body.get("systemInstruction", {}).get("parts", [])]
            for c in body.get("contents", []):
                out += [p.get("text", "") for p in c.get("parts", [])]
            return out
        out = [body["system"]] if isinstance(body.get("system"), str) else []
        return out + [_content_text(m.get("content")) for m in body.get("messages", [])]

    @property
    def last_user_text(self) -> str:
        body = self.body if isinstance(self.body, dict) else {}
        if self.api == GOOGLE:
            users = [c for c in body.get("contents", []) if c.get("role") == "user"]
            return "".join(p.get("text", "") for p in users[-1]["parts"]) if users else ""
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        return _content_text(users[-1]["content"]) if users else ""


def _content_text(content: Any) -> str:
    """A message's text: a string, null (OpenAI's with tool calls), or content blocks
    (Anthropic's: text blocks, and tool results with text content)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [b.get("text") or b.get("content") for b in content if isinstance(b, dict)]
    return "\n".join(t for t in texts if isinstance(t, str))


def echo(request: RecordedRequest) -> Reply:
    """A default that answers with the last user message."""
    return Reply(text=request.last_user_text)


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    return [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]


@dataclass
class _Answer:
    """A reply resolved against its request: what to say and the counts to report."""

    reply: Reply
    model: str
    content: str
    reasoning: str  # native reasoning (empty when inline)
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    usage_in_stream: bool = True

    @classmethod
    def of(cls, reply: Reply, req: RecordedRequest) -> _Answer:
        inline = reply.think_inline and reply.reasoning
        content = f"<think>{reply.reasoning}</think>\n\n{reply.text}" if inline else reply.text
        body = req.body if isinstance(req.body, dict) else {}
        return cls(
            reply,
            req.model,
            content,
            "" if inline else reply.reasoning,
            reply.input_tokens
            if reply.input_tokens is not None
            else sum(_words(t) for t in req.texts()),
            reply.output_tokens if reply.output_tokens is not None else _words(reply.text),
            reply.reasoning_tokens
            if reply.reasoning_tokens is not None
            else _words(reply.reasoning),
            usage_in_stream=bool(body.get("stream_options", {}).get("include_usage")),
        )

    @property
    def billed_output(self) -> int:
        return self.output_tokens + self.reasoning_tokens

    @property
    def cached(self) -> int:
        return min(self.reply.cached_tokens, self.input_tokens)

    def anthropic_input(self) -> dict[str, int]:
        """Anthropic reports cache reads beside input_tokens, not inside it."""
        usage = {"input_tokens": self.input_tokens - self.cached}
        if self.cached:
            usage["cache_read_input_tokens"] = self.cached
        return usage


# -- per-format bodies ----------------------------------------------------------------

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_GOOGLE_STATUS_CODE = {v: k for k, v in _GOOGLE_STATUS.items()}


def _error_body(api: str, status: int, message: str) -> dict[str, Any]:
    if api == OPENAI:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    if api == ANTHROPIC:
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if api == GOOGLE:
        label = _GOOGLE_STATUS.get(status, "INTERNAL")
        return {"error": {"code": status, "message": message, "status": label}}
    return {"error": message}


def _stream_error_body(api: str, kind: str) -> dict[str, Any]:
    if api == ANTHROPIC:
        return {"type": "error", "error": {"type": kind, "message": f"stream {kind}"}}
    if api == GOOGLE:
        return _error_body(api, _GOOGLE_STATUS_CODE.get(kind, 500), f"stream {kind}")
    if api == OPENAI:
        return {"error": {"message": f"stream {kind}", "type": kind, "code": None}}
    return {"error": f"stream {kind}"}


def _openai_usage(a: _Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.billed_output,
        "total_tokens": a.input_tokens + a.billed_output,
        "completion_tokens_details": {"reasoning_tokens": a.reasoning_tokens},
        "prompt_tokens_details": {"cached_tokens": a.cached},
    }


def _google_usage(a: _Answer, *, final: bool = True) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": a.input_tokens}
    if a.cached:
        usage["cachedContentTokenCount"] = a.cached
    if final:
        usage["candidatesTokenCount"] = a.output_tokens
        if a.reasoning_tokens:
            usage["thoughtsTokenCount"] = a.reasoning_tokens
    usage["totalTokenCount"] = a.input_tokens + (a.billed_output if final else 0)
    return usage


def _openai_body(a: _Answer) -> dict[str, Any]:
    """A chat.completion. Scripted calls go in message.tool_calls (a str ``arguments``
    verbatim, to script broken JSON), the content null when there is no text, and the
    finish is tool_calls."""
    calls = []
    for i, c in enumerate(a.reply.tool_calls):
        args = c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments)
        function = {"name": c.name, "arguments": args}
        calls.append({"id": c.id or f"call_fake{i}", "type": "function", "function": function})
    finish = a.reply.finish_reason or ("tool_calls" if calls else "stop")
    message: dict[str, Any] = {"role": "assistant", "content": a.content}
    if a.reasoning:
        message["reasoning_content"] = a.reasoning
    if calls:
        message["content"] = a.content or None
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": a.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _openai_usage(a),
    }


def _anthropic_tool_use(index: int, call: FakeToolCall) -> tuple[dict[str, Any], str]:
    """A tool_use block and its arguments as JSON text (streamed in input_json_delta pieces).

    A str ``arguments`` is that text verbatim, to script broken JSON in a stream. A whole
    body can only carry an object: a str that is a JSON object goes as that object, any
    other str as the ``input`` itself, which no real body has (the adapter says malformed).
    """
    text = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
    value: Any = call.arguments
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = json.loads(value)
            value = parsed if isinstance(parsed, dict) else value
    block = {"type": "tool_use", "id": call.id or f"toolu_fake{index}", "name": call.name}
    return {**block, "input": value}, text


def _anthropic_body(a: _Answer) -> dict[str, Any]:
    """A message: thinking, text (left out when only calls are said), then a tool_use block
    per scripted call, and stop_reason tool_use when there are calls."""
    calls = a.reply.tool_calls
    finish = a.reply.finish_reason or ("tool_use" if calls else "end_turn")
    blocks: list[dict[str, Any]] = []
    if a.reasoning:
        blocks.append({"type": "thinking", "thinking": a.reasoning, "signature": "sig"})
    if a.content or not calls:
        blocks.append({"type": "text", "text": a.content})
    blocks += [_anthropic_tool_use(i, c)[0] for i, c in enumerate(calls)]
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": blocks,
        "stop_reason": finish,
        "stop_sequence": None,
        "usage": {**a.anthropic_input(), "output_tokens": a.billed_output},
    }


def _google_call(call: FakeToolCall) -> dict[str, Any]:
    """A functionCall part: args is always an object (a str is parsed), the signature sits
    on the part beside it, an id only when scripted (the Gemini API rarely sends one)."""
    args = call.arguments if isinstance(call.arguments, dict) else json.loads(call.arguments)
    function: dict[str, Any] = {"name": call.name, "args": args}
    if call.id is not None:
        function["id"] = call.id
    part: dict[str, Any] = {"functionCall": function}
    if call.signature is not None:
        part["thoughtSignature"] = call.signature
    return part


def _google_body(a: _Answer) -> dict[str, Any]:
    finish = a.reply.finish_reason
    parts: list[dict[str, Any]] = []
    if a.reasoning:
        parts.append({"text": a.reasoning, "thought": True})
    if a.content or not a.reply.tool_calls:
        parts.append({"text": a.content})
    parts += [_google_call(c) for c in a.reply.tool_calls]
    return {
        "candidates": [
            {
                "content": {"parts": parts, "role": "model"},
                "finishReason": finish or "STOP",  # Gemini says STOP after calls too
                "index": 0,
            }
        ],
        "usageMetadata": _google_usage(a),
        "modelVersion": a.model,
    }


def _ollama_body(a: _Answer) -> dict[str, Any]:
    """An /api/chat answer. Scripted calls go in message.tool_calls as Ollama sends them:
    arguments an object (a str verbatim, to script broken ones), function.index counting
    the calls, an id only when scripted (servers before v0.12.10 send none); the finish
    stays "stop"."""
    finish = a.reply.finish_reason
    message: dict[str, Any] = {"role": "assistant", "content": a.content}
    if a.reasoning:
        message["thinking"] = a.reasoning
    calls = []
    for i, c in enumerate(a.reply.tool_calls):
        call: dict[str, Any] = {"function": {"index": i, "name": c.name, "arguments": c.arguments}}
        if c.id is not None:
            call["id"] = c.id
        calls.append(call)
    if calls:
        message["tool_calls"] = calls
    return {
        "model": a.model,
        "created_at": "2025-01-01T00:00:00Z",
        "message": message,
        "done": True,
        "done_reason": finish or "stop",
        "prompt_eval_count": a.input_tokens,
        "eval_count": a.billed_output,
    }


_BODIES: dict[str, Callable[[_Answer], dict[str, Any]]] = {
    OPENAI: _openai_body,
    ANTHROPIC: _anthropic_body,
    GOOGLE: _google_body,
    OLLAMA: _ollama_body,
}


def _complete_body(api: str, a: _Answer) -> dict[str, Any]:
    return _BODIES[api](a)


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


_Frames = tuple[list[bytes], list[bytes], list[bytes]]


def _openai_frames(a: _Answer) -> _Frames:
    """(head, body, tail) frames: body holds one frame per reasoning/content piece, then the
    tool calls: each call's first delta carries its index, id and name, its arguments follow
    in pieces, and the pieces of parallel calls are interleaved (told apart by index)."""
    calls = _openai_body(a)["choices"][0]["message"].get("tool_calls", [])
    finish = a.reply.finish_reason or ("tool_calls" if calls else "stop")
    thoughts, texts = _pieces(a.reasoning), _pieces(a.content)

    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": reason}
        obj = {"id": "c", "object": "chat.completion.chunk", "model": a.model}
        return _sse({**obj, "choices": [choice]})

    head = [chunk({"role": "assistant", "content": ""})]
    body = [chunk({"reasoning_content": p}) for p in thoughts]
    body += [chunk({"content": p}) for p in texts]
    for i, call in enumerate(calls):
        start = {
            **call,
            "index": i,
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        body.append(chunk({"tool_calls": [start]}))
    fragments = [_pieces(call["function"]["arguments"]) for call in calls]
    for step in range(max(map(len, fragments), default=0)):
        for i, pieces in enumerate(fragments):
            if step < len(pieces):
                piece = {"index": i, "function": {"arguments": pieces[step]}}
                body.append(chunk({"tool_calls": [piece]}))
    tail = [chunk({}, finish)]
    if a.usage_in_stream:
        tail.append(_sse({"id": "c", "choices": [], "usage": _openai_usage(a)}))
    return head, body, [*tail, _sse("[DONE]")]


def _anthropic_frames(a: _Answer) -> _Frames:
    """(head, body, tail) frames: body holds one frame per reasoning/content piece, then per
    tool call a content_block_start (tool_use, input {}), input_json_delta fragments (an
    empty one first, as the API sends) and a content_block_stop. Blocks are numbered by
    their place in the message, as the API's index is."""
    calls = a.reply.tool_calls
    finish = a.reply.finish_reason or ("tool_use" if calls else "end_turn")
    thoughts, texts = _pieces(a.reasoning), _pieces(a.content)
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": [],
            "stop_reason": None,
            "usage": {**a.anthropic_input(), "output_tokens": 1},
        },
    }
    head = [_sse(start, "message_start"), _sse({"type": "ping"}, "ping")]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if thoughts:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in thoughts]
        deltas.append({"type": "signature_delta", "signature": "sig"})
        blocks.append(({"type": "thinking", "thinking": ""}, deltas))
    if texts:
        deltas = [{"type": "text_delta", "text": p} for p in texts]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for i, call in enumerate(calls):
        use, text = _anthropic_tool_use(i, call)
        fragments = ["", *_pieces(text)]
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in fragments]
        blocks.append(({**use, "input": {}}, deltas))
    body: list[bytes] = []
    for index, (block, deltas) in enumerate(blocks):
        frames = [
            _sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta")
            for d in deltas
        ]
        start = {"type": "content_block_start", "index": index, "content_block": block}
        stop = {"type": "content_block_stop", "index": index}
        # the block start rides with its first piece, so a cut stream still carries text
        frames[0] = _sse(start, "content_block_start") + frames[0]
        frames[-1] += _sse(stop, "content_block_stop")
        body += frames
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": finish, "stop_sequence": None},
        "usage": {"output_tokens": a.billed_output},
    }
    tail = [_sse(delta, "message_delta"), _sse({"type": "message_stop"}, "message_stop")]
    return head, body, tail


def _google_frames(a: _Answer) -> _Frames:
    """(head, body, tail) frames: body holds one frame per reasoning/content piece and call."""
    finish = a.reply.finish_reason
    thoughts, texts = _pieces(a.reasoning), _pieces(a.content)

    def frame(part: dict[str, Any]) -> bytes:
        cand = {"content": {"parts": [part], "role": "model"}, "index": 0}
        usage = _google_usage(a, final=False)
        return _sse({"candidates": [cand], "usageMetadata": usage, "modelVersion": a.model})

    body = [frame({"text": p, "thought": True}) for p in thoughts]
    body += [frame({"text": p}) for p in texts]
    # each call whole in a chunk of its own, as Gemini streams them
    body += [frame(_google_call(c)) for c in a.reply.tool_calls]
    last = {
        "content": {"parts": [{"text": ""}], "role": "model"},
        "finishReason": finish or "STOP",
        "index": 0,
    }
    final = {"candidates": [last], "usageMetadata": _google_usage(a), "modelVersion": a.model}
    return [], body, [_sse(final)]


def _ollama_frames(a: _Answer) -> _Frames:
    """(head, body, tail) frames: body holds one frame per reasoning/content piece, then a
    line per tool call, each call whole (Ollama never splits one)."""
    finish = a.reply.finish_reason
    thoughts, texts = _pieces(a.reasoning), _pieces(a.content)
    calls = _ollama_body(a)["message"].get("tool_calls", [])

    def line(message: dict[str, Any], **extra: Any) -> bytes:
        obj = {"model": a.model, "created_at": "2025-01-01T00:00:00Z", "message": message}
        return (json.dumps({**obj, "done": False, **extra}) + "\n").encode()

    body = [line({"role": "assistant", "content": "", "thinking": p}) for p in thoughts]
    body += [line({"role": "assistant", "content": p}) for p in texts]
    body += [line({"role": "assistant", "content": "", "tool_calls": [c]}) for c in calls]
    done = line(
        {"role": "assistant", "content": ""},
        done=True,
        done_reason=finish or "stop",
        prompt_eval_count=a.input_tokens,
        eval_count=a.billed_output,
    )
    return [], body, [done]


_FRAMES: dict[str, Callable[[_Answer], _Frames]] = {
    OPENAI: _openai_frames,
    ANTHROPIC: _anthropic_frames,
    GOOGLE: _google_frames,
    OLLAMA: _ollama_frames,
}


def _stream_frames(api: str, a: _Answer) -> _Frames:
    """(head, body, tail) frames: body holds one frame per reasoning/content piece."""
    return _FRAMES[api](a)


_STREAM_TYPES = {
    OPENAI: "text/event-stream",
    ANTHROPIC: "text/event-stream",
    GOOGLE: "text/event-stream",
    OLLAMA: "application/x-ndjson",
}


# -- the server ---------------------------------------------------------------------------


class FakeLLM:
    """A real aiohttp server on 127.0.0.1 (a free port) speaking all four formats.

    Every chat request body is judged by the official SDK's request types
    (:func:`tests.wire.check_request`): one they refuse is answered 400, as the real API
    would, and listed in ``wire_errors``; leaving ``async with`` then fails the test.
    ``check_wire=False`` is for a test that sends junk on purpose."""

    def __init__(self, *, check_wire: bool = True) -> None:
        self.default: Reply | Callable[[RecordedRequest], Reply] = Reply()
        self.check_wire = check_wire
        self.wire_errors: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.models: list[str] = ["fake-model"]
        self.url = ""
        self._queues: defaultdict[str, deque[Reply]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._arrived = asyncio.Condition()

    async def __aenter__(self) -> FakeLLM:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
        # raised even when the test failed already: a refused body is the likelier cause
        if self.wire_errors:
            listed = "\n".join(f"  {e}" for e in self.wire_errors)
            raise AssertionError(f"requests the official SDKs' types refuse:\n{listed}")

    def base_url(self, api: str) -> str:
        """What to put in ProviderConfig.base_url for ``api`` (short or full name)."""
        api = _SHORT.get(api, api)
        suffix = {OPENAI: "/v1", ANTHROPIC: "", GOOGLE: "/v1beta", OLLAMA: ""}[api]
        return self.url + suffix

    async def wait_for_requests(
        self,
        count: int,
        timeout_s: float = 10.0,
        where: Callable[[RecordedRequest], bool] = lambda r: True,
    ) -> None:
        """Wait until ``count`` requests (those ``where`` picks) have arrived; ``timeout_s``
        is a test's bound, not a pace."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: sum(map(where, self.requests)) >= count)

    def script(self, model: str, *replies: Reply) -> None:
        """Queue replies for ``model``, consumed in order; then ``default`` answers."""
        self._queues[model].extend(replies)

    async def start(self) -> FakeLLM:
        if self.check_wire:
            warm()  # once per process, before any request is timed
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_get("/v1/models", self._list_v1)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1beta/models/{spec}", self._google)
        app.router.add_get("/v1beta/models", self._list_google)
        app.router.add_post("/api/chat", self._ollama)
        app.router.add_get("/api/tags", self._list_ollama)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()  # wakes hanging and delayed handlers
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return await self._answer(request, OPENAI, body.get("model", ""), body, body.get("stream"))

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return await self._answer(
            request, ANTHROPIC, body.get("model", ""), body, body.get("stream")
        )

    async def _google(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["spec"].rpartition(":")
        if action not in ("generateContent", "streamGenerateContent"):
            raise web.HTTPNotFound()
        body = await request.json()
        return await self._answer(request, GOOGLE, model, body, action == "streamGenerateContent")

    async def _ollama(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        # like Ollama: streaming unless told otherwise
        return await self._answer(
            request, OLLAMA, body.get("model", ""), body, body.get("stream", True)
        )

    async def _list_v1(self, request: web.Request) -> web.Response:
        anthropic = "anthropic-version" in request.headers or "x-api-key" in request.headers
        self._record(request, ANTHROPIC if anthropic else OPENAI, "", None, False)
        data = [
            {
                "id": m,
                "object": "model",
                "type": "model",
                "display_name": m,
                "created": 0,
                "created_at": "2025-01-01T00:00:00Z",
                "owned_by": "fake",
            }
            for m in self.models
        ]
        first, last = (self.models[0], self.models[-1]) if self.models else (None, None)
        return web.json_response(
            {"object": "list", "data": data, "has_more": False, "first_id": first, "last_id": last}
        )

    async def _list_google(self, request: web.Request) -> web.Response:
        self._record(request, GOOGLE, "", None, False)
        models = [
            {
                "name": f"models/{m}",
                "displayName": m,
                "supportedGenerationMethods": ["generateContent"],
            }
            for m in self.models
        ]
        return web.json_response({"models": models})

    async def _list_ollama(self, request: web.Request) -> web.Response:
        self._record(request, OLLAMA, "", None, False)
        models = [{"name": m, "model": m, "size": 0} for m in self.models]
        return web.json_response({"models": models})

    # -- answering -----------------------------------------------------------------

    def _record(
        self, request: web.Request, api: str, model: str, body: Any, stream: bool
    ) -> RecordedRequest:
        headers = {k.lower(): v for k, v in request.headers.items()}
        rec = RecordedRequest(api, model, request.path_qs, headers, body, stream)
        self.requests.append(rec)
        asyncio.get_running_loop().create_task(self._notify())
        return rec

    def _refuse(self, rec: RecordedRequest) -> web.Response | None:
        """A 400 in the format's error shape for a body the SDK's types refuse, else None."""
        if not self.check_wire:
            return None
        try:
            check_request(rec.api, rec.body, path=rec.path, stream=rec.stream)
        except WireError as error:
            self.wire_errors.append(f"{rec.path}: {error}")
            return web.json_response(_error_body(rec.api, 400, str(error)), status=400)
        return None

    async def _notify(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    def _next_reply(self, rec: RecordedRequest) -> Reply:
        queue = self._queues.get(rec.model)
        if queue:
            return queue.popleft()
        return self.default(rec) if callable(self.default) else self.default

    async def _wait_until(self, event: asyncio.Event) -> None:
        """Until ``event`` is set or the server closes, whichever comes first."""
        assert self._closing is not None
        waits = [asyncio.ensure_future(e.wait()) for e in (event, self._closing)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _wait_closing(self, timeout_s: float | None) -> None:
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout_s)

    async def _answer(
        self, request: web.Request, api: str, model: str, body: Any, stream: Any
    ) -> web.StreamResponse:
        rec = self._record(request, api, model, body, bool(stream))
        if refused := self._refuse(rec):
            return refused  # before a scripted reply is spent, as a real API would refuse
        reply = self._next_reply(rec)
        if reply.hang:
            await self._wait_gone(request)
            return web.Response(status=503, text="closing")
        if reply.delay_s:
            await self._wait_closing(reply.delay_s)
        if reply.hold is not None:
            await self._wait_until(reply.hold)
        headers = {} if reply.retry_after is None else {"Retry-After": f"{reply.retry_after:g}"}
        if reply.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{reply.retry_after_ms:g}"
        if reply.redirect:
            port = self.url.rsplit(":", 1)[1]
            location = f"http://localhost:{port}{request.path_qs}"
            return web.Response(status=307, headers=headers | {"Location": location})
        if reply.status != 200:
            message = reply.error_message or f"fake error {reply.status}"
            error = reply.error_json
            if error is None:
                error = _error_body(api, reply.status, message)
            return web.json_response(error, status=reply.status, headers=headers)
        if reply.error_body and not rec.stream:
            message = reply.error_message or "fake error inside a 200"
            return web.json_response(_error_body(api, 500, message), headers=headers)
        answer = _Answer.of(reply, rec)
        if rec.stream:
            return await self._stream(request, api, answer)
        content_type = reply.content_type or "application/json"
        if reply.malformed:
            return web.Response(text='{"not json', content_type=content_type)
        text = json.dumps(_complete_body(api, answer))
        if reply.stall or reply.cut_body:
            return await self._partial_body(request, text.encode(), content_type, reply.stall)
        return web.Response(text=text, content_type=content_type)

    async def _partial_body(
        self, request: web.Request, data: bytes, content_type: str, stall: bool
    ) -> web.StreamResponse:
        """Announce the whole body's length, send half of it, then stall or drop."""
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        if stall:
            await self._wait_gone(request)
        elif request.transport is not None:
            request.transport.abort()
        return response

    async def _wait_gone(self, request: web.Request) -> None:
        """Wait until the client hung up (or the server closes).

        Polled: a handler is not cancelled when its client goes away, and a hanging
        handler must not keep its connection open for the rest of a long test.
        """
        assert self._closing is not None
        while not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await self._wait_closing(0.05)

    async def _stream(self, request: web.Request, api: str, a: _Answer) -> web.StreamResponse:
        reply = a.reply
        response = web.StreamResponse(
            headers={"Content-Type": reply.content_type or _STREAM_TYPES[api]}
        )
        await response.prepare(request)
        head, body, tail = _stream_frames(api, a)
        frames = [*head, *body, *tail]
        if reply.cut_stream or reply.abort_stream or reply.stall:
            frames = [*head, *body[:1]]
        elif reply.malformed:
            garbage = b"{not json\n" if api == OLLAMA else b"data: {not json\n\n"
            frames = [*head, *body[:1], garbage]
        elif reply.stream_error:
            error = reply.error_json  # a format's own in-stream shape, when given
            if error is None:
                error = _stream_error_body(api, reply.stream_error)
            frame = (
                (json.dumps(error) + "\n").encode()
                if api == OLLAMA
                else _sse(error, "error" if api == ANTHROPIC else None)
            )
            frames = [*head, *body[:1], frame]
        for i, frame in enumerate(frames):
            if i and reply.frame_delay_s:
                await self._wait_closing(reply.frame_delay_s)
                if request.transport is None or request.transport.is_closing():
                    return response  # the client stopped listening
            await response.write(frame)
        if reply.stall:
            await self._wait_gone(request)
            return response
        if reply.abort_stream and request.transport is not None:
            request.transport.abort()  # mid-body: the client sees an incomplete chunked read
            return response
        await response.write_eof()
        return response
