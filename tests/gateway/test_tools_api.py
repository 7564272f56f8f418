"""Tool calls and structured output end to end: the gateway in front of the fake LLM, on
every tier of the test pyramid, each a different wire format (tier 0 Ollama, 1 Gemini,
2 OpenAI, 3 Anthropic, approved by the test config's default)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fakes.llm import FakeToolCall, Reply
from tests.gateway.conftest import GatewayFactory, Running

# (route, the fake's model name, the ref the gateway answers with)
TIERS = [
    ("tier:0", "qwen3:14b", "local/qwen3:14b"),
    ("tier:1", "gemini-flash", "flash/gemini-flash"),
    ("tier:2", "deepseek-chat", "deep/deepseek-chat"),
    ("tier:3", "claude-opus", "opus/claude-opus"),
]
TIER_IDS = ["ollama", "gemini", "openai", "anthropic"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "weather in Oslo?"}]


async def chat(gw: Running, **body: Any) -> httpx.Response:
    async with gw.http() as c:
        return await c.post("/v1/chat/completions", json=body)


async def sse(gw: Running, **body: Any) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """The stream's events as JSON, ``[DONE]`` left out (and asserted last)."""
    async with gw.http() as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]", lines[-3:]
    return r, [json.loads(line[6:]) for line in lines[:-1]]


