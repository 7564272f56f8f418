"""Config builders for tests: a small pyramid pointed at loopback servers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.config.load import parse_config
from core.config.models import Config

# the pyramid's providers and the wire format each speaks
PYRAMID_APIS = {
    "local": "ollama",
    "flash": "google-generative-ai",
    "deep": "openai-completions",
    "deep2": "openai-completions",
    "opus": "anthropic-messages",
}


def pyramid_urls(base_url: Callable[[str], str]) -> dict[str, str]:
    """Each pyramid provider's URL on one fake server (``FakeLLM.base_url``)."""
    return {name: base_url(api) for name, api in PYRAMID_APIS.items()}


def pyramid(base_urls: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """A four-tier config document. ``base_urls`` maps provider name → URL.

    Providers: local (ollama, tier 0, thinking model), flash (google, tier 1),
    deep and deep2 (openai-completions, tier 2), opus (anthropic, tier 3, approval).
    """
    urls = {
        "local": "http://127.0.0.1:9",
        "flash": "http://127.0.0.1:9/v1beta",
        "deep": "http://127.0.0.1:9/v1",
        "deep2": "http://127.0.0.1:9/v1",
        "opus": "http://127.0.0.1:9",
    } | (base_urls or {})
    doc: dict[str, Any] = {
        "routing": {"default_task": "chat"},
        "approvals": {"default": "approve", "timeout_s": 5},
        "providers": {
            name: {"api": api, "base_url": urls[name], "timeout_s": 1}
            for name, api in PYRAMID_APIS.items()
        },
        "models": {
            "local/qwen3:14b": {"reasoning": True, "max_tokens": 1024},
            "flash/gemini-flash": {"max_tokens": 512, "cost": {"input": 0.3, "output": 2.5}},
            "deep/deepseek-chat": {"max_tokens": 512, "cost": {"input": 0.28, "output": 0.42}},
            "deep2/deepseek-backup": {"max_tokens": 512, "cost": {"input": 0.5, "output": 1.0}},
            "opus/claude-opus": {"max_tokens": 512, "cost": {"input": 5.0, "output": 25.0}},
        },
        "tiers": [
            {"level": 0, "models": ["local/qwen3:14b"]},
            {"level": 1, "models": ["flash/gemini-flash"]},
            {"level": 2, "models": ["deep/deepseek-chat", "deep2/deepseek-backup"]},
            {"level": 3, "models": ["opus/claude-opus"], "requires_approval": True},
        ],
        "tasks": {
            "chat": 0,
            "classify": 0,
            "extract": {"tier": 0, "json": True, "json_keys": ["name"]},
            "summarize": {"tier": 1, "min_chars": 20},
            "analysis": 2,
            "strategy": 3,
        },
    }
    for key, value in overrides.items():
        doc[key] = value
    return doc


def make_config(base_urls: dict[str, str] | None = None, **overrides: Any) -> Config:
    return parse_config(pyramid(base_urls, **overrides), warnings=[])
