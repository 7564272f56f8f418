"""google-generative-ai: the key in a header, contents/roles, thoughts, usage, tool calls
with their thought signatures, structured output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.providers.base import Chunk, Malformed
from core.types import (
    Message,
    ModelCall,
    ModelResponse,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from tests.conftest import ProviderFactory
from tests.fakes.llm import FakeLLM, FakeToolCall, Reply
from tests.providers.both import sent_both

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


# -- tools, structured output, sampling options ------------------------------------------

WEATHER = ToolSpec(
    "get_weather",
    "Weather for a city.",
    # full JSON Schema: a type list and oneOf, which the OpenAPI-subset `parameters` refuses
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": ["string", "null"], "oneOf": [{"const": "C"}, {"const": "F"}]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
)
NOW = ToolSpec("now")  # no description, no parameters
ASK = (Message("user", "Weather in Paris?"),)


async def send_both(
    fake_llm: FakeLLM, make_provider: ProviderFactory, call: ModelCall
) -> dict[str, Any]:
    """Send ``call`` plain and streamed; both bodies must be equal: return one."""
    return await sent_both(fake_llm, make_provider(API), call)


async def test_tools_schema_and_sampling_options(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    schema = {"type": "object", "properties": {"t": {"type": "integer"}}, "required": ["t"]}
    call = ModelCall(
        ASK,
        100,
        tools=(WEATHER, NOW),
        tool_choice=ToolChoice("auto"),
        parallel_tool_calls=False,  # Gemini has no switch for it: not sent
        response_format=ResponseFormat("json_schema", name="temp", schema=schema, strict=True),
        stop=("END", "###"),
        top_p=0.9,
        seed=7,
    )
    body = await send_both(fake_llm, make_provider, call)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city.",
                    "parametersJsonSchema": dict(WEATHER.parameters),
                },
                {"name": "now"},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "topP": 0.9,
        "seed": 7,
        "stopSequences": ["END", "###"],
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert "parallel" not in str(body).lower()


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (ToolChoice("auto"), {"mode": "AUTO"}),
        (ToolChoice("required"), {"mode": "ANY"}),
        (ToolChoice("tool", "get_weather"), {"mode": "ANY",
                                             "allowedFunctionNames": ["get_weather"]}),
        (ToolChoice("none"), {"mode": "NONE"}),
    ],
)  # fmt: skip
async def test_tool_choice_modes(
    fake_llm: FakeLLM,
    make_provider: ProviderFactory,
    choice: ToolChoice,
    config: dict[str, Any],
) -> None:
    body = await send_both(
        fake_llm, make_provider, ModelCall(ASK, 50, tools=(WEATHER,), tool_choice=choice)
    )
    assert body["toolConfig"] == {"functionCallingConfig": config}


async def test_no_tool_choice_leaves_the_api_default(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    body = await send_both(fake_llm, make_provider, ModelCall(ASK, 50, tools=(WEATHER,)))
    assert "toolConfig" not in body
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"


async def test_json_object_sets_only_the_mime_type(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    call = ModelCall(ASK, 50, response_format=ResponseFormat("json_object"))
    body = await send_both(fake_llm, make_provider, call)
    assert body["generationConfig"] == {
        "maxOutputTokens": 50,
        "responseMimeType": "application/json",
    }
    assert "tools" not in body


# -- history: calls with their signatures, results --------------------------------------

TURN = (
    Message("user", "Weather in Paris and the time?"),
    Message(
        "assistant",
        "Checking.",
        tool_calls=(
            ToolCall("call_1", "get_weather", '{"city": "Paris"}', signature="c2lnLUE="),
            ToolCall("call_2", "now", ""),  # a parallel call: Gemini signs only the first
        ),
    ),
    Message("tool", '{"temp": 21, "sky": "clear"}', tool_call_id="call_1", name="get_weather"),
    Message("tool", "12:00", tool_call_id="call_2", name="now"),
)


async def test_history_with_calls_signatures_and_results(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    body = await send_both(fake_llm, make_provider, ModelCall(TURN, 50, tools=(WEATHER, NOW)))
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and the time?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"},
                                     "id": "call_1"},
                    "thoughtSignature": "c2lnLUE=",
                },
                {"functionCall": {"name": "now", "args": {}, "id": "call_2"}},
            ],
        },
        {  # the results of one step in one content, in the calls' order
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "id": "call_1",
                                      "response": {"temp": 21, "sky": "clear"}}},
                {"functionResponse": {"name": "now", "id": "call_2",
                                      "response": {"result": "12:00"}}},
            ],
        },
    ]  # fmt: skip


async def test_unsigned_calls_from_another_provider_get_the_documented_dummy(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # a failover: the first step was written by another provider (no signatures), the second
    # by Gemini; each step's first call must carry a signature, later ones need none
    history = (
        Message("user", "Plan my day."),
        Message("assistant", "", tool_calls=(ToolCall("call_a", "get_weather", '{"city":"Oslo"}'),
                                             ToolCall("call_b", "now", "{}"))),
        Message("tool", "rain", tool_call_id="call_a", name="get_weather"),
        Message("tool", "08:00", tool_call_id="call_b", name="now"),
        Message("assistant", "", tool_calls=(ToolCall("call_c", "now", "{}", signature="real"),)),
        Message("tool", "08:01", tool_call_id="call_c"),  # no name: taken from the call
    )  # fmt: skip
    body = await send_both(fake_llm, make_provider, ModelCall(history, 50, tools=(WEATHER, NOW)))
    first, second = body["contents"][1]["parts"], body["contents"][3]["parts"]
    assert [p.get("thoughtSignature") for p in first] == ["skip_thought_signature_validator", None]
    assert [p.get("thoughtSignature") for p in second] == ["real"]
    assert "text" not in first[0]  # no empty text part beside the calls
    assert body["contents"][4]["parts"] == [
        {"functionResponse": {"name": "now", "id": "call_c", "response": {"result": "08:01"}}}
    ]


async def test_broken_arguments_in_history_stay_visible(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    history = (
        Message("user", "x"),
        Message("assistant", "", tool_calls=(ToolCall("c", "get_weather", '{"city": "Par'),)),
        Message("tool", "error: arguments not valid JSON", tool_call_id="c", name="get_weather"),
    )  # fmt: skip
    body = await send_both(fake_llm, make_provider, ModelCall(history, 50, tools=(WEATHER,)))
    call = body["contents"][1]["parts"][0]["functionCall"]
    assert call["args"] == {"_raw_arguments": '{"city": "Par'}


# -- calls in answers ---------------------------------------------------------------------


async def answers(
    fake_llm: FakeLLM, make_provider: ProviderFactory, reply: Reply
) -> tuple[ModelResponse, ModelResponse]:
    """The same scripted reply, once as JSON and once streamed."""
    fake_llm.script("m", reply, reply)
    provider = make_provider(API)
    plain = await provider.complete("m", ModelCall(ASK, 50, tools=(WEATHER, NOW)))
    items = [i async for i in provider.stream("m", ModelCall(ASK, 50, tools=(WEATHER, NOW)))]
    streamed = items[-1]
    assert isinstance(streamed, ModelResponse)
    return plain, streamed


async def test_a_call_is_parsed_with_its_signature(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    reply = Reply(text="", tool_calls=[FakeToolCall("get_weather", {"city": "Zürich"},
                                                     signature="c2lnLTE=")])  # fmt: skip
    for resp in await answers(fake_llm, make_provider, reply):
        (call,) = resp.tool_calls
        assert (call.name, json.loads(call.arguments), call.signature) == (
            "get_weather", {"city": "Zürich"}, "c2lnLTE=")  # fmt: skip
        assert call.id.startswith("call_")  # Gemini sent none: the accumulator made one
        assert (resp.content, resp.finish_reason) == ("", "tool_calls")  # STOP with calls


async def test_parallel_calls_keep_their_order_ids_and_signatures(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    reply = Reply(
        text="Two lookups.",
        tool_calls=[
            FakeToolCall("get_weather", {"city": "Rome"}, id="fc-1", signature="c2lnLTE="),
            FakeToolCall("now", {}),  # Gemini signs only the first of parallel calls
        ],
    )
    plain, streamed = await answers(fake_llm, make_provider, reply)
    # streamed, each call is a chunk of its own: a running index keeps them apart
    for resp in (plain, streamed):
        first, second = resp.tool_calls
        assert (first.id, first.name, first.arguments, first.signature) == (
            "fc-1", "get_weather", '{"city": "Rome"}', "c2lnLTE=")  # fmt: skip
        assert (second.name, second.arguments, second.signature) == ("now", "{}", "")
        assert second.id.startswith("call_") and second.id != first.id
        assert (resp.content, resp.finish_reason) == ("Two lookups.", "tool_calls")


async def test_a_parsed_call_goes_back_as_it_came(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    """The round trip: a call from Gemini, sent back in history, is the part Gemini sent."""
    fake_llm.script("m", Reply(text="", tool_calls=[FakeToolCall("now", {"tz": "UTC"},
                                                                  signature="c2ln")]))  # fmt: skip
    provider = make_provider(API)
    resp = await provider.complete("m", ModelCall(ASK, 50, tools=(NOW,)))
    (call,) = resp.tool_calls
    result = Message("tool", "00:00", tool_call_id=call.id, name=call.name)
    history = (*ASK, Message("assistant", "", tool_calls=resp.tool_calls), result)
    await provider.complete("m", ModelCall(history, 50, tools=(NOW,)))
    sent = fake_llm.requests[-1].body["contents"][1]["parts"]
    assert sent == [
        {"functionCall": {"name": "now", "args": {"tz": "UTC"}, "id": call.id},
         "thoughtSignature": "c2ln"}
    ]  # fmt: skip


def test_call_without_args_and_bad_args(make_provider: ProviderFactory) -> None:
    def body(call: Any) -> dict[str, Any]:
        parts = [{"functionCall": call}]
        return {"candidates": [{"content": {"parts": parts}, "finishReason": "STOP"}]}

    (part,) = parse(make_provider, body({"name": "now"})).tool_calls
    assert (part.index, part.name, part.arguments, part.id, part.signature) == (
        0, "now", "{}", "", "")  # fmt: skip
    for bad in ({"name": "now", "args": [1]}, {"name": 3}, "now"):
        with pytest.raises(Malformed):
            parse(make_provider, body(bad))
