"""ollama: stream always explicit, think, options, NDJSON."""

from __future__ import annotations

from typing import Any

import pytest

from core.providers.base import Chunk, Malformed, UpstreamError
from core.types import Message, ModelCall
from tests.conftest import ProviderFactory
from tests.fakes.llm import FakeLLM, Reply

API = "ollama"
CALL = ModelCall(
    (Message("system", "Be brief."), Message("user", "Hi")),
    max_tokens=2048,
    temperature=0.1,
    reasoning=True,
)


async def test_request_mapping(fake_llm: FakeLLM, make_provider: ProviderFactory) -> None:
    provider = make_provider(API, api_key=None)
    await provider.complete("qwen3:14b", CALL)
    [_ async for _ in provider.stream("qwen3:14b", CALL)]
    plain, streamed = fake_llm.requests
    assert plain.path == streamed.path == "/api/chat"
    assert "authorization" not in plain.headers
    assert plain.body == {
        "model": "qwen3:14b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "stream": False,  # explicit: Ollama streams by default
        "options": {"num_predict": 2048, "temperature": 0.1},
        "think": True,
    }
    assert streamed.body["stream"] is True


async def test_no_think_flag_for_plain_models(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    await make_provider(API, api_key="tok").complete(
        "llama3", ModelCall((Message("user", "x"),), 7)
    )
    (req,) = fake_llm.requests
    assert "think" not in req.body
    assert req.body["options"] == {"num_predict": 7}
    assert req.headers["authorization"] == "Bearer tok"


async def test_the_models_context_is_sent_as_num_ctx_both_ways(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # without it Ollama's default context (4k on small GPUs) cuts a longer prompt from its
    # start, the system prompt first, and says nothing
    provider = make_provider(API)
    call = ModelCall((Message("user", "x"),), 7, context=32768)
    await provider.complete("qwen3:14b", call)
    [_ async for _ in provider.stream("qwen3:14b", call)]
    plain, streamed = fake_llm.requests
    assert plain.body["options"] == streamed.body["options"] == {"num_predict": 7, "num_ctx": 32768}


@pytest.mark.parametrize(("keep_alive", "sent"), [("30m", "30m"), ("-1", -1), ("90", 90)])
async def test_keep_alive_is_sent_as_ollama_reads_it(
    fake_llm: FakeLLM, make_provider: ProviderFactory, keep_alive: str, sent: object
) -> None:
    provider = make_provider(API, keep_alive=keep_alive)
    await provider.complete("qwen3:14b", ModelCall((Message("user", "x"),), 7))
    [_ async for _ in provider.stream("qwen3:14b", ModelCall((Message("user", "x"),), 7))]
    plain, streamed = fake_llm.requests
    assert plain.body["keep_alive"] == streamed.body["keep_alive"] == sent
    await make_provider(API).complete("qwen3:14b", ModelCall((Message("user", "x"),), 7))
    assert "keep_alive" not in fake_llm.requests[-1].body  # unset: Ollama's own default


async def test_a_thinking_model_told_not_to_think_gets_think_false(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # a task with think = false: Ollama's thinking models think unless told otherwise
    call = ModelCall((Message("user", "x"),), 7, no_think=True)
    await make_provider(API).complete("qwen3:14b", call)
    assert fake_llm.requests[-1].body["think"] is False


async def test_thinking_field_and_counts(fake_llm: FakeLLM, make_provider: ProviderFactory) -> None:
    fake_llm.script("qwen3:14b", Reply(text="Hello", reasoning="greet", input_tokens=20,
                                       output_tokens=4, reasoning_tokens=6))  # fmt: skip
    resp = await make_provider(API).complete("qwen3:14b", CALL)
    assert (resp.content, resp.reasoning, resp.finish_reason) == ("Hello", "greet", "stop")
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (20, 10)


def parse(make_provider: ProviderFactory, data: Any) -> Chunk:
    (chunk,) = make_provider(API).parse_body(data)
    return chunk


@pytest.mark.parametrize("data", [{}, {"message": "x"}, {"message": {"content": 1}}])
def test_missing_fields_are_malformed(make_provider: ProviderFactory, data: Any) -> None:
    with pytest.raises(Malformed):
        parse(make_provider, data)


def test_error_line(make_provider: ProviderFactory) -> None:
    with pytest.raises(UpstreamError, match="runner crashed"):
        parse(make_provider, {"error": "runner crashed"})
