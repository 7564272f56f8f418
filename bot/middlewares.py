"""Access control: updates from users on neither list are dropped, silently."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User

from core.config import TelegramConfig

log = logging.getLogger("openclaw.bot")


class AccessMiddleware(BaseMiddleware):
    """Outer middleware on every update: allowlist check, and ``is_admin`` for handlers."""

    def __init__(self, config: TelegramConfig) -> None:
        self.admins = set(config.admins)
        self.allowed = self.admins | set(config.allowed_users)
        self._logged: set[int] = set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.id not in self.allowed:
            if user is not None and user.id not in self._logged:  # once per user
                self._logged.add(user.id)
                log.warning(
                    "ignoring Telegram user %s (@%s): not in admins or allowed_users",
                    user.id,
                    user.username,
                )
            return None
        data["is_admin"] = user.id in self.admins
        return await handler(event, data)
