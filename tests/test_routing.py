"""The pure planner as a table: (task/tier, health) → ordered candidates."""

from __future__ import annotations

import pytest

from core.engine.routing import HealthSnapshot, plan
from core.errors import RoutingError
from tests.configs import make_config

CFG = make_config()
ALL = [
    "local/qwen3:14b",
    "flash/gemini-flash",
    "deep/deepseek-chat",
    "deep2/deepseek-backup",
    "opus/claude-opus",
]


@pytest.mark.parametrize(
    ("task", "tier", "blocked", "expected"),
    [
        ("chat", None, {}, ALL),
        (None, None, {}, ALL),  # default task: chat → tier 0
        ("summarize", None, {}, ALL[1:]),
        ("analysis", None, {}, ALL[2:]),
        ("strategy", None, {}, ALL[4:]),
        (None, 2, {}, ALL[2:]),
        ("chat", 3, {}, ALL[4:]),  # an explicit tier wins over the task's
        ("chat", None, {"local/qwen3:14b": "cooling"}, ALL[1:]),
        ("analysis", None, {"deep/deepseek-chat": "no key"}, ALL[3:]),
        (
            "analysis",
            None,
            {"deep2/deepseek-backup": "cooling"},
            ["deep/deepseek-chat", "opus/claude-opus"],
        ),
        ("strategy", None, {"opus/claude-opus": "no key"}, []),
    ],
)
def test_plan_table(
    task: str | None,
    tier: int | None,
    blocked: dict[str, str],
    expected: list[str],
) -> None:
    p = plan(CFG, task=task, tier=tier, health=HealthSnapshot(blocked))
    assert [c.ref for c in p.candidates] == expected
    assert {s.ref for s in p.skipped} == set(blocked)


def test_candidates_carry_tier_approval_and_tokens() -> None:
    p = plan(CFG, task="chat")
    by_ref = {c.ref: c for c in p.candidates}
    assert by_ref["local/qwen3:14b"].reasoning and by_ref["local/qwen3:14b"].tier == 0
    assert by_ref["opus/claude-opus"].requires_approval
    assert not by_ref["deep/deepseek-chat"].requires_approval
    assert by_ref["flash/gemini-flash"].max_tokens == 512


@pytest.mark.parametrize(
    ("asked", "thinking", "plain"), [(None, 1024, 512), (100, 1024, 100), (4000, 4000, 4000)]
)
def test_reasoning_floor_applies_to_requested_tokens(
    asked: int | None, thinking: int, plain: int
) -> None:
    p = plan(CFG, task="chat", max_tokens=asked)
    tokens = {c.ref: c.max_tokens for c in p.candidates}
    assert tokens["local/qwen3:14b"] == thinking
    assert tokens["flash/gemini-flash"] == plain


def test_all_cooling_falls_back_to_cooling_models_but_never_to_missing_keys() -> None:
    blocked = {"opus/claude-opus": "cooling down 20s"}
    p = plan(CFG, task="strategy", health=HealthSnapshot(blocked, frozenset(blocked)))
    assert [c.ref for c in p.candidates] == ["opus/claude-opus"]
    assert p.skipped == ()
    assert "cooling down" in p.explain()


def test_explain_names_the_reason_and_each_step() -> None:
    p = plan(CFG, task="summarize", health=HealthSnapshot({"flash/gemini-flash": "no key"}))
    text = p.explain()
    assert "task 'summarize' → minimum tier 1" in text
    assert "flash/gemini-flash skipped: no key" in text
    assert "1. tier 2 deep/deepseek-chat" in text
    assert "(needs approval)" in text


@pytest.mark.parametrize(
    ("task", "tier", "message"),
    [
        ("nope", None, "unknown task 'nope'; configured tasks: analysis, chat"),
        (None, 9, "tier 9 does not exist; configured tiers: 0, 1, 2, 3"),
    ],
)
def test_unknown_task_or_tier(task: str | None, tier: int | None, message: str) -> None:
    with pytest.raises(RoutingError, match=message):
        plan(CFG, task=task, tier=tier)


def test_plan_has_the_tasks_validators() -> None:
    assert plan(CFG, task="extract").rules.json_keys == ["name"]
    assert plan(CFG, task="summarize").rules.min_chars == 20


def test_a_task_with_think_false_calls_thinking_models_without_thinking() -> None:
    cfg = make_config(
        tasks={"chat": 0, "routine": {"tier": 0, "think": False}, "deep": {"tier": 0}},
    )
    local, flash = plan(cfg, task="routine").candidates[:2]
    assert (local.ref, local.reasoning, local.no_think) == ("local/qwen3:14b", False, True)
    assert (flash.reasoning, flash.no_think) == (False, False)  # not a thinking model
    as_configured = plan(cfg, task="deep").candidates[0]
    assert (as_configured.reasoning, as_configured.no_think) == (True, False)
