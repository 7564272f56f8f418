"""Config models for agents, their inputs and subagents, and their checks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.config.common import (
    HttpUrl,
    StrictModel,
    Validators,
    zone_problem,
)
from core.config.delivery import AlertsConfig, ChannelsConfig, check_target
from core.errors import ConfigProblem

AgentKind = Literal["agentTurn", "systemEvent"]
SessionMode = Literal["isolated", "shared"]


class InputConfig(StrictModel):
    """One named input, gathered before the prompt renders: exactly one of http/command/file."""

    http: HttpUrl | list[HttpUrl] | None = None  # GET; RSS/Atom → items, JSON → parsed, else text
    command: list[str] | None = Field(default=None, min_length=1)  # argv, no shell
    file: str | None = None
    timeout_s: float = Field(default=15.0, gt=0)
    max_items: int = Field(default=20, ge=1)  # per feed
    max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> InputConfig:
        given = [k for k in ("http", "command", "file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an input needs exactly one of http, command or file")
        return self

    @property
    def kind(self) -> str:
        return "http" if self.http is not None else "command" if self.command else "file"


class SubagentsConfig(StrictModel):
    """Fan out one child call per item of ``over`` (a dotted path in the template context)."""

    over: str
    prompt: str  # an inline jinja2 template; gets item, index, inputs, agent, now
    task: str | None = None
    tier: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    system: str | None = None


class AgentConfig(StrictModel):
    """One scheduled (or on-demand) agent."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    task: str | None = None
    tier: int | None = Field(default=None, ge=0)
    kind: AgentKind = "agentTurn"
    session: SessionMode = "isolated"
    prompt: str | None = None  # a template path under templates/
    message: str | None = None  # an inline template
    system: str | None = None  # a system prompt (inline template)
    schedule: str | None = None  # 5-field cron
    timezone: str = "UTC"
    enabled: bool = True
    deliver: list[str] = Field(default_factory=lambda: ["log"])
    validators: Validators | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=600.0, gt=0)
    inputs: dict[str, InputConfig] = Field(default_factory=dict)
    subagents: SubagentsConfig | None = None
    catch_up_s: float = Field(default=6 * 3600.0, ge=0)  # 0 = never run a missed fire late
    spread: bool = True  # false: fire on the hour itself despite [scheduler] spread_s
    retry_interrupted: bool = True
    # Tier 3 denied: deliver the best (validator-failed) lower-tier answer instead of failing
    keep_lower_on_deny: bool = False
    # the tool loop: tools named here (built-ins or [tools.NAME] command tools) are offered
    # to the model; the loop stops (a failed run naming the limit) at max_steps model turns
    # or once the run's calls cost max_cost_usd
    tools: list[str] = Field(default_factory=list)
    max_steps: int = Field(default=8, ge=1, le=100)
    max_cost_usd: float | None = Field(default=None, gt=0)


def is_relative_template(name: str) -> bool:
    """True for a template path that stays under its folder: not absolute, no ``~``, no
    ``..`` part, no backslash (a Windows separator would hide a ``..``)."""
    if not name or "\\" in name or name.startswith(("/", "~")):
        return False
    return ".." not in name.split("/")


def _inline_template(key: str, source: str | None) -> list[ConfigProblem]:
    """A jinja2 syntax error in an inline template, found at load instead of at its first run."""
    from core.agents.templating import syntax_error

    why = syntax_error(source) if source is not None else None
    if why is None:
        return []
    return [ConfigProblem(key, f"the template does not compile: {why}", "fix the jinja2 syntax")]


def check_prompt_files(agents: list[AgentConfig], base_dir: Path) -> list[ConfigProblem]:
    """Every ``prompt`` file exists under ``templates/`` (beside the config, else the shipped
    ones) and compiles: found at load, not when the schedule first fires."""
    from core.agents.templating import BUNDLED_TEMPLATES, Templates

    templates = Templates(base_dir / "templates", BUNDLED_TEMPLATES)
    problems = []
    for i, a in enumerate(agents):
        if a.prompt is None or not is_relative_template(a.prompt):
            continue  # the traversal check reports it
        why = templates.check_file(a.prompt)
        if why is not None:
            problems.append(
                ConfigProblem(
                    f"agents[{i}].prompt",
                    f"agent {a.name}: template {a.prompt!r} cannot be used: {why}",
                    "fix the file's jinja2 syntax, or the path (relative to templates/)",
                )
            )
    return problems


