"""The TOML configuration: pydantic models, cross-checks, and friendly errors.

Everything that is not a secret lives in one TOML file. Unknown keys are errors;
every problem is reported with its key and how to fix it.
"""

from __future__ import annotations

import functools
import logging
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, ValidationError, model_validator

from core.config_agents import (
    AgentConfig,
    AlertsConfig,
    BudgetsConfig,
    ChannelsConfig,
    DeliveryConfig,
    check_agents,
    check_budgets,
    check_prompt_files,
)
from core.config_common import (
    ENV_NAME,
    HeadersEnv,
    HttpUrl,
    PositiveSeconds,
    StrictModel,
    Validators,
    check_header_overlap,
)
from core.embedded_models import check_embedded
from core.errors import ConfigError, ConfigProblem

log = logging.getLogger("openclaw.config")

ApiKind = Literal["openai-completions", "anthropic-messages", "google-generative-ai", "ollama"]
API_KINDS: tuple[str, ...] = get_args(ApiKind)

DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic-messages": "https://api.anthropic.com",
    "google-generative-ai": "https://generativelanguage.googleapis.com/v1beta",
    "ollama": "http://127.0.0.1:11434",
}


_Strict = StrictModel


class ServeConfig(_Strict):
    shutdown_grace_s: float = Field(default=25.0, ge=0)  # under launchd's ExitTimeOut (30)
    recover_within_s: float = Field(default=86400.0, ge=0)  # requeue runs interrupted since


class GatewayConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=18789, ge=0, le=65535)  # 0: any free port (tests)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    auth_max_failures: int = Field(default=10, ge=1)  # per address, within auth_window_s
    auth_window_s: float = Field(default=60.0, gt=0)
    # a client must send its request line and headers (and an idle keep-alive connection
    # its next request) within this; over httpx's 5 s keep-alive expiry, so the SDK
    # drops an idle connection before the gateway does
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)  # a whole request body


class ConcurrencyConfig(_Strict):
    agents: int = Field(default=2, ge=1)
    subagents: int = Field(default=4, ge=1)


class TelegramConfig(_Strict):
    admins: list[int] = Field(default_factory=list)
    allowed_users: list[int] = Field(default_factory=list)
    default_chat: int | None = None
    polling_timeout_s: int = Field(default=25, ge=1, le=50)  # getUpdates long-poll
    watchdog_margin_s: float = Field(default=30.0, gt=0)  # no answer for timeout + this → reconnect
    webhook_url: HttpUrl | None = None  # set: webhook mode on the gateway's port instead of polling
    webhook_secret_env: str = "TELEGRAM_WEBHOOK_SECRET"
    page_size: int = Field(default=8, ge=1, le=50)  # agents per page in /agents


class EmbeddedConfig(_Strict):
    """A llama.cpp model that serve runs as a supervised child process."""

    model: str | None = None  # a model shipped in a package: "smollm2"
    gguf: str | None = None  # or a GGUF file
    ctx: int = Field(default=2048, ge=256)
    threads: int | None = Field(default=None, ge=1)  # default: the machine's cores
    parallel: int = Field(default=2, ge=1)  # requests served at once
    # default sampling temperature when a request names none: greedy suits a small
    # fallback model doing classify/extract work, and makes its answers repeatable
    temperature: float = Field(default=0.0, ge=0, le=2)
    start_timeout_s: float = Field(default=60.0, gt=0)


class ProviderConfig(_Strict):
    """One upstream: which wire format it speaks, where, and with which key."""

    api: ApiKind
    embedded: EmbeddedConfig | None = None
    base_url: HttpUrl | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # header name -> the variable holding its value: a secret header stays out of the file
    headers_env: HeadersEnv = Field(default_factory=dict)

    @model_validator(mode="after")
    def _headers_once(self) -> ProviderConfig:
        check_header_overlap(self.headers, self.headers_env)
        return self

    @property
    def resolved_base_url(self) -> str:
        url = self.base_url or DEFAULT_BASE_URLS.get(self.api, "")
        return url.rstrip("/")


