"""Pacing Telegram sends under the Bot API's flood limits, with the clock passed in.

Telegram allows about one message a second to one chat, twenty a minute to one group
or channel, and thirty a second across all chats; going over earns a 429 with a
``retry_after``. :class:`SendLimiter` hands out send slots in the order asked for:
each call reserves the earliest moment that keeps every limit and returns how long
to wait for it, so concurrent senders queue up instead of racing. Telegram counts a
send when it arrives, which may be later than its slot: :meth:`SendLimiter.settle` and
:class:`AnswerWindow` keep the limits from the answers, which come after the arrivals.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

GROUP_WINDOW_S = 60.0
# State a minute old can no longer constrain a slot (unless the per-chat interval is longer).
_FORGET_AFTER_S = 60.0


@dataclass(slots=True)
class _ChatState:
    last_slot: float = -math.inf
    blocked_until: float = -math.inf
    # a group's latest slots, as many as it may have in one window
    recent: deque[float] = field(default_factory=deque)


class SendLimiter:
    """Reserves send slots so that no Telegram flood limit is crossed.

    A private chat (``chat_id >= 0``) gets one message per ``per_chat_interval_s``; a
    group or channel (``chat_id < 0``) also at most ``group_per_minute`` in any 60 s;
    all chats together at most ``global_per_s`` in any second. Pure: every method takes
    ``now`` (seconds on a monotonic clock) instead of reading one.
    """

    def __init__(
        self,
        per_chat_interval_s: float = 1.0,
        group_per_minute: int = 20,
        global_per_s: float = 30.0,
    ) -> None:
        if per_chat_interval_s < 0:
            raise ValueError(f"per_chat_interval_s must be >= 0, got {per_chat_interval_s}")
        if group_per_minute < 1:
            raise ValueError(f"group_per_minute must be >= 1, got {group_per_minute}")
        if global_per_s <= 0:
            raise ValueError(f"global_per_s must be > 0, got {global_per_s}")
        self.per_chat_interval_s = per_chat_interval_s
        self.group_per_minute = group_per_minute
        self.global_per_s = global_per_s
        # N sends per window, with N whole: a rate under one a second becomes one send
        # per 1/rate seconds; a fractional rate above one rounds down
        self._global_count = max(1, math.floor(global_per_s))
        self._global_window_s = max(1.0, self._global_count / global_per_s)
        self._global_slots: list[float] = []  # sorted; a later slot may be reserved first
        self._chats: dict[int, _ChatState] = {}
        self._forget_after_s = max(_FORGET_AFTER_S, per_chat_interval_s)
        self._next_sweep = -math.inf

    @property
    def global_count(self) -> int:
        """Sends allowed in one global window."""
        return self._global_count

    @property
    def global_window_s(self) -> float:
        """The global window: ``global_count`` sends in any this many seconds."""
        return self._global_window_s

    @property
    def tracked_chats(self) -> int:
        """How many chats the limiter holds state for: those active in the last minute or two."""
        return len(self._chats)

    def reserve(self, chat_id: int, now: float) -> float:
        """Reserve the next send slot for ``chat_id``; return the seconds to wait for it (>= 0)."""
        return self.reserve_slot(chat_id, now) - now

    def reserve_slot(self, chat_id: int, now: float) -> float:
        """Reserve the next send slot for ``chat_id``; return the slot itself (>= ``now``),
        the value :meth:`settle` is given back."""
        self._forget(now)
        chat = self._chats.setdefault(chat_id, _ChatState())
        earliest = max(now, chat.last_slot + self.per_chat_interval_s, chat.blocked_until)
        if chat_id < 0 and len(chat.recent) >= self.group_per_minute:
            # the slot and the group's last N-1 must not share a window with an Nth
            earliest = max(earliest, chat.recent[-self.group_per_minute] + GROUP_WINDOW_S)
        slot = self._earliest_global(earliest)
        chat.last_slot = slot
        if chat_id < 0:
            chat.recent.append(slot)
            while len(chat.recent) > self.group_per_minute:
                chat.recent.popleft()
        bisect.insort(self._global_slots, slot)
        return slot

    def settle(self, chat_id: int, slot: float, now: float) -> None:
        """Record that the send reserved for ``slot`` was answered at ``now``.

        Telegram counts a send when it arrives, somewhere between the slot and the answer;
        a send held up on the way arrives late and would crowd the next window. From the
        answer on, limits are kept from ``now`` instead, which is never too early. Only a
        chat's latest slot moves: a later one reserved meanwhile was spaced from the slot.
        """
        if now <= slot:
            return
        slots = self._global_slots
        at = bisect.bisect_left(slots, slot)
        if at < len(slots) and slots[at] == slot:
            del slots[at]
            bisect.insort(slots, now)
        chat = self._chats.get(chat_id)
        if chat is None or chat.last_slot != slot:
            return
        chat.last_slot = now
        if chat.recent and chat.recent[-1] == slot:
            chat.recent[-1] = now

    def penalize(self, chat_id: int, retry_after_s: float, now: float) -> None:
        """Record a 429 for ``chat_id``: it gets no slot before ``now + retry_after_s``."""
        chat = self._chats.setdefault(chat_id, _ChatState())
        chat.blocked_until = max(chat.blocked_until, now + max(0.0, retry_after_s))

    def _earliest_global(self, t: float) -> float:
        """The first moment >= ``t`` that no full global window already covers."""
        slots, count, window = self._global_slots, self._global_count, self._global_window_s
        while True:
            # the windows that could hold t are spanned by `count` neighbouring slots
            # around its place; t must sit a whole window away from each such group
            at = bisect.bisect_right(slots, t)
            later = t
            for first in range(max(0, at - count), min(at, len(slots) - count) + 1):
                group_end = max(slots[first + count - 1], t)
                if group_end < min(slots[first], t) + window:
                    later = max(later, slots[first] + window)
            if later == t:
                return t
            t = later

    def _forget(self, now: float) -> None:
        """Drop slots and chats too old to constrain a slot at ``now`` or later."""
        slots = self._global_slots
        expired = 0
        while expired < len(slots) and slots[expired] + self._global_window_s <= now:
            expired += 1
        del slots[:expired]
        if now < self._next_sweep:
            return
        self._next_sweep = now + _FORGET_AFTER_S
        stale = [
            chat_id
            for chat_id, chat in self._chats.items()
            if chat.last_slot + self._forget_after_s <= now and chat.blocked_until <= now
        ]
        for chat_id in stale:
            del self._chats[chat_id]


class AnswerWindow:
    """At most ``count`` sends in any ``window_s`` as the server counts them, however late
    each one arrives.

    Telegram counts a send when it arrives, which may be any time until its answer comes
    back, so slots booked ahead cannot promise that on their own. Here a send holds one of
    ``count`` permits from before it leaves until ``window_s`` after its answer: two sends
    on one permit arrive at least ``window_s`` apart, so no window holds ``count + 1``.
    """

    def __init__(self, count: int, window_s: float) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.window_s = window_s
        self._free = asyncio.Semaphore(count)

    @asynccontextmanager
    async def send(self) -> AsyncIterator[None]:
        """Hold a permit around one send; it comes free ``window_s`` after the answer."""
        await self._free.acquire()
        try:
            yield
        finally:
            asyncio.get_running_loop().call_later(self.window_s, self._free.release)


async def wait_turn(
    limiter: SendLimiter,
    chat_id: int,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> float:
    """Reserve a slot for ``chat_id`` on ``limiter`` and sleep until it comes; the slot
    (for :meth:`SendLimiter.settle` once the send is answered)."""
    now = clock()
    slot = limiter.reserve_slot(chat_id, now)
    if slot > now:
        await sleep(slot - now)
    return slot
