"""Plain data passed between the router, the engine, the adapters and the ledger."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
# rejected: the upstream refused this request itself (400/413/422), not the model's config;
# interrupted: the process died during the call (recorded at the worst case at recovery)
Outcome = Literal[
    "pending",  # in the ledger while the call is in flight
    "ok",
    "unusable",
    "unavailable",
    "fatal",
    "billing",  # the key has no credit or quota left (402, insufficient_quota, daily quota)
    "rejected",
    "skipped",
    "denied",
    "cancelled",
    "interrupted",
]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, and its arguments' JSON Schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    strict: bool = False  # OpenAI's strict mode: arguments always match the schema


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call a model asked for. ``arguments`` is JSON text as the model wrote it (it may be
    broken: the engine judges it); ``signature`` is Gemini's thoughtSignature, which must go
    back with the turn that carried it."""

    id: str
    name: str
    arguments: str
    signature: str = ""


ToolMode = Literal["auto", "none", "required", "tool"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model may, must or must not call a tool; ``tool``: that one by ``name``."""

    mode: ToolMode = "auto"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``text``, any JSON object (``json_object``), or JSON matching ``schema``."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str = ""
    schema: Mapping[str, Any] | None = None
    strict: bool = False
    description: str = ""

    @property
    def wants_json(self) -> bool:
        return self.type != "text"


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. An assistant turn may carry ``tool_calls``; a ``tool`` turn is the result
    of the call ``tool_call_id``, and ``name`` is that tool's name (Gemini needs it)."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Normalized token counts.

    ``output_tokens`` is everything billed as output, reasoning included;
    ``reasoning_tokens`` is the part of it that was thinking (never shown).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0  # the part of input_tokens read from the provider's cache

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
        )


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One call to one model, as an adapter sends it."""

    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    reasoning: bool = False  # a thinking model: adapters that can toggle thinking turn it on
    context: int | None = None  # the model's context window in tokens, where it must be told
    no_think: bool = False  # a thinking model told not to think: adapters that can, say so
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None  # None: the API's default (auto when tools are given)
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A finished answer from one model.

    ``content`` never contains ``<think>`` blocks; thinking text is in ``reasoning``.
    """

    content: str
    reasoning: str
    usage: Usage
    finish_reason: str | None
    status: int
    model: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of a streamed answer. Adapters yield these, then one ModelResponse."""

    content: str = ""
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A request to the engine: messages plus where on the pyramid to start."""

    messages: tuple[Message, ...]
    task: str | None = None
    tier: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    request_id: str | None = None
    run_id: str | None = None
    agent: str | None = None
    caller: str | None = None  # who asked, e.g. the gateway's OpenAI `user` field
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    seed: int | None = None
    # an approval denied: answer with the best unusable lower-tier answer instead of failing
    keep_lower_on_deny: bool = False

    @property
    def uses_tools(self) -> bool:
        """Tools are offered, or the conversation already holds tool calls or results."""
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.messages)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One entry of a route trace: what was tried, and what came of it."""

    tier: int
    provider: str
    model: str
    outcome: Outcome
    reason: str = ""
    status: int | None = None
    latency_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    max_tokens: int | None = None
    tool_calls: int = 0  # tool calls the model asked for in this attempt

    @property
    def ref(self) -> str:
        return f"{self.provider}/{self.model}"
