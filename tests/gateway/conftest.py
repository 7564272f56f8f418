"""A running gateway in front of the fake LLM server, on 127.0.0.1 with a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from core.app import App
from core.config.settings import Settings
from core.gateway import Gateway
from core.gateway.limits import Limits
from core.store.path import DbLocation
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM
from tests.stores import NewLocation

TOKEN = "test-gateway-token-0123456789"


@dataclass
class Running:
    app: App
    gateway: Gateway
    fake: FakeLLM
    location: DbLocation  # the app's database

    @property
    def url(self) -> str:
        return self.gateway.url

    def http(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)

    async def rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.app.store.fetchall("SELECT * FROM attempts")]


GatewayFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_gateway(
    fake_llm: FakeLLM, new_location: NewLocation
) -> AsyncIterator[GatewayFactory]:
    started: list[Running] = []

    async def start(
        urls: dict[str, str] | None = None,
        settings: Settings | None = None,
        port: int = 0,
        limits: Limits | None = None,
        **overrides: Any,
    ) -> Running:
        base = pyramid_urls(fake_llm.base_url) | (urls or {})
        cfg = make_config(base, **overrides)
        settings = settings or Settings(_env_file=None)  # type: ignore[call-arg]
        location = new_location()
        app = await App.open(cfg, settings, location)
        gw = Gateway(app.facade, TOKEN, "127.0.0.1", port, limits=limits)
        try:
            await gw.start()
        except BaseException:
            await app.close()
            raise
        running = Running(app, gw, fake_llm, location)
        started.append(running)
        return running

    yield start
    for r in started:
        await r.gateway.stop()
        await r.app.close()


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> Running:
    return await start_gateway()
