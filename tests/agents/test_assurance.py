"""Schedule assurance: expected fires joined with run rows (pure), the scheduler's watch
for fires that made no run, the daily report, and the top-of-hour stagger."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.agents.assurance import (
    Fire,
    Outcome,
    RunFact,
    assess,
    problem_line,
    short_reason,
    summary,
)
from core.agents.scheduler import (
    fires_between,
    latest_fire,
    schedule_key,
    spread_offset,
    trigger_for,
)
from core.app import App
from core.cli import main
from core.config.agents import AgentConfig
from core.config.load import load_config
from core.config.settings import Settings
from core.store.path import DbLocation
from core.store.times import utcnow_iso
from tests.agents.conftest import AppFactory, add_run, set_last_fire, set_seen, wait_done
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, Reply, echo
from tests.fakes.wait import until
from tests.stores import NewLocation, location_env

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def fact(id: int, status: str, at: datetime, **kw: Any) -> RunFact:
    return RunFact(id, "a", status, utcnow_iso(at), **kw)


HOURS = [utc(2026, 12, 1, h) for h in range(1, 9)]  # 01:00 … 08:00


def test_each_fire_gets_its_outcome() -> None:
    now = utc(2026, 12, 1, 8, 2)
    runs = [
        fact(1, "ok", HOURS[0]),
        fact(2, "ok", HOURS[1], quiet=True),
        fact(3, "failed", HOURS[2], error="deep/deepseek-chat: billing HTTP 402"),
        # interrupted, then its retry (same fire) went well: the retry decides
        fact(4, "interrupted", HOURS[3]),
        fact(9, "ok", HOURS[3]),
        # 05:00 and 06:00 missed while down: one row at the last of them
        fact(5, "missed", HOURS[5], error="2 scheduled fire(s) missed"),
        # 07:00: nothing at all; 08:00 just fired
    ]
    fires = assess("a", HOURS, runs, now, due_s=300)
    assert [(f.at.hour, f.outcome, f.run_id) for f in fires] == [
        (1, Outcome.OK, 1),
        (2, Outcome.QUIET, 2),
        (3, Outcome.FAILED, 3),
        (4, Outcome.OK, 9),
        (5, Outcome.MISSED, 5),
        (6, Outcome.MISSED, 5),
        (7, Outcome.NO_RUN, None),
        (8, Outcome.DUE, None),
    ]
    assert fires[2].error == "deep/deepseek-chat: billing HTTP 402"
    assert summary(fires) == (
        "8 expected · 2 ok · 1 quiet · 1 failed (deep/deepseek-chat 402)"
        " · 2 missed · 1 due · 1 no run"
    )


def test_a_disabled_agent_s_fires_after_its_last_row_are_disabled_not_silent() -> None:
    now = utc(2026, 12, 1, 9)
    runs = [fact(1, "failed", HOURS[0], error="boom")]
    fires = assess("a", HOURS[:3], runs, now, due_s=300, disabled=True)
    assert [f.outcome for f in fires] == [Outcome.FAILED, Outcome.DISABLED, Outcome.DISABLED]
    again = assess("a", HOURS[:3], runs, now, due_s=300, disabled=False)
    assert [f.outcome for f in again][1:] == [Outcome.NO_RUN, Outcome.NO_RUN]


def test_a_late_run_that_said_no_reply_is_late_not_quiet() -> None:
    runs = [fact(1, "late", HOURS[0], quiet=True), fact(2, "ok", HOURS[1], quiet=True)]
    fires = assess("a", HOURS[:2], runs, utc(2026, 12, 1, 9), due_s=300)
    assert [f.outcome for f in fires] == [Outcome.LATE, Outcome.QUIET]


def test_other_agents_rows_do_not_count() -> None:
    other = RunFact(1, "b", "ok", utcnow_iso(HOURS[0]))
    (fire,) = assess("a", HOURS[:1], [other], utc(2026, 12, 1, 9), due_s=300)
    assert fire.outcome == Outcome.NO_RUN


def test_expected_fires_over_dst_fall_back() -> None:
    """Daily 02:30 Berlin on the night 02:30 happens twice: one expected fire, and the
    report's join with a run at the first of them says ok."""
    agent = AgentConfig(name="a", message="x", schedule="30 2 * * *", timezone="Europe/Berlin")
    fires = fires_between(trigger_for(agent), utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert [utcnow_iso(f) for f in fires] == [
        "2026-10-25T00:30:00.000000Z",
        "2026-10-26T01:30:00.000000Z",
    ]
    runs = [fact(1, "ok", fires[0]), fact(2, "ok", fires[1])]
    assessed = assess("a", fires, runs, utc(2026, 10, 26, 12), due_s=300)
    assert [f.outcome for f in assessed] == [Outcome.OK, Outcome.OK]


# -- the top-of-hour stagger --------------------------------------------------------------


def _agent(name: str, schedule: str = "0 7 * * *", **kw: Any) -> AgentConfig:
    return AgentConfig(name=name, message="x", schedule=schedule, timezone="Europe/Berlin", **kw)


def test_spread_gives_on_the_hour_agents_a_stable_offset_within_the_window() -> None:
    names = [f"agent-{i}" for i in range(24)]
    offsets = [spread_offset(_agent(n), 300) for n in names]
    assert all(timedelta(0) <= o < timedelta(seconds=300) for o in offsets)
    assert len(set(offsets)) > 12  # spread out, not bunched
    # stable: a function of the name alone (the same after a restart, on every instance):
    # a pinned value, so a per-process hash (Python's hash() is salted) would fail here
    assert [spread_offset(_agent(n), 300) for n in names] == offsets
    assert spread_offset(_agent("morning-digest"), 300) == timedelta(seconds=46)
    assert spread_offset(_agent("agent-0", spread=False), 300) == timedelta(0)
    assert spread_offset(_agent("agent-0", "30 7 * * *"), 300) == timedelta(0)  # not :00
    assert spread_offset(_agent("agent-0"), 0) == timedelta(0)  # spread off


def test_a_spread_trigger_fires_at_the_cron_time_plus_the_offset() -> None:
    agent = _agent("digest")
    offset = spread_offset(agent, 300)
    assert offset > timedelta(0)
    fires = fires_between(trigger_for(agent, 300), utc(2026, 12, 1), utc(2026, 12, 3))
    # 07:00 Berlin is 06:00 UTC in December
    assert fires == [utc(2026, 12, 1, 6) + offset, utc(2026, 12, 2, 6) + offset]
    # across the spring-forward night too: 07:00 Berlin is 05:00 UTC from 2026-03-29
    spring = fires_between(trigger_for(agent, 300), utc(2026, 3, 28), utc(2026, 3, 30))
    assert spring == [utc(2026, 3, 28, 6) + offset, utc(2026, 3, 29, 5) + offset]


async def test_next_fire_and_the_aps_job_use_the_offset(make_app: AppFactory) -> None:
    app = await make_app(
        [{"name": "digest", "message": "x", "task": "chat", "schedule": "0 * * * *"}],
        scheduler={"spread_s": 300},
    )
    offset = spread_offset(app.config.agents[0], 300)
    nxt = app.scheduler.next_fire(app.config.agents[0])
    assert nxt is not None
    assert timedelta(minutes=nxt.minute, seconds=nxt.second) == offset
    await app.scheduler.start()
    try:
        job = app.scheduler.aps.get_job("digest")
        assert job.next_run_time == nxt
    finally:
        app.scheduler.stop()


# -- the watch and the report, on a real store ---------------------------------------------


def hourly(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "message": f"tick {name}", "task": "chat", "schedule": "0 * * * *", **kw}


async def test_the_watch_alerts_once_for_a_fire_that_made_no_run(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([hourly("h"), hourly("fine")], scheduler={"alert_after_s": 300})
    now = utc(2026, 12, 1, 10, 10)
    app.scheduler.clock = app.scheduler.watch.clock = lambda: now
    watch = app.scheduler.watch
    watch.watching_since = utc(2026, 12, 1, 9, 30)
    for name in ("h", "fine"):
        await set_seen(app, name, None)
    alerts: list[str] = []

    async def alert(text: str) -> None:
        alerts.append(text)

    watch.alert = alert
    await add_run(
        app, "fine", "schedule", status="ok", scheduled_for=utcnow_iso(utc(2026, 12, 1, 10))
    )
    found = await watch.check()
    assert [(f.agent, f.at) for f in found] == [("h", utc(2026, 12, 1, 10))]
    assert len(alerts) == 1 and "agent h" in alerts[0] and "made no run" in alerts[0]
    assert await watch.check() == [] and len(alerts) == 1  # once per fire
    # within alert_after_s of its time a fire is only due
    now = utc(2026, 12, 1, 11, 2)
    assert await watch.check() == []
    # what it remembers having alerted is the window's alone: it does not grow for ever
    now = utc(2026, 12, 1, 12, 30)
    assert [f.agent for f in await watch.check()] == ["fine", "h"]  # 12:00
    now = utc(2026, 12, 1, 14, 30)
    await watch.check()
    assert {at for _, at in watch._alerted} == {utcnow_iso(utc(2026, 12, 1, 14))}


async def test_schedule_of_a_day_through_the_app(make_app: AppFactory) -> None:
    app = await make_app([hourly("h")])
    now = utc(2026, 12, 1, 4, 30)
    await set_last_fire(app, "h", utcnow_iso(utc(2026, 12, 1, 0)))
    await add_run(app, "h", "schedule", status="ok", scheduled_for=utcnow_iso(utc(2026, 12, 1, 1)))
    await add_run(
        app,
        "h",
        "schedule",
        status="failed",
        scheduled_for=utcnow_iso(utc(2026, 12, 1, 2)),
        error="deep/deepseek-chat: billing HTTP 402",
    )
    fires = await app.scheduler.watch.fires(utc(2026, 12, 1, 0, 30), now)
    assert [(f.at.hour, f.outcome) for f in fires] == [
        (1, Outcome.OK),
        (2, Outcome.FAILED),
        (3, Outcome.NO_RUN),
        (4, Outcome.NO_RUN),
    ]


async def test_the_daily_report_goes_once_a_day(make_app: AppFactory) -> None:
    app = await make_app([hourly("h")], reports={"daily": "08:00", "timezone": "Europe/Berlin"})
    watch = app.scheduler.watch
    morning = utc(2026, 12, 1, 7, 1)  # 08:01 Berlin
    app.scheduler.clock = watch.clock = lambda: morning
    await set_seen(app, "h", None)
    await add_run(app, "h", "schedule", status="ok", scheduled_for=utcnow_iso(utc(2026, 12, 1, 6)))
    await add_run(
        app,
        "h",
        "schedule",
        status="failed",
        scheduled_for=utcnow_iso(utc(2026, 12, 1, 5)),
        error="deep/deepseek-chat: billing HTTP 402",
    )
    await watch.tick()
    await watch.tick()  # again the same morning: not a second report
    rows = await app.store.fetchall("SELECT kind, target, body FROM outbox WHERE kind = 'report'")
    assert len(rows) == 1
    assert "📋 Schedule 2026-12-01: 24 expected · 1 ok · 1 failed" in str(rows[0]["body"])
    # the whole text (the log channel's template shortens it)
    text = watch.report_text(await watch.fires(morning - timedelta(days=1)), "2026-12-01")
    lines = text.splitlines()
    assert lines[0] == (
        "📋 Schedule 2026-12-01: 24 expected · 1 ok · 1 failed (deep/deepseek-chat 402)"
        " · 1 due · 21 no run"  # the 07:00 UTC fire came a minute ago: due
    )
    assert "h 2026-12-01 06:00 failed run 2: deep/deepseek-chat: billing HTTP 402" in lines
    assert "h 2026-12-01 05:00 no run: the fire made no run" in lines  # 04:00 UTC
    assert len(lines) == 1 + 22  # 21 no run, 1 failed
    # the next morning's goes, not an evening's first start
    assert not await _tick_at(app, utc(2026, 12, 1, 19))
    assert await _tick_at(app, utc(2026, 12, 2, 7, 5))


async def _tick_at(app: Any, now: datetime) -> bool:
    watch = app.scheduler.watch
    app.scheduler.clock = watch.clock = lambda: now
    before = len(await app.store.fetchall("SELECT name FROM reports"))
    await watch.tick()
    return len(await app.store.fetchall("SELECT name FROM reports")) > before


@pytest.mark.parametrize("fire", [Fire("a", utc(2026, 12, 1, 7), Outcome.NO_RUN)])
def test_fire_as_dict(fire: Fire) -> None:
    assert fire.as_dict() == {
        "agent": "a",
        "at": "2026-12-01T07:00:00.000000Z",
        "outcome": "no run",
        "run_id": None,
        "error": None,
    }


CLI_CONFIG = """
[providers.local]
api = "ollama"
base_url = "http://127.0.0.1:9"

[models."local/m"]

[[tiers]]
level = 0
models = ["local/m"]

[[agents]]
name = "h"
message = "x"
schedule = "0 * * * *"

[[agents]]
name = "m"
message = "x"
"""


def test_openclaw_schedule_prints_the_join_and_exits_1_on_problems(
    tmp_path: Path,
    store_location: DbLocation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(CLI_CONFIG, encoding="utf-8")
    argv = ["--config", str(cfg), "--db", location_env(store_location)]

    async def seed() -> None:
        config = load_config(cfg)
        app = await App.open(config, Settings(_env_file=None), store_location)  # type: ignore[call-arg]
        try:
            now = app.scheduler.clock()
            await set_seen(app, "h", None)
            trigger = app.scheduler.trigger(config.agents[0])
            for f in fires_between(trigger, now - timedelta(hours=2), now):
                await add_run(app, "h", "schedule", status="ok", scheduled_for=utcnow_iso(f))
        finally:
            await app.close()

    asyncio.run(seed())
    assert main([*argv, "schedule", "--since", "2h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Schedule over the last 2h: 2 expected · 2 ok\n")
    assert main([*argv, "schedule", "m"]) == 2  # not scheduled
    assert "no scheduled agent named 'm'" in capsys.readouterr().err
    assert main([*argv, "schedule", "--since", "4h"]) == 1  # two more fires with no run
    assert "2 no run" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*argv, "schedule", "--since", "60d"])
    assert "at most 31d" in capsys.readouterr().err


def test_openclaw_agents_shows_the_stagger_offset(
    tmp_path: Path,
    store_location: DbLocation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``[scheduler] spread_s = 300``: the next fire is 46 s past the hour, to the second."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    cfg = tmp_path / "openclaw.toml"
    staggered = CLI_CONFIG.replace('name = "h"', 'name = "morning-digest"').replace(
        'schedule = "0 * * * *"', 'schedule = "0 7 * * *"\ntimezone = "Europe/Berlin"'
    )
    cfg.write_text(staggered + "\n[scheduler]\nspread_s = 300\n", encoding="utf-8")
    argv = ["--config", str(cfg), "--db", location_env(store_location)]
    assert main([*argv, "agents"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"morning-digest\s+0 7 \* \* \*\s+Europe/Berlin\s+\d{4}-\d\d-\d\dT07:00:46\+0[12]:00", out
    ), out


async def test_a_downtime_shows_as_missed_and_late_after_the_restart(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    """serve was down for three hourly fires: the catch-up at start runs the newest late
    and records the others missed; the schedule shows exactly that, no 'no run'."""
    fake_llm.default = echo
    app = await make_app([hourly("h")])
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    await set_last_fire(app, "h", utcnow_iso(now - timedelta(hours=3)))
    (late,) = await app.scheduler.catch_up(now)
    await wait_done(app, late)
    fires = await app.scheduler.watch.fires(now - timedelta(hours=3), now)
    assert [f.outcome for f in fires] == [Outcome.MISSED, Outcome.MISSED, Outcome.LATE]
    assert fires[2].run_id == late


async def test_a_disabled_agent_s_fires_show_as_disabled(make_app: AppFactory) -> None:
    app = await make_app([hourly("h"), hourly("on")])
    now = utc(2026, 12, 1, 4, 30)
    await app.runner.states.set_disabled("h", True, "by @admin")
    for name in ("h", "on"):
        await set_seen(app, name, None)
    fires = await app.scheduler.watch.fires(utc(2026, 12, 1, 2, 30), now)
    assert [(f.agent, f.outcome) for f in fires] == [
        ("h", Outcome.DISABLED),
        ("on", Outcome.NO_RUN),
        ("h", Outcome.DISABLED),
        ("on", Outcome.NO_RUN),
    ]


async def test_the_watch_runs_on_its_own_task_while_apscheduler_is_stopped(
    make_app: AppFactory,
) -> None:
    """APScheduler paused (a scheduler that stopped firing): the watch, a task of its own,
    still finds the fires that made no run and alerts through the outbox."""
    minutely = {"name": "m", "message": "x", "task": "chat", "schedule": "* * * * *"}
    app = await make_app(
        [minutely],
        scheduler={"alert_after_s": 1, "watch_every_s": 0.2},
        alerts={"deliver": ["log"]},
    )
    await app.scheduler.start()
    try:
        app.scheduler.aps.pause()
        assert app.scheduler.running  # APScheduler thinks all is well
        three_ago = app.scheduler.clock() - timedelta(minutes=3)
        await set_seen(app, "m", utcnow_iso(three_ago))
        app.scheduler.watch.watching_since = three_ago

        async def alerted() -> list[Any]:
            return await app.store.fetchall(
                "SELECT body FROM outbox WHERE kind = 'alert' AND body LIKE '%made no run%'"
            )

        rows = await until(alerted, what="an alert for a fire with no run")
        assert "agent m" in str(rows[0]["body"])
    finally:
        app.scheduler.stop()
    assert not app.scheduler.running


# -- a failure's reason, through the engine ------------------------------------------------


async def test_a_run_every_model_of_which_failed_shows_why_in_the_summary(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    """A real failed run stores every attempt (its first line only says ``no model could
    answer``): the summary and the problem line name the model and the status."""
    fake_llm.default = Reply(status=402, error_message="Insufficient Balance")
    app = await make_app([hourly("h", task="analysis")])
    await app.scheduler.catch_up(utc(2026, 12, 1, 8, 30))  # first start: seen from here
    await app.scheduler.fire("h", utc(2026, 12, 1, 9))  # every model answers 402
    await add_run(app, "h", "schedule", status="ok", scheduled_for=utcnow_iso(utc(2026, 12, 1, 10)))
    now = utc(2026, 12, 1, 10, 30)
    fires = await app.scheduler.watch.fires(now - timedelta(days=1), now)
    failed = fires[0]
    assert failed.outcome == Outcome.FAILED and failed.error is not None
    assert failed.error.splitlines()[0] == "no model could answer task 'analysis':"
    assert summary(fires) == "2 expected · 1 ok · 1 failed (deep/deepseek-chat 402 and 2 more)"
    line = problem_line(failed)
    assert line.startswith(
        f"h 2026-12-01 09:00 failed run {failed.run_id}: deep/deepseek-chat: billing"
        " (billing HTTP 402"
    )
    assert line.endswith(" (+2 more)") and len(line) < 160
    report = app.scheduler.watch.report_text(fires, "2026-12-01")
    assert "1 failed (deep/deepseek-chat 402 and 2 more)" in report.splitlines()[0]


@pytest.mark.parametrize(
    ("error", "short"),
    [
        ("deep/deepseek-chat: billing HTTP 402", "deep/deepseek-chat 402"),
        (
            "all models failed:\n  tier 0 local/qwen3:14b: timeout (read timeout after 1s)",
            "local/qwen3:14b timeout",
        ),
        # a model in its cooldown was not asked: the first one that was decides
        (
            "all models failed:\n  tier 2 deep/a: skipped (cooling down 17000s)"
            "\n  tier 2 deep2/b: unavailable (server HTTP 503: busy)",
            "deep2/b 503 and 1 more",
        ),
        ("AUTOMATION_FAILED: the backup did not run", "AUTOMATION_FAILED: the backup did not run"),
        ("", ""),
    ],
)
def test_short_reason(error: str, short: str) -> None:
    assert short_reason(error) == short


# -- fires from before the scheduler knew the agent ----------------------------------------


async def _open(location: DbLocation, fake_llm: FakeLLM, tmp_path: Path, cron: str) -> App:
    agents = [{"name": "h", "message": "x", "task": "chat", "schedule": cron}]
    cfg = make_config(pyramid_urls(fake_llm.base_url), agents=agents)
    return await App.open(cfg, Settings(_env_file=None), location, base_dir=tmp_path)  # type: ignore[call-arg]


async def _close(app: App) -> None:
    await app.runner.shutdown(5)
    app.scheduler.stop()
    await app.close()


async def test_no_fire_is_expected_before_the_scheduler_first_saw_the_agent(
    new_location: NewLocation, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """A fresh database: the 24 h before the first start are not 24 fires with no run;
    then the cron changes: the new cron's fires before the change are not expected."""
    fake_llm.default = echo
    location = new_location()
    app = await _open(location, fake_llm, tmp_path, "0 * * * *")
    try:
        watch = app.scheduler.watch
        assert await watch.fires(utc(2026, 11, 30, 10), utc(2026, 12, 1, 10)) == []  # never started
        await app.scheduler.catch_up(utc(2026, 12, 1, 9, 30))  # the first start
        now = utc(2026, 12, 1, 12, 40)
        fires = await watch.fires(now - timedelta(days=1), now)
        assert [(f.at.hour, f.outcome) for f in fires] == [
            (10, Outcome.NO_RUN),  # these two really made no run
            (11, Outcome.NO_RUN),
            (12, Outcome.NO_RUN),
        ]
        for f in fires:
            await add_run(app, "h", "schedule", status="ok", scheduled_for=utcnow_iso(f.at))
        await set_last_fire(app, "h", utcnow_iso(utc(2026, 12, 1, 12)))
        assert summary(await watch.fires(now - timedelta(days=1), now)) == "3 expected · 3 ok"
    finally:
        await _close(app)
    # restarted at 13:10 with the agent on the half hour: the old fires under the new cron
    # (09:30 … 11:30) are not expected; 12:30, after the last handled fire, is caught up
    app = await _open(location, fake_llm, tmp_path, "30 * * * *")
    try:
        restart = utc(2026, 12, 1, 13, 10)
        (late,) = await app.scheduler.catch_up(restart)
        await wait_done(app, late)
        fires = await app.scheduler.watch.fires(restart - timedelta(days=1), restart)
        assert [(f.at.hour, f.at.minute, f.outcome) for f in fires] == [(12, 30, Outcome.LATE)]
        state = await app.runner.states.get("h")
        assert state.schedule_key == "30 * * * * UTC +0s"
        assert state.schedule_since == utcnow_iso(utc(2026, 12, 1, 12))
    finally:
        await _close(app)


def test_the_schedule_key_follows_cron_timezone_and_offset() -> None:
    a = _agent("digest")
    keys = {
        schedule_key(a),
        schedule_key(a, 300),  # the stagger moves its fires
        schedule_key(_agent("digest", "0 8 * * *")),
        schedule_key(AgentConfig(name="digest", message="x", schedule="0 7 * * *")),  # UTC
    }
    assert len(keys) == 4
    assert schedule_key(a) == "0 7 * * * Europe/Berlin +0s"


# -- the daily report over a restart, and a spring-forward night ---------------------------


async def test_a_second_app_on_the_same_store_does_not_send_the_report_again(
    new_location: NewLocation, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    location = new_location()
    reports = {"daily": "08:00", "timezone": "Europe/Berlin"}
    morning = utc(2026, 12, 1, 7, 1)  # 08:01 Berlin
    for tick in (morning, morning + timedelta(minutes=1), morning + timedelta(hours=3)):
        agents = [hourly("h")]
        cfg = make_config(pyramid_urls(fake_llm.base_url), agents=agents, reports=reports)
        app = await App.open(cfg, Settings(_env_file=None), location, base_dir=tmp_path)  # type: ignore[call-arg]
        try:
            app.scheduler.clock = app.scheduler.watch.clock = lambda t=tick: t
            await app.scheduler.watch.tick()  # a restart's first look, the same morning
        finally:
            await _close(app)
    app = await App.open(cfg, Settings(_env_file=None), location, base_dir=tmp_path)  # type: ignore[call-arg]
    try:
        rows = await app.store.fetchall("SELECT name FROM reports")
        assert [r["name"] for r in rows] == ["daily:2026-12-01"]
        sent = await app.store.fetchall("SELECT id FROM outbox WHERE kind = 'report'")
        assert len(sent) == 1
    finally:
        await _close(app)


def test_a_cron_time_that_does_not_exist_on_spring_forward_night() -> None:
    """02:30 Berlin on 2026-03-29 does not exist (02:00 → 03:00): APScheduler fires once
    that night, at 01:30 UTC (03:30 summer time); the expected fire is that one instant, the
    one the fire records as its own, so its run joins as ok and nothing is missing."""
    agent = AgentConfig(name="a", message="x", schedule="30 2 * * *", timezone="Europe/Berlin")
    trigger = trigger_for(agent)
    fires = fires_between(trigger, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    assert [utcnow_iso(f) for f in fires] == [
        "2026-03-29T01:30:00.000000Z",
        "2026-03-30T00:30:00.000000Z",  # 02:30 summer time
    ]
    fired = trigger.get_next_fire_time(None, utc(2026, 3, 29, 0, 59))
    assert fired == fires[0]  # what the APScheduler job fires at
    assert latest_fire(trigger, utc(2026, 3, 29, 1, 31)) == fires[0]  # what fire() records
    runs = [fact(1, "ok", fires[0]), fact(2, "ok", fires[1])]
    assessed = assess("a", fires, runs, utc(2026, 3, 30, 12), due_s=300)
    assert [f.outcome for f in assessed] == [Outcome.OK, Outcome.OK]


# -- the dead-man's switch and a scheduler that stopped firing -----------------------------


async def test_the_heartbeat_is_withheld_while_fires_make_no_run(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """APScheduler paused still says it runs; the watch found fires of the last hour with
    no run, so the monitor gets no ping, and status says why. A later fire that made its
    run (or an hour passing) lets the pings go again."""
    from core.ops.serve import _heartbeat
    from tests.fakes.receiver import FakeReceiver

    minutely = {"name": "m", "message": "x", "task": "chat", "schedule": "* * * * *"}
    async with FakeReceiver() as monitor:
        monkeypatch.setenv("HEARTBEAT_URL", monitor.url + "/ping/secret")
        app = await make_app(
            [minutely],
            scheduler={"alert_after_s": 1, "watch_every_s": 3600},
            heartbeat={"url_env": "HEARTBEAT_URL"},
        )
        hb = _heartbeat(app, lambda: True)
        assert hb is not None
        assert await app.cluster.campaign()  # as serve: it leads, so it pings
        await app.scheduler.start()
        try:
            app.scheduler.aps.pause()
            watch = app.scheduler.watch
            now = app.scheduler.clock().replace(second=30, microsecond=0)
            watch.clock = lambda: now
            three_ago = now - timedelta(minutes=3)
            await set_seen(app, "m", utcnow_iso(three_ago))
            watch.watching_since = three_ago
            assert await hb.beat() is True  # the watch has not looked yet
            assert len(await watch.check()) == 3
            assert app.scheduler.running  # APScheduler thinks all is well
            assert await hb.beat() is False
            state = hb.describe()["state"]
            assert state.startswith("withheld: the scheduler made no run for agent m's fire of")
            assert state.endswith(" and 2 more")
            assert len(monitor.at("/ping/secret")) == 1
            # an hour on, those fires are old news
            watch.clock = lambda: now + timedelta(minutes=61)
            assert watch.stuck() is None
            watch.clock = lambda: now
            # the newest fire made its run: the scheduler fires again
            last = app.scheduler.trigger(app.config.agents[0])
            newest = latest_fire(last, now)
            assert newest is not None
            await add_run(app, "m", "schedule", status="ok", scheduled_for=utcnow_iso(newest))
            await watch.check()
            assert watch.stuck() is None
            assert await hb.beat() is True and hb.describe()["state"] == "ok"
            assert len(monitor.at("/ping/secret")) == 2
        finally:
            app.scheduler.stop()
