"""What the CLI, the gateway and the bot show about agents, runs and the system's health."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from core import __version__
from core.config.models import Config
from core.engine.health import duration_text
from core.errors import StoreUnavailable
from core.store.times import utcnow_iso

if TYPE_CHECKING:
    from core.agents.runner import AgentRunner
    from core.agents.scheduler import Scheduler
    from core.delivery.outbox import Outbox
    from core.embedded.supervisor import EmbeddedModel
    from core.engine.approvals import ApprovalBroker
    from core.engine.health import HealthBoard
    from core.store.base import Store

# a part that plugs in (the Telegram bot) reports its own state in the status this way
StatusHook = Callable[[], dict[str, Any]]
STATUS_STORE_WAIT_S = 2.0  # the status waits this long for the store's counts
TELEGRAM_OFF = {"mode": "off", "state": "TELEGRAM_BOT_TOKEN not set"}


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One configured agent: schedule, next fire, state, last run, cost today."""

    name: str
    description: str
    kind: str
    schedule: str | None
    timezone: str
    enabled: bool
    disabled_reason: str | None
    next_fire: str | None
    last_status: str | None
    last_run: int | None
    consecutive_failures: int
    cost_today_usd: float
    deliver: list[str]

    def as_dict(self) -> dict[str, Any]:
        """The row as /api/agents answers it (keys in this order)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TierState:
    level: int
    models: list[str]
    requires_approval: bool
    state: str  # "ok" while some model may be called, else "down (…)"


@dataclass(frozen=True, slots=True)
class ModelState:
    """A model's breaker, as the health board knows it, and where it sits."""

    model: str
    state: str
    cooldown_left_s: float
    consecutive_failures: int
    last_outcome: str
    last_error: str
    last_latency_ms: float | None
    tier: int
    provider: str
    api: str


@dataclass(frozen=True, slots=True)
class KeyState:
    """An API key's breaker, by its variable's NAME (the value never leaves the settings)."""

    provider: str
    key: str
    state: str
    cooldown_left_s: float
    consecutive_failures: int
    last_outcome: str
    last_error: str


def model_line(row: Mapping[str, Any]) -> str:
    """One model of the status, as `openclaw status` prints it: its state, how long it
    stays out when open (a 429's Retry-After or RetryInfo, a cooldown), its last latency
    and error, e.g. ``gem/gemini-2.5-flash  open 22s left (rate_limited HTTP 429)``."""
    left = float(row.get("cooldown_left_s") or 0.0)
    state = str(row["state"])
    if state == "open" and left > 0:
        state += f" {math.ceil(left)}s left" if left < 120 else f" {duration_text(left)} left"
    lat = f", last {row['last_latency_ms']:.0f} ms" if row.get("last_latency_ms") else ""
    err = f" ({row['last_error']})" if row.get("last_error") else ""
    return f"{row['model']:<36} {state}{lat}{err}"


def key_line(row: Mapping[str, Any]) -> str:
    """One key of the status, as `openclaw status` and the bot print it: the provider, the
    variable's name, its state and, when out, why and for how long, e.g.
    ``deep DEEP_KEY_A: open (billing HTTP 402, 4h59m left)``."""
    line = f"{row['provider']} {row['key']}: {row['state']}"
    if row["state"] == "closed" or not row["last_error"]:
        return line
    left = float(row["cooldown_left_s"])
    return line + f" ({row['last_error']}" + (f", {duration_text(left)} left)" if left else ")")


