"""Tools and JSON output through the engine: what each model is sent, which models are
skipped for what they cannot do, and which answers are unusable (and climb)."""

from __future__ import annotations

import json
import time

import pytest

from core.config.common import Validators
from core.engine.engine import Engine
from core.engine.health import HealthBoard
from core.engine.ledger import Ledger
from core.engine.structured import JSON_NOTE, check_json, check_tool_calls, schema_error
from core.errors import AllAttemptsFailed, CannotServe, ProviderError
from core.providers.testing import Answer, Fault, TestProvider
from core.store.open import open_store
from core.store.path import DbLocation
from core.types import ChatRequest, Message, ResponseFormat, ToolCall, ToolChoice, ToolSpec
from tests.configs import make_config
from tests.test_drop_params import engine_for

ASK = (Message("user", "what is the weather in Paris?"),)
WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def call(
    name: str = "get_weather", arguments: str = '{"city": "Paris"}', id_: str = "c1"
) -> ToolCall:
    return ToolCall(id_, name, arguments)


# -- the pure checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calls", "choice", "why"),
    [
        ([call()], None, None),
        ([call(), call(arguments='{"city": "Rome"}', id_="c2")], None, None),
        ([call(arguments="")], None, "schema check failed for the arguments of 'get_weather'"),
        ([call("get_wether")], None, "called an unknown tool 'get_wether'"),
        ([call(arguments='{"city": ')], None, "the arguments of 'get_weather' are not JSON"),
        ([call(arguments="[1]")], None, "the arguments of 'get_weather' are not a JSON object"),
        ([call(arguments='{"city": 7}')], None, "schema check failed for the arguments of"),
        ([call(arguments='{"city": "P", "x": 1}')], None, "schema check failed"),
        ([], ToolChoice("required"), "no tool call, though tool_choice is required"),
        ([], ToolChoice("tool", "get_weather"), "no call of 'get_weather'"),
        ([call()], ToolChoice("none"), "called 'get_weather', though tool_choice is none"),
        ([], None, None),
        ([], ToolChoice("none"), None),
    ],
)
def test_tool_calls_are_checked_against_the_offer(
    calls: list[ToolCall], choice: ToolChoice | None, why: str | None
) -> None:
    got = check_tool_calls(calls, [WEATHER], choice)
    if why is None:
        assert got is None
    else:
        assert got is not None and got.startswith(why), got


def test_a_named_tool_choice_refuses_another_tool() -> None:
    other = ToolSpec("get_time", "", {"type": "object"})
    got = check_tool_calls(
        [call("get_time", "{}")], [WEATHER, other], ToolChoice("tool", "get_weather")
    )
    assert got == "called 'get_time', though tool_choice names 'get_weather'"


@pytest.mark.parametrize(
    ("content", "fmt", "why"),
    [
        ('{"name": "Ada", "age": 36}', ResponseFormat("json_schema", "p", SCHEMA), None),
        (
            '```json\n{"name": "Ada", "age": 36}\n```',
            ResponseFormat("json_schema", "p", SCHEMA),
            None,
        ),
        ('{"name": "Ada"}', ResponseFormat("json_schema", "p", SCHEMA), "schema check failed"),
        ("Ada is 36", ResponseFormat("json_object"), "the answer is not valid JSON"),
        ("[1, 2]", ResponseFormat("json_object"), "the answer is not a JSON object"),
        ("prose", ResponseFormat("text"), None),
        ("prose", None, None),
    ],
)
def test_json_answers_are_checked(
    content: str, fmt: ResponseFormat | None, why: str | None
) -> None:
    got = check_json(content, fmt)
    assert (got is None) if why is None else (got is not None and got.startswith(why)), got


def test_a_schema_that_is_not_one_is_named() -> None:
    assert schema_error(SCHEMA) is None
    assert schema_error({"type": "objekt"}) is not None


# -- what models are sent ------------------------------------------------------------------


async def test_tools_and_parameters_reach_the_model_and_calls_come_back() -> None:
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Answer("", tool_calls=(call(),)))
    req = ChatRequest(
        ASK,
        tier=0,
        tools=(WEATHER,),
        tool_choice=ToolChoice("required"),
        parallel_tool_calls=False,
        stop=("END",),
        top_p=0.9,
        seed=7,
    )
    result = await engine.complete(req)
    assert result.tool_calls == (call(),)
    assert result.finish_reason == "tool_calls"
    assert result.answered_by.tool_calls == 1
    sent = providers["local"].calls[0].call
    assert sent.tools == (WEATHER,)
    assert sent.tool_choice == ToolChoice("required")
    assert (sent.parallel_tool_calls, sent.stop, sent.top_p, sent.seed) == (False, ("END",), 0.9, 7)


