"""OpenClaw core: config, providers, routing, engine, ledger. Knows nothing of Telegram."""

__version__ = "0.1.0"