def check_agents(
    agents: list[AgentConfig],
    channels: ChannelsConfig,
    alerts: AlertsConfig,
    tasks: set[str],
    levels: set[int],
) -> list[ConfigProblem]:
    """Cross-checks that need the rest of the config."""
    from zoneinfo import ZoneInfo

    from apscheduler.triggers.cron import CronTrigger

    problems: list[ConfigProblem] = []
    seen: set[str] = set()
    for i, a in enumerate(agents):
        key = f"agents[{i}]"
        if a.name in seen:
            problems.append(
                ConfigProblem(
                    f"{key}.name",
                    f"agent {a.name!r} is defined twice",
                    "give every agent a unique name",
                )
            )
        seen.add(a.name)
        if a.kind == "systemEvent" and a.session == "isolated":
            problems.append(
                ConfigProblem(
                    f"{key}.session",
                    f'agent {a.name}: isolated sessions need kind = "agentTurn" with a message or '
                    "prompt",
                    'set kind = "agentTurn", or session = "shared" for a systemEvent',
                )
            )
        if (a.prompt is None) == (a.message is None):
            problems.append(
                ConfigProblem(
                    f"{key}",
                    f"agent {a.name}: needs exactly one of "
                    "prompt (a template under templates/) or message",
                    'add message = "…" or prompt = "prompts/x.j2"',
                )
            )
        for field, source in (("message", a.message), ("system", a.system)):
            problems += _inline_template(f"{key}.{field}", source)
        if a.subagents is not None:
            problems += _inline_template(f"{key}.subagents.prompt", a.subagents.prompt)
            problems += _inline_template(f"{key}.subagents.system", a.subagents.system)
        if a.prompt is not None and not is_relative_template(a.prompt):
            problems.append(
                ConfigProblem(
                    f"{key}.prompt",
                    f"{a.prompt!r} leaves the templates folder (an absolute path, ~ or ..)",
                    'give a path under templates/, e.g. prompt = "prompts/x.j2"',
                )
            )
        if a.task is not None and a.task not in tasks:
            problems.append(
                ConfigProblem(
                    f"{key}.task",
                    f"task {a.task!r} is not in [tasks]",
                    f"use one of: {', '.join(sorted(tasks))}",
                )
            )
        if a.tier is not None and a.tier not in levels:
            problems.append(
                ConfigProblem(
                    f"{key}.tier",
                    f"tier {a.tier} does not exist",
                    f"use one of: {', '.join(map(str, sorted(levels)))}",
                )
            )
        if a.task is not None and a.tier is not None:
            problems.append(ConfigProblem(key, f"agent {a.name}: give task or tier, not both"))
        zone = zone_problem(f"{key}.timezone", a.timezone)
        if zone:
            problems.append(zone)
        tz = None if zone else ZoneInfo(a.timezone)
        if a.schedule is not None and tz is not None:
            try:
                CronTrigger.from_crontab(a.schedule, timezone=tz)
            except ValueError as e:
                problems.append(
                    ConfigProblem(
                        f"{key}.schedule",
                        f"invalid cron {a.schedule!r}: {e}",
                        'use 5 fields, e.g. "0 7 * * *"',
                    )
                )
        for target in a.deliver:
            why = check_target(target, channels)
            if why:
                problems.append(ConfigProblem(f"{key}.deliver", f"{target!r}: {why}"))
        if a.subagents is not None:
            sub = a.subagents
            if sub.task is not None and sub.task not in tasks:
                problems.append(
                    ConfigProblem(f"{key}.subagents.task", f"task {sub.task!r} is not in [tasks]")
                )
            if sub.tier is not None and sub.tier not in levels:
                problems.append(
                    ConfigProblem(f"{key}.subagents.tier", f"tier {sub.tier} does not exist")
                )
    for target in alerts.deliver:
        why = check_target(target, channels)
        if why:
            problems.append(ConfigProblem("alerts.deliver", f"{target!r}: {why}"))
    return problems
