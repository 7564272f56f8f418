"""Composition root: settings + config → store, ledger, engine, agents, delivery."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import aiohttp

from core.agents.runner import AgentRunner
from core.agents.runs import Runs
from core.agents.scheduler import Scheduler
from core.agents.sessions import Sessions
from core.agents.state import AgentStates
from core.agents.steps import Step
from core.agents.templating import BUNDLED_TEMPLATES, Templates
from core.cluster.base import OUTBOX, RUNS, Cluster, Solo
from core.cluster.updates import UpdateLog
from core.config.models import Config, split_model_ref
from core.config.settings import Settings
from core.delivery.channels import Channel, LogChannel, SlackChannel, WebhookChannel
from core.delivery.deliveries import Deliveries, UnknownNotifier
from core.delivery.outbox import Outbox
from core.delivery.worker import DeliveryWorker
from core.drills.board import DrillBoard
from core.embedded.supervisor import EmbeddedModel, embedded_models
from core.engine.approvals import ApprovalBroker, Closer, Notifier, Watcher
from core.engine.budget import BudgetGuard
from core.engine.engine import Engine
from core.engine.health import HealthBoard
from core.engine.ledger import Ledger
from core.errors import StoreUnavailable
from core.facade import AttemptObserver, Facade
from core.ops.metrics import Metrics
from core.ops.owners import owner_id
from core.overview import Overview
from core.providers import build_provider
from core.providers.base import Provider
from core.store.base import Store
from core.store.open import open_store
from core.store.path import DbLocation, unwritable

log = logging.getLogger("openclaw.app")


def missing_keys(config: Config, settings: Settings) -> dict[str, str]:
    """Providers whose named API key variable is unset → the reason, with the fix. A
    provider with several keys is missing only when none of them is set: it uses the
    ones that are."""
    out = {}
    for name, p in config.providers.items():
        envs = p.key_envs
        unset = [env for env in p.headers_env.values() if settings.secret(env) is None]
        if envs and all(settings.secret(env) is None for env in envs):
            unset.insert(0, " / ".join(envs))
        if unset:  # a header the upstream needs, sent empty, would only be refused
            several = " / " in unset[0]
            out[name] = (
                f"{unset[0]} {'are' if several else 'is'} not set (add {'one' if several else 'it'}"
                " to .env or the environment)"
            )
    return out


def provider_keys(config: Config, settings: Settings) -> dict[str, dict[str, str]]:
    """Each provider's set keys: variable name → value, in ``api_key_env`` order (the
    unset ones left out)."""
    out: dict[str, dict[str, str]] = {}
    for name, p in config.providers.items():
        values = {env: settings.secret(env) for env in p.key_envs}
        out[name] = {env: v.get_secret_value() for env, v in values.items() if v is not None}
    return out


def _known_secrets(config: Config, settings: Settings) -> list[str]:
    """The secret values this process holds (tokens, provider keys): kept out of what a
    run records of its tool calls."""
    values = [settings.openclaw_gateway_token, settings.telegram_bot_token]
    values += [settings.secret(env) for p in config.providers.values() for env in p.key_envs]
    return [v.get_secret_value() for v in values if v is not None]


def secret_headers(config_headers_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """A provider's ``headers_env`` resolved: header name → the value of its variable (the
    unset ones are left out; :func:`missing_keys` keeps such a provider out of routing)."""
    values = {h: settings.secret(env) for h, env in config_headers_env.items()}
    return {h: v.get_secret_value() for h, v in values.items() if v is not None}


async def open_cluster(store: Store, owner: str, config: Config) -> Cluster:
    """This process among the instances on its database: on PostgreSQL it takes its
    liveness lock now (StoreUnavailable when it cannot), on SQLite it is alone."""
    postgres = sys.modules.get("core.store.postgres")  # loaded only to open such a store
    if postgres is None or not isinstance(store, postgres.PostgresStore):
        return Solo(owner)
    from core.cluster.pg import PgCluster

    cluster = PgCluster(store, owner, config.cluster)
    await cluster.start()
    return cluster


class _Http:
    """One shared aiohttp session for inputs and outgoing channels, opened on first use."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(trust_env=False)
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


