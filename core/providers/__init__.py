"""Provider adapters, one module per wire format, and the factory that builds them."""

from __future__ import annotations

import httpx

from core.config import ProviderConfig
from core.providers.anthropic_messages import AnthropicMessages
from core.providers.base import Provider
from core.providers.google_generative_ai import GoogleGenerativeAI
from core.providers.ollama import Ollama
from core.providers.openai_completions import OpenAICompletions

PROVIDER_CLASSES: dict[str, type[Provider]] = {
    cls.api: cls for cls in (OpenAICompletions, AnthropicMessages, GoogleGenerativeAI, Ollama)
}

__all__ = ["PROVIDER_CLASSES", "Provider", "build_provider"]


def build_provider(name: str, config: ProviderConfig, api_key: str | None = None) -> Provider:
    """The adapter for ``config.api``, with its own pooled HTTP client.

    Connect timeout is ``connect_timeout_s``; read, write and pool waits are
    ``timeout_s``. ``config.headers`` go on every request. Close it with ``aclose()``.
    """
    cls = PROVIDER_CLASSES[config.api]  # config validation guarantees a known api
    client = httpx.AsyncClient(
        base_url=config.resolved_base_url,
        timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
        headers=config.headers,
    )
    return cls(name, config, client=client, api_key=api_key)
