"""Waiting for something to happen, with a deadline: the bound fails a test that hangs,
it never paces one (the check returns as soon as it holds)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.005  # between checks; a check is a dict lookup or one SQLite read


async def until(
    check: Callable[[], T | Awaitable[T]],
    timeout_s: float = 10.0,
    what: str | Callable[[], str] = "the condition",
    every_s: float = POLL_S,
) -> T:
    """The first truthy value of ``check()`` (sync or async), checked every ``every_s``
    until ``timeout_s``; else AssertionError naming ``what`` (a callable is asked then, to
    describe the state that did not settle)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        got = check()
        value: T = await got if inspect.isawaitable(got) else got  # type: ignore[assignment]
        if value:
            return value
        if loop.time() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"{said}: not met within {timeout_s:g} s (last: {value!r})")
        await asyncio.sleep(every_s)