def calls_of(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Tool-call deltas merged by index, as OpenAI clients merge them."""
    merged: dict[int, dict[str, Any]] = {}
    for ev in events:
        for ch in ev.get("choices", []):
            for d in ch["delta"].get("tool_calls") or []:
                cur = merged.setdefault(d["index"], {"function": {"name": "", "arguments": ""}})
                for key in ("id", "type"):
                    if d.get(key):
                        cur[key] = d[key]
                fn = d.get("function") or {}
                cur["function"]["name"] += fn.get("name") or ""
                cur["function"]["arguments"] += fn.get("arguments") or ""
    return merged


# -- a tool call out -----------------------------------------------------------------------


@pytest.mark.parametrize(("route", "model", "ref"), TIERS, ids=TIER_IDS)
async def test_a_tool_call_comes_out_as_json(
    gateway: Running, route: str, model: str, ref: str
) -> None:
    gateway.fake.script(
        model, Reply(text="", tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"})])
    )
    r = await chat(gateway, model=route, messages=ASK, tools=[WEATHER])
    assert r.status_code == 200, r.text
    assert r.headers["x-openclaw-route"].startswith(f"tier={route[-1]}; model={ref}")
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


@pytest.mark.parametrize(("route", "model", "ref"), TIERS, ids=TIER_IDS)
async def test_a_tool_call_comes_out_as_sse_deltas(
    gateway: Running, route: str, model: str, ref: str
) -> None:
    gateway.fake.script(
        model,
        Reply(
            text="Checking.",
            tool_calls=[
                FakeToolCall("get_weather", {"city": "Oslo"}),
                FakeToolCall("get_weather", {"city": "Bergen"}),
            ],
        ),
    )
    r, events = await sse(
        gateway,
        model=route,
        messages=ASK,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert r.headers["x-openclaw-route"].startswith(f"tier={route[-1]}; model={ref}")
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(ev["choices"][0]["delta"].get("content") or "" for ev in events if ev["choices"])
    assert text == "Checking."
    calls = calls_of(events)
    assert [json.loads(calls[i]["function"]["arguments"]) for i in (0, 1)] == [
        {"city": "Oslo"},
        {"city": "Bergen"},
    ]
    assert all(c["type"] == "function" and c["id"] for c in calls.values())
    assert calls[0]["id"] != calls[1]["id"]
    finishing = [ev for ev in events if ev["choices"] and ev["choices"][0]["finish_reason"]]
    assert [ev["choices"][0]["finish_reason"] for ev in finishing] == ["tool_calls"]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] >= 0


async def test_a_streamed_turn_of_calls_only_carries_the_role_on_its_first_call(
    gateway: Running,
) -> None:
    gateway.fake.script(
        "deepseek-chat", Reply(text="", tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"})])
    )
    _, events = await sse(gateway, model="tier:2", messages=ASK, tools=[WEATHER], stream=True)
    first = events[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["tool_calls"][0]["index"] == 0
    assert first["tool_calls"][0]["function"]["name"] == "get_weather"
    assert all(not (ev["choices"][0]["delta"].get("content")) for ev in events)


# -- tool results going back ------------------------------------------------------------


def _result_sent(api_model: str, body: dict[str, Any], call_id: str) -> bool:
    """Whether ``body`` (in the model's format) carries the result "sunny, 21 C" of the
    get_weather call ``call_id``, tied to that call the way the format ties them."""
    if api_model == "deepseek-chat":  # OpenAI: a tool message with the call's id
        return {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"} in body[
            "messages"
        ]
    if api_model == "qwen3:14b":  # Ollama: a tool message with the tool's name
        return any(
            m.get("role") == "tool"
            and m.get("tool_name") == "get_weather"
            and m.get("content") == "sunny, 21 C"
            for m in body["messages"]
        )
    if api_model == "gemini-flash":  # Gemini: a functionResponse part named as the call
        parts = [p for c in body["contents"] for p in c["parts"]]
        return any(
            p.get("functionResponse", {}).get("name") == "get_weather"
            and "sunny, 21 C" in json.dumps(p["functionResponse"]["response"])
            for p in parts
        )
    blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
    return any(  # Anthropic: a tool_result block with the tool_use id
        b.get("type") == "tool_result"
        and b.get("tool_use_id") == call_id
        and "sunny, 21 C" in json.dumps(b.get("content"))
        for b in blocks
    )


@pytest.mark.parametrize(("route", "model", "ref"), TIERS, ids=TIER_IDS)
async def test_tool_results_go_back_in_each_format(
    gateway: Running, route: str, model: str, ref: str
) -> None:
    gateway.fake.script(
        model,
        Reply(text="", tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"})]),
        Reply(text="It is sunny in Oslo."),
    )
    first = await chat(gateway, model=route, messages=ASK, tools=[WEATHER])
    assert first.status_code == 200, first.text
    assistant = first.json()["choices"][0]["message"]
    call_id = assistant["tool_calls"][0]["id"]
    history = [
        *ASK,
        assistant,  # echoed as the client got it (content null)
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"},
    ]
    second = await chat(gateway, model=route, messages=history, tools=[WEATHER])
    assert second.status_code == 200, second.text
    answer = second.json()["choices"][0]
    assert answer["message"]["content"] == "It is sunny in Oslo."
    assert answer["finish_reason"] == "stop" and "tool_calls" not in answer["message"]
    sent = gateway.fake.requests[-1]
    assert sent.model == model
    assert _result_sent(model, sent.body, call_id), sent.body


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_geminis_signature_survives_a_client_that_echoes_only_the_id(
    gateway: Running, stream: bool
) -> None:
    gateway.fake.script(
        "gemini-flash",
        Reply(
            text="",
            tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"}, signature="c2lnLTEyMw==")],
        ),
        Reply(text="sunny"),
    )
    if stream:
        _, events = await sse(gateway, model="tier:1", messages=ASK, tools=[WEATHER], stream=True)
        call_id = calls_of(events)[0]["id"]
    else:
        r = await chat(gateway, model="tier:1", messages=ASK, tools=[WEATHER])
        call_id = r.json()["choices"][0]["message"]["tool_calls"][0]["id"]
    assert "__ts__" in call_id
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"},
    ]
    r = await chat(gateway, model="tier:1", messages=history, tools=[WEATHER])
    assert r.status_code == 200, r.text
    body = gateway.fake.requests[-1].body
    parts = [p for c in body["contents"] for p in c["parts"] if "functionCall" in p]
    assert [p.get("thoughtSignature") for p in parts] == ["c2lnLTEyMw=="]
    assert "__ts__" not in json.dumps(body)  # the upstream gets its own id back


# -- structured output ----------------------------------------------------------------------


def _json_mode_sent(model: str, body: dict[str, Any]) -> bool:
    """Whether the request asked the model's API for JSON output."""
    if model == "deepseek-chat":
        return body.get("response_format", {}).get("type") in ("json_schema", "json_object")
    if model == "qwen3:14b":
        return body.get("format") is not None
    if model == "gemini-flash":
        return body.get("generationConfig", {}).get("responseMimeType") == "application/json"
    return "output_format" in body or "output_config" in body or "tools" in body


@pytest.mark.parametrize(("route", "model", "ref"), TIERS, ids=TIER_IDS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_response_format_json_schema(
    gateway: Running, route: str, model: str, ref: str, stream: bool
) -> None:
    gateway.fake.script(model, Reply(text='{"name": "Ada", "age": 36}'))
    body: dict[str, Any] = {
        "model": route,
        "messages": [{"role": "user", "content": "who wrote the first program?"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
    }
    if stream:
        r, events = await sse(gateway, **body, stream=True)
        content = "".join(
            ev["choices"][0]["delta"].get("content") or "" for ev in events if ev["choices"]
        )
    else:
        r = await chat(gateway, **body)
        assert r.status_code == 200, r.text
        content = r.json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"name": "Ada", "age": 36}
    assert r.headers["x-openclaw-route"].startswith(f"tier={route[-1]}; model={ref}")
    sent = gateway.fake.requests[-1]
    assert _json_mode_sent(model, sent.body), sent.body


async def test_json_off_the_schema_climbs_to_the_next_tier(gateway: Running) -> None:
    gateway.fake.script("qwen3:14b", Reply(text='{"name": "Ada"}'))  # no age
    gateway.fake.script("gemini-flash", Reply(text='{"name": "Ada", "age": 36}'))
    r = await chat(
        gateway,
        model="auto",
        messages=ASK,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-openclaw-route"] == "tier=1; model=flash/gemini-flash; attempts=2"
    assert json.loads(r.json()["choices"][0]["message"]["content"])["age"] == 36


async def test_a_call_to_a_tool_nobody_offered_climbs_to_the_next_tier(gateway: Running) -> None:
    gateway.fake.script("qwen3:14b", Reply(text="", tool_calls=[FakeToolCall("rm_rf", {})]))
    gateway.fake.script(
        "gemini-flash", Reply(text="", tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"})])
    )
    r = await chat(gateway, model="auto", messages=ASK, tools=[WEATHER])
    assert r.status_code == 200, r.text
    assert r.headers["x-openclaw-route"].startswith("tier=1; model=flash/gemini-flash")
    assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


# -- what no model can serve, and what each route can ------------------------------------

NO_TOOLS = {
    "local/qwen3:14b": {"reasoning": True, "max_tokens": 1024, "json": "none"},
    "flash/gemini-flash": {"max_tokens": 512, "tools": False},
    "deep/deepseek-chat": {"max_tokens": 512, "tools": False, "json": "object"},
    "deep2/deepseek-backup": {"max_tokens": 512, "tools": False, "json": "none"},
    "opus/claude-opus": {"max_tokens": 512, "tools": False, "json": "none"},
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_tools_no_model_of_the_route_takes_are_a_400_naming_each(
    start_gateway: GatewayFactory, stream: bool
) -> None:
    gw = await start_gateway(models=NO_TOOLS)
    r = await chat(gw, model="tier:1", messages=ASK, tools=[WEATHER], stream=stream)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "no_capable_model" and err["type"] == "invalid_request_error"
    for ref in ("flash/gemini-flash", "deep/deepseek-chat", "opus/claude-opus"):
        assert ref in err["message"]
    assert "tools = false" in err["message"]
    assert r.headers["x-openclaw-route"].startswith("cannot serve")
    assert gw.fake.requests == []


async def test_json_no_model_of_the_route_can_give_is_a_400(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(models=NO_TOOLS)
    r = await chat(gw, model="tier:3", messages=ASK, response_format={"type": "json_object"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "no_capable_model"
    assert "opus/claude-opus" in err["message"] and 'json = "none"' in err["message"]


async def test_models_say_what_each_route_can_offer(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(models=NO_TOOLS)
    async with gw.http() as c:
        r = await c.get("/v1/models")
    assert r.status_code == 200
    got = {m["id"]: m["capabilities"] for m in r.json()["data"]}
    row = lambda tools, schema, obj: {"tools": tools, "json_schema": schema, "json_object": obj}  # noqa: E731
    assert got["tier:0"] == row(True, True, True)  # tools at tier 0, schemas from tier 1 up
    assert got["tier:1"] == row(False, True, True)
    assert got["tier:2"] == row(False, False, True)  # DeepSeek: JSON mode, no schema
    assert got["tier:3"] == row(False, False, False)
    assert got["auto"] == got["task:chat"] == got["tier:0"]
    assert got["task:analysis"] == got["tier:2"]
    first = r.json()["data"][0]
    assert {"id", "object", "created", "owned_by"} <= set(first)


async def test_the_default_pyramid_offers_everything_everywhere(gateway: Running) -> None:
    async with gateway.http() as c:
        data = (await c.get("/v1/models")).json()["data"]
    assert all(
        m["capabilities"] == {"tools": True, "json_schema": True, "json_object": True} for m in data
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_failover_in_the_middle_of_a_tool_conversation_changes_format(
    gateway: Running, stream: bool
) -> None:
    # Ollama made the call; at the next turn it is down, and Gemini gets the same
    # conversation in its own format: functionCall and functionResponse parts
    gateway.fake.script(
        "qwen3:14b",
        Reply(text="", tool_calls=[FakeToolCall("get_weather", {"city": "Oslo"}, id="call_1")]),
        Reply(status=503, error_message="overloaded"),
    )
    gateway.fake.script("gemini-flash", Reply(text="Sunny in Oslo."))
    first = await chat(gateway, model="tier:0", messages=ASK, tools=[WEATHER])
    assistant = first.json()["choices"][0]["message"]
    history = [
        *ASK,
        assistant,
        {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": "sunny"},
    ]
    if stream:
        r, events = await sse(
            gateway, model="tier:0", messages=history, tools=[WEATHER], stream=True
        )
        text = "".join(
            e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]
        )
    else:
        r = await chat(gateway, model="tier:0", messages=history, tools=[WEATHER])
        text = r.json()["choices"][0]["message"]["content"]
    assert r.status_code == 200
    assert text == "Sunny in Oslo."
    assert r.headers["x-openclaw-route"] == "tier=1; model=flash/gemini-flash; attempts=2"
    sent = gateway.fake.requests[-1]
    assert sent.model == "gemini-flash"
    model_turn, results = sent.body["contents"][1:]
    (call_part,) = model_turn["parts"]
    assert call_part["functionCall"]["name"] == "get_weather"
    assert call_part["functionCall"]["args"] == {"city": "Oslo"}
    assert call_part["thoughtSignature"]  # Gemini's documented skip value: Ollama signs none
    assert results["parts"][0]["functionResponse"]["name"] == "get_weather"
    assert sent.body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
