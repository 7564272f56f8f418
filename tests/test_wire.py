"""The wire checker itself: real request shapes pass, and each kind of mistake is refused
with the JSON path that holds it. Shapes are taken from the installed SDKs' own types."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes.llm import FakeLLM
from tests.wire import SDK_VERSIONS, WireError, check_request

OPENAI = "openai-completions"
ANTHROPIC = "anthropic-messages"
GOOGLE = "google-generative-ai"
OLLAMA = "ollama"

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "where"}},
    "required": ["city"],
    "additionalProperties": False,
}

OPENAI_BODY: dict[str, Any] = {
    "model": "gpt-4.1-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather now.",
                "parameters": SCHEMA,
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "weather"}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    },
    "max_tokens": 256,
    "temperature": 0.2,
    "stream": True,
    "stream_options": {"include_usage": True},
}

ANTHROPIC_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 2048,
    "system": "Be brief.",
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "look it up", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "sunny"}],
                    "is_error": False,
                }
            ],
        },
    ],
    "tools": [{"name": "weather", "description": "The weather now.", "input_schema": SCHEMA}],
    "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
    "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "stream": False,
}

GOOGLE_BODY: dict[str, Any] = {
    "contents": [
        {"role": "user", "parts": [{"text": "Weather in Oslo?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "checking", "thought": True},
                {
                    "functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": "c2lnbmF0dXJl",  # base64, as bytes travel in JSON
                },
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "weather", "response": {"out": "sunny"}}}],
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [
        {
            "functionDeclarations": [
                {"name": "weather", "description": "now", "parametersJsonSchema": SCHEMA},
                {
                    "name": "alerts",
                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
                },
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
    "generationConfig": {
        "maxOutputTokens": 256,
        "temperature": 0.2,
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 512},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}
GOOGLE_STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"

OLLAMA_BODY: dict[str, Any] = {
    "model": "qwen3:14b",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather here?", "images": ["aGVsbG8="]},
        {
            "role": "assistant",
            "content": "",
            "thinking": "look it up",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "tool_name": "weather", "content": "sunny"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather now.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "where"}},
                    "required": ["city"],
                },
            },
        }
    ],
    "format": SCHEMA,
    "options": {"num_predict": 256, "num_ctx": 8192, "temperature": 0.2},
    "think": True,
    "keep_alive": "5m",
    "stream": False,
}


def with_(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**body, **changes}


@pytest.mark.parametrize(
    ("api", "body", "path", "stream"),
    [
        (OPENAI, OPENAI_BODY, "/v1/chat/completions", True),
        (OPENAI, with_(OPENAI_BODY, stream=False, stream_options=None), "", None),
        (OPENAI, with_(OPENAI_BODY, tool_choice="required"), "", None),
        (OPENAI, with_(OPENAI_BODY, response_format={"type": "json_object"}), "", None),
        (ANTHROPIC, ANTHROPIC_BODY, "/v1/messages", False),
        (ANTHROPIC, with_(ANTHROPIC_BODY, stream=True, tool_choice={"type": "any"}), "", True),
        (
            ANTHROPIC,
            with_(ANTHROPIC_BODY, system=[{"type": "text", "text": "Be brief."}]),
            "",
            None,
        ),
        (GOOGLE, GOOGLE_BODY, GOOGLE_STREAM, True),
        (GOOGLE, GOOGLE_BODY, "/v1beta/models/gemini-2.5-flash:generateContent", False),
        (GOOGLE, {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, "", None),
        (GOOGLE, {"contents": [], "generation_config": {"max_output_tokens": 5}}, "", None),
        (OLLAMA, OLLAMA_BODY, "/api/chat", False),
        (OLLAMA, with_(OLLAMA_BODY, format="json", keep_alive=300, think=False), "", None),
        (OLLAMA, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "", True),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "",
)
def test_real_shapes_pass(api: str, body: Any, path: str, stream: bool | None) -> None:
    check_request(api, body, path=path, stream=stream)


def _openai_tool_message(message: dict[str, Any]) -> dict[str, Any]:
    return with_(OPENAI_BODY, messages=[*OPENAI_BODY["messages"][:3], message])


def _anthropic_result(block: dict[str, Any]) -> dict[str, Any]:
    return with_(
        ANTHROPIC_BODY,
        messages=[*ANTHROPIC_BODY["messages"][:2], {"role": "user", "content": [block]}],
    )


def _anthropic_call(block: dict[str, Any]) -> dict[str, Any]:
    messages = ANTHROPIC_BODY["messages"]
    return with_(
        ANTHROPIC_BODY,
        messages=[messages[0], {"role": "assistant", "content": [block]}, messages[2]],
    )


def _gemini_part(part: dict[str, Any]) -> dict[str, Any]:
    return with_(GOOGLE_BODY, contents=[{"role": "model", "parts": [part]}])


def _ollama_message(message: dict[str, Any]) -> dict[str, Any]:
    return with_(OLLAMA_BODY, messages=[OLLAMA_BODY["messages"][0], message])


REFUSED = [
    # (api, body, the path named, words of the complaint)
    (OPENAI, with_(OPENAI_BODY, max_tokenz=5), "max_tokenz", "not a field"),
    (
        OPENAI,
        _openai_tool_message({"role": "tool", "content": "sunny"}),
        "messages[3].tool_call_id",
        "missing",
    ),
    (
        OPENAI,
        {"messages": [{"role": "user", "content": "x"}]},  # Required[...] in a string annotation
        "model",
        "missing",
    ),
    (
        OPENAI,
        _openai_tool_message({"role": "user", "content": "x", "reasoning_content": "r"}),
        "messages[3].reasoning_content",
        "not a field of ChatCompletionUserMessageParam",
    ),
    (OPENAI, with_(OPENAI_BODY, max_tokens="256"), "max_tokens", "expected an integer"),
    (OPENAI, with_(OPENAI_BODY, max_tokens=True), "max_tokens", "got a boolean"),
    (
        OPENAI,
        with_(OPENAI_BODY, response_format={"type": "json", "schema": SCHEMA}),
        "response_format.type",
        "'json' is not one of 'text', 'json_schema', 'json_object'",
    ),
    (
        OPENAI,
        _openai_tool_message({"role": "robot", "content": "x"}),
        "messages[3].role",
        "'robot' is not one of 'developer', 'system', 'user', 'assistant', 'tool'",
    ),
    (
        ANTHROPIC,
        _anthropic_result({"type": "tool_result", "content": "sunny"}),
        "messages[2].content[0].tool_use_id",
        "missing (required by ToolResultBlockParam)",
    ),
    (
        ANTHROPIC,
        _anthropic_call({"type": "tool_use", "id": "t", "name": "weather", "arguments": {}}),
        "messages[1].content[0].arguments",
        "not a field of ToolUseBlockParam",
    ),
    (
        ANTHROPIC,
        _anthropic_call({"type": "tool_use", "id": "t", "name": "weather", "input": "{}"}),
        "messages[1].content[0].input",
        "expected an object",
    ),
    (
        ANTHROPIC,
        with_(ANTHROPIC_BODY, tool_choice={"type": "required"}),
        "tool_choice.type",
        "'required' is not one of 'auto', 'any', 'tool', 'none'",
    ),
    (
        ANTHROPIC,
        with_(ANTHROPIC_BODY, output_config={"format": {"type": "json_schema"}}),
        "output_config.format.schema",
        "missing",
    ),
    (ANTHROPIC, with_(ANTHROPIC_BODY, max_tokens=2048.5), "max_tokens", "expected an integer"),
    (
        GOOGLE,
        with_(GOOGLE_BODY, generationConfig={"responseJsonSchemaX": SCHEMA}),
        "generationConfig.responseJsonSchemaX",
        "not a field",
    ),
    (GOOGLE, with_(GOOGLE_BODY, stream=True), "stream", "not a field of GenerateContentRequest"),
    (GOOGLE, {"generationConfig": {}}, "contents", "missing"),
    (
        GOOGLE,
        with_(GOOGLE_BODY, generationConfig={"maxOutputTokens": "256"}),
        "generationConfig.maxOutputTokens",
        "valid integer",
    ),
    (
        GOOGLE,
        with_(GOOGLE_BODY, toolConfig={"functionCallingConfig": {"mode": "REQUIRED"}}),
        "toolConfig.functionCallingConfig.mode",
        "'REQUIRED' is not one of 'MODE_UNSPECIFIED', 'AUTO', 'ANY', 'NONE'",
    ),
    (
        GOOGLE,  # the SDK takes any case; the API does not
        with_(GOOGLE_BODY, toolConfig={"functionCallingConfig": {"mode": "any"}}),
        "toolConfig.functionCallingConfig.mode",
        "case matters",
    ),
    (
        GOOGLE,
        with_(GOOGLE_BODY, safetySettings=[{"category": "HARASSMENT", "threshold": "BLOCK_NONE"}]),
        "safetySettings[0].category",
        "'HARASSMENT' is not one of",
    ),
    (
        GOOGLE,
        _gemini_part({"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "not b64!"}),
        "contents[0].parts[0].thoughtSignature",
        "base64",
    ),
    (
        GOOGLE,
        _gemini_part({"function_call": {"name": "f", "arguments": {}}}),
        "contents[0].parts[0].function_call.arguments",
        "not a field",
    ),
    (
        GOOGLE,
        _gemini_part({"text": "a", "functionCall": {"name": "f"}}),
        "contents[0].parts[0]",
        "exactly one of text",
    ),
    (
        GOOGLE,  # a Vertex AI field: the SDK's Gemini API converter refuses it
        with_(GOOGLE_BODY, generationConfig={"routingConfig": {"autoMode": {}}}),
        "generationConfig",
        "routing_config parameter is only supported in Gemini Enterprise Agent Platform",
    ),
    (OLLAMA, with_(OLLAMA_BODY, max_tokens=5), "max_tokens", "not a field of ChatRequest"),
    (
        OLLAMA,
        with_(OLLAMA_BODY, options={"num_predictx": 5}),
        "options.num_predictx",
        "not a field of Options",
    ),
    (
        OLLAMA,
        _ollama_message({"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}),
        "messages[1].tool_calls[0].function.name",
        "missing",
    ),
    (
        OLLAMA,
        _ollama_message(
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "args": {}}}]}
        ),
        "messages[1].tool_calls[0].function.args",
        "not a field of Function",
    ),
    (OLLAMA, _ollama_message({"role": "user", "content": 5}), "messages[1].content", "string"),
    (OLLAMA, with_(OLLAMA_BODY, options={"num_ctx": "8192"}), "options.num_ctx", "integer"),
    (
        OLLAMA,
        with_(OLLAMA_BODY, tools=[{"function": {"name": "f", "parameters": {"type": "array"}}}]),
        "tools[0].function.parameters.type",
        "Input should be 'object'",
    ),
    (
        OLLAMA,  # JSON Schema keywords past type/items/description/enum: the SDK drops them
        with_(
            OLLAMA_BODY,
            tools=[
                {"function": {"name": "f", "parameters": {"properties": {"n": {"minimum": 1}}}}}
            ],
        ),
        "tools[0].function.parameters.properties.n.minimum",
        "not a field of Property",
    ),
    (
        OLLAMA,
        _ollama_message({"role": "user", "content": "x", "images": ["photo.png"]}),
        "messages[1].images[0]",
        "does not exist",
    ),
]


@pytest.mark.parametrize(
    ("api", "body", "where", "words"), REFUSED, ids=[f"{r[0]}:{r[2]}" for r in REFUSED]
)
def test_mistakes_are_refused_naming_the_path(api: str, body: Any, where: str, words: str) -> None:
    with pytest.raises(WireError) as caught:
        check_request(api, body)
    assert (caught.value.where, words in caught.value.problem) == (where, True), caught.value
    sdk = {OPENAI: "openai", ANTHROPIC: "anthropic", GOOGLE: "google-genai", OLLAMA: "ollama"}
    assert f"{sdk[api]} {SDK_VERSIONS[sdk[api]]}" in str(caught.value)  # who judged, which one


@pytest.mark.parametrize(
    ("api", "body", "path", "stream", "words"),
    [
        (GOOGLE, GOOGLE_BODY, "/v1beta/models/g:streamGenerateContent", True, "without alt=sse"),
        (GOOGLE, GOOGLE_BODY, "/v1beta/models/g:generateContent", True, "stream=True"),
        (GOOGLE, GOOGLE_BODY, "/v1beta/models/g:predict", None, "not generateContent"),
        (GOOGLE, GOOGLE_BODY, "/v1beta/g:generateContent", None, "models/{model}"),
        (OPENAI, OPENAI_BODY, "/v1/completions", True, "chat endpoint"),
        (OLLAMA, OLLAMA_BODY, "/api/chat", True, "stream=True"),  # it says stream: false
        (ANTHROPIC, ANTHROPIC_BODY, "/v1/messages", True, "stream"),  # ditto
    ],
)
def test_url_and_stream_must_agree(
    api: str, body: Any, path: str, stream: bool | None, words: str
) -> None:
    with pytest.raises(WireError) as caught:
        check_request(api, body, path=path, stream=stream)
    assert words in str(caught.value)


def test_a_body_that_is_not_an_object_and_an_unknown_api() -> None:
    for api in (OPENAI, ANTHROPIC, GOOGLE, OLLAMA):
        with pytest.raises(WireError, match=r"^<body>: expected an object"):
            check_request(api, ["not", "an", "object"])
    with pytest.raises(ValueError, match="unknown api 'openai'"):
        check_request("openai", {})


async def test_the_fake_refuses_with_a_400_and_fails_the_test_on_the_way_out() -> None:
    junk = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    fake = FakeLLM()
    with pytest.raises(AssertionError, match=r"/api/chat: max_tokens: not a field"):
        async with fake, httpx.AsyncClient(base_url=fake.url) as client:
            response = await client.post("/api/chat", json=junk)
            assert response.status_code == 400
            assert "max_tokens: not a field of ChatRequest" in response.json()["error"]
            assert len(fake.requests) == 1  # recorded all the same
    assert len(fake.wire_errors) == 1


async def test_a_fake_told_not_to_check_answers_junk() -> None:
    junk = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    async with FakeLLM(check_wire=False) as fake, httpx.AsyncClient(base_url=fake.url) as client:
        response = await client.post("/api/chat", json={**junk, "stream": False})
        assert response.status_code == 200 and not fake.wire_errors
