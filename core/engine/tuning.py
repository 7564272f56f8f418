"""Gathers what the routing advisor reads (:mod:`core.engine.advisor`) from the ledger."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.engine.advisor import TuneReport, advise
from core.engine.ledger import Ledger


async def tune_report(ledger: Ledger, period: timedelta, now: datetime | None = None) -> TuneReport:
    """The advisor's report over the last ``period``, on the ledger's config: the CLI's
    ``openclaw tune``, ``GET /api/tune`` and the bot's ``/tune``."""
    requests = await ledger.requests_since(period, now)
    denials = await ledger.denials_since(period, now)
    return advise(requests, ledger.config, period, denials)
