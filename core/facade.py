"""The narrow door the interfaces (the gateway, the Telegram bot) get instead of the App."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.agents.memory import Memory
from core.agents.runner import AgentRunner
from core.agents.runs import Runs
from core.agents.sessions import Sessions
from core.agents.state import AgentStates
from core.agents.steps import RunSteps, Step
from core.agents.watch import ScheduleWatch
from core.cluster.updates import UpdateLog
from core.config.models import Config
from core.config.settings import Settings
from core.delivery.channels import Channel
from core.delivery.deliveries import Deliveries, UnknownNotifier
from core.drills.board import DrillBoard
from core.engine.approvals import ApprovalBroker, Closer, Notifier, Watcher
from core.engine.budget import BudgetGuard
from core.engine.engine import Engine
from core.engine.ledger import Ledger, RequestMeta
from core.ops.metrics import Metrics
from core.overview import Overview, StatusHook
from core.types import Attempt

AttemptObserver = Callable[[RequestMeta, Attempt], None]


@dataclass(frozen=True)
class Facade:
    """What the gateway and the bot use of the app, and nothing else: no store, no
    outbox, no delivery worker, no providers. Built by :meth:`core.app.App.facade`.

    A part that plugs in registers itself through the ``add_*`` and ``set_*`` calls,
    never by reaching into the lists of the parts behind them.
    """

    config: Config
    settings: Settings  # the webhook secret is read through it
    engine: Engine  # plan, complete, stream
    budget: BudgetGuard | None  # None: no caps configured
    runner: AgentRunner  # start, rerun, wait, the agent by name
    runs: Runs
    steps: RunSteps  # a run's tool-loop steps
    memory: Memory  # what agents remembered (/memory, `openclaw memory`)
    sessions: Sessions  # the bot's per-chat conversations (/ask)
    states: AgentStates  # enable / disable
    approvals: ApprovalBroker
    ledger: Ledger
    overview: Overview
    metrics: Metrics
    updates: UpdateLog  # webhook updates already taken (by any instance)
    schedule: ScheduleWatch  # expected fires vs runs (/schedule, GET /api/schedule)
    # the instances on a shared database, newest heartbeat first ([] for one instance)
    instances: Callable[[], Awaitable[list[dict[str, Any]]]]
    drills: DrillBoard  # failure drills (/drill, /api/drills)
    # registrations: closures over the parts they wire, built by the composition root
    add_channel: Callable[[str, Channel], None]
    set_approval_notifier: Callable[[Notifier, Closer], None]
    watch_approvals: Callable[[Watcher], None]  # a run here waits for one / got it
    add_attempt_observer: Callable[[AttemptObserver], None]
    add_status_hook: Callable[[str, StatusHook], None]
    add_step_observer: Callable[[Callable[[Step], None]], None]
    # failed and unknown deliveries: /deliveries, the unknown cards and their buttons
    deliveries: Deliveries
    set_unknown_notifier: Callable[[UnknownNotifier], None]
