"""What every adapter promises alike: stream == non-stream, no <think> in content, listing."""

from __future__ import annotations

import pytest

from core.providers.base import Provider
from core.types import Message, ModelCall, ModelResponse, StreamDelta, Usage
from tests.conftest import ProviderFactory
from tests.fakes.llm import APIS, FakeLLM, Reply, echo

CALL = ModelCall(
    (Message("system", "Be brief."), Message("user", "What is six times seven?")),
    max_tokens=256,
    reasoning=True,
)  # no temperature: Anthropic's current API (and its SDK's types) have none

# what each format reports for 7 input words, 2 answer words and 4 reasoning words
EXPECTED_USAGE = {
    "openai-completions": Usage(7, 6, 4),
    "anthropic-messages": Usage(7, 6, 0),  # Anthropic does not count thinking apart
    "google-generative-ai": Usage(7, 6, 4),
    "ollama": Usage(7, 6, 0),  # nor does Ollama
}


async def collect(
    provider: Provider, call: ModelCall = CALL
) -> tuple[list[StreamDelta], ModelResponse]:
    items = [item async for item in provider.stream("m", call)]
    *deltas, final = items
    assert isinstance(final, ModelResponse)
    assert all(isinstance(d, StreamDelta) for d in deltas)
    return deltas, final  # type: ignore[return-value]


@pytest.mark.parametrize("inline", [False, True], ids=["native", "inline-think"])
@pytest.mark.parametrize("api", APIS)
async def test_stream_equals_complete(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str, inline: bool
) -> None:
    reply = Reply(text="It's 42.", reasoning="six sevens are forty-two", think_inline=inline)
    fake_llm.script("m", reply, reply)
    provider = make_provider(api)
    whole = await provider.complete("m", CALL)
    deltas, streamed = await collect(provider)

    assert whole == streamed
    assert whole.content == "It's 42."
    assert whole.reasoning == "six sevens are forty-two"
    assert whole.finish_reason == "stop"
    assert whole.status == 200 and whole.model == "m"
    if inline:  # usage counts come from the fake, not from where the thinking was put
        assert whole.usage.output_tokens == EXPECTED_USAGE[api].output_tokens
    else:
        assert whole.usage == EXPECTED_USAGE[api]
    assert "".join(d.content for d in deltas) == whole.content
    assert "".join(d.reasoning for d in deltas) == whole.reasoning
    assert len(deltas) > 2  # really streamed, piece by piece
    assert all("<think>" not in d.content and "</think>" not in d.content for d in deltas)


@pytest.mark.parametrize("api", APIS)
async def test_reasoning_only_answer_has_empty_content(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str
) -> None:
    native = {"openai-completions": "length", "anthropic-messages": "max_tokens",
              "google-generative-ai": "MAX_TOKENS", "ollama": "length"}[api]  # fmt: skip
    reply = Reply(text="", reasoning="thinking and thinking", finish_reason=native)
    fake_llm.script("m", reply, reply)
    provider = make_provider(api)
    whole = await provider.complete("m", CALL)
    _, streamed = await collect(provider)
    for resp in (whole, streamed):
        assert (resp.content, resp.reasoning) == ("", "thinking and thinking")
        assert resp.finish_reason == "length"  # normalized: the budget ran out


@pytest.mark.parametrize("api", APIS)
async def test_explicit_token_counts_are_normalized(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str
) -> None:
    reply = Reply(
        text="x", reasoning="y", input_tokens=1000, output_tokens=200, reasoning_tokens=50
    )
    fake_llm.script("m", reply, reply)
    provider = make_provider(api)
    whole = await provider.complete("m", CALL)
    _, streamed = await collect(provider)
    counted = api in ("openai-completions", "google-generative-ai")
    assert whole.usage == streamed.usage == Usage(1000, 250, 50 if counted else 0)


@pytest.mark.parametrize("api", APIS)
async def test_echo_default(fake_llm: FakeLLM, make_provider: ProviderFactory, api: str) -> None:
    fake_llm.default = echo
    provider = make_provider(api)
    resp = await provider.complete("m", CALL)
    assert resp.content == "What is six times seven?"
    assert resp.reasoning == ""


@pytest.mark.parametrize("api", APIS)
async def test_list_models(fake_llm: FakeLLM, make_provider: ProviderFactory, api: str) -> None:
    fake_llm.models = ["qwen3:14b", "gemini-2.5-flash"]
    provider = make_provider(api, api_key="sk-list")
    assert await provider.list_models() == ["qwen3:14b", "gemini-2.5-flash"]
    assert fake_llm.requests[-1].api == api


@pytest.mark.parametrize("api", APIS)
async def test_config_headers_go_on_every_request(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str
) -> None:
    provider = make_provider(api, headers={"X-Team": "ops"})
    await provider.complete("m", CALL)
    await provider.list_models()
    assert [r.headers["x-team"] for r in fake_llm.requests] == ["ops", "ops"]


@pytest.mark.parametrize("api", APIS)
async def test_client_is_reused_across_calls(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str
) -> None:
    provider = make_provider(api)
    client = provider._client
    await provider.complete("m", CALL)
    await collect(provider)
    assert provider._client is client and not client.closed


@pytest.mark.parametrize("api", APIS)
async def test_consumer_may_stop_a_stream_early(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str
) -> None:
    fake_llm.script("m", Reply(text="a long answer in many pieces"), Reply(text="next"))
    provider = make_provider(api)
    stream = provider.stream("m", CALL)
    first = await anext(stream)
    assert isinstance(first, StreamDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await provider.complete("m", CALL)).content == "next"
