"""google-generative-ai: the key in a header, contents/roles, thoughts, usage."""

from __future__ import annotations

from typing import Any

import pytest

from core.providers.base import Chunk, Malformed
from core.types import Message, ModelCall, Usage
from tests.conftest import ProviderFactory
from tests.fakes.llm import FakeLLM, Reply

API = "google-generative-ai"
CALL = ModelCall(
    (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
     Message("user", "Again")),
    max_tokens=300,
    temperature=0.5,
    reasoning=True,
)  # fmt: skip


async def test_request_mapping(fake_llm: FakeLLM, make_provider: ProviderFactory) -> None:
    provider = make_provider(API, api_key="AIza-secret")
    await provider.complete("gemini-2.5-flash", CALL)
    [_ async for _ in provider.stream("gemini-2.5-flash", CALL)]
    plain, streamed = fake_llm.requests
    assert plain.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert streamed.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert (plain.stream, streamed.stream) == (False, True)
    for req in (plain, streamed):
        assert req.headers["x-goog-api-key"] == "AIza-secret"
        assert "AIza-secret" not in req.path  # never in the URL, where logs would keep it
        assert "authorization" not in req.headers
    assert (
        plain.body
        == streamed.body
        == {
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello"}]},
                {"role": "user", "parts": [{"text": "Again"}]},
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {
                "maxOutputTokens": 300,
                "temperature": 0.5,
                "thinkingConfig": {"includeThoughts": True},
            },
        }
    )


async def test_plain_call_asks_for_no_thoughts(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    await make_provider(API, api_key=None).complete("m", ModelCall((Message("user", "x"),), 9))
    (req,) = fake_llm.requests
    assert req.body == {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "generationConfig": {"maxOutputTokens": 9},
    }
    assert "x-goog-api-key" not in req.headers


async def test_thought_parts_become_reasoning_and_count_as_output(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    fake_llm.script("m", Reply(text="Hi", reasoning="hmm", input_tokens=10, output_tokens=2,
                               reasoning_tokens=30))  # fmt: skip
    resp = await make_provider(API).complete("m", CALL)
    assert (resp.content, resp.reasoning) == ("Hi", "hmm")
    assert resp.usage == Usage(10, 32, 30)


def parse(make_provider: ProviderFactory, data: Any) -> Chunk:
    (chunk,) = make_provider(API).parse_body(data)
    return chunk


def test_blocked_prompt_is_an_empty_filtered_answer(make_provider: ProviderFactory) -> None:
    chunk = parse(make_provider, {"promptFeedback": {"blockReason": "SAFETY"},
                                  "usageMetadata": {"promptTokenCount": 4}})  # fmt: skip
    assert (chunk.text, chunk.finish_reason, chunk.input_tokens, chunk.output_tokens) == (
        "", "content_filter", 4, 0)  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "finish"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
     ("MALFORMED_FUNCTION_CALL", "malformed_function_call")],
)  # fmt: skip
def test_finish_reasons(make_provider: ProviderFactory, raw: str, finish: str) -> None:
    data = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": raw}]}
    assert parse(make_provider, data).finish_reason == finish


@pytest.mark.parametrize(
    "data", [{}, {"candidates": "x"}, {"candidates": [{"content": {"parts": [{"text": 3}]}}]}]
)
def test_missing_fields_are_malformed(make_provider: ProviderFactory, data: Any) -> None:
    with pytest.raises(Malformed):
        parse(make_provider, data)


async def test_tuned_model_path(fake_llm: FakeLLM, make_provider: ProviderFactory) -> None:
    provider = make_provider(API)
    assert provider.chat_call("tunedModels/abc", CALL, stream=False).path == (
        "/tunedModels/abc:generateContent"
    )
