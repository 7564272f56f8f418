"""Waits with a deadline that never lose a cancellation.

On Python 3.11, ``asyncio.wait_for`` wraps what it waits for in a task and, when a
cancellation meets that task finishing, returns its result and drops the cancellation
(3.12 rebuilt it on ``asyncio.timeout``). The caller then runs on as if never cancelled.
That is how a run's approval wait polled forever after its run was cancelled: psycopg_pool
waits for a free connection with ``wait_for`` (worked around in
``PostgresStore._connection``). ``asyncio.timeout`` counts the cancellations it did not
make and lets them through, so every wait with a deadline here goes through it, and ruff
bans ``asyncio.wait_for`` in core/ and bot/ (TID251) so none comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_set(event: asyncio.Event, timeout_s: float) -> bool:
    """True once ``event`` is set, False when ``timeout_s`` passed without it."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def within(aw: Awaitable[T], timeout_s: float) -> T:
    """What ``aw`` returns; ``TimeoutError`` (``aw`` cancelled) after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        return await aw
