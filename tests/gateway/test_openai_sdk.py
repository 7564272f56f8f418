"""The gateway driven by the official openai SDK, sync and async, JSON and SSE."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)
from pydantic import BaseModel

from tests.fakes.llm import FakeToolCall, Reply, echo
from tests.gateway.conftest import TOKEN, Running


def client(gw: Running, **kw: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=TOKEN, **kw)  # type: ignore[arg-type]


async def test_non_stream_completion_with_usage_and_route_header(gateway: Running) -> None:
    gateway.fake.script("qwen3:14b", Reply(text="Hello!", input_tokens=11, output_tokens=2))
    async with client(gateway) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}],
        )
        completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "local/qwen3:14b"
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (11, 2, 13)
    assert raw.headers["x-openclaw-route"] == "tier=0; model=local/qwen3:14b; attempts=1"
    assert raw.headers["x-openclaw-request-id"].startswith("req_")


async def test_stream_with_include_usage(gateway: Running) -> None:
    gateway.fake.script("qwen3:14b", Reply(status=503))
    gateway.fake.script(
        "gemini-flash", Reply(text="streaming answer text", input_tokens=7, output_tokens=3)
    )
    async with client(gateway) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="task:chat",
            messages=[{"role": "user", "content": "go"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        assert raw.headers["x-openclaw-route"] == "tier=1; model=flash/gemini-flash; attempts=2"
        chunks = [chunk async for chunk in raw.parse()]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "streaming answer text"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert [ch.choices[0].finish_reason for ch in finishing] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (7, 3)
    assert all(ch.usage is None for ch in chunks[:-1])
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)


async def test_stream_without_include_usage_has_no_usage_chunk(gateway: Running) -> None:
    async with client(gateway) as c:
        stream = await c.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}], stream=True
        )
        chunks = [ch async for ch in stream]
    assert all(ch.choices for ch in chunks)


async def test_sync_client(gateway: Running) -> None:
    gateway.fake.default = echo

    def call() -> tuple[str | None, list[str]]:
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKEN) as c:
            done = c.chat.completions.create(
                model="tier:2",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "part one, "},
                            {"type": "text", "text": "two"},
                        ],
                    }
                ],
                max_completion_tokens=50,
                temperature=0.2,
            )
            stream = c.chat.completions.create(
                model="tier:2", messages=[{"role": "user", "content": "sync stream"}], stream=True
            )
            pieces = [ch.choices[0].delta.content or "" for ch in stream if ch.choices]
        return done.choices[0].message.content, pieces

    content, pieces = await asyncio.to_thread(call)
    assert content == "part one, two"
    assert "".join(pieces) == "sync stream"
    first = next(r for r in gateway.fake.requests if r.model == "deepseek-chat")
    assert first.body["max_tokens"] == 50 and first.body["temperature"] == 0.2


async def test_models_list_names_every_route(gateway: Running) -> None:
    async with client(gateway) as c:
        ids = [m.id async for m in c.models.list()]
    assert ids[0] == "auto"
    assert {"task:chat", "task:summarize", "tier:0", "tier:3"} <= set(ids)


async def test_unknown_model_is_404_listing_valid_ones(gateway: Running) -> None:
    async with client(gateway) as c:
        with pytest.raises(openai.NotFoundError) as info:
            await c.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
    err = info.value.body
    assert isinstance(err, dict)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert "task:chat" in err["message"] and "tier:1" in err["message"]


async def test_wrong_token_is_401(gateway: Running) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="wrong") as c:
        with pytest.raises(openai.AuthenticationError):
            await c.models.list()


async def test_all_failed_is_503_and_the_sdk_does_not_retry(start_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await start_gateway(approvals={"default": "deny"})
    for model in ("qwen3:14b", "gemini-flash", "deepseek-chat", "deepseek-backup"):
        gw.fake.script(model, Reply(status=500), Reply(status=500), Reply(status=500))
    async with client(gw, max_retries=2) as c:
        with pytest.raises(openai.InternalServerError) as info:
            await c.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "x"}]
            )
    assert info.value.status_code == 503
    assert info.value.response.headers["x-should-retry"] == "false"
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "all_models_failed"
    assert "opus/claude-opus: denied" in body["message"]
    assert len(gw.fake.requests) == 4  # one pass over the pyramid, no SDK retries


async def test_stream_broken_after_first_byte_raises_in_the_sdk(gateway: Running) -> None:
    gateway.fake.script("qwen3:14b", Reply(text="partial words", abort_stream=True))
    got = []
    async with client(gateway) as c:
        stream = await c.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x"}], stream=True
        )
        with pytest.raises(openai.APIError, match="stream broke"):
            async for ch in stream:
                got.append(ch)
    assert got  # it had begun
    (row,) = await gateway.rows()
    assert row["outcome"] == "unavailable"


async def test_user_is_recorded_as_caller(gateway: Running) -> None:
    async with client(gateway) as c:
        await c.chat.completions.create(
            model="auto", user="cron-box", messages=[{"role": "user", "content": "x"}]
        )
    (row,) = await gateway.rows()
    assert row["caller"] == "cron-box"


async def test_each_request_is_its_own_session(gateway: Running) -> None:
    gateway.fake.default = echo
    prompts = [f"secret-{i}-" + "x" * i for i in range(12)]
    async with client(gateway) as c:
        answers = await asyncio.gather(
            *[
                c.chat.completions.create(model="auto", messages=[{"role": "user", "content": p}])
                for p in prompts
            ]
        )
    assert [a.choices[0].message.content for a in answers] == prompts
    for rec in gateway.fake.requests:  # no upstream call saw another caller's text
        texts = "".join(rec.texts())
        assert sum(p in texts for p in prompts) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_request_the_upstream_refuses_is_a_400_and_opens_no_breaker(
    gateway: Running, stream: bool
) -> None:
    """Issue 13: one request's own 400 (a prompt over the context) used to open the model's
    breaker for 900 s and send everyone to pricier tiers; now it fails that request."""
    gateway.fake.script("qwen3:14b", Reply(status=400, error_message="context length exceeded"))
    async with client(gateway, max_retries=0) as c:
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "x"}], stream=stream
            )
        assert "context length exceeded" in info.value.message
        assert info.value.code == "upstream_rejected"
        assert info.value.response.headers["x-openclaw-route"] == "rejected; attempts=1"
        gateway.fake.script("qwen3:14b", Reply(text="fine"))
        answer = await c.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "y"}]
        )
    assert answer.model == "local/qwen3:14b"  # tier 0 still serves everyone else
    assert [r.model for r in gateway.fake.requests] == ["qwen3:14b", "qwen3:14b"]


# -- tools and structured output, as the SDK's own helpers use them ------------------------


class GetWeather(BaseModel):
    """The weather in a city."""

    city: str


class Person(BaseModel):
    name: str
    age: int


WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SDK_TIERS = [
    ("tier:0", "qwen3:14b"),
    ("tier:1", "gemini-flash"),
    ("tier:2", "deepseek-chat"),
    ("tier:3", "claude-opus"),
]
SDK_TIER_IDS = ["ollama", "gemini", "openai", "anthropic"]


async def test_tools_and_the_message_sent_back_as_the_sdk_returned_it(gateway: Running) -> None:
    gateway.fake.script(
        "deepseek-chat",
        Reply(text="", tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"}, id="call_1")]),
        Reply(text="Sunny in Oslo."),
    )
    ask: list[ChatCompletionMessageParam] = [{"role": "user", "content": "weather in Oslo?"}]
    async with client(gateway) as c:
        first = await c.chat.completions.create(
            model="tier:2", messages=ask, tools=[WEATHER_TOOL], tool_choice="auto"
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        assert call.id == "call_1" and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Oslo"}
        # the usual loop: the SDK's own message object goes back, then the result
        history: list[Any] = [
            *ask,
            choice.message,
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        second = await c.chat.completions.create(
            model="tier:2", messages=history, tools=[WEATHER_TOOL]
        )
    assert second.choices[0].message.content == "Sunny in Oslo."
    assert second.choices[0].finish_reason == "stop"
    sent = gateway.fake.requests[-1].body["messages"]
    assert {"role": "tool", "tool_call_id": "call_1", "content": "sunny"} in sent


@pytest.mark.parametrize(("route", "model"), SDK_TIERS, ids=SDK_TIER_IDS)
async def test_streamed_tool_calls_through_the_sdks_stream_helper(
    gateway: Running, route: str, model: str
) -> None:
    gateway.fake.script(
        model,
        Reply(text="", tool_calls=[FakeToolCall("GetWeather", {"city": "Oslo"})]),
    )
    async with (
        client(gateway) as c,
        c.chat.completions.stream(
            model=route,
            messages=[{"role": "user", "content": "weather?"}],
            tools=[openai.pydantic_function_tool(GetWeather)],
        ) as stream,
    ):
        done = [ev async for ev in stream if ev.type == "tool_calls.function.arguments.done"]
        final = await stream.get_final_completion()
    assert [ev.parsed_arguments for ev in done] == [GetWeather(city="Oslo")]
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.parsed_arguments == GetWeather(city="Oslo")


@pytest.mark.parametrize(("route", "model"), SDK_TIERS, ids=SDK_TIER_IDS)
async def test_parse_with_a_pydantic_response_format(
    gateway: Running, route: str, model: str
) -> None:
    gateway.fake.script(model, Reply(text='{"name": "Ada", "age": 36}'))
    async with client(gateway) as c:
        done = await c.chat.completions.parse(
            model=route,
            messages=[{"role": "user", "content": "who wrote the first program?"}],
            response_format=Person,
        )
    assert done.choices[0].message.parsed == Person(name="Ada", age=36)
    assert done.model.endswith(model)


async def test_parse_with_a_strict_pydantic_tool(gateway: Running) -> None:
    gateway.fake.script(
        "gemini-flash", Reply(text="", tool_calls=[FakeToolCall("GetWeather", {"city": "Oslo"})])
    )
    async with client(gateway) as c:
        done = await c.chat.completions.parse(
            model="tier:1",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[openai.pydantic_function_tool(GetWeather)],
        )
    (call,) = done.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == GetWeather(city="Oslo")


async def test_a_streamed_response_format_through_the_stream_helper(gateway: Running) -> None:
    gateway.fake.script("deepseek-chat", Reply(text='{"name": "Ada", "age": 36}'))
    async with (
        client(gateway) as c,
        c.chat.completions.stream(
            model="tier:2",
            messages=[{"role": "user", "content": "who?"}],
            response_format=Person,
        ) as stream,
    ):
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == Person(name="Ada", age=36)


async def test_a_field_the_gateway_cannot_honour_is_a_bad_request_in_the_sdk(
    gateway: Running,
) -> None:
    async with client(gateway, max_retries=0) as c:
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "x"}], logprobs=True
            )
        assert info.value.param == "logprobs" and info.value.code == "unsupported_parameter"
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": "x"}],
                extra_body={"top_k": 40},
            )
        assert info.value.param == "top_k" and "unknown field top_k" in info.value.message
    assert gateway.fake.requests == []
