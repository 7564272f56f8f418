"""The send limiter: per-chat, per-group and global flood limits on a simulated clock."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from bot.limiter import AnswerWindow, SendLimiter, wait_turn

T0 = 1000.0


def send_times(limiter: SendLimiter, sends: list[tuple[int, float]]) -> dict[int, list[float]]:
    """Reserve a slot for each (chat, now) in order; the send times, chat by chat."""
    times: dict[int, list[float]] = {}
    for chat_id, now in sends:
        delay = limiter.reserve(chat_id, now)
        assert delay >= 0
        times.setdefault(chat_id, []).append(now + delay)
    return times


def most_in_a_window(times: list[float], window_s: float) -> int:
    """The most sends in any half-open window [t, t + window_s)."""
    ordered = sorted(times)
    return max(sum(1 for u in ordered if t <= u < t + window_s) for t in ordered)


def assert_limits(limiter: SendLimiter, times: dict[int, list[float]]) -> None:
    for chat_id, chat_times in times.items():
        for earlier, later in itertools.pairwise(chat_times):
            assert later >= earlier + limiter.per_chat_interval_s
        if chat_id < 0:
            assert most_in_a_window(chat_times, 60.0) <= limiter.group_per_minute
    everything = [t for ts in times.values() for t in ts]
    assert most_in_a_window(everything, 1.0) <= max(1, int(limiter.global_per_s))


def test_a_first_send_goes_at_once() -> None:
    assert SendLimiter().reserve(42, T0) == 0.0


def test_a_private_chat_gets_one_message_a_second() -> None:
    limiter = SendLimiter()
    times = send_times(limiter, [(42, T0)] * 100)[42]
    assert times == [T0 + i for i in range(100)]
    assert_limits(limiter, {42: times})


def test_a_group_gets_twenty_a_minute() -> None:
    limiter = SendLimiter()
    times = send_times(limiter, [(-100, T0)] * 100)
    assert_limits(limiter, times)
    # twenty a second apart, then a wait until the first leaves the window
    assert times[-100][:21] == [T0 + i for i in range(20)] + [T0 + 60]
    assert most_in_a_window(times[-100], 60.0) == 20


def test_fifty_chats_stay_under_thirty_a_second_together() -> None:
    limiter = SendLimiter()
    sends = [(chat_id, T0) for _ in range(3) for chat_id in range(1, 51)]
    times = send_times(limiter, sends)
    assert_limits(limiter, times)
    everything = sorted(t for ts in times.values() for t in ts)
    assert everything[:30] == [T0] * 30  # a full second's worth goes at once
    assert everything[30] == T0 + 1


@pytest.mark.parametrize(
    ("per_chat_interval_s", "group_per_minute", "global_per_s"),
    [(1.0, 20, 30.0), (0.0, 20, 30.0), (3.0, 5, 10.0), (1.0, 20, 2.5)],
)
@pytest.mark.parametrize("seed", range(20))
def test_random_traffic_keeps_every_limit(
    seed: int, per_chat_interval_s: float, group_per_minute: int, global_per_s: float
) -> None:
    rng = random.Random(seed)
    limiter = SendLimiter(per_chat_interval_s, group_per_minute, global_per_s)
    chats = [rng.randint(1, 10**9) for _ in range(8)] + [-rng.randint(1, 10**12) for _ in range(4)]
    now = T0
    times: dict[int, list[float]] = {}
    for _ in range(300):
        now += rng.choice([0.0, 0.0, 0.01, 0.1, 0.5, 2.0])
        chat_id = rng.choice(chats)
        if rng.random() < 0.05:  # a 429 pushes this chat's slots past later ones of others
            limiter.penalize(chat_id, rng.choice([1.0, 5.0, 30.0]), now)
        delay = limiter.reserve(chat_id, now)
        assert delay >= 0
        times.setdefault(chat_id, []).append(now + delay)
    assert_limits(limiter, times)


@pytest.mark.parametrize(("global_per_s", "gap_s"), [(0.5, 2.0), (0.25, 4.0)])
def test_a_global_rate_under_one_spaces_sends_out(global_per_s: float, gap_s: float) -> None:
    limiter = SendLimiter(global_per_s=global_per_s)
    times = [T0 + limiter.reserve(chat_id, T0) for chat_id in range(1, 5)]
    assert times == [T0 + i * gap_s for i in range(4)]


@pytest.mark.parametrize(
    ("retry_after_s", "then", "expected_delay"),
    [
        (5.0, T0, 5.0),  # the next slot waits out the 429
        (5.0, T0 + 2, 3.0),
        (5.0, T0 + 7, 0.0),  # over: back to the usual pace
        (0.5, T0, 1.0),  # shorter than the chat's own interval: that one still holds
        (-1.0, T0, 1.0),  # nonsense from the server changes nothing
    ],
)
def test_penalize_pushes_the_next_slot(
    retry_after_s: float, then: float, expected_delay: float
) -> None:
    limiter = SendLimiter()
    assert limiter.reserve(42, T0) == 0.0
    limiter.penalize(42, retry_after_s, T0)
    assert limiter.reserve(42, then) == pytest.approx(expected_delay)
    assert limiter.reserve(7, T0) == 0.0  # other chats are not held up


def test_a_penalty_before_any_send_holds_too() -> None:
    limiter = SendLimiter()
    limiter.penalize(-100, 30.0, T0)
    assert limiter.reserve(-100, T0 + 1) == 29.0


def test_settle_spaces_the_next_slot_from_the_answer() -> None:
    limiter = SendLimiter()
    assert limiter.reserve(42, T0) == 0.0
    limiter.settle(42, T0, T0 + 0.3)  # answered 0.3 s on: it may have arrived that late
    assert limiter.reserve(42, T0 + 0.3) == pytest.approx(1.0)


def test_settle_takes_the_slot_reserve_slot_returned() -> None:
    limiter = SendLimiter(global_per_s=1.0)
    now = T0 + 0.1  # slots that are not round numbers: matched exactly, not recomputed
    first = limiter.reserve_slot(42, now)
    second = limiter.reserve_slot(42, now)
    assert (first, second) == (now, now + 1.0)
    limiter.settle(42, second, second + 0.37)
    assert limiter.reserve_slot(7, second) == second + 0.37 + 1.0  # global, from the answer
    assert limiter.reserve_slot(42, second) >= second + 0.37 + 1.0  # per chat, too


def test_settle_moves_the_global_slot_too() -> None:
    limiter = SendLimiter(global_per_s=1.0)
    assert limiter.reserve(1, T0) == 0.0
    limiter.settle(1, T0, T0 + 0.4)
    assert limiter.reserve(2, T0 + 0.4) == pytest.approx(1.0)  # a window after the answer


def test_settle_keeps_a_later_reservation_of_the_chat() -> None:
    limiter = SendLimiter()
    limiter.reserve(42, T0)
    assert limiter.reserve(42, T0) == 1.0
    limiter.settle(42, T0, T0 + 0.5)  # the slot booked at T0 + 1 stays; the next follows it
    assert limiter.reserve(42, T0 + 0.5) == pytest.approx(1.5)


def test_an_early_or_unknown_settle_changes_nothing() -> None:
    limiter = SendLimiter()
    limiter.reserve(42, T0)
    limiter.settle(42, T0, T0)
    limiter.settle(7, T0 - 5, T0)  # no such slot, no such chat
    assert limiter.reserve(42, T0) == 1.0
    assert limiter.tracked_chats == 1


async def test_answer_window_frees_a_permit_a_window_after_the_answer() -> None:
    window = AnswerWindow(2, 0.2)
    answered: list[float] = []
    started: list[float] = []

    async def send() -> None:
        async with window.send():
            started.append(time.monotonic())
            await asyncio.sleep(0.05)  # the round trip
            answered.append(time.monotonic())

    await asyncio.gather(*(send() for _ in range(3)))
    assert started[1] - started[0] < 0.1  # two go at once
    assert started[2] >= answered[0] + 0.2 - 0.005  # the third waits for a permit


def test_answer_window_checks_its_count() -> None:
    with pytest.raises(ValueError, match="count must be >= 1"):
        AnswerWindow(0, 1.0)


def test_old_chats_are_forgotten() -> None:
    limiter = SendLimiter()
    for chat_id in range(1, 1001):
        limiter.reserve(chat_id, T0 + chat_id / 100)
    assert limiter.tracked_chats == 1000
    limiter.penalize(-5, 600.0, T0 + 10)
    limiter.reserve(1, T0 + 200)
    # the one still under a penalty is kept, and it still holds
    assert limiter.tracked_chats == 2
    assert limiter.reserve(-5, T0 + 300) == pytest.approx(310.0)
    limiter.reserve(2, T0 + 1000)
    assert limiter.tracked_chats == 1


def test_forgetting_keeps_the_limits() -> None:
    """Busy chats survive the sweep: a minute-old group slot still counts."""
    limiter = SendLimiter()
    times = send_times(limiter, [(-100, T0 + i * 10) for i in range(30)])
    assert_limits(limiter, times)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_chat_interval_s": -1.0}, "per_chat_interval_s"),
        ({"group_per_minute": 0}, "group_per_minute"),
        ({"global_per_s": 0.0}, "global_per_s"),
    ],
)
def test_settings_are_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SendLimiter(**kwargs)  # type: ignore[arg-type]


async def test_wait_turn_sleeps_for_the_reserved_delay() -> None:
    limiter = SendLimiter()
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    slots = [await wait_turn(limiter, 42, clock=lambda: T0, sleep=sleep) for _ in range(3)]
    assert slept == [1.0, 2.0]  # the first goes at once, without sleeping
    assert slots == [T0, T0 + 1.0, T0 + 2.0]  # what settle() is told about


async def test_wait_turn_with_the_real_clock() -> None:
    limiter = SendLimiter(per_chat_interval_s=0.2)
    await wait_turn(limiter, 1)
    await wait_turn(limiter, 1)
    # both slots were booked on the real clock: the next one is a whole interval later
    assert limiter.reserve(1, time.monotonic()) > 0
