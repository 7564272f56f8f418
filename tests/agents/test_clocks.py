"""The runner, its sessions and recovery read the clock they are given, not the wall clock:
a test sets the time instead of rewriting rows or waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.app import App
from core.config.settings import Settings
from core.store.path import DbLocation
from core.store.times import utcnow_iso
from tests.agents.conftest import AppFactory, add_run
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, echo

T0 = datetime(2031, 7, 1, 5, 0, tzinfo=UTC)


def agent(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "message": f"hello from {name}", "task": "chat", **kw}


async def test_the_prompts_now_is_the_runners_clock_in_the_agents_timezone(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([agent("d", message="at {{ now.isoformat() }}", timezone="Europe/Berlin")])
    app.runner.clock = lambda: T0
    run = await app.runner.run("d", "cli")
    assert run.output == "at 2031-07-01T07:00:00+02:00"  # summer time in Berlin


async def test_a_session_and_its_messages_are_stamped_by_the_sessions_clock(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([agent("d")])
    now = [T0]
    app.runner.sessions.clock = lambda: now[0]
    sid = "cron:d:1"
    await app.runner.sessions.open(sid, mode="isolated", agent="d", run_id=None)
    now[0] += timedelta(seconds=90)
    await app.runner.sessions.append(sid, "user", "hi")
    (created,) = await app.store.fetchall("SELECT created_at FROM sessions WHERE id = ?", (sid,))
    (msg,) = await app.store.fetchall("SELECT ts FROM messages WHERE session_id = ?", (sid,))
    assert created[0] == utcnow_iso(T0)
    assert msg[0] == utcnow_iso(T0 + timedelta(seconds=90))


async def test_recovery_retries_runs_interrupted_within_the_window_only(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    # [serve] recover_within_s (a day by default) bounds how old an interruption may be:
    # the clock is set on either side of that edge, measured from the row's finished_at
    fake_llm.default = echo
    app = await make_app([agent("q")])
    rid = await add_run(app, "q", "schedule", status="interrupted")
    run = await app.runner.runs.get(rid)
    assert run is not None and run.finished_at is not None
    finished = datetime.fromisoformat(run.finished_at)
    window = timedelta(seconds=app.config.serve.recover_within_s)

    app.runner.clock = lambda: finished + window + timedelta(seconds=1)
    assert await app.runner.recover() == []  # too old: left interrupted

    app.runner.clock = lambda: finished + window - timedelta(seconds=1)
    (retry,) = await app.runner.recover()
    again = await app.runner.runs.get(retry)
    assert again is not None and (again.trigger, again.parent_run) == ("recovery", rid)


async def test_app_open_gives_its_one_clock_to_everything_that_stamps_time(
    fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation
) -> None:
    # a run through the whole app on a stopped clock: its row, its session and its outbox row
    # carry that time, and the other clock readers got the same clock
    fake_llm.default = echo
    cfg = make_config(pyramid_urls(fake_llm.base_url), agents=[agent("d", deliver=["log"])])
    clock = lambda: T0  # noqa: E731
    app = await App.open(
        cfg,
        Settings(_env_file=None),  # type: ignore[call-arg]
        store_location,
        base_dir=tmp_path,
        clock=clock,
    )
    try:
        run = await app.runner.run("d", "cli")
        stamped = utcnow_iso(T0)
        assert (run.created_at, run.started_at, run.finished_at) == (stamped,) * 3
        (session,) = await app.store.fetchall("SELECT created_at FROM sessions")
        (row,) = await app.store.fetchall("SELECT created_at, next_attempt_at FROM outbox")
        assert session[0] == stamped and tuple(row) == (stamped, stamped)
        (attempt,) = await app.store.fetchall("SELECT ts FROM attempts")
        assert attempt[0] == stamped
        readers = [app.runner, app.runner.runs, app.runner.sessions, app.outbox, app.approvals]
        readers += [app.ledger]
        assert all(r.clock is clock for r in readers)
        assert app.scheduler.clock is clock and app.overview.clock is clock
    finally:
        await app.runner.shutdown(5)
        await app.close()
