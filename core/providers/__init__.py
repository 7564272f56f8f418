"""Provider adapters, one module per wire format, and the factory that builds them."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from core.config.models import ProviderConfig
from core.providers.anthropic_messages import AnthropicMessages
from core.providers.base import Provider
from core.providers.google_generative_ai import GoogleGenerativeAI
from core.providers.ollama import Ollama
from core.providers.openai_completions import OpenAICompletions

PROVIDER_CLASSES: dict[str, type[Provider]] = {
    cls.api: cls for cls in (OpenAICompletions, AnthropicMessages, GoogleGenerativeAI, Ollama)
}

__all__ = ["PROVIDER_CLASSES", "Provider", "build_provider"]


def build_provider(
    name: str,
    config: ProviderConfig,
    api_key: str | None = None,
    secret_headers: Mapping[str, str] | None = None,
) -> Provider:
    """The adapter for ``config.api``, with its own pooled HTTP client.

    aiohttp's client, not httpx: measured on a loopback upstream it costs 0.23 ms
    per call against httpx's 0.48 ms, and aiohttp is here anyway (it serves the
    gateway). TCP connect timeout is ``connect_timeout_s``; waiting for a pooled
    connection and each read are bounded by ``timeout_s``. ``config.headers`` go on
    every request, and so do ``secret_headers`` (the values ``headers_env`` names, which,
    like the key, are redacted from errors); proxies from the environment are not used.
    The session opens on the first call; close it with ``aclose()``.
    """
    cls = PROVIDER_CLASSES[config.api]  # config validation guarantees a known api

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100),
            headers=config.headers,
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=config.timeout_s,
                sock_connect=config.connect_timeout_s,
                sock_read=config.timeout_s,
            ),
            trust_env=False,
        )

    return cls(name, config, client=session, api_key=api_key, secret_headers=secret_headers)
