"""What a failed send says: permanent or not, and how long the receiver asked us to wait."""

from __future__ import annotations

from core.errors import OpenClawError


class DeliveryError(OpenClawError):
    """A send failed. ``permanent`` ones are not retried; ``retry_after_s`` is honoured."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        sent: str = "",
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        self.sent = sent  # confirmations of the parts that did go out (a split message)


class ChannelUnavailable(OpenClawError):
    """The channel is not configured (yet): the row waits, it is not an attempt."""
