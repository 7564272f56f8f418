"""One call sent both ways, JSON and streamed: every adapter's tool and JSON tests check
that the two agree (the same request body but for ``stream``, the same final answer)."""

from __future__ import annotations

from typing import Any

from core.providers.base import Provider
from core.types import ModelCall, ModelResponse
from tests.fakes.llm import FakeLLM


async def both(
    provider: Provider, model: str, call: ModelCall
) -> tuple[ModelResponse, ModelResponse]:
    """The JSON answer and the streamed one's final response."""
    plain = await provider.complete(model, call)
    [*_, streamed] = [item async for item in provider.stream(model, call)]
    assert isinstance(streamed, ModelResponse)
    return plain, streamed


async def sent_both(fake: FakeLLM, provider: Provider, call: ModelCall) -> dict[str, Any]:
    """Send ``call`` plain and streamed as model "m"; the two bodies must be equal but for
    a ``stream`` flag (false, then true) where the format has one: return the plain one."""
    await both(provider, "m", call)
    plain, streamed = (dict(r.body) for r in fake.requests[-2:])
    if "stream" in plain or "stream" in streamed:
        assert (plain.pop("stream"), streamed.pop("stream")) == (False, True)
    assert plain == streamed
    return plain