async def test_a_tool_conversation_goes_on_with_results() -> None:
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Answer("It is sunny in Paris."))
    history = (
        *ASK,
        Message("assistant", "", tool_calls=(call(),)),
        Message("tool", '{"sky": "sunny"}', tool_call_id="c1", name="get_weather"),
    )
    result = await engine.complete(ChatRequest(history, tier=0, tools=(WEATHER,)))
    assert result.content == "It is sunny in Paris."
    assert result.finish_reason == "stop"
    assert providers["local"].calls[0].call.messages == history


@pytest.mark.parametrize(
    "bad",
    [
        call("get_wether"),
        call(arguments='{"city": '),
        call(arguments='{"town": "Paris"}'),
    ],
    ids=["unknown tool", "not JSON", "off schema"],
)
async def test_a_malformed_tool_call_is_unusable_and_climbs(bad: ToolCall) -> None:
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Answer("", tool_calls=(bad,)))
    providers["flash"].script("gemini-flash", Answer("", tool_calls=(call(),)))
    result = await engine.complete(ChatRequest(ASK, tier=0, tools=(WEATHER,)))
    assert result.answered_by.ref == "flash/gemini-flash"
    first = result.attempts[0]
    assert (first.outcome, first.tool_calls) == ("unusable", 1)
    assert result.tool_calls == (call(),)


async def test_failover_mid_conversation_sends_the_same_history_to_the_next_format() -> None:
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Fault("refused", detail="down"))
    providers["flash"].script("gemini-flash", Answer("sunny"))
    history = (
        *ASK,
        Message(
            "assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city":"Paris"}', "sig"),)
        ),
        Message("tool", "sunny", tool_call_id="c1", name="get_weather"),
    )
    result = await engine.complete(ChatRequest(history, tier=0, tools=(WEATHER,)))
    assert result.answered_by.ref == "flash/gemini-flash"
    assert providers["flash"].calls[0].call.messages == history
    assert providers["flash"].calls[0].call.tools == (WEATHER,)


async def test_streams_with_tools_are_held_until_the_calls_are_judged() -> None:
    engine, providers = engine_for()
    # the first model says something, then calls a tool badly: nothing of it may go out
    providers["local"].script("qwen3:14b", Answer("Let me look.", tool_calls=(call("nope"),)))
    providers["flash"].script("gemini-flash", Answer("Checking.", tool_calls=(call(),)))
    items = [i async for i in engine.stream(ChatRequest(ASK, tier=0, tools=(WEATHER,)))]
    texts = "".join(getattr(i, "content", "") for i in items[:-1])
    assert texts == "Checking."
    assert items[-1].tool_calls == (call(),)  # type: ignore[union-attr]


# -- capabilities ------------------------------------------------------------------------


async def test_models_without_tools_are_skipped_with_the_reason() -> None:
    engine, providers = engine_for({"local/qwen3:14b": {"tools": False}})
    providers["flash"].script("gemini-flash", Answer("", tool_calls=(call(),)))
    result = await engine.complete(ChatRequest(ASK, tier=0, tools=(WEATHER,)))
    skipped = result.attempts[0]
    assert (skipped.ref, skipped.outcome) == ("local/qwen3:14b", "skipped")
    assert (
        skipped.reason == 'the model does not take tools ([models."local/qwen3:14b"] tools = false)'
    )
    assert providers["local"].calls == []


async def test_a_history_with_tool_calls_needs_a_model_with_tools_too() -> None:
    engine, providers = engine_for({"local/qwen3:14b": {"tools": False}})
    providers["flash"].script("gemini-flash", Answer("sunny"))
    history = (
        *ASK,
        Message("assistant", "", tool_calls=(call(),)),
        Message("tool", "x", tool_call_id="c1"),
    )
    result = await engine.complete(ChatRequest(history, tier=0))
    assert result.answered_by.ref == "flash/gemini-flash"


async def test_when_no_model_can_serve_the_request_it_says_which_and_why() -> None:
    everyone = {
        ref: {"tools": False}
        for ref in (
            "local/qwen3:14b",
            "flash/gemini-flash",
            "deep/deepseek-chat",
            "deep2/deepseek-backup",
            "opus/claude-opus",
        )
    }
    engine, providers = engine_for(everyone)
    with pytest.raises(CannotServe) as e:
        await engine.complete(ChatRequest(ASK, tier=0, tools=(WEATHER,)))
    text = str(e.value)
    assert text.startswith("no configured model can serve this request:")
    assert "tier 3 opus/claude-opus: skipped (the model does not take tools" in text
    assert all(p.calls == [] for p in providers.values())


