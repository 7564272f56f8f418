"""Scheduling: cron tables across DST, catch-up after downtime, APScheduler wiring."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from core.agents.scheduler import fires_between, latest_fire, plan_catch_up
from core.store.times import utcnow_iso
from tests.agents.conftest import (
    AppFactory,
    set_last_fire,
    wait_done,
)
from tests.fakes.llm import FakeLLM, echo
from tests.stores import REFUSED, NewLocation, add_refusal, drop_refusal

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cron", "after", "until", "expected_utc"),
    [
        # daily 07:00 Berlin: 05:00 UTC in summer, 06:00 UTC after the fall-back
        (
            "0 7 * * *",
            utc(2026, 10, 23),
            utc(2026, 10, 27),
            ["2026-10-23 05:00", "2026-10-24 05:00", "2026-10-25 06:00", "2026-10-26 06:00"],
        ),
        # spring-forward: 02:30 does not exist on 2026-03-29; it fires once, an hour later
        (
            "30 2 * * *",
            utc(2026, 3, 28),
            utc(2026, 3, 31),
            ["2026-03-28 01:30", "2026-03-29 01:30", "2026-03-30 00:30"],
        ),
        # fall-back: 02:30 happens twice on 2026-10-25; a daily job fires once
        (
            "30 2 * * *",
            utc(2026, 10, 24),
            utc(2026, 10, 27),
            ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"],
        ),
        # hourly, bounds: after is exclusive, until inclusive
        (
            "0 * * * *",
            utc(2026, 1, 1, 10),
            utc(2026, 1, 1, 13),
            ["2026-01-01 11:00", "2026-01-01 12:00", "2026-01-01 13:00"],
        ),
    ],
)
def test_fires_between(
    cron: str, after: datetime, until: datetime, expected_utc: list[str]
) -> None:
    trigger = CronTrigger.from_crontab(cron, timezone=BERLIN)
    got = [
        t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in fires_between(trigger, after, until)
    ]
    assert got == expected_utc


@pytest.mark.parametrize(
    ("cron", "now", "expected_utc"),
    [
        ("* * * * *", utc(2026, 11, 25, 10, 7, 0, 5), "2026-11-25 10:07"),  # on time
        ("0 * * * *", utc(2026, 11, 25, 10, 7, 30), "2026-11-25 10:00"),  # 7 minutes late
        ("0 7 * * *", utc(2026, 11, 25, 20), "2026-11-25 06:00"),  # 07:00 Berlin, hours ago
        ("0 7 1 1 *", utc(2026, 11, 25, 20), None),  # nothing within the last day
    ],
)
def test_latest_fire(cron: str, now: datetime, expected_utc: str | None) -> None:
    when = latest_fire(CronTrigger.from_crontab(cron, timezone=BERLIN), now)
    assert (when and when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")) == expected_utc


class CountingTrigger(CronTrigger):
    steps = 0

    def get_next_fire_time(self, previous: Any, now: datetime) -> datetime | None:
        CountingTrigger.steps += 1
        result: datetime | None = super().get_next_fire_time(previous, now)
        return result


def test_latest_fire_of_a_minutely_job_takes_a_few_steps_not_a_day() -> None:
    # every agent asks at every fire: 1,000 minutely agents walking a day each kept the
    # event loop busy for tens of seconds a minute and made every fire that late
    trigger = CountingTrigger.from_crontab("* * * * *", timezone=UTC)
    CountingTrigger.steps = 0
    assert latest_fire(trigger, utc(2026, 11, 25, 10, 7, 0, 5)) == utc(2026, 11, 25, 10, 7)
    assert 0 < CountingTrigger.steps <= 4


def test_sub_hourly_jobs_fire_through_the_repeated_hour() -> None:
    trigger = CronTrigger.from_crontab("*/30 * * * *", timezone=BERLIN)
    fires = fires_between(trigger, utc(2026, 10, 24, 23), utc(2026, 10, 25, 2))
    assert len(fires) == 6  # every real half hour, the repeated one included


NOW = utc(2026, 11, 25, 12)


@pytest.mark.parametrize(
    ("ages_h", "catch_up_s", "late_age_h", "missed"),
    [
        ([], 6 * 3600, None, 0),
        ([3, 2, 1], 6 * 3600, 1, 2),  # newest runs late, the others are missed
        ([9, 8, 7], 6 * 3600, None, 3),  # all too old
        ([1], 0, None, 1),  # catch-up disabled
        ([6], 6 * 3600, 6, 0),  # exactly at the edge counts
    ],
)
def test_plan_catch_up(
    ages_h: list[int], catch_up_s: float, late_age_h: int | None, missed: int
) -> None:
    fires = [NOW - timedelta(hours=h) for h in ages_h]
    plan = plan_catch_up(fires, NOW, catch_up_s)
    assert plan.late == (None if late_age_h is None else NOW - timedelta(hours=late_age_h))
    assert len(plan.missed) == missed


def hourly(name: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "message": f"tick {name}",
        "task": "chat",
        "schedule": "0 * * * *",
        "timezone": "Europe/Berlin",
        **kw,
    }


async def test_catch_up_runs_the_newest_late_and_records_the_rest(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([hourly("h"), hourly("never", catch_up_s=0), hourly("fresh")])
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    three_hours_ago = now - timedelta(hours=3)  # hourly fires at -2.5 h, -1.5 h, -0.5 h
    await set_last_fire(app, "h", utcnow_iso(three_hours_ago))
    await set_last_fire(app, "never", utcnow_iso(three_hours_ago))
    started = await app.scheduler.catch_up(now)
    assert len(started) == 1
    late = await wait_done(app, started[0])
    assert (late.agent, late.status, late.trigger) == ("h", "late", "schedule")
    missed = [r for r in await app.runner.runs.recent() if r.status == "missed"]
    by_agent = {r.agent: r for r in missed}
    assert set(by_agent) == {"h", "never"}
    assert (by_agent["h"].error or "").startswith("2 scheduled fire(s) missed")
    assert (by_agent["never"].error or "").startswith("3 scheduled fire(s) missed")
    # last_fire moved to the newest handled fire: a second catch-up does nothing
    assert await app.scheduler.catch_up(now) == []
    # an agent seen for the first time starts tracking now, with nothing to catch up
    fresh = await app.runner.states.get("fresh")
    assert fresh.last_fire is not None and await app.runner.runs.recent("fresh") == []


async def test_start_registers_one_job_per_scheduled_agent(make_app: AppFactory) -> None:
    app = await make_app(
        [
            hourly("a"),
            hourly("b", enabled=False),
            {"name": "manual", "message": "x", "task": "chat"},
        ]
    )
    await app.scheduler.start()
    try:
        jobs = app.scheduler.aps.get_jobs()
        assert [j.id for j in jobs] == ["a"]
        job = jobs[0]
        assert job.max_instances == 1 and job.coalesce is True
        assert str(job.trigger.timezone) == "Europe/Berlin"
        nxt = app.scheduler.next_fire(app.config.agents[0])
        assert nxt is not None and nxt > datetime.now(UTC)
        assert nxt.astimezone(BERLIN).minute == 0
        assert app.scheduler.next_fire(app.config.agents[1]) is None
    finally:
        app.scheduler.stop()


async def test_fire_records_and_runs(make_app: AppFactory, fake_llm: FakeLLM) -> None:
    fake_llm.default = echo
    app = await make_app([hourly("a")])
    when = datetime.now(UTC).replace(microsecond=0)  # a fire just now (an old one runs late)
    await app.scheduler.fire("a", when)
    (run,) = await app.runner.runs.recent("a")
    assert (run.trigger, run.status, run.scheduled_for) == ("schedule", "ok", utcnow_iso(when))
    assert (await app.runner.states.get("a")).last_fire == utcnow_iso(when)


async def test_a_fire_is_recorded_only_with_its_run(
    make_app: AppFactory, new_location: NewLocation
) -> None:
    """A crash between the two writes must not leave the fire recorded and no run: catch-up
    would then skip it. A failing run insert (a real trigger) stands in for the crash."""
    app = await make_app([hourly("a"), hourly("b")])
    db = new_location.made[0]
    await asyncio.to_thread(add_refusal, db, "refuse", *NO_RUNS)
    with pytest.raises(REFUSED):
        await app.scheduler.fire("a", utc(2026, 11, 25, 11))
    assert (await app.runner.states.get("a")).last_fire is None
    # the same holds for catch-up's late run, missed record and new last fire
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    before = utcnow_iso(now - timedelta(hours=3))
    await set_last_fire(app, "b", before)
    with pytest.raises(REFUSED):
        await app.scheduler.catch_up(now)
    assert (await app.runner.states.get("b")).last_fire == before
    await asyncio.to_thread(drop_refusal, db, "refuse", "runs")
    assert len(await app.scheduler.catch_up(now)) == 1  # nothing was lost: it runs now


NO_RUNS = ("INSERT", "runs", None, "crash")
NO_FIRE_RECORDS = [
    (f"refuse_{when}", when, "agent_state", "NEW.last_fire IS NOT NULL", "crash")
    for when in ("INSERT", "UPDATE")
]


async def test_a_run_is_started_only_with_its_fire_recorded(
    make_app: AppFactory, fake_llm: FakeLLM, new_location: NewLocation
) -> None:
    """The other order: a run without its fire recorded runs twice, once now and once
    when catch-up finds the fire unhandled. Here the fire's record fails."""
    fake_llm.default = echo
    app = await make_app([hourly("a")])
    for refusal in NO_FIRE_RECORDS:
        await asyncio.to_thread(add_refusal, new_location.made[0], *refusal)
    with pytest.raises(REFUSED):
        await app.scheduler.fire("a", datetime.now(UTC).replace(microsecond=0))
    assert await app.runner.runs.recent() == []
    assert fake_llm.requests == []


async def test_the_repeated_dst_hour_fires_a_daily_job_once(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([hourly("d", schedule="30 2 * * *")])
    await app.scheduler.fire("d", datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN))  # CEST
    await app.scheduler.fire("d", datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN))  # CET
    assert len(await app.runner.runs.recent("d")) == 1


async def test_a_late_job_records_the_fire_it_belongs_to(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([hourly("a")])
    now = datetime(2026, 11, 25, 10, 7, 30, tzinfo=UTC)  # APScheduler ran it 7 minutes late
    app.scheduler.clock = lambda: now
    await app.scheduler.fire("a")
    (run,) = await app.runner.runs.recent("a")
    assert run.scheduled_for == utcnow_iso(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
