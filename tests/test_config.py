"""Config loading: friendly errors that name the key and the fix, exit 78, cross-checks."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.cli import main
from core.config import load_config, parse_config
from core.errors import EX_CONFIG, ConfigError
from tests.configs import pyramid

ROOT = Path(__file__).resolve().parent.parent


def problems(doc: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, warnings=[])
    return [str(p) for p in info.value.problems]


def test_example_config_is_valid() -> None:
    warnings: list[str] = []
    cfg = load_config(ROOT / "openclaw.example.toml", warnings)
    assert cfg.levels == [0, 1, 2, 3]
    assert cfg.tier(3) is not None and cfg.tier(3).requires_approval  # type: ignore[union-attr]
    assert cfg.tier(0).models == ["ollama/qwen3:14b", "embedded/smollm2"]  # type: ignore[union-attr]
    expected = {
        "classify": 0,
        "extract": 0,
        "template_fill": 0,
        "reminder": 0,
        "summarize": 1,
        "draft": 1,
        "analysis": 2,
        "code": 2,
        "strategy": 3,
        "review": 3,
    }
    assert {k: cfg.task_tier(k) for k in expected} == expected
    assert warnings == []


def test_missing_api_names_provider_and_lists_valid_values() -> None:
    doc = pyramid()
    del doc["providers"]["deep"]["api"]
    (line,) = problems(doc)
    assert line.startswith("providers.deep.api: missing")
    for api in ("openai-completions", "anthropic-messages", "google-generative-ai", "ollama"):
        assert api in line


def test_unknown_api_value() -> None:
    doc = pyramid()
    doc["providers"]["flash"]["api"] = "gemini"
    (line,) = problems(doc)
    assert "providers.flash.api" in line and "'gemini'" in line and "ollama" in line


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["tiers"][1]["models"].append("flash/unknown"),
            "tiers[1].models: model 'flash/unknown' is not defined",
        ),
        (
            lambda d: d["tiers"][0]["models"].append("nope/m"),
            "tiers[0].models: provider 'nope' of 'nope/m' is not defined",
        ),
        (lambda d: d["tasks"].update(bad=7), "tasks.bad: tier 7 does not exist"),
        (lambda d: d.update(colour="blue"), "colour: unknown key"),
        (
            lambda d: d["providers"]["local"].update(timeout=3),
            "providers.local.timeout: unknown key",
        ),
        (
            lambda d: d["tiers"].append({"level": 1, "models": ["deep/deepseek-chat"]}),
            "tiers: level 1 is defined more than once",
        ),
        (lambda d: d["routing"].update(default_task="nah"), "routing.default_task"),
        (lambda d: d["providers"]["deep"].pop("base_url"), "providers.deep.base_url: missing"),
        (lambda d: d["tasks"].update(x={"tier": 0, "regex": "("}), "tasks.x"),
    ],
)
def test_cross_checks(mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    doc = pyramid()
    mutate(doc)
    assert any(expected in p for p in problems(doc)), problems(doc)


def test_every_problem_is_reported_at_once() -> None:
    doc = pyramid()
    del doc["providers"]["deep"]["api"]
    doc["extra"] = 1
    assert len(problems(doc)) == 2


def test_reasoning_model_is_raised_to_the_floor_with_a_warning() -> None:
    doc = pyramid()
    doc["models"]["local/qwen3:14b"]["max_tokens"] = 300
    warnings: list[str] = []
    cfg = parse_config(doc, warnings)
    assert cfg.models["local/qwen3:14b"].max_tokens == 1024
    assert len(warnings) == 1 and "reasoning floor" in warnings[0]
    # non-thinking models keep what they asked for
    assert cfg.models["flash/gemini-flash"].max_tokens == 512


def test_cli_config_check_exits_78_with_one_line_per_problem(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[providers.x]\nbase_url = "http://h"\n[[tiers]]\nlevel = 0\nmodels = ["x/m"]\n',
        encoding="utf-8",
    )
    assert main(["--config", str(bad), "config", "check"]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "providers.x.api: missing" in err
    # any command fails the same way, before doing anything
    assert main(["--config", str(bad), "route", "chat"]) == EX_CONFIG


def test_cli_config_check_masks_secrets(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-very-secret-value")
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "gw-secret-token")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(ROOT / "openclaw.example.toml"), "config", "check"]) == 0
    out = capsys.readouterr().out
    assert "sk-very-secret-value" not in out and "gw-secret-token" not in out
    assert "DEEPSEEK_API_KEY: set (hidden)" in out
    assert "provider gemini unavailable: GEMINI_API_KEY is not set" in out
    body = out[out.index("{") :]
    assert '"level": 3' in body


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text("[gateway\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_example_parses_as_toml() -> None:
    tomllib.loads((ROOT / "openclaw.example.toml").read_text(encoding="utf-8"))


def agent_doc(**kw: object) -> dict[str, object]:
    return {"name": "a", "message": "hi", **kw}


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (
            agent_doc(kind="systemEvent"),
            'agents[0].session: agent a: isolated sessions need kind = "agentTurn" with a message '
            "or prompt",
        ),
        ({"name": "a"}, "agents[0]: agent a: needs exactly one of prompt"),
        (agent_doc(prompt="x.j2"), "agents[0]: agent a: needs exactly one of prompt"),
        (agent_doc(schedule="61 * * * *"), "agents[0].schedule: invalid cron '61 * * * *'"),
        (
            agent_doc(schedule="0 7 * * *", timezone="Mars/Olympus"),
            "agents[0].timezone: unknown timezone 'Mars/Olympus'",
        ),
        (agent_doc(deliver=["slack:nope"]), "no [channels.slack.nope] is configured"),
        (agent_doc(deliver=["pigeon:1"]), "unknown target kind 'pigeon'"),
        (agent_doc(deliver=["telegram:me"]), "telegram targets are telegram:<chat id>"),
        (agent_doc(task="nope"), "agents[0].task: task 'nope' is not in [tasks]"),
        (agent_doc(tier=9), "agents[0].tier: tier 9 does not exist"),
        (
            agent_doc(inputs={"x": {"http": "http://h", "file": "y"}}),
            "an input needs exactly one of http, command or file",
        ),
        (
            agent_doc(subagents={"over": "inputs.x", "prompt": "p", "task": "nope"}),
            "agents[0].subagents.task",
        ),
        (agent_doc(colour="red"), "agents[0].colour: unknown key"),
    ],
)
def test_agent_config_errors(agent: dict[str, object], expected: str) -> None:
    doc = pyramid()
    doc["agents"] = [agent]
    found = problems(doc)
    assert any(expected in p for p in found), found


def test_duplicate_agent_names_and_alert_targets() -> None:
    doc = pyramid()
    doc["agents"] = [agent_doc(), agent_doc()]
    doc["alerts"] = {"deliver": ["webhook:gone"]}
    found = problems(doc)
    assert any("agent 'a' is defined twice" in p for p in found)
    assert any(p.startswith("alerts.deliver: 'webhook:gone'") for p in found)


def test_a_valid_agent_loads() -> None:
    doc = pyramid()
    doc["channels"] = {"slack": {"ops": {"webhook_url_env": "SLACK_OPS"}}}
    doc["agents"] = [
        agent_doc(
            schedule="0 7 * * *",
            timezone="Europe/Berlin",
            deliver=["log", "slack:ops", "telegram:-100123"],
            validators={"json": True},
        )
    ]
    cfg = parse_config(doc, warnings=[])
    a = cfg.agent("a")
    assert a is not None and a.validators is not None and a.validators.json_


def test_a_key_pasted_into_api_key_env_is_refused_without_echoing_it() -> None:
    doc = pyramid()
    pasted = "sk-live-0123456789abcdef"
    doc["providers"]["deep"]["api_key_env"] = pasted
    (line,) = problems(doc)
    assert line.startswith("providers.deep.api_key_env: is not an environment variable name")
    assert 'api_key_env = "DEEPSEEK_API_KEY"' in line
    assert pasted not in line and "sk-live" not in line


def test_an_env_var_name_in_api_key_env_is_fine() -> None:
    doc = pyramid()
    doc["providers"]["deep"]["api_key_env"] = "MY_DEEPSEEK_KEY_2"
    parse_config(doc, warnings=[])