class Cost(_Strict):
    """USD per one million tokens."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # cache reads; None: as input

    def price(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """Cost in USD of the given token counts (``cached_tokens`` is part of the input)."""
        cached = min(cached_tokens, input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (input_tokens - cached) * self.input
            + cached * cached_rate
            + output_tokens * self.output
        ) / 1_000_000


class ModelConfig(_Strict):
    reasoning: bool = False
    max_tokens: int = Field(default=1024, ge=1)
    # the model's own output limit: a request asking for more is capped here, so one
    # careless max_tokens never earns a 400 (or, worse, opens the model's breaker)
    max_output_tokens: int | None = Field(default=None, ge=1)
    cost: Cost = Field(default_factory=Cost)


class TierConfig(_Strict):
    level: int = Field(ge=0)
    models: list[str] = Field(min_length=1)
    requires_approval: bool = False


class TaskConfig(Validators):
    """A task type: its minimum tier and the validators its answers must pass."""

    tier: int = Field(ge=0)


class RoutingConfig(_Strict):
    default_task: str | None = None  # used when a request names neither task nor tier
    reasoning_floor: int = Field(default=1024, ge=1)
    failure_threshold: int = Field(default=1, ge=1)  # consecutive failures that open a breaker
    cooldowns_s: list[PositiveSeconds] = Field(
        default_factory=lambda: [30.0, 60.0, 300.0], min_length=1
    )
    fatal_cooldown_s: float = Field(default=900.0, gt=0)
    probe_interval_s: float = Field(default=60.0, ge=0)  # serve probes providers; 0 = never


class ApprovalsConfig(_Strict):
    default: Literal["approve", "deny"] = "deny"  # when nobody can be asked (no bot)
    timeout_s: float = Field(default=1800.0, gt=0)  # unanswered → denied, marked expired


class Config(_Strict):
    """The whole TOML file, validated."""

    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    concurrency: ConcurrencyConfig = Field(default_factory=ConcurrencyConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    tiers: list[TierConfig] = Field(min_length=1)
    tasks: dict[str, int | TaskConfig] = Field(default_factory=dict)
    agents: list[AgentConfig] = Field(default_factory=list)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)

    def agent(self, name: str) -> AgentConfig | None:
        """The agent with this name, if configured."""
        return next((a for a in self.agents if a.name == name), None)

    # -- derived views -------------------------------------------------------

    def tier(self, level: int) -> TierConfig | None:
        """The tier with this level, if configured."""
        return next((t for t in self.tiers if t.level == level), None)

    @property
    def levels(self) -> list[int]:
        return sorted(t.level for t in self.tiers)

    @functools.cached_property
    def _task_table(self) -> dict[str, TaskConfig]:
        # built once: the router looks tasks up on every request
        return {
            name: TaskConfig(tier=v) if isinstance(v, int) else v for name, v in self.tasks.items()
        }

    def task(self, name: str) -> TaskConfig | None:
        """The task's settings (a bare tier number becomes a TaskConfig)."""
        return self._task_table.get(name)

    def task_tier(self, name: str) -> int:
        """The minimum tier of a configured task."""
        value = self.tasks[name]
        return value if isinstance(value, int) else value.tier

    @functools.cached_property
    def default_task(self) -> str | None:
        """The task of requests that name none: [routing] default_task, else the cheapest."""
        if self.routing.default_task:
            return self.routing.default_task
        return min(self.tasks, key=lambda t: (self.task_tier(t), t), default=None)


def split_model_ref(ref: str) -> tuple[str, str]:
    """``"ollama/qwen3:14b"`` -> ``("ollama", "qwen3:14b")``. Model ids may contain '/'."""
    provider, _, model = ref.partition("/")
    return provider, model


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
        else:
            parts.append(str(p))
        if isinstance(node, Mapping):
            node = node.get(p)
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
    return ".".join(parts)


_ENV_NAME = ENV_NAME
# errors whose message already says everything; their input may be a secret, never echoed
_OWN_MESSAGE = frozenset({"http_url", "env_name", "finite_number"})


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
    if etype in _OWN_MESSAGE or "headers" in loc or "headers_env" in loc:
        return ConfigProblem(key, str(err["msg"]).removeprefix("Value error, "))
    return ConfigProblem(
        key, f"{err['msg']} (got {err.get('input')!r})", "see openclaw.example.toml"
    )


def _cross_check(cfg: Config, warnings: list[str]) -> tuple[Config, list[ConfigProblem]]:
    problems: list[ConfigProblem] = []
    for name, pcfg in cfg.providers.items():
        if pcfg.api_key_env is not None and not _ENV_NAME.fullmatch(pcfg.api_key_env):
            # never echo the value: it is most likely the key itself, pasted in
            problems.append(
                ConfigProblem(
                    f"providers.{name}.api_key_env",
                    "is not an environment variable name (was the key itself pasted in?)",
                    'name the variable that holds the key, e.g. api_key_env = "DEEPSEEK_API_KEY",'
                    " and set that variable in .env",
                )
            )
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


def parse_config(data: Mapping[str, Any], warnings: list[str] | None = None) -> Config:
    """Validate a parsed TOML document. Raises ConfigError listing every problem."""
    warns = warnings if warnings is not None else []
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        problems = [_problem_from_pydantic(err, data) for err in e.errors()]
        raise ConfigError(_dedupe(problems)) from None
    cfg, problems = _cross_check(cfg, warns)
    if problems:
        raise ConfigError(problems)
    if warnings is None:
        for w in warns:
            log.warning(w)
    return cfg


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
