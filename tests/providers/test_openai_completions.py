"""openai-completions: request mapping and the parser's corner cases."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ProviderError
from core.providers.base import Chunk, Malformed, UpstreamError
from core.types import Message, ModelCall
from tests.conftest import ProviderFactory
from tests.fakes.llm import FakeLLM, Reply

API = "openai-completions"
CALL = ModelCall(
    (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
     Message("user", "Again")),
    max_tokens=300,
    temperature=0.5,
)  # fmt: skip


async def test_request_mapping(fake_llm: FakeLLM, make_provider: ProviderFactory) -> None:
    provider = make_provider(API, api_key="sk-abc")
    await provider.complete("deepseek-chat", CALL)
    [_ async for _ in provider.stream("deepseek-chat", CALL)]
    plain, streamed = fake_llm.requests
    assert plain.path == streamed.path == "/v1/chat/completions"
    assert plain.headers["authorization"] == "Bearer sk-abc"
    assert plain.body == {
        "model": "deepseek-chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Again"},
        ],
        "max_tokens": 300,
        "temperature": 0.5,
        "stream": False,
    }
    assert streamed.body["stream"] is True
    assert streamed.body["stream_options"] == {"include_usage": True}


async def test_no_key_no_auth_header_no_temperature(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    provider = make_provider(API, api_key=None)
    await provider.complete("local", ModelCall((Message("user", "x"),), 10))
    (req,) = fake_llm.requests
    assert "authorization" not in req.headers
    assert "temperature" not in req.body


async def test_deepseek_reasoning_content(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    fake_llm.script("deepseek-reasoner", Reply(text="42", reasoning="6*7"))
    resp = await make_provider(API).complete("deepseek-reasoner", CALL)
    assert (resp.content, resp.reasoning) == ("42", "6*7")


def parse(make_provider: ProviderFactory, data: Any) -> Chunk:
    (chunk,) = make_provider(API).parse_body(data)
    return chunk


def test_reasoning_field_and_null_content(make_provider: ProviderFactory) -> None:
    chunk = parse(make_provider, {"choices": [{"message": {"content": None, "reasoning": "r"},
                                               "finish_reason": "length"}]})  # fmt: skip
    assert (chunk.text, chunk.reasoning, chunk.finish_reason) == ("", "r", "length")
    assert chunk.input_tokens is None  # no usage block: counts stay unknown (0)


def test_usage_without_details(make_provider: ProviderFactory) -> None:
    data = {"choices": [{"message": {"content": "a"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5,
                      "completion_tokens_details": None}}  # fmt: skip
    chunk = parse(make_provider, data)
    assert (chunk.input_tokens, chunk.output_tokens, chunk.reasoning_tokens) == (3, 5, 0)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"choices": []},
        {"choices": [{"finish_reason": "stop"}]},
        {"choices": [{"message": {"content": 5}}]},
        {"choices": [{"message": {"content": "a"}}], "usage": {"prompt_tokens": "3"}},
        [],
    ],
)
def test_missing_fields_are_malformed(make_provider: ProviderFactory, data: Any) -> None:
    with pytest.raises(Malformed):
        parse(make_provider, data)


def test_error_inside_a_200_body(make_provider: ProviderFactory) -> None:
    with pytest.raises(UpstreamError) as info:
        parse(make_provider, {"error": {"message": "quota", "code": 429}})
    assert info.value.status == 429


async def test_malformed_detail_names_the_problem(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    fake_llm.script("m", Reply(malformed=True))
    with pytest.raises(ProviderError, match="malformed: invalid JSON"):
        await make_provider(API).complete("m", CALL)
