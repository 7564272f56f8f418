"""LangChain's ChatOpenAI as a third-party client of the gateway: tools (invoke and
stream) and structured output (its default json_schema method, and function calling) on
every tier of the test pyramid, each a different wire format.

LangChain must not reach out: tiktoken (which downloads its encodings on first use) is
only used for token counting, which none of these calls does, and LangSmith tracing is
off; both are enforced below, with every connection outside 127.0.0.1 refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import tiktoken
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field, SecretStr

from tests.fakes.llm import FakeToolCall, Reply
from tests.gateway.conftest import TOKEN, Running

TIERS = [
    ("tier:0", "qwen3:14b"),
    ("tier:1", "gemini-flash"),
    ("tier:2", "deepseek-chat"),
    ("tier:3", "claude-opus"),
]
TIER_IDS = ["ollama", "gemini", "openai", "anthropic"]


class GetWeather(BaseModel):
    """The current weather in a city."""

    city: str = Field(description="the city's name")


class Person(BaseModel):
    """A person."""

    name: str
    age: int


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only loopback connections; no tiktoken encoding loaded; no LangSmith."""
    for var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    connect = socket.socket.connect
    outside: list[Any] = []

    def loopback_only(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host).is_loopback:
            outside.append(address)
            raise OSError(f"test tried to reach {address} outside 127.0.0.1")
        return connect(self, address)

    def no_tiktoken(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tiktoken was asked for an encoding (it would download it)")

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    monkeypatch.setattr(tiktoken, "get_encoding", no_tiktoken)
    monkeypatch.setattr(tiktoken, "encoding_for_model", no_tiktoken)
    yield
    assert outside == []


def chat_model(gw: Running, route: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=gw.url + "/v1", api_key=SecretStr(TOKEN), model=route, max_retries=0)


def _weather_call() -> Reply:
    return Reply(text="", tool_calls=[FakeToolCall("GetWeather", {"city": "Oslo"})])


@pytest.mark.parametrize(("route", "model"), TIERS, ids=TIER_IDS)
async def test_bind_tools_invoke_returns_tool_calls_and_takes_the_result_back(
    gateway: Running, route: str, model: str
) -> None:
    gateway.fake.script(model, _weather_call(), Reply(text="Sunny in Oslo."))
    llm = chat_model(gateway, route).bind_tools([GetWeather])
    ask = [HumanMessage("weather in Oslo?")]

    def run() -> tuple[AIMessage, AIMessage]:
        first = llm.invoke(ask)
        assert isinstance(first, AIMessage)
        (call,) = first.tool_calls
        result = ToolMessage("sunny, 21 C", tool_call_id=call["id"])
        second = llm.invoke([*ask, first, result])
        assert isinstance(second, AIMessage)
        return first, second

    first, second = await asyncio.to_thread(run)
    (call,) = first.tool_calls
    assert (call["name"], call["args"]) == ("GetWeather", {"city": "Oslo"})
    assert first.response_metadata["finish_reason"] == "tool_calls"
    assert second.content == "Sunny in Oslo." and not second.tool_calls
    sent = gateway.fake.requests[-1]
    assert sent.model == model and "sunny, 21 C" in str(sent.body)


@pytest.mark.parametrize(("route", "model"), TIERS, ids=TIER_IDS)
async def test_bind_tools_stream_merges_the_tool_call(
    gateway: Running, route: str, model: str
) -> None:
    gateway.fake.script(model, _weather_call())
    llm = chat_model(gateway, route).bind_tools([GetWeather])

    def run() -> AIMessageChunk:
        merged: AIMessageChunk | None = None
        for chunk in llm.stream("weather in Oslo?"):
            assert isinstance(chunk, AIMessageChunk)
            merged = chunk if merged is None else merged + chunk
        assert merged is not None
        return merged

    merged = await asyncio.to_thread(run)
    (call,) = merged.tool_calls
    assert (call["name"], call["args"]) == ("GetWeather", {"city": "Oslo"})
    assert call["id"]
    assert merged.response_metadata["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("route", "model"), TIERS, ids=TIER_IDS)
async def test_with_structured_output_by_its_default_json_schema(
    gateway: Running, route: str, model: str
) -> None:
    gateway.fake.script(model, Reply(text='{"name": "Ada", "age": 36}'))
    llm = chat_model(gateway, route).with_structured_output(Person)
    got = await llm.ainvoke("who wrote the first program?")
    assert got == Person(name="Ada", age=36)
    sent = gateway.fake.requests[-1]  # asked for as JSON output, not as a forced tool
    assert sent.model == model and "Person" not in str(sent.body.get("tools", ""))


@pytest.mark.parametrize(("route", "model"), TIERS, ids=TIER_IDS)
async def test_with_structured_output_by_function_calling(
    gateway: Running, route: str, model: str
) -> None:
    gateway.fake.script(
        model, Reply(text="", tool_calls=[FakeToolCall("Person", {"name": "Ada", "age": 36})])
    )
    llm = chat_model(gateway, route).with_structured_output(Person, method="function_calling")
    got = await llm.ainvoke("who wrote the first program?")
    assert got == Person(name="Ada", age=36)


async def test_the_default_structured_output_method_is_json_schema(gateway: Running) -> None:
    """What the test above relies on: LangChain asks for response_format json_schema
    (strict) by default, and a forced tool only with method="function_calling"."""
    gateway.fake.script("deepseek-chat", Reply(text='{"name": "Ada", "age": 36}'))
    gateway.fake.script(
        "deepseek-chat",
        Reply(text="", tool_calls=[FakeToolCall("Person", {"name": "Ada", "age": 36})]),
    )
    base = chat_model(gateway, "tier:2")
    await base.with_structured_output(Person).ainvoke("who?")
    await base.with_structured_output(Person, method="function_calling").ainvoke("who?")
    by_schema, by_tool = (r.body for r in gateway.fake.requests[-2:])
    assert by_schema["response_format"]["type"] == "json_schema"
    assert by_schema["response_format"]["json_schema"]["name"] == "Person"
    assert "tools" not in by_schema
    assert by_tool["tools"][0]["function"]["name"] == "Person"
    assert by_tool["tool_choice"] == {"type": "function", "function": {"name": "Person"}}
