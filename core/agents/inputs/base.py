"""What every input kind shares: its error, the helpers' private reason, bounded reads,
and gathering several at once that stops at the first failure."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from core.errors import OpenClawError

T = TypeVar("T")
_CHUNK_BYTES = 64 * 1024


class InputError(OpenClawError):
    """An input could not be gathered; ``str(e)`` is ``input <name>: <reason>``."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"input {name}: {message}")


class _Failure(Exception):
    """An expected failure of one fetch; gather_one turns it into an InputError."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def _all_or_first_error(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on the first exception cancel (and await) the rest, then raise it.

    Unlike asyncio.gather this leaves nothing running behind a failure, and unlike TaskGroup
    it raises the error itself rather than an ExceptionGroup.
    """
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        pending: set[asyncio.Task[T]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:  # config order breaks ties between failures seen together
                error = task.exception() if task in done else None
                if error is not None:
                    raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [t.result() for t in tasks]
