"""Composition root: settings + config → store, ledger, health, providers, engine."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from core.config import Config, split_model_ref
from core.engine import Engine
from core.health import HealthBoard
from core.ledger import Ledger
from core.metrics import Metrics
from core.providers import build_provider
from core.providers.base import Provider
from core.settings import Settings
from core.store import Store

log = logging.getLogger("openclaw.app")


def missing_keys(config: Config, settings: Settings) -> dict[str, str]:
    """Providers whose named API key variable is unset → the reason, with the fix."""
    out = {}
    for name, p in config.providers.items():
        if p.api_key_env and settings.secret(p.api_key_env) is None:
            out[name] = f"{p.api_key_env} is not set (add it to .env or the environment)"
    return out


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

    @classmethod
    async def open(cls, config: Config, settings: Settings, db_path: Path | None = None) -> App:
        """Open the store (migrations applied), build one client per provider, wire the engine.

        A provider whose API key variable is unset stays out of routing instead of
        failing at request time.
        """
        store = await Store.open(db_path or settings.openclaw_db)
        health = HealthBoard(config.routing)
        missing = missing_keys(config, settings)
        for ref in config.models:
            prov, _ = split_model_ref(ref)
            if prov in missing:
                health.mark_unavailable(ref, missing[prov])
        providers: dict[str, Provider] = {}
        for name, pcfg in config.providers.items():
            key = settings.secret(pcfg.api_key_env) if pcfg.api_key_env else None
            providers[name] = build_provider(name, pcfg, key.get_secret_value() if key else None)
        ledger = Ledger(store, config)
        metrics = Metrics(health, time.monotonic)
        engine = Engine(
            config, providers, health=health, ledger=ledger, observers=[metrics.observe_attempt]
        )
        return cls(config, settings, store, ledger, health, providers, engine, metrics)

    async def close(self) -> None:
        """Close every provider client and the store."""
        for p in self.providers.values():
            await p.aclose()
        await self.store.close()
