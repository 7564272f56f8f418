"""anthropic-messages: headers, the top-level system prompt, thinking, usage, tool calls
and structured output."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest

from core.errors import ProviderError
from core.providers.anthropic_messages import JSON_OBJECT_NOTE, tool_use_id
from core.providers.base import Chunk, Malformed, ToolCallPart
from core.types import (
    Message,
    ModelCall,
    ModelResponse,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from tests.conftest import ProviderFactory
from tests.fakes.llm import FakeLLM, FakeToolCall, Reply
from tests.providers.both import both

API = "anthropic-messages"
MESSAGES = (
    Message("system", "You are terse."),
    Message("user", "Hi"),
    Message("system", "Answer in French."),
    Message("assistant", "Salut"),
    Message("user", "Encore"),
)


def body_of(make_provider: ProviderFactory, call: ModelCall, stream: bool = False) -> Any:
    """The body the adapter builds, unsent: for sampling parameters, which only
    Anthropic-compatible servers take (the current API version refuses them, and the
    SDK's request types know none: see drop_params), so the fake's SDK check would not."""
    body = make_provider(API).chat_call("m", call, stream=stream).body
    assert body is not None
    return body


async def test_request_mapping(fake_llm: FakeLLM, make_provider: ProviderFactory) -> None:
    provider = make_provider(API, api_key="sk-ant-1")
    call = ModelCall(MESSAGES, max_tokens=500)
    await provider.complete("claude-opus-5-5", call)
    [_ async for _ in provider.stream("claude-opus-5-5", call)]
    plain, streamed = fake_llm.requests
    assert plain.path == streamed.path == "/v1/messages"
    assert plain.headers["x-api-key"] == "sk-ant-1"
    assert plain.headers["anthropic-version"] == "2026-10-21"
    assert "authorization" not in plain.headers
    assert plain.body == {
        "model": "claude-opus-5-5",
        "max_tokens": 500,
        "system": "You are terse.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "Encore"},
        ],
        "stream": False,
    }
    assert streamed.body["stream"] is True


def test_sampling_parameters_go_when_the_call_carries_them(
    make_provider: ProviderFactory,
) -> None:
    body = body_of(make_provider, ModelCall(MESSAGES, 500, temperature=0.3, top_p=0.9))
    assert (body["temperature"], body["top_p"]) == (0.3, 0.9)
    body = body_of(make_provider, ModelCall(MESSAGES, 500))
    assert "temperature" not in body and "top_p" not in body


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
    call = ModelCall((Message("user", "x"),), max_tokens, reasoning=True)
    await make_provider(API).complete("m", call)
    assert fake_llm.requests[0].body.get("thinking") == thinking
    # the API refuses a temperature together with thinking
    body = body_of(make_provider, ModelCall(call.messages, max_tokens, 0.7, reasoning=True))
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


def test_cache_tokens_count_as_input_and_blocks_are_read_in_order(
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
    assert chunk.tool_calls == [ToolCallPart(2, id="t", name="f", arguments="{}")]  # by block
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


# -- tools and structured output ----------------------------------------------------------

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    strict=True,
)
CLOCK = ToolSpec("get_time")  # no description, no parameters
ASK = (Message("user", "Weather in Paris?"),)


async def test_tools_and_stop_in_the_request(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    call = ModelCall(ASK, 100, tools=(WEATHER, CLOCK), stop=("END", "\n\n"))
    await both(make_provider(API), "claude-sonnet-4-5", call)
    for req in fake_llm.requests:
        body = req.body
        assert body["tools"] == [
            {
                "name": "get_weather",
                "description": "The weather in a city.",
                "input_schema": dict(WEATHER.parameters),
                "strict": True,
            },
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ]
        assert "tool_choice" not in body  # the API's default: auto
        assert body["stop_sequences"] == ["END", "\n\n"]
    assert [r.body["stream"] for r in fake_llm.requests] == [False, True]


@pytest.mark.parametrize(
    ("choice", "parallel", "wire"),
    [
        (None, None, None),
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("tool", "get_weather"), None, {"type": "tool", "name": "get_weather"}),
        (ToolChoice("none"), None, {"type": "none"}),
        # parallel calls are turned off on the choice object; no choice given: auto's
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            ToolChoice("tool", "get_weather"),
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        (ToolChoice("none"), False, {"type": "none"}),  # "none" has no such field
        (None, True, None),  # parallel is the default
    ],
)
async def test_tool_choice_modes(
    fake_llm: FakeLLM,
    make_provider: ProviderFactory,
    choice: ToolChoice | None,
    parallel: bool | None,
    wire: Any,
) -> None:
    call = ModelCall(ASK, 10, tools=(WEATHER,), tool_choice=choice, parallel_tool_calls=parallel)
    await make_provider(API).complete("m", call)
    assert fake_llm.requests[0].body.get("tool_choice") == wire


async def test_unset_options_are_not_sent(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # a tool_choice without tools is refused by the API: it goes only with tools
    call = ModelCall(ASK, 10, tool_choice=ToolChoice("required"), parallel_tool_calls=False)
    await make_provider(API).complete("m", call)
    body = fake_llm.requests[0].body
    for key in ("tools", "tool_choice", "output_config", "stop_sequences", "top_p",
                "temperature", "thinking"):  # fmt: skip
        assert key not in body


async def test_json_schema_goes_as_output_config_with_closed_objects(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["pass", "fail"]},
            "points": {"type": "array", "items": {"type": "object", "properties": {}}},
            "extra": {"type": "object", "additionalProperties": {"type": "string"}},
            "default_obj": {"type": ["object", "null"], "default": {"type": "object"}},
        },
        "required": ["verdict"],
    }
    fmt = ResponseFormat("json_schema", name="verdict", schema=schema, strict=True)
    await both(make_provider(API), "m", ModelCall(ASK, 50, response_format=fmt))
    closed = {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["pass", "fail"]},
            "points": {
                "type": "array",
                "items": {"type": "object", "properties": {}, "additionalProperties": False},
            },
            "extra": {"type": "object", "additionalProperties": {"type": "string"}},  # as said
            "default_obj": {
                "type": ["object", "null"],
                "default": {"type": "object"},  # data, not a schema
                "additionalProperties": False,
            },
        },
        "required": ["verdict"],
        "additionalProperties": False,
    }
    for req in fake_llm.requests:
        assert req.body["output_config"] == {"format": {"type": "json_schema", "schema": closed}}
        assert "system" not in req.body
    assert "additionalProperties" not in schema  # the caller's schema is left alone


async def test_json_object_is_asked_for_in_the_system_prompt(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # no output_config: a schema of any object would be closed to {} (see _closed)
    fmt = ResponseFormat("json_object")
    await make_provider(API).complete(
        "m", ModelCall((Message("system", "Be terse."), *ASK), 50, response_format=fmt)
    )
    # the engine may have said it already: said once
    noted = (Message("system", JSON_OBJECT_NOTE), *ASK)
    await make_provider(API).complete("m", ModelCall(noted, 50, response_format=fmt))
    first, second = (r.body for r in fake_llm.requests)
    assert first["system"] == f"Be terse.\n\n{JSON_OBJECT_NOTE}"
    assert second["system"] == JSON_OBJECT_NOTE
    assert "output_config" not in first and "output_config" not in second


async def test_tool_calls_and_results_in_history(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # ids from OpenAI and Gemini turns (a failover mid-conversation): the dotted ones are
    # refused by Anthropic and mapped, the same way for the call and its result
    paris = ToolCall("call_a", "get_weather", '{"city": "Paris"}')
    rome = ToolCall("fc.1:rome", "get_weather", '{"city": "Rome"}')
    clock = ToolCall("toolu_01", "get_time", "{not json")  # broken: sent as {}
    history = (
        Message("system", "Use tools."),
        Message("user", "Paris and Rome?"),
        Message("assistant", "", tool_calls=(paris, rome)),
        Message("tool", "18C", tool_call_id="call_a", name="get_weather"),
        Message("tool", "24C", tool_call_id="fc.1:rome", name="get_weather"),
        Message("assistant", "Checking the clock too.", tool_calls=(clock,)),
        Message("user", "Hurry."),  # before the result: results go first in the turn
        Message("tool", "", tool_call_id="toolu_01", name="get_time"),  # no content
    )  # fmt: skip
    await both(make_provider(API), "m", ModelCall(history, 50, tools=(WEATHER, CLOCK)))
    rome_id = tool_use_id("fc.1:rome")
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", rome_id) and rome_id.startswith("fc1rome_")
    for req in fake_llm.requests:
        assert req.body["system"] == "Use tools."
        assert req.body["messages"] == [
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_a", "name": "get_weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": rome_id, "name": "get_weather",
                 "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [  # the two results: one user turn
                {"type": "tool_result", "tool_use_id": "call_a", "content": "18C"},
                {"type": "tool_result", "tool_use_id": rome_id, "content": "24C"},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking the clock too."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_time", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01"},
                {"type": "text", "text": "Hurry."},
            ]},
        ]  # fmt: skip


@pytest.mark.parametrize(
    "call_id", ["call_abc-1", "fc.1", "fc:1", "функция", "", "a" * 200, "x y/z"]
)
def test_tool_use_ids_are_valid_and_stable(call_id: str) -> None:
    mapped = tool_use_id(call_id)
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", mapped)
    assert mapped == tool_use_id(call_id)  # deterministic: call and result pair up
    if re.fullmatch(r"[a-zA-Z0-9_-]+", call_id):
        assert mapped == call_id
    else:
        assert len(mapped) <= 57


def test_ids_differing_only_in_refused_characters_stay_apart() -> None:
    assert tool_use_id("fc.1") != tool_use_id("fc:1") != tool_use_id("fc1")


async def test_history_with_tool_calls_but_no_tools_is_text(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # the API refuses tool_use and tool_result blocks when no tools are defined
    history = (
        *ASK,
        Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", "18C", tool_call_id="c1", name="get_weather"),
        Message("user", "Summarize."),
    )
    await make_provider(API).complete("m", ModelCall(history, 50))
    assert fake_llm.requests[0].body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": '[tool call get_weather {"city": "Paris"}]'},
        {"role": "user", "content": [
            {"type": "text", "text": "[result of tool call get_weather]\n18C"},
            {"type": "text", "text": "Summarize."},
        ]},
    ]  # fmt: skip


LOOP = (
    *ASK,
    Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Paris"}'),)),
    Message("tool", "18C", tool_call_id="c1", name="get_weather"),
)
ENDED_LOOP = (*LOOP, Message("assistant", "18C in Paris."), Message("user", "And Rome?"))


@pytest.mark.parametrize(
    ("messages", "choice", "thinks"),
    [
        (ASK, None, True),
        (ASK, ToolChoice("auto"), True),
        (ASK, ToolChoice("none"), True),
        # manual extended thinking allows only auto and none: the forced call wins
        (ASK, ToolChoice("required"), False),
        (ASK, ToolChoice("tool", "get_weather"), False),
        # answering tool results: the calling turn would need its signed thinking block
        (LOOP, None, False),
        (ENDED_LOOP, None, True),  # a new turn: earlier thinking is not required
    ],
)
async def test_thinking_with_tools(
    fake_llm: FakeLLM,
    make_provider: ProviderFactory,
    messages: tuple[Message, ...],
    choice: ToolChoice | None,
    thinks: bool,
) -> None:
    call = ModelCall(messages, 4096, reasoning=True, tools=(WEATHER,), tool_choice=choice)
    await both(make_provider(API), "m", call)
    for req in fake_llm.requests:
        assert ("thinking" in req.body) is thinks
    # a call that does not think may carry a temperature again
    body = body_of(make_provider, replace(call, temperature=0.5))
    assert ("temperature" in body) is not thinks


@pytest.mark.parametrize(("top_p", "sent"), [(0.97, True), (0.9, False)])
def test_top_p_with_thinking_only_from_095(
    make_provider: ProviderFactory, top_p: float, sent: bool
) -> None:
    body = body_of(make_provider, ModelCall(ASK, 4096, reasoning=True, top_p=top_p))
    assert "thinking" in body and ("top_p" in body) is sent


async def test_one_tool_call_json_and_streamed(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    call = FakeToolCall("get_weather", {"city": "Paris"}, "toolu_1")
    reply = Reply(text="", tool_calls=[call])
    fake_llm.script("m", reply, reply)
    for resp in await both(make_provider(API), "m", ModelCall(ASK, 50, tools=(WEATHER,))):
        assert resp.tool_calls == (ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),)
        assert (resp.content, resp.finish_reason) == ("", "tool_calls")


async def test_parallel_tool_calls_after_thinking_and_text(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    calls = [
        FakeToolCall("get_weather", {"city": "Paris", "unit": "celsius"}, "toolu_p"),
        FakeToolCall("get_weather", {"city": "Rome"}, "toolu_r"),
        FakeToolCall("get_time", {}),  # the fake's default id
    ]
    reply = Reply(text="Looking both up.", reasoning="Two cities.", tool_calls=calls)
    fake_llm.script("m", reply, reply)
    for resp in await both(make_provider(API), "m", ModelCall(ASK, 50, tools=(WEATHER, CLOCK))):
        assert resp.tool_calls == (
            ToolCall("toolu_p", "get_weather", '{"city": "Paris", "unit": "celsius"}'),
            ToolCall("toolu_r", "get_weather", '{"city": "Rome"}'),
            ToolCall("toolu_fake2", "get_time", "{}"),
        )
        assert (resp.content, resp.reasoning) == ("Looking both up.", "Two cities.")
        assert resp.finish_reason == "tool_calls"


async def test_broken_streamed_arguments_are_passed_on_as_text(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    broken = '{"city": "Par'
    fake_llm.script("m", Reply(text="", tool_calls=[FakeToolCall("get_weather", broken, "t1")]))
    call = ModelCall(ASK, 50, tools=(WEATHER,))
    [*_, final] = [item async for item in make_provider(API).stream("m", call)]
    assert isinstance(final, ModelResponse)
    assert final.tool_calls == (ToolCall("t1", "get_weather", broken),)  # the engine judges


async def test_a_streamed_call_without_fragments_has_empty_object_arguments(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    fake_llm.script("m", Reply(text="", tool_calls=[FakeToolCall("get_time", "", "t1")]))
    call = ModelCall(ASK, 50, tools=(CLOCK,))
    [*_, final] = [item async for item in make_provider(API).stream("m", call)]
    assert isinstance(final, ModelResponse)
    assert final.tool_calls == (ToolCall("t1", "get_time", "{}"),)


async def test_a_body_tool_use_whose_input_is_not_an_object_is_malformed(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # a whole body cannot carry broken arguments: the fake sends the text as the input
    fake_llm.script("m", Reply(text="", tool_calls=[FakeToolCall("get_weather", '{"ci')]))
    with pytest.raises(ProviderError) as caught:
        await make_provider(API).complete("m", ModelCall(ASK, 50, tools=(WEATHER,)))
    assert caught.value.kind == "malformed" and "tool_use.input" in caught.value.detail


@pytest.mark.parametrize(
    "block",
    [
        {"type": "tool_use", "id": "t", "input": {}},  # no name
        {"type": "tool_use", "id": "t", "name": "f", "input": "{}"},
        {"type": "tool_use", "id": 7, "name": "f", "input": {}},
    ],
)
def test_bad_tool_use_blocks_are_malformed(make_provider: ProviderFactory, block: Any) -> None:
    with pytest.raises(Malformed):
        parse(make_provider, {"content": [block], "stop_reason": "tool_use"})


async def test_streamed_calls_are_keyed_by_block_index(
    fake_llm: FakeLLM,
) -> None:
    """What the streamed tests reassemble: block starts with input {}, then fragments."""
    calls = [FakeToolCall("a", {"x": "1234"}), FakeToolCall("b", {"y": "5678"})]
    fake_llm.script("m", Reply(text="hi", tool_calls=calls))
    body = {"model": "m", "max_tokens": 5, "stream": True,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    async with httpx.AsyncClient(base_url=fake_llm.url) as client:
        text = (await client.post("/v1/messages", json=body)).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(e["index"], e["content_block"]["type"]) for e in starts] == [
        (0, "text"), (1, "tool_use"), (2, "tool_use")
    ]  # fmt: skip
    assert all(e["content_block"].get("input") == {} for e in starts[1:])
    fragments = [e for e in events if e["type"] == "content_block_delta"
                 and e["delta"]["type"] == "input_json_delta"]  # fmt: skip
    assert len([f for f in fragments if f["index"] == 1]) > 2
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
