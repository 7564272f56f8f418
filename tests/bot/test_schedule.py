"""/schedule in Telegram: the summary and the problem fires; a bad period gets usage."""

from __future__ import annotations

import re
from datetime import timedelta

from core.agents.scheduler import fires_between
from core.config.ops import HeartbeatConfig
from core.store.times import utcnow_iso
from tests.agents.conftest import add_run, set_seen
from tests.bot.conftest import VIEWER, RigFactory


async def test_schedule_shows_the_summary_and_the_problems(make_rig: RigFactory) -> None:
    hourly = {"name": "h", "task": "chat", "message": "x", "schedule": "0 * * * *"}
    rig = await make_rig([hourly])
    sched = rig.app.scheduler
    now = sched.clock()
    await set_seen(rig.app, "h", None)  # as a scheduler started long ago
    fires = fires_between(sched.trigger(rig.app.config.agents[0]), now - timedelta(hours=2), now)
    await add_run(rig.app, "h", "schedule", status="ok", scheduled_for=utcnow_iso(fires[0]))
    await add_run(
        rig.app,
        "h",
        "schedule",
        status="failed",
        scheduled_for=utcnow_iso(fires[1]),
        error="deep/deepseek-chat: billing <HTTP 402>",
    )
    rig.tg.user_message(VIEWER, "/schedule 2h")
    msg = await rig.said(VIEWER, "Schedule, last 2h")
    text = msg["text"]
    assert "2 expected · 1 ok · 1 failed (deep/deepseek-chat: billing &lt;HTTP 402&gt;)" in text
    assert "problems (1, newest first):" in text and "failed run 2" in text
    rig.tg.user_message(VIEWER, "/schedule forever")
    await rig.said(VIEWER, "Usage: /schedule [period]")
    rig.tg.user_message(VIEWER, "/schedule 90d")
    await rig.said(VIEWER, "too long for the schedule: at most 31d")


async def test_status_shows_the_heartbeat_and_why_it_is_withheld(make_rig: RigFactory) -> None:
    """serve's heartbeat in /status: what withholds the pings, and the last one."""
    from core.ops.heartbeat import Heartbeat

    rig = await make_rig([])

    async def checks() -> list[str]:
        return ["the delivery worker is stalled: a message waiting for 412s"]

    cfg = HeartbeatConfig(url_env="HEARTBEAT_URL")
    hb = Heartbeat(cfg, "http://127.0.0.1:9/ping", rig.app.http, checks)
    rig.app.overview.add_status_hook("heartbeat", hb.describe)
    assert await hb.beat() is False
    rig.tg.user_message(VIEWER, "/status")
    msg = await rig.said(VIEWER, "Heartbeat:")
    assert (
        "Heartbeat: withheld: the delivery worker is stalled: a message waiting for 412s;"
        " last ping never"
    ) in msg["text"]


async def test_agents_shows_the_stagger_offset(make_rig: RigFactory) -> None:
    """``[scheduler] spread_s = 300``: /agents shows the fire 46 s past the hour."""
    digest = {
        "name": "morning-digest",
        "task": "chat",
        "message": "x",
        "schedule": "0 7 * * *",
        "timezone": "Europe/Berlin",
    }
    rig = await make_rig([digest], scheduler={"spread_s": 300})
    rig.tg.user_message(VIEWER, "/agents")
    msg = await rig.said(VIEWER, "morning-digest")
    assert re.search(r"0 7 \* \* \* next \d{4}-\d\d-\d\d 07:00:46", msg["text"]), msg["text"]
