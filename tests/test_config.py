"""Config loading: friendly errors that name the key and the fix, exit 78, cross-checks."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from core.cli import main
from core.config.load import load_config, parse_config
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


def test_api_key_env_takes_a_list_in_order() -> None:
    doc = pyramid()
    doc["providers"]["deep"]["api_key_env"] = ["DEEPSEEK_KEY_A", "DEEPSEEK_KEY_B"]
    cfg = parse_config(doc, warnings=[])
    assert cfg.providers["deep"].key_envs == ("DEEPSEEK_KEY_A", "DEEPSEEK_KEY_B")
    assert cfg.providers["flash"].key_envs == ()
    doc["providers"]["deep"]["api_key_env"] = "DEEPSEEK_API_KEY"  # a string stays valid
    assert parse_config(doc, warnings=[]).providers["deep"].key_envs == ("DEEPSEEK_API_KEY",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], "providers.deep.api_key_env: is an empty list — name at least one variable"),
        (
            ["DEEPSEEK_KEY_A", "DEEPSEEK_KEY_A"],
            "providers.deep.api_key_env[1]: names DEEPSEEK_KEY_A twice — list each key"
            " variable once",
        ),
        (
            ["DEEPSEEK_KEY_A", "sk-live-0123456789abcdef"],
            "providers.deep.api_key_env[1]: is not an environment variable name",
        ),
    ],
    ids=["empty", "duplicate", "pasted-key"],
)
def test_bad_api_key_env_lists_name_the_key_and_the_fix(value: list[str], expected: str) -> None:
    doc = pyramid()
    doc["providers"]["deep"]["api_key_env"] = value
    (line,) = problems(doc)
    assert line.startswith(expected)
    assert "sk-live" not in line


def test_billing_cooldown_is_bounded_by_a_day() -> None:
    doc = pyramid()
    doc["routing"]["billing_cooldown_s"] = 90000
    (line,) = problems(doc)
    assert line.startswith("routing.billing_cooldown_s:")
    doc["routing"]["billing_cooldown_s"] = 3600
    assert parse_config(doc, warnings=[]).routing.billing_cooldown_s == 3600
    assert parse_config(pyramid(), warnings=[]).routing.billing_cooldown_s == 18000


# -- issue 13: accepted at load but broken at run time ---------------------------------


def _agent_doc(**agent: object) -> dict[str, object]:
    doc = pyramid()
    doc["agents"] = [{"name": "a", "message": "hi", **agent}]
    return doc


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["providers"]["local"].update(timeout_s=float("inf")),
            "providers.local.timeout_s: must be a finite number, got inf",
        ),
        (
            lambda d: d["routing"].update(fatal_cooldown_s=float("nan")),
            "routing.fatal_cooldown_s: must be a finite number, got nan",
        ),
        (
            lambda d: d["routing"].update(cooldowns_s=[-5]),
            "routing.cooldowns_s[0]: Input should be greater than 0 (got -5)",
        ),
        (
            lambda d: d["routing"].update(cooldowns_s=[30, float("inf")]),
            "routing.cooldowns_s[1]: must be a finite number",
        ),
        (
            lambda d: d["providers"]["deep"].update(base_url="not a url"),
            "providers.deep.base_url: 'not a url' is not an http(s) URL with a host",
        ),
        (
            lambda d: d["providers"]["deep"].update(base_url="file:///etc/passwd"),
            "providers.deep.base_url: 'file:///etc/passwd' is not an http(s) URL with a host",
        ),
        (
            lambda d: d.update(channels={"webhook": {"h": {"url": "ftp://u:hunter22@h/x"}}}),
            "channels.webhook.h.url: 'ftp://u:***@h/x' is not an http(s) URL",
        ),
        (
            lambda d: d.update(delivery={"backoff_s": [5, float("inf")]}),
            "delivery.backoff_s[1]: must be a finite number",
        ),
        (
            lambda d: d.update(budgets={"total": {"day": float("inf")}}),
            "budgets.total.day: must be a finite number",
        ),
    ],
)
def test_values_that_break_at_run_time_are_refused_at_load(mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    doc = pyramid()
    mutate(doc)
    found = problems(doc)
    assert any(expected in p for p in found), found
    assert "hunter22" not in "\n".join(found)


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ({"message": "Hello {{ name"}, "agents[0].message: the template does not compile: line 1"),
        ({"message": "{% if x %}open"}, "agents[0].message: the template does not compile"),
        ({"system": "{{ x | nosuchfilter }}"}, "agents[0].system: the template does not compile"),
        (
            {"subagents": {"over": "inputs.x", "prompt": "{% for %}"}},
            "agents[0].subagents.prompt: the template does not compile",
        ),
    ],
)
def test_an_inline_template_with_a_syntax_error_is_refused(
    agent: dict[str, object], expected: str
) -> None:
    found = problems(_agent_doc(**agent))
    assert any(expected in p for p in found), found


def _toml_value(v: object) -> str:
    return f'"{v}"' if isinstance(v, str) else str(v)


def test_a_prompt_file_with_a_syntax_error_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "templates" / "prompts").mkdir(parents=True)
    (tmp_path / "templates" / "prompts" / "bad.j2").write_text(
        "Line one\n{% for x in items %}\n{{ x }\n", encoding="utf-8"
    )
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(
        ROOT.joinpath("openclaw.example.toml").read_text(encoding="utf-8")
        + '\n[[agents]]\nname = "broken"\ntask = "chat"\nprompt = "prompts/bad.j2"\n'
        + '\n[[agents]]\nname = "gone"\ntask = "chat"\nprompt = "prompts/nope.j2"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    found = [str(p) for p in info.value.problems]
    assert any(
        p.startswith("agents[")
        and "agent broken: template 'prompts/bad.j2' cannot be used: prompts/bad.j2 line 3" in p
        for p in found
    ), found
    assert any("agent gone: template 'prompts/nope.j2' cannot be used" in p for p in found)


def test_config_check_refuses_inf_with_exit_78(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "openclaw.toml"
    text = ROOT.joinpath("openclaw.example.toml").read_text(encoding="utf-8")
    cfg.write_text(text.replace("timeout_s = 120", "timeout_s = inf", 1), encoding="utf-8")
    assert main(["--config", str(cfg), "config", "check"]) == EX_CONFIG
    captured = capsys.readouterr()
    assert "Infinity" not in captured.out
    assert "providers.ollama.timeout_s: must be a finite number, got inf" in captured.err


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "openclaw.toml"
    cfg.write_bytes(b'[gateway]\nhost = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"OPENCLAW_CONFIG: .* is not UTF-8 text"):
        load_config(cfg)
    assert main(["--config", str(cfg), "config", "check"]) == EX_CONFIG
    assert main(["--config", str(cfg), "route"]) == EX_CONFIG
    assert "Traceback" not in capsys.readouterr().err


# -- issue 13: config check masks every secret; headers_env --------------------------


def test_config_check_masks_headers_and_url_credentials(
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOOK_AUTH", "Bearer hook-secret-from-env")
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(
        ROOT.joinpath("openclaw.example.toml")
        .read_text(encoding="utf-8")
        .replace(
            'base_url = "http://127.0.0.1:11434"',
            'base_url = "http://ollama-user:ollama-pass-123@127.0.0.1:11434/?key=q-secret-456"\n'
            'headers = { "X-Api-Key" = "provider-header-secret" }\n'
            'headers_env = { "Authorization" = "HOOK_AUTH" }',
            1,
        )
        + '\n[channels.webhook.hook]\nurl = "https://hooks.example/in?token=url-token-789"\n'
        'headers = { "X-Token" = "webhook-header-secret" }\n'
        'headers_env = { "Authorization" = "HOOK_AUTH" }\n',
        encoding="utf-8",
    )
    assert main(["--config", str(cfg), "config", "check"]) == 0
    out = capsys.readouterr().out
    for secret in (
        "ollama-pass-123",
        "q-secret-456",
        "provider-header-secret",
        "url-token-789",
        "webhook-header-secret",
        "hook-secret-from-env",
    ):
        assert secret not in out
    assert "# HOOK_AUTH: set (hidden)" in out
    body = json.loads(out[out.index("{") :])
    ollama = body["providers"]["ollama"]
    assert ollama["base_url"] == "http://ollama-user:***@127.0.0.1:11434/?key=***"
    assert ollama["headers"] == {"X-Api-Key": "***"}
    assert ollama["headers_env"] == {"Authorization": "HOOK_AUTH"}  # names are not secrets
    assert body["channels"]["webhook"]["hook"]["url"] == "https://hooks.example/in?token=***"


@pytest.mark.parametrize("where", ["provider", "webhook", "slack"])
def test_headers_env_must_name_a_variable_and_not_repeat_a_header(where: str) -> None:
    doc = pyramid()
    pasted = "sk-live-pasted-value"
    if where == "provider":
        table = doc["providers"]["deep"]
        key = "providers.deep"
    elif where == "webhook":
        table = {"url": "https://h/x"}
        doc["channels"] = {"webhook": {"h": table}}
        key = "channels.webhook.h"
    else:
        table = {"webhook_url_env": "SLACK_OPS"}
        doc["channels"] = {"slack": {"ops": table}}
        key = "channels.slack.ops"
    table["headers_env"] = {"Authorization": pasted}
    (line,) = problems(doc)
    assert line.startswith(f"{key}.headers_env: the variable for header 'Authorization'")
    assert pasted not in line
    table["headers_env"] = {"Authorization": "GOOD_NAME"}
    if where != "slack":
        table["headers"] = {"authorization": "x"}
        (line,) = problems(doc)
        assert "'authorization' is in both headers and headers_env" in line


def test_config_check_takes_the_file_as_an_argument(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check", str(ROOT / "openclaw.example.toml")]) == 0
    assert capsys.readouterr().out.startswith(f"# {ROOT / 'openclaw.example.toml'}: valid")


def test_keep_alive_is_an_ollama_duration_on_an_ollama_provider() -> None:
    doc = pyramid()
    doc["providers"]["local"]["keep_alive"] = "1h30m"
    assert parse_config(doc, warnings=[]).providers["local"].keep_alive == "1h30m"
    doc["providers"]["local"]["keep_alive"] = "half an hour"
    (problem,) = problems(doc)
    assert problem == (
        "providers.local.keep_alive: 'half an hour' is not a duration: write it like \"30m\","
        ' "24h", "-1" (for ever) or "0" (unload at once)'
    )
    doc["providers"]["local"].pop("keep_alive")
    doc["providers"]["deep"]["keep_alive"] = "30m"
    (problem,) = problems(doc)
    assert problem == (
        "providers.deep.keep_alive: is Ollama's, and this provider is not Ollama: remove it"
    )


def test_no_think_body_is_for_openai_completions_servers() -> None:
    doc = pyramid()
    off = {"thinking": {"type": "disabled"}}
    doc["providers"]["deep"]["no_think_body"] = off
    assert parse_config(doc, warnings=[]).providers["deep"].no_think_body == off
    doc["providers"]["local"]["no_think_body"] = off
    (problem,) = problems(doc)
    assert problem.startswith(
        "providers.local.no_think_body: is for openai-completions servers only: remove it"
    )


@pytest.mark.parametrize(
    ("section", "value", "expected"),
    [
        ("reports", {"daily": "8am"}, "reports.daily: '8am' is not a time of day"),
        ("reports", {"daily": "24:00"}, "reports.daily: '24:00' is not a time of day"),
        ("reports", {"timezone": "Mars/Olympus"}, "reports.timezone: unknown timezone"),
        ("reports", {"deliver": ["slack:nope"]}, "reports.deliver: 'slack:nope'"),
        ("heartbeat", {"url_env": "https://hc-ping.com/x"}, "heartbeat.url_env: "),
        ("heartbeat", {"every_s": 0.5}, "heartbeat.every_s"),
        ("scheduler", {"spread_s": 7200}, "scheduler.spread_s"),
        ("scheduler", {"sprad_s": 300}, "scheduler.sprad_s: unknown key"),
    ],
)
def test_safety_net_config_errors_name_the_key(
    section: str, value: dict[str, object], expected: str
) -> None:
    doc = pyramid()
    doc[section] = value
    found = problems(doc)
    assert any(expected in p for p in found), found
    # a URL pasted where the variable's name goes is never echoed back
    assert not any("hc-ping.com" in p for p in found)