async def test_an_outage_of_the_capable_models_is_not_the_requests_fault() -> None:
    engine, providers = engine_for({"local/qwen3:14b": {"tools": False}})
    for name, model in (
        ("flash", "gemini-flash"),
        ("deep", "deepseek-chat"),
        ("deep2", "deepseek-backup"),
        ("opus", "claude-opus"),
    ):
        providers[name].script(model, Fault("refused", detail="down"))
    with pytest.raises(AllAttemptsFailed) as e:
        await engine.complete(ChatRequest(ASK, tier=0, tools=(WEATHER,)))
    assert not isinstance(e.value, CannotServe)


async def test_json_schema_goes_as_is_where_the_model_enforces_schemas() -> None:
    engine, providers = engine_for()
    fmt = ResponseFormat("json_schema", "person", SCHEMA, strict=True)
    providers["local"].script("qwen3:14b", Answer('{"name": "Ada", "age": 36}'))
    result = await engine.complete(ChatRequest(ASK, tier=0, response_format=fmt))
    assert json.loads(result.content) == {"name": "Ada", "age": 36}
    sent = providers["local"].calls[0].call
    assert sent.response_format == fmt
    assert sent.messages == ASK


async def test_a_json_mode_only_model_gets_the_schema_in_the_prompt_and_is_checked() -> None:
    engine, providers = engine_for({"deep/deepseek-chat": {"json": "object"}})
    fmt = ResponseFormat("json_schema", "person", SCHEMA)
    system = Message("system", "You extract people.")
    providers["deep"].script("deepseek-chat", Answer('{"name": "Ada"}'))  # off schema
    providers["deep2"].script("deepseek-backup", Answer('{"name": "Ada", "age": 36}'))
    providers["opus"].script("claude-opus", Answer('{"name": "Ada", "age": 36}'))
    result = await engine.complete(ChatRequest((system, *ASK), tier=2, response_format=fmt))
    sent = providers["deep"].calls[0].call
    assert sent.response_format == ResponseFormat("json_object")
    assert sent.messages[0] == system
    assert sent.messages[1].role == "system"
    assert sent.messages[1].content.startswith(JSON_NOTE)
    assert '"required":["name","age"]' in sent.messages[1].content
    assert result.attempts[0].outcome == "unusable"
    assert result.answered_by.tier == 3  # unusable climbs a tier, past the same-tier backup


async def test_json_output_skips_models_without_a_json_mode() -> None:
    engine, providers = engine_for({"local/qwen3:14b": {"json": "none"}})
    providers["flash"].script("gemini-flash", Answer("{}"))
    result = await engine.complete(
        ChatRequest(ASK, tier=0, response_format=ResponseFormat("json_object"))
    )
    assert result.attempts[0].reason.startswith("the model has no JSON output mode")
    assert result.answered_by.ref == "flash/gemini-flash"


async def test_a_json_task_uses_native_json_mode_and_its_validators_still_check() -> None:
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Answer('{"nom": "Ada"}'))  # lacks json_keys "name"
    providers["flash"].script("gemini-flash", Answer('{"name": "Ada"}'))
    result = await engine.complete(ChatRequest(ASK, task="extract"))
    sent = providers["local"].calls[0].call
    assert sent.response_format == ResponseFormat("json_object")
    assert any(m.role == "system" and m.content == JSON_NOTE for m in sent.messages)
    assert result.attempts[0].reason == "JSON answer lacks required keys: name"
    assert result.answered_by.ref == "flash/gemini-flash"


async def test_dropped_parameters_are_left_out_per_model() -> None:
    engine, providers = engine_for(
        {"deep/deepseek-chat": {"drop_params": ["seed", "parallel_tool_calls", "stop"]}}
    )
    providers["deep"].script("deepseek-chat", Answer("ok"))
    await engine.complete(
        ChatRequest(ASK, tier=2, seed=1, parallel_tool_calls=True, stop=("x",), top_p=0.5)
    )
    sent = providers["deep"].calls[0].call
    assert (sent.seed, sent.parallel_tool_calls, sent.stop, sent.top_p) == (None, None, (), 0.5)


async def test_the_ledger_counts_tool_calls_per_attempt(store_location: DbLocation) -> None:
    store = await open_store(store_location)
    try:
        cfg = make_config()
        providers = {name: TestProvider(name) for name in cfg.providers}
        ledger = Ledger(store, cfg)
        engine = Engine(cfg, providers, health=HealthBoard(cfg.routing), ledger=ledger)
        two = (call(), call(arguments='{"city": "Rome"}', id_="c2"))
        providers["local"].script("qwen3:14b", Answer("", tool_calls=(call("nope"),)))
        providers["flash"].script("gemini-flash", Answer("", tool_calls=two))
        result = await engine.complete(ChatRequest(ASK, tier=0, tools=(WEATHER,), run_id="7"))
        rows = await store.fetchall("SELECT model, outcome, tool_calls FROM attempts ORDER BY id")
        assert [tuple(r) for r in rows] == [
            ("qwen3:14b", "unusable", 1),
            ("gemini-flash", "ok", 2),
        ]
        assert [s.tool_calls for s in await ledger.trace(7)] == [1, 2]
        assert result.trace().splitlines()[1].endswith(", 2 tool calls")
    finally:
        await store.close()


