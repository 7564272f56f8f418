"""core.waits: deadlines that never lose a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from core.waits import wait_set, within


async def test_wait_set_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 10) is True
    assert await wait_set(event, 0) is True  # already set: no wait at all


async def test_within_returns_or_times_out_and_cancels() -> None:
    assert await within(asyncio.sleep(0, "x"), 1) == "x"
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        await within(slow(), 0.01)
    assert cancelled.is_set()


@pytest.mark.parametrize("at", [0.0, 0.0005, 0.001, 0.0015, 0.002])
async def test_a_loop_of_short_waits_ends_when_cancelled_even_as_a_wait_expires(at: float) -> None:
    """The shape that hung a run's approval wait: a loop that waits again on timeout. A cancel
    arriving around the moment a wait expires must end it, every time."""
    event = asyncio.Event()

    async def forever() -> None:
        while True:
            await wait_set(event, 0.001)

    for _ in range(40):
        task = asyncio.create_task(forever())
        await asyncio.sleep(at)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the cancellation was lost"
        assert task.cancelled()
