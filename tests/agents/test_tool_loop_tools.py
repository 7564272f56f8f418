"""The built-in and operator tools through a whole run: config → loop → tool → step → the
model's next turn. The tools' own edges are tested in tests/agents/tools/."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.app import App
from core.config.settings import Settings
from core.store.path import DbLocation
from tests.agents.conftest import AppFactory
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, FakeToolCall, RecordedRequest, Reply


def agent(tools: list[str], **kw: Any) -> dict[str, Any]:
    return {
        "name": "watch",
        "message": "check and report",
        "task": "chat",
        "deliver": ["log"],
        "tools": tools,
        **kw,
    }


def call(name: str, **args: Any) -> Reply:
    return Reply(text="", tool_calls=[FakeToolCall(name, args)])


def chats(fake: FakeLLM) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.model == "qwen3:14b"]


@pytest.fixture
async def status_page() -> AsyncIterator[tuple[str, list[str]]]:
    """A status page on 127.0.0.1; the paths it was asked for."""
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="all systems operational, v42")

    app = web.Application()
    app.router.add_get("/status", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"{host}:{port}", hits
    finally:
        await runner.cleanup()


async def test_http_get_refuses_loopback_unless_allowed_and_sends_nothing(
    make_app: AppFactory, fake_llm: FakeLLM, status_page: tuple[str, list[str]]
) -> None:
    where, hits = status_page
    url = f"http://{where}/status"
    fake_llm.script("qwen3:14b", call("http_get", url=url), Reply(text="refused, fine"))
    app = await make_app([agent(["http_get"])])
    run = await app.runner.run("watch", "cli")
    assert (run.status, run.output) == ("ok", "refused, fine")
    step = (await app.runner.steps.for_run(run.id))[1]
    assert step.outcome == "error" and hits == []
    assert "allow_private" in json.dumps(chats(fake_llm)[1].body)

    fake_llm.script("qwen3:14b", call("http_get", url=url), Reply(text="v42 is up"))
    app = await make_app([agent(["http_get"])], tools={"http_get": {"allow_private": [where]}})
    run = await app.runner.run("watch", "cli")
    assert (run.status, run.output) == ("ok", "v42 is up")
    step = (await app.runner.steps.for_run(run.id))[1]
    assert (step.outcome, step.target, hits) == ("ok", "127.0.0.1", ["/status"])
    assert step.detail.startswith("200, ")
    assert "all systems operational" in json.dumps(chats(fake_llm)[-1].body)


async def test_a_command_tool_gets_an_injection_attempt_as_one_literal_argument(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    evil = '"; rm -rf / ; $(id) `id`'
    fake_llm.script("qwen3:14b", call("echo_arg", value=evil), Reply(text="echoed"))
    tools = {
        "echo_arg": {
            "description": "print the argument back",
            "command": [sys.executable, "-c", "import sys; print(repr(sys.argv[1:]))", "{value}"],
            "parameters": {"value": {"type": "string"}},
        }
    }
    app = await make_app([agent(["echo_arg"])], tools=tools)
    run = await app.runner.run("watch", "cli")
    assert run.status == "ok"
    step = (await app.runner.steps.for_run(run.id))[1]
    assert step.outcome == "ok"
    assert repr([evil]) in step.excerpt  # one argv item, exactly as the model sent it
    assert repr([evil]).replace('"', '\\"') in json.dumps(chats(fake_llm)[1].body)


async def test_memory_survives_runs_and_a_restart(
    fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation
) -> None:
    cfg = make_config(pyramid_urls(fake_llm.base_url), agents=[agent(["remember", "recall"])])
    db = store_location

    async def open_app() -> App:
        return await App.open(cfg, Settings(_env_file=None), db, base_dir=tmp_path)  # type: ignore[call-arg]

    fake_llm.script(
        "qwen3:14b",
        call("remember", key="last_status", value="v41 operational"),
        Reply(text="noted v41"),
    )
    app = await open_app()
    try:
        assert (await app.runner.run("watch", "cli")).status == "ok"
    finally:
        await app.runner.shutdown(5)
        await app.close()

    fake_llm.script(
        "qwen3:14b", call("recall", key="last_status"), Reply(text="it was v41, now v42")
    )
    app = await open_app()  # a restart: a new process's view of the same file
    try:
        run = await app.runner.run("watch", "cli")
        assert (run.status, run.output) == ("ok", "it was v41, now v42")
        assert "v41 operational" in json.dumps(chats(fake_llm)[-1].body)
        entries = await app.runner.memory.entries("watch")
        assert [(e.key, e.value) for e in entries] == [("last_status", "v41 operational")]
    finally:
        await app.runner.shutdown(5)
        await app.close()


async def test_read_file_reads_under_its_roots_only(
    make_app: AppFactory, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "today.txt").write_text("42 tickets open", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("do not read", encoding="utf-8")
    fake_llm.script(
        "qwen3:14b",
        Reply(
            text="",
            tool_calls=[
                FakeToolCall("read_file", {"path": "today.txt"}, id="a"),
                FakeToolCall("read_file", {"path": "../secret.txt"}, id="b"),
            ],
        ),
        Reply(text="42 open"),
    )
    app = await make_app([agent(["read_file"])], tools={"read_file": {"roots": ["reports"]}})
    run = await app.runner.run("watch", "cli")
    assert (run.status, run.output) == ("ok", "42 open")
    steps = await app.runner.steps.for_run(run.id)
    assert sorted((s.call_id, s.outcome) for s in steps if s.kind == "tool") == [
        ("a", "ok"),
        ("b", "error"),
    ]
    second = json.dumps(chats(fake_llm)[1].body)
    assert "42 tickets open" in second and "do not read" not in second


async def test_secret_arguments_are_not_recorded(make_app: AppFactory, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        "qwen3:14b",
        call("login", user="ops", password="hunter2-hunter2"),
        Reply(text="logged in"),
    )
    tools = {
        "login": {
            "description": "check a login",
            "command": [sys.executable, "-c", "print('ok')", "{user}", "{password}"],
            "parameters": {"user": {}, "password": {}},
        }
    }
    app = await make_app([agent(["login"])], tools=tools)
    run = await app.runner.run("watch", "cli")
    assert run.status == "ok"
    tool = (await app.runner.steps.for_run(run.id))[1]
    assert json.loads(tool.arguments or "{}") == {"user": "ops", "password": "***"}
    assert "hunter2" not in tool.target
    rows = await app.store.fetchall("SELECT arguments, target, excerpt FROM run_steps")
    assert "hunter2" not in json.dumps([list(r) for r in rows])


SLEEPER = {
    "description": "wait",
    "command": [sys.executable, "-c", "import time, sys; time.sleep(float(sys.argv[1]))", "{s}"],
    "parameters": {"s": {"type": "number"}},
}


async def test_a_tool_over_its_timeout_is_a_timeout_step_and_the_loop_goes_on(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.script("qwen3:14b", call("sleeper", s=30), Reply(text="it hung"))
    app = await make_app([agent(["sleeper"])], tools={"sleeper": {**SLEEPER, "timeout_s": 0.3}})
    run = await app.runner.run("watch", "cli")
    assert (run.status, run.output) == ("ok", "it hung")
    step = (await app.runner.steps.for_run(run.id))[1]
    assert step.outcome in ("timeout", "error") and "0.3" in step.detail


async def test_the_runs_timeout_stops_a_loop_and_names_the_limit(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = call("sleeper", s=30)
    app = await make_app([agent(["sleeper"], timeout_s=0.5)], tools={"sleeper": SLEEPER})
    run = await app.runner.run("watch", "cli")
    assert run.status == "failed"
    assert run.error == "timed out after 0.5s (the agent's timeout_s)"
    assert [s.kind for s in await app.runner.steps.for_run(run.id)] == ["model"]


@pytest.mark.parametrize("decide", ["approve", "deny", "expire"])
async def test_an_approval_tool_waits_for_an_admin_and_runs_only_when_approved(
    make_app: AppFactory, fake_llm: FakeLLM, tmp_path: Path, decide: str
) -> None:
    marker = tmp_path / "deployed"
    tools = {
        "deploy": {
            "description": "deploy a service",
            "command": [sys.executable, "-c", "import sys; open(sys.argv[1], 'w')", "{to}"],
            "parameters": {"to": {"type": "string"}},
            "approval": True,
        }
    }
    fake_llm.script("qwen3:14b", call("deploy", to=str(marker)), Reply(text="finished"))
    app = await make_app(
        [agent(["deploy"])],
        tools=tools,
        approvals={"default": "approve", "timeout_s": 0.5 if decide == "expire" else 30},
    )
    shown: list[Any] = []
    seen: list[str] = []
    app.runner.step_observers.append(lambda s: seen.append(s.line()))

    async def notify(record: Any, copy_shown: Any) -> list[str]:
        shown.append(record)
        await copy_shown(1, len(shown))
        if decide != "expire":
            await app.approvals.resolve(record.id, decide == "approve", "admin:1")
        return []

    async def close(record: Any, copies: Any = None) -> None:
        return None

    app.facade.set_approval_notifier(notify, close)
    run = await app.runner.run("watch", "cli")
    assert (run.status, run.output) == ("ok", "finished")
    assert [(r.request.tool, r.request.agent) for r in shown] == [("deploy", "watch")]
    assert json.loads(shown[0].request.arguments) == {"to": str(marker)}
    step = (await app.runner.steps.for_run(run.id))[1]
    assert any(line.startswith("⏳ deploy") for line in seen)  # the /run status said so
    if decide == "approve":
        assert step.outcome == "ok" and marker.exists()
    else:
        assert step.outcome == "denied" and not marker.exists()
        assert "denied" in json.dumps(chats(fake_llm)[1].body)
    status = (await app.approvals.get(shown[0].id)).status  # type: ignore[union-attr]
    assert status == {"approve": "approved", "deny": "denied", "expire": "expired"}[decide]
