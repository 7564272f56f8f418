"""The configuration's root models: serve, gateway, providers, models, tiers, routing."""

from __future__ import annotations

import functools
import re
from typing import Any, Literal, get_args

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core.config.agents import AgentConfig
from core.config.budgets import BudgetsConfig
from core.config.common import (
    HeadersEnv,
    HttpUrl,
    PositiveSeconds,
    StrictModel,
    Validators,
    check_header_overlap,
)
from core.config.delivery import AlertsConfig, ChannelsConfig, DeliveryConfig
from core.config.ops import HeartbeatConfig, ReportsConfig, SchedulerConfig
from core.config.tools import ToolsConfig

ApiKind = Literal["openai-completions", "anthropic-messages", "google-generative-ai", "ollama"]
API_KINDS: tuple[str, ...] = get_args(ApiKind)

DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic-messages": "https://api.anthropic.com",
    "google-generative-ai": "https://generativelanguage.googleapis.com/v1beta",
    "ollama": "http://127.0.0.1:11434",
}


class ServeConfig(StrictModel):
    shutdown_grace_s: float = Field(default=25.0, ge=0)  # under launchd's ExitTimeOut (30)
    recover_within_s: float = Field(default=86400.0, ge=0)  # requeue runs interrupted since


class GatewayConfig(StrictModel):
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


class ConcurrencyConfig(StrictModel):
    agents: int = Field(default=2, ge=1)
    subagents: int = Field(default=4, ge=1)
    # on PostgreSQL the limits hold for every instance on the database together (the
    # "2 agents" that protect one Ollama); true: each process has its own
    per_instance: bool = False


class ClusterConfig(StrictModel):
    """Several ``serve`` instances on one PostgreSQL database (ignored on SQLite)."""

    heartbeat_s: float = Field(default=1.0, gt=0, le=60)  # how often each one checks in
    # a leader silent this long (dead, frozen, cut off) is fenced and replaced; it stops
    # acting as the leader itself after half of it without a heartbeat
    leader_timeout_s: float = Field(default=10.0, gt=0, le=600)
    recover_every_s: float = Field(default=5.0, gt=0, le=3600)  # the leader's orphan sweep

    @model_validator(mode="after")
    def _timeout_over_heartbeats(self) -> ClusterConfig:
        if self.leader_timeout_s < 3 * self.heartbeat_s:
            raise ValueError(
                f"leader_timeout_s ({self.leader_timeout_s:g}) must be at least 3 heartbeats"
                f" ({3 * self.heartbeat_s:g}): a leader one slow heartbeat late would be"
                " replaced; raise [cluster] leader_timeout_s or lower heartbeat_s"
            )
        return self


class TelegramConfig(StrictModel):
    admins: list[int] = Field(default_factory=list)
    allowed_users: list[int] = Field(default_factory=list)
    default_chat: int | None = None
    polling_timeout_s: int = Field(default=25, ge=1, le=50)  # getUpdates long-poll
    watchdog_margin_s: float = Field(default=30.0, gt=0)  # no answer for timeout + this → reconnect
    webhook_url: HttpUrl | None = None  # set: webhook mode on the gateway's port instead of polling
    webhook_secret_env: str = "TELEGRAM_WEBHOOK_SECRET"
    page_size: int = Field(default=8, ge=1, le=50)  # agents per page in /agents


class EmbeddedConfig(StrictModel):
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


# a Go duration as Ollama parses it ("10m", "1h30m", "-1", "0"); a bare number is seconds
KEEP_ALIVE = r"-?(\d+(\.\d+)?|(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+)"


