"""An in-process provider for tests: queued answers and faults, no HTTP (like
pydantic-ai's TestModel).

The engine's failover and escalation table is tested with it, without sockets; the
loopback fakes (tests/fakes/llm.py) stay for the wire-format adapters and the end-to-end
tests. It lives in core/ so that mypy holds it to the engine's ``ChatModel`` interface;
only tests import it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import ErrorKind, ProviderError
from core.types import ModelCall, ModelResponse, StreamDelta, ToolCall, Usage


@dataclass(frozen=True, slots=True)
class Answer:
    """A queued answer. Streamed: reasoning first, then ``text`` in ``chunk``-char pieces."""

    text: str = ""
    reasoning: str = ""
    input_tokens: int = 10
    output_tokens: int = 5
    reasoning_tokens: int = 0
    finish_reason: str | None = "stop"
    chunk: int = 4
    tool_calls: tuple[ToolCall, ...] = ()  # with calls, the finish is "tool_calls"


@dataclass(frozen=True, slots=True)
class Fault:
    """A queued failure, raised as the adapters raise it. Streamed, ``after`` goes out
    first: a fault after the first byte."""

    kind: ErrorKind
    status: int | None = None
    detail: str = ""
    after: str = ""
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """A call the provider received."""

    model: str
    call: ModelCall
    stream: bool


class TestProvider:
    """Answers each model's calls from its queue, in order; records every call.

    A model with nothing queued answers as an unreachable upstream does (``unavailable``,
    naming the gap), so a test that forgot a step reads as a failover in the trace.
    """

    __test__ = False  # a class named Test* in a test module: pytest must not collect it

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[Call] = []
        self._queues: dict[str, deque[Answer | Fault]] = {}

    def script(self, model: str, *items: Answer | Fault) -> None:
        """Queue what ``model`` answers to its next calls."""
        self._queues.setdefault(model, deque()).extend(items)

    def budgets(self, model: str) -> list[int]:
        """The ``max_tokens`` of each call ``model`` received."""
        return [c.call.max_tokens for c in self.calls if c.model == model]

    async def complete(self, model: str, call: ModelCall) -> ModelResponse:
        """The next queued item for ``model``: its answer, or its fault raised."""
        item = self._next(model, call, stream=False)
        if isinstance(item, Fault):
            raise self._error(model, item)
        return self._response(model, item)

    async def stream(
        self, model: str, call: ModelCall
    ) -> AsyncIterator[StreamDelta | ModelResponse]:
        """The next queued item for ``model`` as a stream: deltas, then the response."""
        item = self._next(model, call, stream=True)
        if isinstance(item, Fault):
            if item.after:
                yield StreamDelta(item.after)
            raise self._error(model, item)
        if item.reasoning:
            yield StreamDelta(reasoning=item.reasoning)
        step = max(item.chunk, 1)
        for i in range(0, len(item.text), step):
            yield StreamDelta(item.text[i : i + step])
        yield self._response(model, item)

    async def aclose(self) -> None:
        """Nothing to close: there is no connection (the adapters' interface has it)."""

    def _next(self, model: str, call: ModelCall, *, stream: bool) -> Answer | Fault:
        self.calls.append(Call(model, call, stream))
        queue = self._queues.get(model)
        if not queue:
            return Fault("unavailable", detail=f"nothing queued for {self.name}/{model}")
        return queue.popleft()

    def _error(self, model: str, fault: Fault) -> ProviderError:
        return ProviderError(
            fault.kind,
            self.name,
            model,
            fault.detail,
            status=fault.status,
            retry_after_s=fault.retry_after_s,
        )

    @staticmethod
    def _response(model: str, a: Answer) -> ModelResponse:
        usage = Usage(a.input_tokens, a.output_tokens, a.reasoning_tokens)
        finish = "tool_calls" if a.tool_calls and a.finish_reason == "stop" else a.finish_reason
        return ModelResponse(a.text, a.reasoning, usage, finish, 200, model, a.tool_calls)


if TYPE_CHECKING:  # mypy holds the fake to the interface the engine calls
    from core.engine.engine import ChatModel

    def _is_a_chat_model(p: TestProvider) -> ChatModel:
        return p
