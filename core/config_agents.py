"""Config models for agents, their inputs and subagents, delivery channels and alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.config_common import (
    FiniteFloat,
    HeadersEnv,
    HttpUrl,
    NonNegativeSeconds,
    StrictModel,
    Validators,
    check_header_overlap,
)
from core.errors import ConfigProblem

AgentKind = Literal["agentTurn", "systemEvent"]
SessionMode = Literal["isolated", "shared"]


_Strict = StrictModel


class InputConfig(_Strict):
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


class SubagentsConfig(_Strict):
    """Fan out one child call per item of ``over`` (a dotted path in the template context)."""

    over: str
    prompt: str  # an inline jinja2 template; gets item, index, inputs, agent, now
    task: str | None = None
    tier: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    system: str | None = None


class AgentConfig(_Strict):
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
    retry_interrupted: bool = True
    # Tier 3 denied: deliver the best (validator-failed) lower-tier answer instead of failing
    keep_lower_on_deny: bool = False


class SlackChannelConfig(_Strict):
    webhook_url_env: str  # the incoming-webhook URL is a secret: it lives in the environment
    headers_env: HeadersEnv = Field(default_factory=dict)  # header name -> variable name


class WebhookChannelConfig(_Strict):
    url: HttpUrl | None = None
    url_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # header name -> the variable holding its value: a secret header stays out of the file
    headers_env: HeadersEnv = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannelConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("a webhook needs exactly one of url or url_env")
        check_header_overlap(self.headers, self.headers_env)
        return self


class ChannelsConfig(_Strict):
    slack: dict[str, SlackChannelConfig] = Field(default_factory=dict)
    webhook: dict[str, WebhookChannelConfig] = Field(default_factory=dict)


class DeliveryConfig(_Strict):
    max_attempts: int = Field(default=8, ge=1)
    backoff_s: list[NonNegativeSeconds] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0], min_length=1
    )
    poll_interval_s: float = Field(default=1.0, gt=0)
    claim_timeout_s: float = Field(default=120.0, gt=0)  # a claim older than this is retried


class AlertsConfig(_Strict):
    deliver: list[str] = Field(default_factory=lambda: ["log"])  # the admin target(s)
    failures_before_alert: int = Field(default=2, ge=1)
    failures_before_disable: int = Field(default=10, ge=1)


TARGET_KINDS = ("telegram", "slack", "webhook", "log")


def check_target(target: str, channels: ChannelsConfig) -> str | None:
    """Why a delivery target is invalid, or None."""
    kind, _, name = target.partition(":")
    if target == "log":
        return None
    if kind == "telegram":
        return None if name.lstrip("-").isdigit() else "telegram targets are telegram:<chat id>"
    if kind == "slack":
        return None if name in channels.slack else f"no [channels.slack.{name}] is configured"
    if kind == "webhook":
        return None if name in channels.webhook else f"no [channels.webhook.{name}] is configured"
    return f"unknown target kind {kind!r}: use one of {', '.join(TARGET_KINDS)}"


def is_relative_template(name: str) -> bool:
    """True for a template path that stays under its folder: not absolute, no ``~``, no
    ``..`` part, no backslash (a Windows separator would hide a ``..``)."""
    if not name or "\\" in name or name.startswith(("/", "~")):
        return False
    return ".." not in name.split("/")


def _inline_template(key: str, source: str | None) -> list[ConfigProblem]:
    """A jinja2 syntax error in an inline template, found at load instead of at its first run."""
    from core.templating import syntax_error

    why = syntax_error(source) if source is not None else None
    if why is None:
        return []
    return [ConfigProblem(key, f"the template does not compile: {why}", "fix the jinja2 syntax")]


def check_prompt_files(agents: list[AgentConfig], base_dir: Path) -> list[ConfigProblem]:
    """Every ``prompt`` file exists under ``templates/`` (beside the config, else the shipped
    ones) and compiles: found at load, not when the schedule first fires."""
    from core.templating import BUNDLED_TEMPLATES, Templates

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
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
        try:
            tz = ZoneInfo(a.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                ConfigProblem(
                    f"{key}.timezone",
                    f"unknown timezone {a.timezone!r}",
                    'use an IANA name like "Europe/Berlin"',
                )
            )
            tz = None
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


class Caps(_Strict):
    """USD caps for one scope; None = no cap for that period."""

    day: float | None = Field(default=None, ge=0)
    month: float | None = Field(default=None, ge=0)


class BudgetsConfig(_Strict):
    """Spend caps per calendar day and month, in ``timezone``."""

    timezone: str = "UTC"
    alert_at: list[Annotated[FiniteFloat, Field(gt=0)]] = Field(
        default_factory=lambda: [0.8, 1.0]
    )  # fractions of a cap
    total: Caps = Field(default_factory=Caps)
    tier: dict[str, Caps] = Field(default_factory=dict)  # "3" → caps
    model: dict[str, Caps] = Field(default_factory=dict)  # "provider/model" → caps
    agent: dict[str, Caps] = Field(default_factory=dict)  # agent name → caps

    @property
    def any(self) -> bool:
        scopes = [self.total, *self.tier.values(), *self.model.values(), *self.agent.values()]
        return any(c.day is not None or c.month is not None for c in scopes)


def check_budgets(
    b: BudgetsConfig, levels: set[int], models: set[str], agents: set[str]
) -> list[ConfigProblem]:
    """Budget scopes must name tiers, models and agents that exist."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    problems = []
    try:
        ZoneInfo(b.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            ConfigProblem(
                "budgets.timezone",
                f"unknown timezone {b.timezone!r}",
                'use an IANA name like "Europe/Berlin"',
            )
        )
    for key in b.tier:
        if not key.isdigit() or int(key) not in levels:
            problems.append(
                ConfigProblem(
                    f"budgets.tier.{key}",
                    "no such tier",
                    f"use one of: {', '.join(map(str, sorted(levels)))}",
                )
            )
    for key in b.model:
        if key not in models:
            problems.append(
                ConfigProblem(f'budgets.model."{key}"', "no such model", "use a key of [models]")
            )
    for key in b.agent:
        if key not in agents:
            problems.append(
                ConfigProblem(
                    f"budgets.agent.{key}", "no such agent", "use the name of an [[agents]] entry"
                )
            )
    return problems