async def test_a_dropped_tool_choice_is_still_checked_in_the_answer() -> None:
    # Opus 5.5 thinks on every request and refuses a forced tool_choice with a 400
    engine, providers = engine_for({"opus/claude-opus": {"drop_params": ["tool_choice"]}})
    providers["opus"].script("claude-opus", Answer("I would rather chat."))
    req = ChatRequest(ASK, tier=3, tools=(WEATHER,), tool_choice=ToolChoice("required"))
    with pytest.raises(AllAttemptsFailed) as e:
        await engine.complete(req)
    assert providers["opus"].calls[0].call.tool_choice is None
    assert "no tool call, though tool_choice is required" in str(e.value)


# -- found in review -------------------------------------------------------------------


async def test_a_json_task_is_judged_by_its_validators_not_by_json_mode() -> None:
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Answer("[1, 2, 3]"))  # JSON, not an object
    result = await engine.complete(
        ChatRequest(ASK, tier=0), Validators.model_validate({"json": True})
    )
    assert result.content == "[1, 2, 3]"
    assert providers["local"].calls[0].call.response_format == ResponseFormat("json_object")


async def test_a_json_task_with_tools_is_not_put_in_json_mode() -> None:
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Answer("", tool_calls=(call(),)))
    await engine.complete(ChatRequest(ASK, task="extract", tools=(WEATHER,)))
    sent = providers["local"].calls[0].call
    assert sent.response_format is None
    assert all(m.content != JSON_NOTE for m in sent.messages)


async def test_json_asked_for_comes_back_without_a_markdown_fence() -> None:
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Answer('```json\n{"a": 1}\n```'))
    req = ChatRequest(ASK, tier=0, response_format=ResponseFormat("json_object"))
    assert (await engine.complete(req)).content == '{"a": 1}'
    providers["local"].script("qwen3:14b", Answer('```json\n{"a": 1}\n```'))
    items = [i async for i in engine.stream(req)]
    assert "".join(getattr(i, "content", "") for i in items[:-1]) == '{"a": 1}'


async def test_a_schema_whose_ref_does_not_resolve_is_named_not_a_crash() -> None:
    bad = {"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}
    assert schema_error(bad) == "$ref '#/$defs/nope' does not resolve inside the schema"
    engine, providers = engine_for()
    providers["local"].script("qwen3:14b", Answer('{"a": 1}'))
    providers["flash"].script("gemini-flash", Answer('{"a": 1}'))
    fmt = ResponseFormat("json_schema", "x", bad)
    with pytest.raises(AllAttemptsFailed) as e:
        await engine.complete(ChatRequest(ASK, tier=0, response_format=fmt))
    assert "the schema for the answer cannot be used" in str(e.value)


async def test_a_model_that_says_it_takes_no_tools_is_passed_over_without_a_breaker() -> None:
    engine, providers = engine_for()
    providers["local"].script(
        "qwen3:14b", Fault("unsupported", 400, "qwen3:14b does not support tools")
    )
    providers["flash"].script("gemini-flash", Answer("", tool_calls=(call(),)))
    result = await engine.complete(ChatRequest(ASK, tier=0, tools=(WEATHER,)))
    assert result.answered_by.ref == "flash/gemini-flash"
    assert result.attempts[0].outcome == "skipped"
    assert engine.health.blocked("local/qwen3:14b", time.monotonic()) is None


async def test_a_dropped_tool_choice_of_none_sends_no_tools() -> None:
    engine, providers = engine_for({"opus/claude-opus": {"drop_params": ["tool_choice"]}})
    providers["opus"].script("claude-opus", Answer("sunny"))
    req = ChatRequest(ASK, tier=3, tools=(WEATHER,), tool_choice=ToolChoice("none"))
    await engine.complete(req)
    sent = providers["opus"].calls[0].call
    assert (sent.tools, sent.tool_choice) == ((), None)


async def test_an_unfit_model_whose_breaker_is_open_is_still_unfit() -> None:
    refs = (
        "local/qwen3:14b",
        "flash/gemini-flash",
        "deep/deepseek-chat",
        "deep2/deepseek-backup",
        "opus/claude-opus",
    )
    engine, _ = engine_for({ref: {"tools": False} for ref in refs})
    down = ProviderError("refused", "flash", "gemini-flash", "down")
    engine.health.failure("flash/gemini-flash", down, 1.0, time.monotonic())
    with pytest.raises(CannotServe):
        await engine.complete(ChatRequest(ASK, tier=0, tools=(WEATHER,)))
