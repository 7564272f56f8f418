"""Loading the TOML configuration: cross-checks, and friendly errors that name the key.

Everything that is not a secret lives in one TOML file. Unknown keys are errors;
every problem is reported with its key and how to fix it.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.config.agents import check_agents, check_prompt_files
from core.config.budgets import check_budgets
from core.config.common import (
    ENV_NAME,
)
from core.config.models import API_KINDS, Config, ModelConfig, split_model_ref
from core.config.ops import check_reports
from core.config.tools import check_agent_tools, check_tools
from core.embedded.models import check_embedded
from core.errors import ConfigError, ConfigProblem

log = logging.getLogger("openclaw.config")


# -- loading -------------------------------------------------------------------


def _key(loc: tuple[int | str, ...], data: Any) -> str:
    """Turn a pydantic location into a TOML-ish key: providers.deepseek.api, tiers[1].models."""
    parts: list[str] = []
    node = data
    for i, p in enumerate(loc):
        if isinstance(p, int):
            # tiers[0] is a list index; for dict-of-union errors pydantic adds type tags
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        elif p in {"int", "TaskConfig"} and i > 0 and isinstance(node, (int, float, str, bool)):
            continue
        elif p == "TaskConfig" and i == 2 and loc[0] == "tasks":
            continue  # a [tasks.NAME] table's own key: tasks.NAME.trial, not …TaskConfig.trial
        else:
            parts.append(str(p))
        if isinstance(node, Mapping):
            node = node.get(p)
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
    return ".".join(parts)


_ENV_NAME = ENV_NAME
# errors whose message already says everything; their input may be a secret, never echoed
_OWN_MESSAGE = frozenset({"http_url", "env_name", "finite_number", "keep_alive", "time_of_day"})


def _problem_from_pydantic(err: Mapping[str, Any], data: Any) -> ConfigProblem:
    loc = tuple(err["loc"])
    key = _key(loc, data)
    etype = err["type"]
    valid = ", ".join(API_KINDS)
    if len(loc) >= 3 and loc[0] == "providers" and loc[2] == "api":
        if etype == "missing":
            return ConfigProblem(
                key,
                "missing: every provider must state its wire format",
                f"add api = one of {valid}",
            )
        return ConfigProblem(key, f"unknown value {err.get('input')!r}", f"use one of {valid}")
    if etype == "extra_forbidden":
        return ConfigProblem(key, "unknown key", "remove it or check its spelling (see README)")
    if etype == "missing":
        return ConfigProblem(key, "missing", "add it (see openclaw.example.toml)")
    if etype == "finite_number":
        return ConfigProblem(
            key, f"must be a finite number, got {err.get('input')!r}", "give a number like 60"
        )
    if etype in _OWN_MESSAGE or {"headers", "headers_env", "on_unknown"} & set(map(str, loc)):
        return ConfigProblem(key, str(err["msg"]).removeprefix("Value error, "))
    return ConfigProblem(
        key, f"{err['msg']} (got {err.get('input')!r})", "see openclaw.example.toml"
    )


def _key_env_problems(name: str, value: str | list[str] | None) -> list[ConfigProblem]:
    """What is wrong with a provider's ``api_key_env``: a name that is no variable name, an
    empty list, a variable named twice. Never echoes the value: a bad one is most likely
    the key itself, pasted in."""
    key = f"providers.{name}.api_key_env"
    if value is None:
        return []
    if isinstance(value, list) and not value:
        return [
            ConfigProblem(
                key,
                "is an empty list",
                'name at least one variable, e.g. api_key_env = ["DEEPSEEK_KEY_A"], or remove'
                " the key for a provider that needs none",
            )
        ]
    names = [value] if isinstance(value, str) else value
    problems = []
    for i, env in enumerate(names):
        where = key if isinstance(value, str) else f"{key}[{i}]"
        if not _ENV_NAME.fullmatch(env):
            problems.append(
                ConfigProblem(
                    where,
                    "is not an environment variable name (was the key itself pasted in?)",
                    'name the variable that holds the key, e.g. api_key_env = "DEEPSEEK_API_KEY",'
                    " and set that variable in .env",
                )
            )
        elif env in names[:i]:
            problems.append(
                ConfigProblem(
                    where,
                    f"names {env} twice",
                    "list each key variable once: a second entry would only retry the same key",
                )
            )
    return problems


def _cross_check(cfg: Config, warnings: list[str]) -> tuple[Config, list[ConfigProblem]]:
    problems: list[ConfigProblem] = []
    for name, pcfg in cfg.providers.items():
        problems += _key_env_problems(name, pcfg.api_key_env)
    levels = [t.level for t in cfg.tiers]
    for lvl in {lv for lv in levels if levels.count(lv) > 1}:
        problems.append(
            ConfigProblem(
                "tiers",
                f"level {lvl} is defined more than once",
                "give each [[tiers]] a distinct level",
            )
        )
    for i, tier in enumerate(cfg.tiers):
        for ref in tier.models:
            prov, model = split_model_ref(ref)
            key = f"tiers[{i}].models"
            if not model:
                problems.append(
                    ConfigProblem(
                        key,
                        f"{ref!r} is not '<provider>/<model id>'",
                        'write it like "ollama/qwen3:14b"',
                    )
                )
                continue
            if ref not in cfg.models:
                problems.append(
                    ConfigProblem(
                        key, f"model {ref!r} is not defined", f'add a [models."{ref}"] table'
                    )
                )
            if prov not in cfg.providers:
                known = ", ".join(sorted(cfg.providers))
                problems.append(
                    ConfigProblem(
                        key,
                        f"provider {prov!r} of {ref!r} is not defined",
                        f"add [providers.{prov}] or use one of: {known}",
                    )
                )
    for ref in cfg.models:
        prov, model = split_model_ref(ref)
        if not model or prov not in cfg.providers:
            problems.append(
                ConfigProblem(
                    f'models."{ref}"',
                    "must be '<provider>/<model id>' with a known provider",
                    f"known providers: {', '.join(sorted(cfg.providers))}",
                )
            )
    valid_levels = ", ".join(str(lv) for lv in sorted(set(levels)))
    for name in cfg.tasks:
        task = cfg.task(name)
        assert task is not None
        if cfg.tier(task.tier) is None:
            problems.append(
                ConfigProblem(
                    f"tasks.{name}",
                    f"tier {task.tier} does not exist",
                    f"use one of the configured levels: {valid_levels}",
                )
            )
        if task.trial is not None:
            problems += check_trial(name, task.trial, task.tier, levels)
    dt = cfg.routing.default_task
    if dt is not None and dt not in cfg.tasks:
        problems.append(
            ConfigProblem(
                "routing.default_task",
                f"task {dt!r} is not in [tasks]",
                f"use one of: {', '.join(sorted(cfg.tasks))}",
            )
        )
    for name, p in cfg.providers.items():
        if p.embedded is not None:
            problems += check_embedded(name, p.api, p.base_url, p.embedded)
        elif p.api == "openai-completions" and not p.base_url:
            problems.append(
                ConfigProblem(
                    f"providers.{name}.base_url",
                    "missing: openai-completions has no default endpoint",
                    'add base_url = "https://…/v1"',
                )
            )
    problems += check_budgets(
        cfg.budgets, set(levels), set(cfg.models), {a.name for a in cfg.agents}
    )
    problems += check_agents(cfg.agents, cfg.channels, cfg.alerts, set(cfg.tasks), set(levels))
    problems += check_tools(cfg.tools)
    problems += check_reports(cfg.reports, cfg.channels)
    for i, a in enumerate(cfg.agents):
        problems += check_agent_tools(
            f"agents[{i}]", a.name, a.tools, cfg.tools, a.kind == "systemEvent"
        )
    # raise thinking models to the token floor: under it they answer nothing
    floor = cfg.routing.reasoning_floor
    raised: dict[str, ModelConfig] = {}
    for ref, m in cfg.models.items():
        if m.reasoning and m.max_tokens < floor:
            warnings.append(
                f'models."{ref}".max_tokens = {m.max_tokens} is under the reasoning '
                f"floor; raised to {floor}"
            )
            raised[ref] = m.model_copy(update={"max_tokens": floor})
    if raised:
        cfg = cfg.model_copy(update={"models": {**cfg.models, **raised}})
    return cfg, problems


# a trial sends at most half of a task's requests lower: past that it is the tier itself
MAX_TRIAL = 0.5


def check_trial(name: str, trial: float, tier: int, levels: list[int]) -> list[ConfigProblem]:
    """What is wrong with ``[tasks.NAME] trial``: a share outside 0 < x <= 0.5, or a task
    with no tier below its own to try."""
    key = f"tasks.{name}.trial"
    if not 0 < trial <= MAX_TRIAL:
        return [
            ConfigProblem(
                key,
                f"must be a share above 0 and at most {MAX_TRIAL}, got {trial!r}",
                "give e.g. trial = 0.1 (10% of the task's requests start one tier lower),"
                " or remove it",
            )
        ]
    if not any(lv < tier for lv in levels):
        return [
            ConfigProblem(
                key,
                f"tier {tier} is the lowest configured tier: there is no tier below to try",
                "remove trial, or raise the task's tier",
            )
        ]
    return []


def parse_config(data: Mapping[str, Any], warnings: list[str] | None = None) -> Config:
    """Validate a parsed TOML document. Raises ConfigError listing every problem."""
    warns = warnings if warnings is not None else []
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        problems = [
            _problem_from_pydantic(err, data) for err in e.errors() if not _other_task_form(err)
        ]
        raise ConfigError(_dedupe(problems)) from None
    cfg, problems = _cross_check(cfg, warns)
    if problems:
        raise ConfigError(problems)
    if warnings is None:
        for w in warns:
            log.warning(w)
    return cfg


def _other_task_form(err: Mapping[str, Any]) -> bool:
    """A ``[tasks.NAME]`` table with a bad key also fails the bare-number form of the union
    (``tasks.NAME.int``); that error says nothing the table's own does not."""
    loc = tuple(err["loc"])
    return (
        len(loc) == 3
        and loc[0] == "tasks"
        and loc[2] == "int"
        and isinstance(err.get("input"), Mapping)
    )


def _dedupe(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out


def load_config(path: Path, warnings: list[str] | None = None) -> Config:
    """Read and validate the TOML file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                ConfigProblem(
                    "OPENCLAW_CONFIG",
                    f"{path} does not exist",
                    "copy openclaw.example.toml to openclaw.toml",
                )
            ]
        ) from None
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(
            [
                ConfigProblem(
                    "OPENCLAW_CONFIG",
                    f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} on line {line})",
                    "save the file as UTF-8 (TOML files are UTF-8)",
                )
            ]
        ) from None
    except OSError as e:
        raise ConfigError(
            [
                ConfigProblem(
                    "OPENCLAW_CONFIG",
                    f"cannot read {path}: {e.strerror or e}",
                    "point OPENCLAW_CONFIG (or --config) at a readable TOML file",
                )
            ]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            [ConfigProblem(str(path), f"not valid TOML: {e}", "fix the syntax at that line")]
        ) from None
    cfg = parse_config(data, warnings)
    problems = check_prompt_files(cfg.agents, path.resolve().parent)
    if problems:
        raise ConfigError(problems)
    return cfg
