"""Sampling parameters a model refuses are never sent to it: Anthropic's API refuses
temperature (and top_p, top_k) on its current version and on Opus 4.7+, and that 400 is
fatal, taking tier 3 out for fatal_cooldown_s. ``[models."…"] drop_params`` says which;
for anthropic-messages the default drops them, with one warning per model."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from core.engine.engine import Engine
from core.engine.health import HealthBoard
from core.providers.testing import Answer, TestProvider
from core.types import ChatRequest, Message
from tests.configs import make_config, pyramid
from tests.test_config import problems
from tests.test_engine import RecordingApprover

ASK = (Message("user", "hi"),)
Providers = dict[str, TestProvider]


def engine_for(models: dict[str, dict[str, Any]] | None = None) -> tuple[Engine, Providers]:
    doc = pyramid()
    for ref, extra in (models or {}).items():
        doc["models"][ref].update(extra)
    cfg = make_config(models=doc["models"])
    providers = {name: TestProvider(name) for name in cfg.providers}
    approver = RecordingApprover(True)
    return Engine(cfg, providers, health=HealthBoard(cfg.routing), approver=approver), providers


async def test_anthropic_models_get_no_temperature_and_it_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, providers = engine_for()
    providers["opus"].script("claude-opus", Answer("one"), Answer("two"))
    caplog.set_level(logging.WARNING, logger="openclaw.engine")
    for _ in range(2):
        await engine.complete(ChatRequest(ASK, tier=3, temperature=0.7))
    assert [c.call.temperature for c in providers["opus"].calls] == [None, None]
    said = [r.getMessage() for r in caplog.records if "does not take temperature" in r.message]
    assert said == [
        "opus/claude-opus does not take temperature: the caller's 0.7 is not sent to it "
        '([models."opus/claude-opus"] drop_params)'
    ]


async def test_other_apis_keep_the_temperature() -> None:
    engine, providers = engine_for()
    providers["deep"].script("deepseek-chat", Answer("ok"))
    await engine.complete(ChatRequest(ASK, tier=2, temperature=0.7))
    assert [c.call.temperature for c in providers["deep"].calls] == [0.7]


async def test_a_models_own_list_replaces_its_apis_default() -> None:
    # an Anthropic-compatible server that takes temperature; an OpenAI one that does not
    engine, providers = engine_for(
        {
            "opus/claude-opus": {"drop_params": []},
            "deep/deepseek-chat": {"drop_params": ["temperature"]},
        }
    )
    providers["opus"].script("claude-opus", Answer("ok"))
    providers["deep"].script("deepseek-chat", Answer("ok"))
    await engine.complete(ChatRequest(ASK, tier=3, temperature=0.5))
    await engine.complete(ChatRequest(ASK, tier=2, temperature=0.5))
    assert [c.call.temperature for c in providers["opus"].calls] == [0.5]
    assert [c.call.temperature for c in providers["deep"].calls] == [None]


def test_an_unknown_parameter_names_the_key() -> None:
    doc = pyramid()
    doc["models"]["opus/claude-opus"]["drop_params"] = ["temprature"]
    (problem,) = problems(doc)
    assert problem.startswith("models.opus/claude-opus.drop_params[0]: ")
    named = "'temperature', 'top_p', 'top_k', 'seed', 'stop', 'parallel_tool_calls' or "
    named += "'tool_choice'"
    assert named in problem
    assert "(got 'temprature')" in problem
