"""anthropic-messages: headers, the top-level system prompt, thinking, usage."""

from __future__ import annotations

from typing import Any

import pytest

from core.providers.base import Chunk, Malformed
from core.types import Message, ModelCall
from tests.conftest import ProviderFactory
from tests.fakes.llm import FakeLLM, Reply

API = "anthropic-messages"
MESSAGES = (
    Message("system", "You are terse."),
    Message("user", "Hi"),
    Message("system", "Answer in French."),
    Message("assistant", "Salut"),
    Message("user", "Encore"),
)


async def test_request_mapping(fake_llm: FakeLLM, make_provider: ProviderFactory) -> None:
    provider = make_provider(API, api_key="sk-ant-1")
    call = ModelCall(MESSAGES, max_tokens=500, temperature=0.3)
    await provider.complete("claude-opus-4-5", call)
    [_ async for _ in provider.stream("claude-opus-4-5", call)]
    plain, streamed = fake_llm.requests
    assert plain.path == streamed.path == "/v1/messages"
    assert plain.headers["x-api-key"] == "sk-ant-1"
    assert plain.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in plain.headers
    assert plain.body == {
        "model": "claude-opus-4-5",
        "max_tokens": 500,
        "system": "You are terse.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "Encore"},
        ],
        "temperature": 0.3,
        "stream": False,
    }
    assert streamed.body["stream"] is True


@pytest.mark.parametrize(
    ("max_tokens", "thinking"),
    [
        (4096, {"type": "enabled", "budget_tokens": 2048}),
        (1500, {"type": "enabled", "budget_tokens": 1024}),
        (1024, None),  # no room for the minimum budget: answer without thinking
    ],
)
async def test_thinking_when_reasoning(
    fake_llm: FakeLLM, make_provider: ProviderFactory, max_tokens: int, thinking: Any
) -> None:
    call = ModelCall((Message("user", "x"),), max_tokens, temperature=0.7, reasoning=True)
    await make_provider(API).complete("m", call)
    body = fake_llm.requests[0].body
    assert body.get("thinking") == thinking
    # the API refuses a temperature together with thinking
    assert ("temperature" in body) is (thinking is None)


async def test_no_system_no_key(fake_llm: FakeLLM, make_provider: ProviderFactory) -> None:
    await make_provider(API, api_key=None).complete("m", ModelCall((Message("user", "x"),), 5))
    (req,) = fake_llm.requests
    assert "system" not in req.body and "x-api-key" not in req.headers
    assert req.body["max_tokens"] == 5


async def test_thinking_blocks_become_reasoning(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    fake_llm.script("m", Reply(text="Bonjour", reasoning="French it is"))
    resp = await make_provider(API).complete("m", ModelCall((Message("user", "x"),), 50))
    assert (resp.content, resp.reasoning) == ("Bonjour", "French it is")


def parse(make_provider: ProviderFactory, data: Any) -> Chunk:
    (chunk,) = make_provider(API).parse_body(data)
    return chunk


def test_cache_tokens_count_as_input_and_odd_blocks_are_skipped(
    make_provider: ProviderFactory,
) -> None:
    data = {
        "type": "message",
        "content": [
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "text", "text": "a"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            {"type": "text", "text": "b"},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 90,
                  "cache_creation_input_tokens": 5, "output_tokens": 7},
    }  # fmt: skip
    chunk = parse(make_provider, data)
    assert (chunk.text, chunk.reasoning, chunk.finish_reason) == ("ab", "", "tool_calls")
    assert (chunk.input_tokens, chunk.output_tokens) == (105, 7)


@pytest.mark.parametrize(
    "data", [{}, {"content": "text"}, {"content": [{"type": "text", "text": 1}]}]
)
def test_missing_fields_are_malformed(make_provider: ProviderFactory, data: Any) -> None:
    with pytest.raises(Malformed):
        parse(make_provider, data)


async def test_stream_usage_from_message_start_and_delta(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    fake_llm.script("m", Reply(text="a b c", input_tokens=11, output_tokens=3))
    items = [
        i async for i in make_provider(API).stream("m", ModelCall((Message("user", "x"),), 50))
    ]
    final = items[-1]
    assert final.usage.input_tokens == 11 and final.usage.output_tokens == 3  # type: ignore[union-attr]


async def test_config_headers_may_pin_another_api_version(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    provider = make_provider(API, headers={"anthropic-version": "2099-01-01"})
    await provider.complete("m", ModelCall((Message("user", "x"),), 5))
    assert fake_llm.requests[0].headers["anthropic-version"] == "2099-01-01"