@dataclass
class App:
    """Everything a command needs, opened together and closed together."""

    config: Config
    settings: Settings
    store: Store
    ledger: Ledger
    health: HealthBoard
    providers: dict[str, Provider]
    engine: Engine
    metrics: Metrics
    runner: AgentRunner
    outbox: Outbox
    delivery: DeliveryWorker
    scheduler: Scheduler
    approvals: ApprovalBroker
    overview: Overview
    owner: str
    cluster: Cluster
    drills: DrillBoard
    http: _Http = field(default_factory=_Http)
    embedded: dict[str, EmbeddedModel] = field(default_factory=dict)

    @classmethod
    async def open(
        cls,
        config: Config,
        settings: Settings,
        db_path: DbLocation | None = None,
        base_dir: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> App:
        """Open the store (migrations applied), build one client per provider, wire the engine,
        the agent runner and the delivery outbox.

        A provider whose API key variable is unset stays out of routing instead of
        failing at request time. ``base_dir`` (the CLI passes the config file's folder) is
        where relative input files and ``templates/`` are looked up. ``clock`` is the one wall
        clock of everything that stamps or reads time: scheduler, budget guard, runs, runner
        (recovery), sessions, approvals, outbox and overview (tests drive their own).
        """
        location = db_path or settings.db_path()
        owner = owner_id()
        try:
            store = await open_store(location)
        except StoreUnavailable as e:  # refuse to start: work taken now could not be recorded
            raise unwritable(location, str(e)) from None
        try:
            cluster = await open_cluster(store, owner, config)
        except StoreUnavailable as e:
            await store.close()
            raise unwritable(location, str(e)) from None
        health = HealthBoard(config.routing)
        missing = missing_keys(config, settings)
        for ref in config.models:
            prov, _ = split_model_ref(ref)
            if prov in missing:
                health.mark_unavailable(ref, missing[prov])
        providers: dict[str, Provider] = {}
        # provider -> key variable -> the adapter sending it (one pool per provider)
        keyed: dict[str, dict[str, Provider]] = {}
        for name, keys in provider_keys(config, settings).items():
            pcfg = config.providers[name]
            first = next(iter(keys.values()), None)
            pooled = build_provider(name, pcfg, first, secret_headers(pcfg.headers_env, settings))
            values = tuple(keys.values())
            keyed[name] = {env: pooled.with_key(value, values) for env, value in keys.items()}
            providers[name] = next(iter(keyed[name].values()), pooled)
            if not keyed[name]:
                del keyed[name]
        for name, pcfg in config.providers.items():  # shown in the status, never sent
            unset = tuple(env for env in pcfg.key_envs if env not in keyed.get(name, {}))
            if unset:
                health.set_unset_keys(name, unset)
        ledger = Ledger(store, config, clock=clock)
        metrics = Metrics(health, time.monotonic)
        approvals = ApprovalBroker(store, config.approvals, clock=clock)
        outbox_ref: list[Outbox] = []

        def alert_from(source: str) -> Callable[[str], Awaitable[None]]:
            """An alert to ``[alerts] deliver`` through the outbox, from ``source``."""

            async def alert(text: str) -> None:
                if outbox_ref:
                    await outbox_ref[0].enqueue(
                        None,
                        "alert",
                        config.alerts.deliver,
                        {"agent": source, "run_id": None, "status": "alert", "text": text},
                    )

            return alert

        def alert_ids(source: str) -> Callable[[str], Awaitable[list[int]]]:
            """:func:`alert_from` returning the alert's outbox rows (a drill reads them)."""

            async def alert(text: str) -> list[int]:
                if not outbox_ref:
                    return []
                return await outbox_ref[0].enqueue_ids(
                    None,
                    "alert",
                    config.alerts.deliver,
                    {"agent": source, "run_id": None, "status": "alert", "text": text},
                )

            return alert

        drills = DrillBoard(config, store, owner, clock=clock)
        # an approval that reached no admin was decided by the default: say so
        approvals.alerts.append(alert_from("approvals"))
        budget = (
            BudgetGuard(store, config, alert_from("budget"), clock=clock)
            if config.budgets.any
            else None
        )
        engine = Engine(
            config,
            providers,
            health=health,
            ledger=ledger,
            approver=approvals,
            observers=[metrics.observe_attempt],
            budget=budget,
            keyed=keyed,
            # a key out of credit or quota: one alert per key and episode; a breaker that
            # opened: one per model and episode
            alert=alert_ids("billing"),
            breaker_alert=alert_ids("breaker"),
            drills=drills,
        )
        base = base_dir or Path(".")
        # the operator's templates/ (beside the config) first, then the shipped defaults
        templates = Templates(base / "templates", BUNDLED_TEMPLATES)
        outbox = Outbox(store, templates, config.delivery, clock=clock)
        outbox_ref.append(outbox)
        http = _Http()
        runner = AgentRunner(
            config,
            store=store,
            engine=engine,
            runs=Runs(store, clock),
            states=AgentStates(store),
            sessions=Sessions(store, clock),
            outbox=outbox,
            templates=templates,
            http=http,
            owner=owner,
            base_dir=base,
            clock=clock,
            secrets=_known_secrets(config, settings),
        )
        channels: dict[str, Channel] = {
            "log": LogChannel(),
            "slack": SlackChannel(config, settings, http()),
            "webhook": WebhookChannel(config, settings, http()),
        }
        deliveries = Deliveries(outbox, clock)
        # an unknown row no admin's card reached (no bot, Telegram down) is an alert
        deliveries.alert = alert_from("delivery")
        delivery = DeliveryWorker(outbox, channels, owner, deliveries=deliveries)
        # what the other instances on the database need: whose rows are orphans, wake-ups
        runner.runs.alive = outbox.alive = ledger.alive = approvals.alive = cluster.alive
        drills.alive = cluster.alive
        approvals.owner = owner
        store.listen(RUNS, lambda _: runner.queued.set())
        store.listen(OUTBOX, lambda _: outbox.wakeup.set())
        if cluster.shared and not config.concurrency.per_instance:
            runner.cluster_slot = cluster.slot
        scheduler = Scheduler(config, runner, runner.states, store, clock=clock)
        scheduler.watch.alert = alert_from("scheduler")  # a fire that made no run
        embedded = embedded_models(providers)
        overview = Overview(
            config,
            store,
            runner=runner,
            scheduler=scheduler,
            health=health,
            outbox=outbox,
            approvals=approvals,
            embedded=embedded,
            clock=clock,
        )
        if cluster.shared:  # status says which instance leads
            overview.add_status_hook("cluster", cluster.describe)
        return cls(
            config,
            settings,
            store,
            ledger,
            health,
            providers,
            engine,
            metrics,
            runner,
            outbox,
            delivery,
            scheduler,
            approvals,
            overview,
            owner,
            cluster,
            drills,
            http,
            embedded,
        )

    @cached_property
    def facade(self) -> Facade:
        """The narrow door the gateway and the bot get instead of the whole app. Its
        registrations close over the parts they wire (the delivery worker's channels, the
        approval broker, the engine, the overview), not over the app."""
        channels = self.delivery.channels
        approvals = self.approvals
        observers = self.engine.observers
        overview = self.overview

        def add_channel(name: str, channel: Channel) -> None:
            """Deliver outbox rows whose target is ``name:…`` through ``channel``."""
            channels[name] = channel

        def set_approval_notifier(notify: Notifier, close: Closer) -> None:
            """Show pending approvals through ``notify``; update the copies via ``close``."""
            approvals.notifiers.append(notify)
            approvals.closers.append(close)

        def watch_approvals(watch: Watcher) -> None:
            """Tell ``watch`` when a run on this instance waits for an approval, and its
            outcome (on a shared database the leader shows the copies, not this one)."""
            approvals.watchers.append(watch)

        def add_attempt_observer(observer: AttemptObserver) -> None:
            """Call ``observer`` with every attempt the engine records."""
            observers.append(observer)

        step_observers = self.runner.step_observers
        deliveries = self.delivery.deliveries

        def set_unknown_notifier(notify: UnknownNotifier) -> None:
            """Show the admins each delivery whose outcome is unknown through ``notify``."""
            deliveries.notifiers.append(notify)

        def add_step_observer(observer: Callable[[Step], None]) -> None:
            """Call ``observer`` with every tool-loop step a run records."""
            step_observers.append(observer)

        return Facade(
            config=self.config,
            settings=self.settings,
            engine=self.engine,
            budget=self.engine.budget,
            runner=self.runner,
            runs=self.runner.runs,
            steps=self.runner.steps,
            memory=self.runner.memory,
            sessions=self.runner.sessions,
            states=self.runner.states,
            approvals=approvals,
            ledger=self.ledger,
            overview=overview,
            metrics=self.metrics,
            updates=UpdateLog(
                self.store, self.owner, self.runner.clock, shared=self.cluster.shared
            ),
            schedule=self.scheduler.watch,
            instances=self.cluster.instances,
            drills=self.drills,
            add_channel=add_channel,
            set_approval_notifier=set_approval_notifier,
            watch_approvals=watch_approvals,
            add_attempt_observer=add_attempt_observer,
            add_status_hook=overview.add_status_hook,
            add_step_observer=add_step_observer,
            deliveries=deliveries,
            set_unknown_notifier=set_unknown_notifier,
        )

    async def start_embedded(self) -> None:
        """Start the embedded model processes (for commands that call models). One that
        fails to start is logged and left down: its tier fails over like any dead model."""
        results = await asyncio.gather(
            *(m.start() for m in self.embedded.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("%s", result)

    async def close(self) -> None:
        """Stop embedded models; close every provider client, the HTTP session, the store."""
        await self.drills.close()  # held requests released before the clients close
        for model in self.embedded.values():
            await model.stop()
        for p in self.providers.values():
            await p.aclose()
        await self.http.close()
        await self.approvals.drain()  # copies still being sent or closed, bounded
        await self.cluster.leave()
        await self.store.close()
