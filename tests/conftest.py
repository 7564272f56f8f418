"""Fixtures shared by every test: no real keys, and a fake LLM server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core.config.models import ProviderConfig
from core.providers import build_provider
from core.providers.base import Provider
from tests.fakes.llm import FakeLLM
from tests.pg import pg_cluster, pg_migrated_url, pg_url  # noqa: F401  (a throwaway PostgreSQL)
from tests.stores import new_location, store, store_engine, store_location  # noqa: F401

PROVIDER_KEY_VARS = (
    "GEMINI_API_KEY",
    "DEEPSEEK_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENCLAW_GATEWAY_TOKEN",
    "TELEGRAM_BOT_TOKEN",
)

ProviderFactory = Callable[..., Provider]


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real keys must never reach a test (or the internet)."""
    for var in PROVIDER_KEY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """A started fake LLM server, closed after the test."""
    async with FakeLLM() as fake:
        yield fake


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that was just bound and closed: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def make_provider(fake_llm: FakeLLM) -> AsyncIterator[ProviderFactory]:
    """Build adapters pointed at ``fake_llm`` (or ``base_url``); all closed after the test."""
    built: list[Provider] = []

    def make(
        api: str,
        *,
        api_key: str | None = "sk-test-key",
        base_url: str | None = None,
        **config: Any,
    ) -> Provider:
        cfg = ProviderConfig(api=api, base_url=base_url or fake_llm.base_url(api), **config)
        provider = build_provider(f"fake-{api}", cfg, api_key)
        built.append(provider)
        return provider

    yield make
    for provider in built:
        await provider.aclose()
