"""Growing waits for a background loop whose store (or other dependency) keeps failing.

A loop that retried every poll interval and logged a traceback each time turned one
read-only database into a log line per second per loop. Here each failure doubles the
wait up to a cap and logs one WARNING per step, naming the wait; a success logs once
that the loop is back and resets the wait.
"""

from __future__ import annotations

import logging

from core.errors import StoreUnavailable

FIRST_S = 1.0
CAP_S = 60.0


class Backoff:
    """The next wait after a failure of ``what``; one log line per failure, none per success."""

    def __init__(
        self, what: str, log: logging.Logger, first_s: float = FIRST_S, cap_s: float = CAP_S
    ) -> None:
        self.what = what
        self.log = log
        self.first_s = first_s
        self.cap_s = cap_s
        self.failures = 0

    def failed(self, error: BaseException) -> float:
        """Record a failure; returns how long to wait before the next try."""
        delay = min(self.first_s * 2.0**self.failures, self.cap_s)
        self.failures += 1
        if isinstance(error, StoreUnavailable):  # expected in an outage: no traceback
            self.log.warning("%s: %s; next try in %.0f s", self.what, error, delay)
        else:  # a bug: the traceback says where, once per step
            self.log.error("%s failed; next try in %.0f s", self.what, delay, exc_info=error)
        return delay

    def succeeded(self) -> None:
        """Record a success: the wait starts from ``first_s`` again."""
        if self.failures:
            self.log.warning("%s: working again after %d failures", self.what, self.failures)
        self.failures = 0