@dataclass(frozen=True, slots=True)
class Queues:
    agents_waiting: int
    agents_running: int
    subagents_waiting: int
    subagents_running: int
    outbox_pending: int | None  # None: the store did not answer
    outbox_unknown: int | None = None  # sent maybe, never confirmed: an admin decides


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything /api/status and the bot's /status show. No secrets."""

    version: str
    uptime_s: float
    tiers: list[TierState]
    models: list[ModelState]
    embedded: list[dict[str, Any]]  # each embedded model's own describe()
    queues: Queues
    pending_approvals: int | None  # None: the store did not answer
    plugins: dict[str, dict[str, Any]]  # "telegram" (off unless the bot reports) and others
    store: str = "ok"  # or "unavailable: why" (then the counts it holds are None)
    keys: list[KeyState] = field(default_factory=list)  # providers that send a key

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as /api/status answers it (keys in this order)."""
        return {
            "version": self.version,
            "uptime_s": self.uptime_s,
            "tiers": [asdict(t) for t in self.tiers],
            "models": [asdict(m) for m in self.models],
            "keys": [asdict(k) for k in self.keys],
            "embedded": self.embedded,
            "queues": asdict(self.queues),
            "pending_approvals": self.pending_approvals,
            "store": self.store,
            **self.plugins,
        }


@dataclass(frozen=True, slots=True)
class Readiness:
    """Ready when the store is writable and some tier has a healthy model."""

    store_ok: bool
    tiers: dict[str, str]  # tier level → "ok" or what is down

    @property
    def ready(self) -> bool:
        return self.store_ok and any(v == "ok" for v in self.tiers.values())


# the agents overview in one statement, whatever the number of agents: before, each agent
# cost three (its state, its last run, its cost today), 3,000 for a page of 1,000 agents
_AGENTS_SQL = (
    "WITH wanted (agent, day_start) AS (VALUES {values})"
    " SELECT w.agent, s.consecutive_failures, s.disabled, s.disabled_reason,"
    " last.id, last.status,"
    " (SELECT COALESCE(SUM(r.cost_usd), 0) FROM runs r"
    " WHERE r.agent = w.agent AND r.created_at >= w.day_start)"
    " FROM wanted w"
    " LEFT JOIN agent_state s ON s.agent = w.agent"
    " LEFT JOIN runs last ON last.id = (SELECT MAX(r.id) FROM runs r WHERE r.agent = w.agent)"
)


class Overview:
    """Read-only views over the config, the store and the live parts, stamped with ``clock``."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        runner: AgentRunner,
        scheduler: Scheduler,
        health: HealthBoard,
        outbox: Outbox,
        approvals: ApprovalBroker,
        embedded: dict[str, EmbeddedModel],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.scheduler = scheduler
        self.health = health
        self.outbox = outbox
        self.approvals = approvals
        self.embedded = embedded
        self.clock = clock
        self.status_hooks: dict[str, StatusHook] = {}

    def add_status_hook(self, name: str, hook: StatusHook) -> None:
        """``hook()`` is shown as ``name`` in every status snapshot (replacing the default)."""
        self.status_hooks[name] = hook

    async def agents(self) -> list[AgentRow]:
        """One row per configured agent, in config order, from one query."""
        agents = self.config.agents
        if not agents:
            return []
        now = self.clock()
        params: list[str] = []
        for agent in agents:
            local = now.astimezone(ZoneInfo(agent.timezone))
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            params += [agent.name, utcnow_iso(midnight)]
        sql = _AGENTS_SQL.format(values=", ".join(["(?, ?)"] * len(agents)))
        found = {r[0]: r for r in await self.store.fetchall(sql, params)}
        rows = []
        for agent in agents:
            _, failures, disabled_flag, reason, last_run, last_status, cost = found[agent.name]
            disabled = bool(disabled_flag)
            nxt = None if disabled else self.scheduler.next_fire(agent)
            rows.append(
                AgentRow(
                    name=agent.name,
                    description=agent.description,
                    kind=agent.kind,
                    schedule=agent.schedule,
                    timezone=agent.timezone,
                    enabled=agent.enabled and not disabled,
                    disabled_reason=reason
                    if disabled
                    else (None if agent.enabled else "enabled = false in the config"),
                    next_fire=nxt.isoformat() if nxt else None,
                    last_status=last_status,
                    last_run=last_run,
                    consecutive_failures=int(failures or 0),
                    cost_today_usd=float(cost),
                    deliver=agent.deliver,
                )
            )
        return rows

    def tier_health(self) -> dict[str, str]:
        """Per tier: "ok" while some model may be called, else what is down."""
        snap = self.health.snapshot(time.monotonic())
        out = {}
        for t in sorted(self.config.tiers, key=lambda t: t.level):
            down = [f"{ref}: {snap.blocked[ref]}" for ref in t.models if ref in snap.blocked]
            out[str(t.level)] = (
                "ok" if len(down) < len(t.models) else "down (" + "; ".join(down) + ")"
            )
        return out

    async def readiness(self) -> Readiness:
        """Whether the store takes writes, and the health of each tier."""
        return Readiness(await self.store.writable(), self.tier_health())

    async def status(self, uptime_s: float) -> StatusSnapshot:
        """The status snapshot: tiers, models, embedded models, queues, approvals, plug-ins."""
        cfg = self.config
        live = {row["model"]: row for row in self.health.status(time.monotonic())}
        health = self.tier_health()
        models = []
        tiers = []
        for t in sorted(cfg.tiers, key=lambda t: t.level):
            tiers.append(TierState(t.level, t.models, t.requires_approval, health[str(t.level)]))
            for ref in t.models:
                provider = ref.split("/", 1)[0]
                row = live.get(ref) or {"model": ref, **_UNTOUCHED}
                models.append(
                    ModelState(
                        **row, tier=t.level, provider=provider, api=cfg.providers[provider].api
                    )
                )
        depths = self.runner.queue_depths()
        plugins = {name: hook() for name, hook in self.status_hooks.items()}
        store, outbox_pending, outbox_unknown, pending_approvals = "ok", None, None, None
        try:  # a status is most wanted when the store is down: it answers without it
            async with asyncio.timeout(STATUS_STORE_WAIT_S):
                outbox_pending = await self.outbox.pending_count()
                outbox_unknown = await self.outbox.unknown_count()
                pending_approvals = len(await self.approvals.pending())
        except TimeoutError:
            store = f"unavailable: no answer within {STATUS_STORE_WAIT_S:g} s"
        except StoreUnavailable as e:
            store = f"unavailable: {e}"
        return StatusSnapshot(
            version=__version__,
            uptime_s=uptime_s,
            tiers=tiers,
            models=models,
            embedded=[m.describe() for m in self.embedded.values()],
            queues=Queues(**depths, outbox_pending=outbox_pending, outbox_unknown=outbox_unknown),
            pending_approvals=pending_approvals,
            plugins={"telegram": dict(TELEGRAM_OFF)} | plugins,
            store=store,
            keys=[KeyState(**row) for row in self.health.key_status(time.monotonic())],
        )


# a model no request has touched yet
_UNTOUCHED: dict[str, Any] = {
    "state": "closed",
    "cooldown_left_s": 0.0,
    "consecutive_failures": 0,
    "last_outcome": "",
    "last_error": "",
    "last_latency_ms": None,
}
