"""Telegram updates taken, by ``update_id``: behind a load balancer a redelivered webhook
update may reach another instance, which must answer 200 without handling it a second
time (the record commits before the 200 goes out). Polling on a shared database records
them too: a leader frozen mid-getUpdates and replaced may wake with an answer the new
leader also got."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from core.store.base import Store
from core.store.times import utcnow_iso

# Telegram keeps an unconfirmed update for 24 hours: a record older than that cannot matter
KEEP = timedelta(hours=24)


class UpdateLog:
    """Which updates some instance already took."""

    def __init__(
        self,
        store: Store,
        owner: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shared: bool = False,
    ) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock
        self.shared = shared  # other instances may take updates too (a shared database)

    async def first_time(self, update_id: int) -> bool:
        """Record ``update_id``; True when no instance had taken it before (handle it),
        False for a redelivery (answer 200 and drop it). Raises StoreUnavailable when it
        cannot be recorded: the caller answers 503 so that Telegram delivers it again."""
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                "INSERT INTO telegram_updates (update_id, received_at, owner) VALUES (?, ?, ?)"
                " ON CONFLICT (update_id) DO NOTHING RETURNING update_id",
                (update_id, utcnow_iso(self.clock()), self.owner),
            )
        return bool(rows)

    async def prune(self) -> int:
        """Forget records Telegram can no longer redeliver; returns how many."""
        cutoff = utcnow_iso(self.clock() - KEEP)
        async with self.store.transaction() as tx:
            return await tx.execute("DELETE FROM telegram_updates WHERE received_at < ?", (cutoff,))
