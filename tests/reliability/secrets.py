"""Secret values the reliability suite configures, so its logs can be scanned for them.

Use these (not ad-hoc strings) wherever a reliability test sets a token or a key: the
suite's conftest fails the run if any of them shows up in a log line it captured.
"""

from __future__ import annotations

GATEWAY_TOKEN = "oc-gw-RELIABILITY-7f3a9c1e5b2d4806"
TELEGRAM_TOKEN = "123456:RELIABILITY-tg-Secret-9d8c7b6a5f4e"
PROVIDER_KEYS = {
    "GEMINI_API_KEY": "AIza-RELIABILITY-gemini-0a1b2c3d4e5f",
    "DEEPSEEK_API_KEY": "sk-RELIABILITY-deepseek-6a7b8c9d0e1f",
    "ANTHROPIC_API_KEY": "sk-ant-RELIABILITY-2b3c4d5e6f7a",
}
WEBHOOK_SECRET = "RELIABILITY-webhook-secret-3e4f5a6b"
# in an OPENCLAW_DB URL (the test cluster trusts local connections, so any password works)
DB_PASSWORD = "RELIABILITY-pg-password-8c9d0e1f"

ALL = (GATEWAY_TOKEN, TELEGRAM_TOKEN, WEBHOOK_SECRET, DB_PASSWORD, *PROVIDER_KEYS.values())
