"""Health probes: serve asks each provider for its model list every ``probe_interval_s``.

A provider that does not answer opens its models' breakers before a request has to
find out; one that answers again closes breakers its outage opened. Each result keeps
the advice `openclaw doctor` would give, for the start-up summary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from core.config.models import Config, split_model_ref
from core.engine.health import HealthBoard
from core.errors import ProviderError
from core.ops.doctor import advice
from core.providers.base import Provider
from core.waits import wait_set

log = logging.getLogger("openclaw.probes")
PROBE_TIMEOUT_S = 10.0


class Prober:
    """Probes every provider with a key; remembers the last verdict per provider."""

    def __init__(
        self,
        config: Config,
        providers: dict[str, Provider],
        health: HealthBoard,
        missing_keys: dict[str, str],
        drilled: Callable[[str], bool] = lambda ref: False,
    ) -> None:
        self.config = config
        # a model under a failure drill: its breaker is the drill's to show, not the probe's
        self.drilled = drilled
        self.providers = providers
        self.health = health
        self.missing = missing_keys
        self.last: dict[str, str] = {}  # provider → "ok" or what to do about it

    def _refs(self, provider: str) -> list[str]:
        return [ref for ref in self.config.models if split_model_ref(ref)[0] == provider]

    async def probe(self, name: str) -> str:
        """Probe one provider and apply the verdict to its models' breakers."""
        if name in self.missing:
            self.last[name] = f"set {self.missing[name].split(' ')[0]} to enable it"
            return self.last[name]
        provider = self.providers[name]
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await provider.list_models()
        except ProviderError as e:
            if e.kind in ("not_found", "malformed"):
                # it answered HTTP: up, just without a model list (many small servers)
                self.last[name] = "ok"
                return "ok"
            return self._down(name, provider, e, t0)
        except TimeoutError:
            return self._down(name, provider, ProviderError("timeout", name, ""), t0)
        now = time.monotonic()
        latency = (time.perf_counter() - t0) * 1000
        for ref in self._refs(name):
            # an outage the probe saw is over; fatal errors stay (they need a config fix)
            if (
                self.health.state(ref, now) != "closed"
                and self.health.last_outcome(ref) == "unavailable"
                and not self.drilled(ref)
            ):
                self.health.success(ref, latency, now)
        self.last[name] = "ok"
        return "ok"

    def _down(self, name: str, provider: Provider, err: ProviderError, t0: float) -> str:
        """The provider is down (or refuses the key): open its breakers, keep the advice."""
        latency = (time.perf_counter() - t0) * 1000
        now = time.monotonic()
        for ref in self._refs(name):
            if self.health.state(ref, now) == "closed":  # open it; don't stretch it
                self.health.failure(ref, err, latency, now)
        self.last[name] = advice(err, provider, self.config.providers[name].key_envs)
        if provider.api == "ollama":
            pulls = " and ".join(f"`ollama pull {split_model_ref(r)[1]}`" for r in self._refs(name))
            self.last[name] += f"; then {pulls}" if pulls else ""
        return self.last[name]

    async def probe_all(self) -> dict[str, str]:
        """Probe every provider at once."""
        names = list(self.providers)
        results = await asyncio.gather(*(self.probe(n) for n in names), return_exceptions=True)
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                log.error("probing %s failed: %s", name, result)
        return dict(self.last)

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every ``probe_interval_s`` until stopped."""
        interval = self.config.routing.probe_interval_s
        if interval <= 0:
            return
        while not stop.is_set():
            if not await wait_set(stop, interval):
                await self.probe_all()
