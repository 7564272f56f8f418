"""The Telegram interface to the OpenClaw core (aiogram 3)."""
