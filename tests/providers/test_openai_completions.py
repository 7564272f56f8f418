"""openai-completions: request mapping and the parser's corner cases."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from core.errors import ProviderError
from core.providers.base import Chunk, Malformed, ToolCallPart, UpstreamError
from core.providers.openai_completions import _parse
from core.types import (
    Message,
    ModelCall,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from tests.conftest import ProviderFactory
from tests.fakes.llm import FakeLLM, FakeToolCall, Reply
from tests.providers.both import both

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


# -- tools and structured output ----------------------------------------------------------

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    strict=True,
)
CLOCK = ToolSpec("get_time")  # no description, no parameters
ASK = (Message("user", "Weather in Paris?"),)


async def test_tools_and_sampling_in_the_request(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    call = ModelCall(
        ASK,
        100,
        tools=(WEATHER, CLOCK),
        tool_choice=ToolChoice("required"),
        parallel_tool_calls=False,
        response_format=ResponseFormat("json_object"),
        stop=("END", "\n\n"),
        top_p=0.9,
        seed=7,
    )
    await both(make_provider(API), "gpt-4.1", call)
    for req in fake_llm.requests:
        body = req.body
        assert body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": dict(WEATHER.parameters),
                    "strict": True,
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "parameters": {"type": "object", "properties": {}},
                },
            },
        ]
        assert body["tool_choice"] == "required"
        assert body["parallel_tool_calls"] is False
        assert body["response_format"] == {"type": "json_object"}
        assert (body["stop"], body["top_p"], body["seed"]) == (["END", "\n\n"], 0.9, 7)
    assert [r.body["stream"] for r in fake_llm.requests] == [False, True]


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice("auto"), "auto"),
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (
            ToolChoice("tool", "get_weather"),
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
async def test_tool_choice_modes(
    fake_llm: FakeLLM, make_provider: ProviderFactory, choice: ToolChoice, wire: Any
) -> None:
    await make_provider(API).complete("m", ModelCall(ASK, 10, tools=(WEATHER,), tool_choice=choice))
    assert fake_llm.requests[0].body["tool_choice"] == wire


async def test_unset_options_are_not_sent(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # OpenAI refuses tool_choice and parallel_tool_calls without tools, so they go with them
    call = ModelCall(ASK, 10, tool_choice=ToolChoice("none"), parallel_tool_calls=True)
    await make_provider(API).complete("m", call)
    body = fake_llm.requests[0].body
    for key in ("tools", "tool_choice", "parallel_tool_calls", "response_format", "stop",
                "top_p", "seed"):  # fmt: skip
        assert key not in body


@pytest.mark.parametrize(
    ("fmt", "wire"),
    [
        (ResponseFormat("text"), {"type": "text"}),
        (
            ResponseFormat(
                "json_schema",
                name="verdict",
                schema={"type": "object", "properties": {"ok": {"type": "boolean"}}},
                strict=True,
                description="Whether it passed.",
            ),
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "verdict",
                    "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
                    "strict": True,
                    "description": "Whether it passed.",
                },
            },
        ),
        (
            ResponseFormat("json_schema", schema={"type": "object"}),
            {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": False},
            },
        ),
    ],
)
async def test_response_formats(
    fake_llm: FakeLLM, make_provider: ProviderFactory, fmt: ResponseFormat, wire: Any
) -> None:
    await make_provider(API).complete("m", ModelCall(ASK, 10, response_format=fmt))
    assert fake_llm.requests[0].body["response_format"] == wire


async def test_tool_calls_and_results_in_history(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    paris = ToolCall("call_a", "get_weather", '{"city": "Paris"}')
    rome = ToolCall("call_b", "get_weather", '{"city": "Rome"}')
    clock = ToolCall("call_c", "get_time", "{}")
    history = (
        Message("user", "Paris and Rome?"),
        Message("assistant", "", tool_calls=(paris, rome)),
        Message("tool", "18C", tool_call_id="call_a", name="get_weather"),
        Message("tool", "24C", tool_call_id="call_b", name="get_weather"),
        Message("assistant", "Checking the clock too.", tool_calls=(clock,)),
        Message("tool", "12:00", tool_call_id="call_c", name="get_time"),
    )  # fmt: skip
    # counted input: the fake's word count reads every content as text, and these are null
    fake_llm.script("m", Reply(input_tokens=9), Reply(input_tokens=9))
    await both(make_provider(API), "m", ModelCall(history, 50, tools=(WEATHER, CLOCK)))

    def wire(c: ToolCall) -> dict[str, Any]:
        return {"id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}}  # fmt: skip

    for req in fake_llm.requests:
        assert req.body["messages"] == [
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [wire(paris), wire(rome)]},
            {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_b", "content": "24C"},
            {"role": "assistant", "content": "Checking the clock too.",
             "tool_calls": [wire(clock)]},
            {"role": "tool", "tool_call_id": "call_c", "content": "12:00"},
        ]  # fmt: skip


async def test_one_tool_call_json_and_streamed(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    reply = Reply(text="", tool_calls=[FakeToolCall("get_weather", {"city": "Paris"}, "call_1")])
    fake_llm.script("m", reply, reply)
    for resp in await both(make_provider(API), "m", ModelCall(ASK, 50, tools=(WEATHER,))):
        assert resp.tool_calls == (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)
        assert (resp.content, resp.finish_reason) == ("", "tool_calls")


async def test_parallel_tool_calls_reassembled_by_index(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    calls = [
        FakeToolCall("get_weather", {"city": "Paris", "unit": "celsius"}, "call_p"),
        FakeToolCall("get_weather", {"city": "Rome"}, "call_r"),
        FakeToolCall("get_time", {}),  # the fake's default id
    ]
    reply = Reply(text="Looking both up.", tool_calls=calls)
    fake_llm.script("m", reply, reply)
    for resp in await both(make_provider(API), "m", ModelCall(ASK, 50, tools=(WEATHER, CLOCK))):
        assert resp.tool_calls == (
            ToolCall("call_p", "get_weather", '{"city": "Paris", "unit": "celsius"}'),
            ToolCall("call_r", "get_weather", '{"city": "Rome"}'),
            ToolCall("call_fake2", "get_time", "{}"),
        )
        assert (resp.content, resp.finish_reason) == ("Looking both up.", "tool_calls")


async def test_the_fake_streams_calls_in_interleaved_pieces(fake_llm: FakeLLM) -> None:
    """What the streamed tests above reassemble: pieces of several calls, by index."""
    fake_llm.script("m", Reply(text="", tool_calls=[FakeToolCall("a", {"x": "1234"}),
                                                   FakeToolCall("b", {"y": "5678"})]))  # fmt: skip
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with httpx.AsyncClient(base_url=fake_llm.url) as client:
        text = (await client.post("/v1/chat/completions", json=body)).text
    events = [json.loads(line[6:]) for line in text.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    pieces = [p for e in events for c in e["choices"] for p in c["delta"].get("tool_calls", [])]
    assert [p["index"] for p in pieces[:2]] == [0, 1] and "id" in pieces[0]
    assert [p["index"] for p in pieces[2:6]] == [0, 1, 0, 1]  # interleaved
    assert all("id" not in p for p in pieces[2:])
    assert "".join(p["function"]["arguments"] for p in pieces if p["index"] == 1) == '{"y": "5678"}'
    finishes = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert finishes == ["tool_calls"]


async def test_broken_json_arguments_pass_through_as_text(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    broken = '{"city": "Par'
    reply = Reply(text="", tool_calls=[FakeToolCall("get_weather", broken, "call_x")])
    fake_llm.script("m", reply, reply)
    for resp in await both(make_provider(API), "m", ModelCall(ASK, 50, tools=(WEATHER,))):
        assert resp.tool_calls == (ToolCall("call_x", "get_weather", broken),)


@pytest.mark.parametrize(
    ("said", "finish"),
    [
        (None, "tool_calls"),
        ("stop", "tool_calls"),  # a server that says stop with calls: still tool_calls
        ("length", "length"),  # cut mid-arguments: the engine must see the cut
    ],
)
async def test_finish_reasons_with_tool_calls(
    fake_llm: FakeLLM, make_provider: ProviderFactory, said: str | None, finish: str
) -> None:
    reply = Reply(text="", finish_reason=said, tool_calls=[FakeToolCall("get_time", {})])
    fake_llm.script("m", reply, reply)
    for resp in await both(make_provider(API), "m", ModelCall(ASK, 50, tools=(CLOCK,))):
        assert resp.finish_reason == finish
        assert len(resp.tool_calls) == 1


def delta_parts(calls: Any) -> list[ToolCallPart]:
    """The tool-call parts of one stream event whose delta holds ``calls``."""
    data = {"choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}]}
    return _parse(data, key="delta", streamed=True).tool_calls


def test_stream_pieces_parse_to_parts() -> None:
    first = {"index": 1, "id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    assert delta_parts([first]) == [ToolCallPart(1, "c", "f", "")]
    assert delta_parts([{"index": 1, "function": {"arguments": '{"a'}}]) == [
        ToolCallPart(1, "", "", '{"a')
    ]
    assert delta_parts([{"index": 0}]) == [ToolCallPart(0)]  # no function yet: nothing to add
    # a server that leaves the index out: the call's place in the delta
    assert delta_parts([{"function": {"name": "g"}}, {"id": "h"}]) == [
        ToolCallPart(0, name="g"),
        ToolCallPart(1, id="h"),
    ]
    assert delta_parts(None) == []


def test_body_tool_calls_are_numbered_by_position(make_provider: ProviderFactory) -> None:
    calls = [{"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
             for i in range(2)]  # fmt: skip
    data = {"choices": [{"message": {"content": None, "tool_calls": calls},
                         "finish_reason": "tool_calls"}]}  # fmt: skip
    chunk = parse(make_provider, data)
    assert [(p.index, p.id) for p in chunk.tool_calls] == [(0, "c0"), (1, "c1")]
    assert (chunk.text, chunk.finish_reason) == ("", "tool_calls")


@pytest.mark.parametrize(
    "calls",
    [
        "get_weather",
        {"id": "c"},
        ["c"],
        [{"id": "c", "type": "function"}],  # a whole call without its function
        [{"id": "c", "function": "get_weather"}],
        [{"id": "c", "function": {"name": "f", "arguments": {"city": "Paris"}}}],
        [{"id": 5, "function": {"name": "f", "arguments": "{}"}}],
        [{"id": "c", "function": {"name": ["f"], "arguments": "{}"}}],
    ],
)
def test_malformed_tool_calls(make_provider: ProviderFactory, calls: Any) -> None:
    data = {"choices": [{"message": {"content": None, "tool_calls": calls}}]}
    with pytest.raises(Malformed, match="tool_calls"):
        parse(make_provider, data)


@pytest.mark.parametrize("index", ["0", None, 1.0, True])
def test_malformed_stream_index(index: Any) -> None:
    with pytest.raises(Malformed, match="index"):
        delta_parts([{"index": index}])


@pytest.mark.parametrize(
    ("call", "sent"),
    [
        (ModelCall(ASK, 50), False),
        (ModelCall(ASK, 50, no_think=True), True),  # a task's think = false
        (
            ModelCall(
                (
                    *ASK,
                    Message("assistant", "", (ToolCall("c1", "get_weather", "{}"),)),
                    Message("tool", "sunny", tool_call_id="c1"),
                ),
                50,
                tools=(WEATHER,),
            ),
            True,  # DeepSeek's thinking mode wants each tool-call turn's reasoning back
        ),
    ],
    ids=["plain", "think-false", "tool-history"],
)
async def test_no_think_body_turns_a_servers_thinking_off(
    fake_llm: FakeLLM, make_provider: ProviderFactory, call: ModelCall, sent: bool
) -> None:
    off = {"thinking": {"type": "disabled"}}
    provider = make_provider(API, no_think_body=off)
    await both(provider, "m", call)
    for request in fake_llm.requests:  # both ways, and the wire check knows DeepSeek's field
        assert (request.body.get("thinking") == off["thinking"]) is sent
