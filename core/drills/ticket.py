"""A drill's ticket: one attempt the transport sends to the drill server (see board)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ticket:
    """One attempt diverted by a drill: where its request goes instead of the provider."""

    drill: int
    provider: str
    model: str
    url: str  # replaces the provider's base_url

    def matches(self, provider: str, model: str) -> bool:
        """Whether this ticket is for a call of ``model`` on ``provider``."""
        return self.provider == provider and self.model == model
