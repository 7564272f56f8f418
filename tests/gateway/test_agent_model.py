"""``model = "agent:<name>"``: the gateway runs the agent for the last user message and
answers with the run's output, through the running gateway against the fake LLM."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from core.agents.runs import Status, Trigger
from tests.fakes.llm import Reply, echo
from tests.gateway.conftest import TOKEN, GatewayFactory, Running
from tests.gateway.test_http import assert_openai_error

ECHO = {"name": "echo", "message": "echo {{ message }}", "task": "chat", "deliver": []}
CHAT = [
    {"role": "system", "content": "ignored: the agent has its own prompt"},
    {"role": "user", "content": "first"},
    {"role": "assistant", "content": "an earlier answer"},
    {"role": "user", "content": "what changed?"},
]


async def echo_gateway(start_gateway: GatewayFactory) -> Running:
    gw = await start_gateway(agents=[ECHO, {"name": "other", "message": "hi", "task": "chat"}])
    gw.fake.default = echo
    return gw


def sse_events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


async def test_json_answer_is_the_runs_output_recorded_as_an_api_run(
    start_gateway: GatewayFactory,
) -> None:
    gw = await echo_gateway(start_gateway)
    gw.fake.script("qwen3:14b", Reply(text="echo what changed?", input_tokens=9, output_tokens=3))
    async with gw.http() as c:
        r = await c.post("/v1/chat/completions", json={"model": "agent:echo", "messages": CHAT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "agent:echo"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo what changed?"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 9 and body["usage"]["completion_tokens"] == 3
    run = await gw.app.runner.runs.get(int(r.headers["x-openclaw-run-id"]))
    assert run is not None
    assert (run.agent, run.trigger, run.status) == ("echo", Trigger.API, Status.OK)
    assert run.message == "what changed?" and run.output == "echo what changed?"
    assert r.headers["x-openclaw-route"] == run.route
    assert r.headers["x-openclaw-route"] == "tier=0; model=local/qwen3:14b; attempts=1"
    assert r.headers["x-openclaw-request-id"].startswith("req_")
    # the prompt the model saw is the agent's, with the last user message in it
    assert gw.fake.requests[-1].last_user_text == "echo what changed?"


async def test_stream_is_the_whole_output_in_one_delta_then_finish_and_done(
    start_gateway: GatewayFactory,
) -> None:
    gw = await echo_gateway(start_gateway)
    async with gw.http() as c:
        r = await c.post(
            "/v1/chat/completions",
            json={
                "model": "agent:echo",
                "messages": [{"role": "user", "content": "streamed"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"content": "echo streamed", "role": "assistant"},
        {},
    ]
    assert chunks[1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[2]["choices"] == [] and chunks[2]["usage"]["total_tokens"] > 0
    assert {c["model"] for c in chunks} == {"agent:echo"}
    assert r.headers["x-openclaw-run-id"] and r.headers["x-openclaw-route"].startswith("tier=0")


async def test_a_quiet_run_still_answers_its_text(start_gateway: GatewayFactory) -> None:
    gw = await echo_gateway(start_gateway)
    gw.fake.script("qwen3:14b", Reply(text="NO_REPLY\nnothing new"))
    async with gw.http() as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "agent:echo", "messages": [{"role": "user", "content": "news?"}]},
        )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "NO_REPLY\nnothing new"
    run = await gw.app.runner.runs.get(int(r.headers["x-openclaw-run-id"]))
    assert run is not None and run.quiet and run.status == Status.OK


async def test_a_disabled_agent_still_runs_as_on_demand_runs_do(
    start_gateway: GatewayFactory,
) -> None:
    gw = await echo_gateway(start_gateway)
    await gw.app.facade.states.set_disabled("echo", True, "paused")
    async with gw.http() as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "agent:echo", "messages": [{"role": "user", "content": "still?"}]},
        )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo still?"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failed_run_is_a_502_with_its_error_and_run_id(
    start_gateway: GatewayFactory, stream: bool
) -> None:
    gw = await echo_gateway(start_gateway)
    gw.fake.script("qwen3:14b", Reply(text="AUTOMATION_FAILED: the feed is down"))
    async with gw.http() as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "agent:echo", "messages": [{"role": "user", "content": "x"}]}
            | ({"stream": True} if stream else {}),
        )
    assert r.status_code == 502 and r.headers["content-type"].startswith("application/json")
    err = assert_openai_error(r.json(), "agent_run_failed")
    run_id = r.headers["x-openclaw-run-id"]
    assert f"run {run_id} failed" in str(err["message"])
    assert "the feed is down" in str(err["message"])
    assert r.headers["x-should-retry"] == "false"
    run = await gw.app.runner.runs.get(int(run_id))
    assert run is not None and run.status == Status.FAILED and run.trigger == Trigger.API


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        ("tool_choice", "none"),
        ("response_format", {"type": "json_object"}),
        ("temperature", 0.2),
        ("top_p", 0.5),
        ("stop", "END"),
        ("seed", 1),
        ("max_tokens", 100),
        ("max_completion_tokens", 100),
        ("user", "alice"),
    ],
)
async def test_fields_that_steer_a_model_are_refused_for_an_agent(
    start_gateway: GatewayFactory, field: str, value: Any
) -> None:
    gw = await echo_gateway(start_gateway)
    async with gw.http() as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "agent:echo", "messages": [{"role": "user", "content": "x"}]}
            | {field: value},
        )
    assert r.status_code == 400, r.text
    err = assert_openai_error(r.json(), "unsupported_parameter")
    assert err["param"] == field and "agent" in str(err["message"])
    assert await gw.app.runner.runs.recent() == []  # refused before any run was made


async def test_unknown_fields_and_no_user_message_are_400(start_gateway: GatewayFactory) -> None:
    gw = await echo_gateway(start_gateway)
    async with gw.http() as c:
        typo = await c.post(
            "/v1/chat/completions",
            json={"model": "agent:echo", "messages": [{"role": "user", "content": "x"}], "n": 2},
        )
        none = await c.post(
            "/v1/chat/completions",
            json={"model": "agent:echo", "messages": [{"role": "system", "content": "x"}]},
        )
    assert typo.status_code == 400 and assert_openai_error(typo.json())["param"] == "n"
    assert none.status_code == 400 and assert_openai_error(none.json())["param"] == "messages"


async def test_an_unknown_agent_is_404_listing_the_agents(start_gateway: GatewayFactory) -> None:
    gw = await echo_gateway(start_gateway)
    async with gw.http() as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "agent:nope", "messages": [{"role": "user", "content": "x"}]},
        )
    assert r.status_code == 404
    err = assert_openai_error(r.json(), "model_not_found")
    assert err["param"] == "model"
    assert "agent:echo" in str(err["message"]) and "agent:other" in str(err["message"])


async def test_models_lists_every_agent_with_no_capabilities(
    start_gateway: GatewayFactory,
) -> None:
    gw = await echo_gateway(start_gateway)
    async with gw.http() as c:
        data = (await c.get("/v1/models")).json()["data"]
    agents = [m for m in data if m["id"].startswith("agent:")]
    assert [m["id"] for m in agents] == ["agent:echo", "agent:other"]
    none = {"tools": False, "json_schema": False, "json_object": False}
    assert all(m["capabilities"] == none for m in agents)
    assert data[0]["id"] == "auto"  # the routes stay first


async def test_the_openai_sdk_runs_an_agent(start_gateway: GatewayFactory) -> None:
    gw = await echo_gateway(start_gateway)
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=TOKEN) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="agent:echo", messages=[{"role": "user", "content": "from the sdk"}]
        )
        completion = raw.parse()
        stream = await c.chat.completions.create(
            model="agent:echo", messages=[{"role": "user", "content": "sdk stream"}], stream=True
        )
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
        gw.fake.script("qwen3:14b", Reply(text="AUTOMATION_FAILED: no"))
        with pytest.raises(openai.InternalServerError) as failed:
            await c.chat.completions.create(
                model="agent:echo", messages=[{"role": "user", "content": "fail"}]
            )
    assert completion.choices[0].message.content == "echo from the sdk"
    assert completion.model == "agent:echo"
    assert raw.headers["x-openclaw-run-id"]
    assert text == "echo sdk stream"
    assert failed.value.status_code == 502
    # one failed run, not the SDK's retries of it
    runs = await gw.app.runner.runs.recent("echo")
    assert [r.status for r in runs] == [Status.FAILED, Status.OK, Status.OK]