class ProviderConfig(StrictModel):
    """One upstream: which wire format it speaks, where, and with which key."""

    api: ApiKind
    embedded: EmbeddedConfig | None = None
    base_url: HttpUrl | None = None
    # the variable holding the key, or several: on a 429 or a billing answer the next key
    # of the list is tried before the next model
    api_key_env: str | list[str] | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # header name -> the variable holding its value: a secret header stays out of the file
    headers_env: HeadersEnv = Field(default_factory=dict)
    # Ollama only: how long a model stays loaded after a request ("30m", "24h", "-1" for
    # ever, "0" to unload at once); None: Ollama's own default (5 minutes)
    keep_alive: str | None = None
    # openai-completions only: body fields that turn a thinking model's thinking off, for
    # servers whose switch is not OpenAI's (DeepSeek: {thinking = {type = "disabled"}}).
    # Sent when a task says think = false, and with a conversation that holds tool calls:
    # DeepSeek's thinking mode refuses (400) tool-call turns without their reasoning, which
    # OpenAI clients never send back
    no_think_body: dict[str, Any] | None = None

    @field_validator("no_think_body")
    @classmethod
    def _openai_only(
        cls, value: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        if value is not None and info.data.get("api") != "openai-completions":
            raise PydanticCustomError(
                "no_think_body", "is for openai-completions servers only: remove it"
            )
        return value

    @field_validator("keep_alive")
    @classmethod
    def _ollama_duration(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("api") != "ollama":
            raise PydanticCustomError(
                "keep_alive", "is Ollama's, and this provider is not Ollama: remove it"
            )
        if not re.fullmatch(KEEP_ALIVE, value):
            raise PydanticCustomError(
                "keep_alive",
                '{shown} is not a duration: write it like "30m", "24h", "-1" (for ever) or "0"'
                " (unload at once)",
                {"shown": repr(value)},
            )
        return value

    @model_validator(mode="after")
    def _headers_once(self) -> ProviderConfig:
        check_header_overlap(self.headers, self.headers_env)
        return self

    @property
    def key_envs(self) -> tuple[str, ...]:
        """The variables ``api_key_env`` names, in order (one, several, or none)."""
        if self.api_key_env is None:
            return ()
        if isinstance(self.api_key_env, str):
            return (self.api_key_env,)
        return tuple(self.api_key_env)

    @property
    def resolved_base_url(self) -> str:
        url = self.base_url or DEFAULT_BASE_URLS.get(self.api, "")
        return url.rstrip("/")


# request parameters a model may refuse: drop_params leaves them out for that model
# (tool_choice: models that think on every request, e.g. Claude Opus 5.5, refuse a forced
# choice; dropped, the engine still checks the answer against the caller's choice)
SamplingParam = Literal[
    "temperature", "top_p", "top_k", "seed", "stop", "parallel_tool_calls", "tool_choice"
]
# what a model can do with JSON: a schema enforced, any JSON object, or nothing
JsonMode = Literal["schema", "object", "none"]
# Anthropic's API version 2026-10-21 refuses temperature, top_p and top_k with a 400, and
# Claude Opus 4.7 and later refuse temperature on every version: a caller's value sent
# there would be a fatal error that takes the model out for fatal_cooldown_s
DROPPED_BY_API: dict[str, tuple[SamplingParam, ...]] = {
    "anthropic-messages": ("temperature", "top_p", "top_k"),
}


class Cost(StrictModel):
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


class ModelConfig(StrictModel):
    reasoning: bool = False
    max_tokens: int = Field(default=1024, ge=1)
    # the model's own output limit: a request asking for more is capped here, so one
    # careless max_tokens never earns a 400 (or, worse, opens the model's breaker)
    max_output_tokens: int | None = Field(default=None, ge=1)
    cost: Cost = Field(default_factory=Cost)
    # the context window in tokens: a prompt estimated over it is not sent to this model,
    # and Ollama is told it (options.num_ctx) instead of truncating at its 4k default
    context: int | None = Field(default=None, ge=1)
    # sampling parameters never sent to this model; None: its API's default (DROPPED_BY_API)
    drop_params: list[SamplingParam] | None = None
    # false: the model cannot call tools; a request that offers tools (or carries tool
    # calls in its history) skips it with that reason
    tools: bool = True
    # schema: JSON Schema output natively; object: JSON mode only (a schema is checked after
    # and stated in the prompt); none: no JSON mode (a request for JSON output skips it)
    json_: JsonMode = Field(default="schema", alias="json")


class TierConfig(StrictModel):
    level: int = Field(ge=0)
    models: list[str] = Field(min_length=1)
    requires_approval: bool = False


class TaskConfig(Validators):
    """A task type: its minimum tier and the validators its answers must pass."""

    tier: int = Field(ge=0)
    # false: thinking models answer this task without thinking (routine work, less time);
    # None: each model as configured (its ``reasoning``)
    think: bool | None = None
    # a share (0 < x <= 0.5) of the task's requests starts one tier lower, picked from the
    # request id, to measure whether the cheaper tier would do (`openclaw tune`)
    trial: float | None = None


class RoutingConfig(StrictModel):
    default_task: str | None = None  # used when a request names neither task nor tier
    reasoning_floor: int = Field(default=1024, ge=1)
    failure_threshold: int = Field(default=1, ge=1)  # consecutive failures that open a breaker
    cooldowns_s: list[PositiveSeconds] = Field(
        default_factory=lambda: [30.0, 60.0, 300.0], min_length=1
    )
    fatal_cooldown_s: float = Field(default=900.0, gt=0)
    # a key that answered "no credit / no quota" is out this long (5 h), doubling with each
    # consecutive such answer of the same key up to 24 h: a top-up takes a human, and a
    # daily quota resets once a day, so probing it every minute only piles up errors
    billing_cooldown_s: float = Field(default=18000.0, gt=0, le=86400)
    probe_interval_s: float = Field(default=60.0, ge=0)  # serve probes providers; 0 = never


class ApprovalsConfig(StrictModel):
    default: Literal["approve", "deny"] = "deny"  # when nobody can be asked (no bot)
    timeout_s: float = Field(default=1800.0, gt=0)  # unanswered → denied, marked expired


class Config(StrictModel):
    """The whole TOML file, validated."""

    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    concurrency: ConcurrencyConfig = Field(default_factory=ConcurrencyConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
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
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)

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

    def task_think(self, name: str) -> bool | None:
        """Whether thinking models think for a configured task (None: as configured)."""
        value = self.tasks[name]
        return None if isinstance(value, int) else value.think

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
