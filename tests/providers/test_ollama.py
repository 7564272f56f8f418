"""ollama: stream always explicit, think, options, NDJSON, tools and structured output."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ProviderError
from core.providers.base import Chunk, Malformed, UpstreamError
from core.types import (
    Message,
    ModelCall,
    ModelResponse,
    ResponseFormat,
    StreamDelta,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from tests.conftest import ProviderFactory
from tests.fakes.llm import FakeLLM, FakeToolCall, Reply
from tests.providers.both import sent_both

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


@pytest.mark.parametrize(
    "data", [{"message": {"tool_calls": {}}}, {"message": {"tool_calls": [1]}}]
)
def test_malformed_tool_calls(make_provider: ProviderFactory, data: Any) -> None:
    with pytest.raises(Malformed, match="tool_call"):
        parse(make_provider, {"done": True, **data})


# -- tools, structured output, sampling options ------------------------------------------

WEATHER = ToolSpec(
    "get_weather",
    "Weather for a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city"}},
        "required": ["city"],
    },
)
NOW = ToolSpec("now")  # no description, no parameters
ASK = (Message("user", "Weather in Paris?"),)


async def send_both(
    fake_llm: FakeLLM, make_provider: ProviderFactory, call: ModelCall
) -> dict[str, Any]:
    """Send ``call`` plain and streamed; both bodies must be equal: return one."""
    return await sent_both(fake_llm, make_provider(API), call)


async def test_tools_and_sampling_options(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    call = ModelCall(
        ASK,
        50,
        temperature=0.2,
        tools=(WEATHER, NOW),
        tool_choice=ToolChoice("auto"),
        parallel_tool_calls=False,  # Ollama has no switch for it: not sent
        stop=("END", "STOP"),
        top_p=0.9,
        seed=7,
    )
    body = await send_both(fake_llm, make_provider, call)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "The city"}},
                    "required": ["city"],
                },
                "description": "Weather for a city.",
            },
        },
        # parameters.type must be "object" (the Go server's ToolFunctionParameters)
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object",
                                                                       "properties": {}}}},
    ]  # fmt: skip
    assert body["options"] == {
        "num_predict": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END", "STOP"],
    }
    # /api/chat has neither field (ollama/ollama#11171): nothing is invented
    assert not {"tool_choice", "parallel_tool_calls", "format"} & body.keys()


async def test_schema_keywords_the_server_drops_are_not_sent(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # the openai SDK's pydantic_function_tool (and LangChain) add title, additionalProperties…
    rich = ToolSpec(
        "book",
        "",
        {
            "title": "Book",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "when": {"title": "When", "type": "string", "format": "date-time"},
                "seats": {"type": "integer", "minimum": 1, "description": "how many"},
                "where": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "title": "City"}},
                    "required": ["city"],
                },
                "mode": {"anyOf": [{"type": "string", "enum": ["car"]}, {"type": "null"}]},
            },
            "required": ["when"],
        },
    )
    body = await send_both(fake_llm, make_provider, ModelCall(ASK, 50, tools=(rich,)))
    assert body["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "required": ["when"],
        "properties": {
            "when": {"type": "string"},
            "seats": {"type": "integer", "description": "how many"},
            "where": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "mode": {"anyOf": [{"type": "string", "enum": ["car"]}, {"type": "null"}]},
        },
    }


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        (None, ["get_weather", "now"]),
        (ToolChoice("auto"), ["get_weather", "now"]),
        (ToolChoice("required"), ["get_weather", "now"]),  # not enforceable: the engine checks
        (ToolChoice("tool", "now"), ["now"]),  # no other tool can be called
        (ToolChoice("tool", "missing"), ["get_weather", "now"]),  # not offered: all, engine judges
        (ToolChoice("none"), []),
    ],
)
async def test_tool_choice_is_what_tools_are_sent(
    fake_llm: FakeLLM,
    make_provider: ProviderFactory,
    choice: ToolChoice | None,
    sent: list[str],
) -> None:
    call = ModelCall(ASK, 50, tools=(WEATHER, NOW), tool_choice=choice)
    body = await send_both(fake_llm, make_provider, call)
    assert [t["function"]["name"] for t in body.get("tools", [])] == sent
    assert "tool_choice" not in body


async def test_history_with_tool_calls_and_results(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    history = (
        *ASK,
        Message(
            "assistant",
            "",
            tool_calls=(
                ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
                ToolCall("call_2", "now", ""),  # no arguments: an empty object
            ),
        ),
        Message("tool", "21C clear", tool_call_id="call_1", name="get_weather"),
        Message("tool", "12:00", tool_call_id="call_2"),  # no name: taken from the call
        Message("assistant", "", tool_calls=(ToolCall("call_3", "get_weather", '{"city": "Par'),)),
        Message("tool", "error: arguments not valid JSON", tool_call_id="call_3"),
    )
    body = await send_both(fake_llm, make_provider, ModelCall(history, 50, tools=(WEATHER, NOW)))
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                # arguments as an object: Ollama refuses the text with a 400. No id or
                # function.index: the server defines them, the official client does not
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "now", "arguments": {}}},
            ],
        },
        # tool_name links a result to its call (tool_call_id is not in the client's types)
        {"role": "tool", "content": "21C clear", "tool_name": "get_weather"},
        {"role": "tool", "content": "12:00", "tool_name": "now"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                # broken arguments, kept in history: the model still sees what it wrote
                {"function": {"name": "get_weather",
                              "arguments": {"_raw_arguments": '{"city": "Par'}}},
            ],
        },
        {"role": "tool", "content": "error: arguments not valid JSON", "tool_name": "get_weather"},
    ]  # fmt: skip


SCHEMA = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}


@pytest.mark.parametrize(
    ("fmt", "sent"),
    [
        (ResponseFormat("json_object"), "json"),
        (ResponseFormat("json_schema", "person", SCHEMA, strict=True), SCHEMA),
        (ResponseFormat("json_schema"), "json"),  # no schema given: any JSON object
        (ResponseFormat("text"), None),
    ],
)
async def test_response_format_is_sent_as_format(
    fake_llm: FakeLLM, make_provider: ProviderFactory, fmt: ResponseFormat, sent: object
) -> None:
    body = await send_both(fake_llm, make_provider, ModelCall(ASK, 50, response_format=fmt))
    assert body.get("format") == sent


async def answers(
    fake_llm: FakeLLM, make_provider: ProviderFactory, reply: Reply
) -> tuple[ModelResponse, ModelResponse]:
    """The JSON and the streamed answer to the same scripted reply."""
    fake_llm.script("m", reply, reply)
    provider = make_provider(API)
    plain = await provider.complete("m", ModelCall(ASK, 50, tools=(WEATHER, NOW)))
    events = [e async for e in provider.stream("m", ModelCall(ASK, 50, tools=(WEATHER, NOW)))]
    assert all(isinstance(e, StreamDelta) for e in events[:-1])
    streamed = events[-1]
    assert isinstance(streamed, ModelResponse)
    return plain, streamed


async def test_a_tool_call_is_parsed_both_ways(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    call = FakeToolCall("get_weather", {"city": "Paris"}, id="call_abc12345")
    reply = Reply(text="", tool_calls=[call])
    for resp in await answers(fake_llm, make_provider, reply):
        (got,) = resp.tool_calls
        assert (got.id, got.name, got.arguments) == ("call_abc12345", "get_weather",
                                                     '{"city": "Paris"}')  # fmt: skip
        # Ollama says done_reason "stop"; a call-carrying answer finishes like OpenAI's
        assert resp.finish_reason == "tool_calls"
        assert resp.content == ""


async def test_parallel_tool_calls_keep_their_order_and_get_ids(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # servers before v0.12.10 send no ids; a stream sends each call on a line of its own
    reply = Reply(
        text="Checking.",
        tool_calls=[
            FakeToolCall("get_weather", {"city": "Paris"}),
            FakeToolCall("get_weather", {"city": "Oslo"}),
            FakeToolCall("now"),
        ],
    )
    for resp in await answers(fake_llm, make_provider, reply):
        assert [(c.name, c.arguments) for c in resp.tool_calls] == [
            ("get_weather", '{"city": "Paris"}'),
            ("get_weather", '{"city": "Oslo"}'),
            ("now", "{}"),
        ]
        ids = [c.id for c in resp.tool_calls]
        assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 3
        assert (resp.content, resp.finish_reason) == ("Checking.", "tool_calls")


async def test_string_arguments_are_passed_on_as_they_are(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    # a proxy that sends text, or a broken one: the engine judges it, not the adapter
    reply = Reply(text="", tool_calls=[FakeToolCall("get_weather", '{"city": "Par')])
    for resp in await answers(fake_llm, make_provider, reply):
        assert [c.arguments for c in resp.tool_calls] == ['{"city": "Par']


async def test_a_model_without_tools_says_so_with_the_fix(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    message = "registry.ollama.ai/library/gemma2:2b does not support tools"
    fake_llm.script("m", Reply(status=400, error_message=message))
    with pytest.raises(ProviderError) as e:
        await make_provider(API).complete("m", ModelCall(ASK, 50, tools=(WEATHER,)))
    assert (e.value.kind, e.value.outcome) == ("unsupported", "skipped")
    assert e.value.detail.endswith('(fix: [models."fake-ollama/m"] tools = false)')
