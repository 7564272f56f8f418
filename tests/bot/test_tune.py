"""/tune in Telegram: the advisor's table, the suggestions and the trial; a bad period
gets the usage line."""

from __future__ import annotations

from datetime import timedelta

from tests.bot.conftest import VIEWER, RigFactory
from tests.tune_seed import seed

TASKS = {"chat": 0, "analysis": 1, "summarize": {"tier": 1, "min_chars": 20, "trial": 0.2}}


async def test_tune_shows_the_suggestions_and_the_trial(make_rig: RigFactory) -> None:
    rig = await make_rig(tasks=TASKS)
    rig.tg.user_message(VIEWER, "/tune")
    await rig.said(VIEWER, "No task requests over the last 30d.")
    ledger = rig.app.ledger
    await seed(ledger, rig.app.config, ledger.clock() - timedelta(hours=1))
    rig.tg.user_message(VIEWER, "/tune 7d")
    text = (await rig.said(VIEWER, "Routing advisor, last 7d"))["text"]
    assert "2 suggestions" in text
    assert "raise chat: tier 0 → 1: 20 of 25 attempts at tier 0 (80%) were unusable" in text
    assert "try lower summarize: tier 1 → 0" in text
    assert "trial: 5 requests started at tier 0, 80% answered there" in text
    rig.tg.user_message(VIEWER, "/tune forever")
    await rig.said(VIEWER, "Usage: /tune [period]")
    rig.tg.user_message(VIEWER, "/tune 400d")
    await rig.said(VIEWER, "too long for tune: at most 365d")
