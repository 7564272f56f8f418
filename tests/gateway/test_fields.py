"""Every field of an OpenAI chat-completions body: mapped onto the ChatRequest, or refused
with a 400 naming it. parse_chat directly (a table), then the same refusals over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from core.gateway.openai_api import ChatCall, GatewayError, finish_reason, parse_chat
from core.gateway.openai_fields import MAPPED, REFUSED, decode_call_id, encode_call_id
from core.types import Message, ResponseFormat, ToolCall, ToolChoice, ToolSpec
from tests.configs import make_config
from tests.gateway.conftest import Running

CONFIG = make_config()
USER = {"role": "user", "content": "hi"}
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
WEATHER_SPEC = ToolSpec(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def parse(**fields: Any) -> ChatCall:
    body = {"model": "auto", "messages": [USER]} | fields
    return parse_chat(CONFIG, body, "req_0123456789abcdef01234567")


def refused(**fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse(**fields)
    assert info.value.status == 400
    assert info.value.type == "invalid_request_error"
    return info.value


# -- mapped ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "attr", "expected"),
    [
        ({"model": "tier:2"}, "tier", 2),
        ({"model": "task:summarize"}, "task", "summarize"),
        ({"max_tokens": 77}, "max_tokens", 77),
        ({"max_completion_tokens": 66, "max_tokens": 77}, "max_tokens", 66),
        ({"temperature": 0.5}, "temperature", 0.5),
        ({"temperature": 2}, "temperature", 2.0),
        ({"top_p": 0.9}, "top_p", 0.9),
        ({"top_p": 0}, "top_p", 0.0),
        ({"stop": "END"}, "stop", ("END",)),
        ({"stop": ["a", "b", "c", "\n"]}, "stop", ("a", "b", "c", "\n")),
        ({"stop": []}, "stop", ()),
        ({"seed": 42}, "seed", 42),
        ({"seed": -(2**63)}, "seed", -(2**63)),
        ({"user": "cron-box"}, "caller", "cron-box"),
        ({"safety_identifier": "u-hash"}, "caller", "u-hash"),
        ({"user": "same", "safety_identifier": "same"}, "caller", "same"),
        ({"tools": [WEATHER]}, "tools", (WEATHER_SPEC,)),
        ({"tools": []}, "tools", ()),
        ({"tools": [WEATHER], "tool_choice": "auto"}, "tool_choice", ToolChoice("auto")),
        ({"tools": [WEATHER], "tool_choice": "none"}, "tool_choice", ToolChoice("none")),
        ({"tools": [WEATHER], "tool_choice": "required"}, "tool_choice", ToolChoice("required")),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
            "tool_choice",
            ToolChoice("tool", "get_weather"),
        ),
        # without tools, auto and none ask for nothing
        ({"tool_choice": "none"}, "tool_choice", None),
        ({"tool_choice": "auto"}, "tool_choice", None),
        ({"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls", False),
        ({"parallel_tool_calls": False}, "parallel_tool_calls", None),
        ({"response_format": {"type": "text"}}, "response_format", None),
        (
            {"response_format": {"type": "json_object"}},
            "response_format",
            ResponseFormat("json_object"),
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "person",
                        "description": "a person",
                        "schema": PERSON,
                        "strict": True,
                    },
                }
            },
            "response_format",
            ResponseFormat("json_schema", "person", PERSON, True, "a person"),
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "any"}}},
            "response_format",
            ResponseFormat("json_schema", "any"),
        ),
    ],
)
def test_a_field_is_mapped_onto_the_request(
    fields: dict[str, Any], attr: str, expected: Any
) -> None:
    assert getattr(parse(**fields).request, attr) == expected


def test_strict_tools_keep_strict_and_a_tool_without_parameters_takes_none() -> None:
    tools = [
        {"type": "function", "function": {"name": "now"}},
        {"type": "function", "function": {"name": "f", "parameters": PERSON, "strict": True}},
    ]
    assert parse(tools=tools).request.tools == (
        ToolSpec("now"),
        ToolSpec("f", "", PERSON, True),
    )


def test_stream_and_include_usage() -> None:
    call = parse(stream=True, stream_options={"include_usage": True})
    assert (call.stream, call.include_usage) == (True, True)
    assert (parse().stream, parse().include_usage) == (False, False)
    assert parse(stream=True, stream_options={}).include_usage is False


def test_null_counts_as_absent_for_every_field() -> None:
    nulls = {k: None for k in MAPPED | REFUSED.keys() if k not in ("messages",)}
    call = parse(**nulls)
    assert call.model == "auto" and call.stream is False
    assert call.request == parse().request


@pytest.mark.parametrize(
    "fields",
    [
        {"n": 1},
        {"logprobs": False},
        {"store": False},
        {"modalities": ["text"]},
        {"service_tier": "auto"},
        {"service_tier": "default"},
        {"logit_bias": {}},
        {"metadata": {}},
        {"frequency_penalty": 0},
        {"presence_penalty": 0.0},
    ],
)
def test_a_value_that_asks_for_nothing_is_the_default(fields: dict[str, Any]) -> None:
    assert parse(**fields).request == parse().request


# -- messages ----------------------------------------------------------------------------


def test_roles_and_content_parts() -> None:
    msgs = [
        {"role": "developer", "content": "rules"},
        {
            "role": "system",
            "content": [{"type": "text", "text": "more "}, {"type": "text", "text": "rules"}],
        },
        USER,
        {"role": "assistant", "content": None},
    ]
    assert parse(messages=msgs).request.messages == (
        Message("system", "rules"),
        Message("system", "more rules"),
        Message("user", "hi"),
        Message("assistant", ""),
    )


def _call(
    call_id: str, name: str = "get_weather", args: str = '{"city": "Oslo"}'
) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def test_tool_calls_and_their_results_take_the_calls_name() -> None:
    msgs = [
        USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [_call("c1"), _call("c2", "now", "{}")],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "12:00"},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sunny"}]},
        {"role": "assistant", "content": "Sunny at noon."},
        {"role": "user", "content": "thanks"},
    ]
    got = parse(messages=msgs, tools=[WEATHER]).request
    assert got.messages[1] == Message(
        "assistant",
        "",
        (ToolCall("c1", "get_weather", '{"city": "Oslo"}'), ToolCall("c2", "now", "{}")),
    )
    assert got.messages[2] == Message("tool", "12:00", tool_call_id="c2", name="now")
    assert got.messages[3] == Message("tool", "sunny", tool_call_id="c1", name="get_weather")
    assert got.uses_tools


def test_a_signature_in_the_id_comes_back_to_the_call_and_either_id_form_matches() -> None:
    encoded = encode_call_id("fc_1", "c2lnbmF0dXJl+/==")
    assert encoded.startswith("fc_1__ts__")
    msgs = [
        USER,
        {"role": "assistant", "tool_calls": [_call(encoded), _call("plain", "now", "{}")]},
        {"role": "tool", "tool_call_id": "fc_1", "content": "raw id"},  # the decoded form
        {"role": "tool", "tool_call_id": "plain", "content": "x", "name": "now"},
    ]
    got = parse(messages=msgs).request.messages
    assert got[1].tool_calls[0] == ToolCall(
        "fc_1", "get_weather", '{"city": "Oslo"}', "c2lnbmF0dXJl+/=="
    )
    assert got[1].tool_calls[1].signature == ""
    assert got[2].tool_call_id == "fc_1" and got[2].name == "get_weather"
    msgs[2] = {"role": "tool", "tool_call_id": encoded, "content": "as sent"}
    assert parse(messages=msgs).request.messages[2].tool_call_id == "fc_1"


@pytest.mark.parametrize(
    ("call_id", "signature"),
    [
        ("call_abc", ""),
        ("call_abc", "sig"),
        ("", "sig"),
        ("weird__ts__id", ""),  # the marker in an upstream id without a signature
        ("weird__ts__id", "s"),
        ("x__ts__mzxw6", ""),  # looks encoded, is not
        ("toolu_01", "CiQBjz1rX+/=" * 40),  # a long base64 signature
        ("id", "ünïcødé ✓"),
    ],
)
def test_the_signature_encoding_is_reversible(call_id: str, signature: str) -> None:
    encoded = encode_call_id(call_id, signature)
    assert decode_call_id(encoded) == (call_id, signature)
    assert all(c.isalnum() or c in "_-" for c in encoded.replace(call_id, ""))
    if not signature and "__ts__" not in call_id:
        assert encoded == call_id  # ids without a signature are handed out as they came


@pytest.mark.parametrize("sent", ["call_1", "a__ts__NOT-BASE32", "a__ts__1", ""])
def test_an_id_the_gateway_never_made_decodes_to_itself(sent: str) -> None:
    assert decode_call_id(sent) == (sent, "")


@pytest.mark.parametrize(
    ("msgs", "param", "words"),
    [
        (
            [{"role": "tool", "tool_call_id": "c1", "content": "x"}],
            "messages[0].role",
            "must follow",
        ),
        (
            [
                USER,
                {"role": "assistant", "tool_calls": [_call("c1")]},
                {"role": "tool", "tool_call_id": "c9", "content": "x"},
            ],
            "messages[2].tool_call_id",
            "'c9' is not a call",
        ),
        (
            [
                USER,
                {"role": "assistant", "tool_calls": [_call("c1")]},
                {"role": "tool", "content": "x"},
            ],
            "messages[2].tool_call_id",
            "non-empty string",
        ),
        (
            [
                USER,
                {"role": "assistant", "tool_calls": [_call("c1")]},
                {"role": "tool", "tool_call_id": "c1", "content": "x"},
                {"role": "tool", "tool_call_id": "c1", "content": "y"},
            ],
            "messages[3].tool_call_id",
            "answered twice",
        ),
        (
            [
                USER,
                {"role": "assistant", "tool_calls": [_call("c1"), _call("c2")]},
                {"role": "tool", "tool_call_id": "c1", "content": "x"},
                USER,
            ],
            "messages[3]",
            "no results: c2",
        ),
        (
            [USER, {"role": "assistant", "tool_calls": [_call("c1")]}],
            "messages",
            "no results: c1",
        ),
        (
            [USER, {"role": "assistant", "tool_calls": [_call("c1"), _call("c1")]}],
            "messages[1].tool_calls",
            "repeats",
        ),
        (
            [
                USER,
                {"role": "assistant", "tool_calls": [_call("c1")]},
                {"role": "tool", "tool_call_id": "c1", "name": "other", "content": "x"},
            ],
            "messages[2].name",
            "not the name of the call",
        ),
        (
            [
                USER,
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "custom", "custom": {}}]},
            ],
            "messages[1].tool_calls[0].type",
            '"function"',
        ),
        (
            [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": {"a": 1}},
                        }
                    ],
                },
            ],
            "messages[1].tool_calls[0].function.arguments",
            "string",
        ),
        (
            [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
            ],
            "messages[1].tool_calls[0].id",
            "non-empty string",
        ),
        (
            [{"role": "user", "content": "x", "name": "bob"}],
            "messages[0].name",
            "participant names",
        ),
        (
            [{"role": "assistant", "content": "x", "refusal": "no"}],
            "messages[0].refusal",
            "refusal",
        ),
        ([{"role": "assistant", "audio": {"id": "a"}}], "messages[0].audio", "text only"),
        (
            [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
            "messages[0].function_call",
            "use tool_calls",
        ),
        (
            [{"role": "function", "name": "f", "content": "x"}],
            "messages[0].role",
            "use a tool message",
        ),
        ([{"role": "user", "content": "x", "cache": 1}], "messages[0].cache", "unknown field"),
        (
            [{"role": "user", "tool_call_id": "c", "content": "x"}],
            "messages[0].tool_call_id",
            "unknown field",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {}}]}],
            "messages[0].content[0].cache_control",
            "unknown field",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "messages[0].content[0]",
            "only text parts",
        ),
        ([{"role": "robot", "content": "x"}], "messages[0].role", "must be one of"),
        ([], "messages", "non-empty array"),
    ],
)
def test_a_conversation_that_cannot_be_sent_is_refused(
    msgs: list[dict[str, Any]], param: str, words: str
) -> None:
    err = refused(messages=msgs)
    assert err.param == param and words in err.message, err.message


# -- tools, tool_choice, response_format and the rest ---------------------------------------


def _fn(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f"} | function}


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"tools": [{}]}, "tools[0].type", "only function tools"),
        (
            {"tools": [{"type": "custom", "custom": {"name": "x"}}]},
            "tools[0].type",
            "only function tools",
        ),
        ({"tools": {"type": "function"}}, "tools", "array"),
        ({"tools": [_fn(name="has space")]}, "tools[0].function.name", "1 to 64 letters"),
        ({"tools": [_fn(name="x" * 65)]}, "tools[0].function.name", "1 to 64 letters"),
        ({"tools": [_fn(), _fn()]}, "tools[1].function.name", "repeats"),
        (
            {"tools": [_fn(parameters={"type": "objekt"})]},
            "tools[0].function.parameters",
            "not a valid JSON Schema",
        ),
        (
            {"tools": [_fn(parameters={"type": "object", "properties": {"a": {"minLength": -1}}})]},
            "tools[0].function.parameters",
            "['properties']['a']['minLength']",
        ),
        (
            {"tools": [_fn(parameters={"type": "string"})]},
            "tools[0].function.parameters",
            "describe an object",
        ),
        ({"tools": [_fn(parameters=[])]}, "tools[0].function.parameters", "JSON Schema object"),
        (
            {"tools": [_fn(parameters={"$schema": "http://example.com/mine"})]},
            "tools[0].function.parameters",
            "names no JSON Schema draft",
        ),
        ({"tools": [_fn(strict="yes")]}, "tools[0].function.strict", "boolean"),
        ({"tools": [_fn(descr="typo")]}, "tools[0].function.descr", "unknown field"),
        ({"tools": [WEATHER], "tool_choice": "any"}, "tool_choice", '"required"'),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
            "not one of the tools (get_weather)",
        ),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
            "tool_choice.function.name",
            "no tools are given",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}},
            "tool_choice.type",
            "only function tools",
        ),
        ({"tools": [WEATHER], "parallel_tool_calls": "no"}, "parallel_tool_calls", "boolean"),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "json_schema"),
        ({"response_format": "json"}, "response_format", "object"),
        (
            {"response_format": {"type": "json_object", "schema": {}}},
            "response_format.schema",
            "unknown field",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "object"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": PERSON}}},
            "response_format.json_schema.name",
            "1 to 64 letters",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "p", "schema": {"required": "name"}},
                }
            },
            "response_format.json_schema.schema",
            "not a valid JSON Schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": 1}}},
            "response_format.json_schema.strict",
            "boolean",
        ),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "up to 4"),
        ({"stop": ""}, "stop", "non-empty string"),
        ({"stop": ["a", 1]}, "stop", "non-empty string"),
        ({"top_p": 1.5}, "top_p", "from 0 to 1"),
        ({"top_p": True}, "top_p", "from 0 to 1"),
        ({"temperature": -0.1}, "temperature", "from 0 to 2"),
        ({"seed": 1.5}, "seed", "whole number"),
        ({"seed": True}, "seed", "whole number"),
        ({"seed": 2**63}, "seed", "whole number"),
        (
            {"stream": True, "stream_options": {"include_usage": True, "chunk": 1}},
            "stream_options.chunk",
            "unknown field",
        ),
        (
            {"stream": True, "stream_options": {"include_obfuscation": False}},
            "stream_options.include_obfuscation",
            "not supported",
        ),
        (
            {"stream_options": {"include_usage": True}},
            "stream_options",
            "only allowed when stream is true",
        ),
        (
            {"stream": True, "stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
            "boolean",
        ),
        ({"user": 5}, "user", "string"),
        ({"safety_identifier": ["a"]}, "safety_identifier", "string"),
        ({"user": "a", "safety_identifier": "b"}, "user", "different callers"),
    ],
)
def test_a_mapped_field_with_a_bad_value_is_refused_naming_it(
    fields: dict[str, Any], param: str, words: str
) -> None:
    err = refused(**fields)
    assert err.param == param and words in err.message, err.message


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("n", 2, "only n = 1"),
        ("n", True, "only n = 1"),
        ("logprobs", True, "log probabilities"),
        ("logprobs", 0, "log probabilities"),
        ("top_logprobs", 3, "log probabilities"),
        ("audio", {"voice": "alloy", "format": "mp3"}, "text only"),
        ("modalities", ["text", "audio"], '["text"]'),
        ("prediction", {"type": "content", "content": "x"}, "predicted outputs"),
        ("web_search_options", {}, "search tool of your own"),
        ("logit_bias", {"50256": -100}, "token ids"),
        ("functions", [{"name": "f"}], "use tools"),
        ("function_call", "auto", "use tool_choice"),
        ("frequency_penalty", 0.5, "only 0"),
        ("presence_penalty", -1, "only 0"),
        ("store", True, "no completions"),
        ("metadata", {"k": "v"}, "stores none"),
        ("reasoning_effort", "low", "[tasks] think = false"),
        ("verbosity", "low", "not every model"),
        ("service_tier", "flex", "auto or default"),
        ("prompt_cache_key", "k1", "caches prompt prefixes by itself"),
        ("prompt_cache_options", {"mode": "explicit"}, "caches prompt prefixes"),
        ("prompt_cache_retention", "24h", "caches prompt prefixes"),
        ("moderation", {}, "no moderation"),
    ],
)
def test_a_field_the_gateway_cannot_honour_is_refused(field: str, value: Any, words: str) -> None:
    err = refused(**{field: value})
    assert err.param == field and err.code == "unsupported_parameter"
    assert words in err.message, err.message


def test_every_field_of_the_sdk_is_mapped_or_refused() -> None:
    from openai.types.chat.completion_create_params import CompletionCreateParamsBase

    sdk = set(CompletionCreateParamsBase.__annotations__) | {"stream"}
    assert sdk == MAPPED | REFUSED.keys()


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("max_token", "unknown field max_token; did you mean max_tokens?"),
        ("top_k", "unknown field top_k"),
    ],
)
def test_an_unknown_field_is_refused(field: str, words: str) -> None:
    err = refused(**{field: 5})
    assert err.param == field and err.code == "unknown_parameter"
    assert err.message.startswith(words)


# -- the same over HTTP --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"top_k": 40}, "top_k", "unknown_parameter"),
        ({"logprobs": True}, "logprobs", "unsupported_parameter"),
        ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
        ({"tools": [_fn(parameters={"type": 5})]}, "tools[0].function.parameters", None),
        (
            {
                "messages": [
                    USER,
                    {"role": "assistant", "tool_calls": [_call("c1")]},
                    {"role": "tool", "tool_call_id": "zz", "content": "x"},
                ]
            },
            "messages[2].tool_call_id",
            None,
        ),
        (
            {"stream": True, "stream_options": {"include_usage": True, "x": 1}},
            "stream_options.x",
            "unknown_parameter",
        ),
    ],
)
async def test_refusals_over_http_are_openai_errors_and_nothing_goes_upstream(
    gateway: Running, fields: dict[str, Any], param: str, code: str | None
) -> None:
    async with gateway.http() as c:
        r = await c.post(
            "/v1/chat/completions", json={"model": "auto", "messages": [USER]} | fields
        )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["param"], err["code"]) == ("invalid_request_error", param, code)
    assert gateway.fake.requests == []


async def test_a_body_using_every_mapped_field_is_served(gateway: Running) -> None:
    body = {
        "model": "tier:0",
        "messages": [
            {"role": "developer", "content": "be brief"},
            USER,
            {"role": "assistant", "content": None, "tool_calls": [_call("c1")]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "max_completion_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "tools": [WEATHER],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "response_format": {"type": "text"},
        "stream": False,
        "user": "me",
        "safety_identifier": "me",
        "n": 1,
        "logprobs": False,
        "store": False,
        "service_tier": "auto",
        "metadata": None,
    }
    async with gateway.http() as c:
        r = await c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize(
    ("reason", "calls", "said"),
    [
        (None, (), "stop"),
        ("stop", (ToolCall("c", "f", "{}"),), "tool_calls"),
        ("length", (), "length"),
        ("content_filter", (), "content_filter"),
        ("pause_turn", (), "stop"),  # Anthropic's own words are never passed on
        ("model_context_window_exceeded", (), "length"),
        ("malformed_function_call", (), "stop"),  # Gemini's, lowercased
    ],
)
def test_finish_reasons_are_always_openais(
    reason: str | None, calls: tuple[ToolCall, ...], said: str
) -> None:
    assert finish_reason(reason, calls) == said


def test_a_schema_whose_ref_does_not_resolve_is_refused() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}},
        },
    }
    with pytest.raises(GatewayError) as e:
        parse_chat(CONFIG, {"model": "auto", "messages": [USER], "tools": [tool]}, "req_1")
    assert e.value.param == "tools[0].function.parameters"
    assert "does not resolve inside the schema" in e.value.message
