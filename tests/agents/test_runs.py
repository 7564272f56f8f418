"""Agent runs end to end against the fake LLM: sessions, inputs, subagents, limits, failures."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.agents.runner import MAX_RECOVERIES, UnknownAgent
from core.agents.runs import Runs, Status, Trigger
from core.store.times import utcnow_iso
from tests.agents.conftest import AppFactory, add_run, wait_done
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply, echo
from tests.fakes.wait import until
from tests.stores import REFUSED, NewLocation, add_refusal


def agent(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "message": f"hello from {name}", "task": "chat", **kw}


async def outbox(app: Any, kind: str | None = None) -> list[dict[str, Any]]:
    where = " WHERE kind = ?" if kind else ""
    rows = await app.store.fetchall(
        f"SELECT * FROM outbox{where} ORDER BY id", (kind,) if kind else ()
    )
    return [dict(r) for r in rows]


async def test_a_run_answers_records_and_delivers(make_app: AppFactory, fake_llm: FakeLLM) -> None:
    fake_llm.script("qwen3:14b", Reply(text="the digest", input_tokens=9, output_tokens=2))
    app = await make_app(
        [agent("digest", message="Digest for {{ agent.name }} at {{ now.year }}", deliver=["log"])]
    )
    run = await app.runner.run("digest", "cli")
    assert run.status == "ok" and run.output == "the digest"
    assert run.session_id == f"cron:digest:{run.id}"
    assert run.route == "tier=0; model=local/qwen3:14b; attempts=1"
    (req,) = fake_llm.requests
    assert req.last_user_text.startswith("Digest for digest at 20")
    attempts = await app.store.fetchall("SELECT run_id, agent FROM attempts")
    assert [tuple(r) for r in attempts] == [(str(run.id), "digest")]
    (row,) = await outbox(app)
    assert row["status"] == "pending" and "the digest" in row["body"]  # stored before sending
    assert await app.delivery.drain() == 1
    (row,) = await outbox(app)
    assert row["status"] == "delivered" and row["external_id"] == "log"
    msgs = await app.store.fetchall(
        "SELECT role FROM messages WHERE session_id = ?", (run.session_id,)
    )
    assert [m[0] for m in msgs] == ["user", "assistant"]


async def test_concurrent_runs_never_see_each_others_messages(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    names = [f"agent{i}" for i in range(8)]
    app = await make_app(
        [agent(n, message=f"secret-{n}-token") for n in names],
        concurrency={"agents": 3, "subagents": 4},
    )
    runs = await asyncio.gather(*(app.runner.run(n, "cli") for n in names for _ in range(2)))
    assert all(r.status == "ok" for r in runs)
    for r in runs:
        assert r.output == f"secret-{r.agent}-token"
    assert len(fake_llm.requests) == 16
    for rec in fake_llm.requests:
        text = " ".join(rec.texts())
        assert sum(f"secret-{n}-token" in text for n in names) == 1


async def test_shared_session_carries_history_one_run_at_a_time(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([agent("chat", session="shared", message="turn {{ message }}")])
    first, second = await asyncio.gather(
        app.runner.run("chat", "cli", message="one"), app.runner.run("chat", "cli", message="two")
    )
    assert first.session_id == second.session_id == "shared:chat"
    # one at a time: had both run at once, the later one would see no history (checked by
    # removing the session's lock); the agent slots (2) allow both, so the lock decides
    earlier, later = fake_llm.requests
    assert len(earlier.texts()) == 1
    assert len(later.texts()) == 3  # the first run's question and answer, then its own


async def test_system_event_delivers_without_a_model_call(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    app = await make_app(
        [
            {
                "name": "water",
                "kind": "systemEvent",
                "session": "shared",
                "message": "Drink water ({{ agent.name }})",
                "deliver": ["log"],
            }
        ]
    )
    run = await app.runner.run("water", "schedule")
    assert run.status == "ok" and run.output == "Drink water (water)"
    assert fake_llm.requests == []
    assert len(await outbox(app)) == 1


async def test_prompt_template_file_inputs_and_last_run(
    make_app: AppFactory, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.default = echo
    (tmp_path / "templates" / "prompts").mkdir(parents=True)
    (tmp_path / "templates" / "prompts" / "notes.j2").write_text(
        "Notes: {{ inputs.notes }} | before: {{ last_run or 'nothing' }}", encoding="utf-8"
    )
    (tmp_path / "notes.txt").write_text("buy milk", encoding="utf-8")
    app = await make_app(
        [
            agent(
                "notes",
                message=None,
                prompt="prompts/notes.j2",
                inputs={"notes": {"file": "notes.txt"}},
            )
        ]
    )
    first = await app.runner.run("notes", "cli")
    assert first.output == "Notes: buy milk | before: nothing"
    second = await app.runner.run("notes", "cli")
    assert second.output == "Notes: buy milk | before: Notes: buy milk | before: nothing"


async def test_input_error_fails_the_run_with_the_reason(make_app: AppFactory) -> None:
    app = await make_app([agent("broken", inputs={"feed": {"file": "missing.txt"}})])
    run = await app.runner.run("broken", "cli")
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith("input feed: file ")
    assert "does not exist" in run.error


async def test_template_error_fails_the_run(make_app: AppFactory) -> None:
    app = await make_app([agent("typo", message="{{ inptus.x }}")])
    run = await app.runner.run("typo", "cli")
    assert run.status == "failed" and "inptus" in (run.error or "")


def slow_echo(request: RecordedRequest) -> Reply:
    return Reply(text=request.last_user_text, delay_s=0.05)


async def test_subagents_fan_out_within_the_limit(
    make_app: AppFactory, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.default = slow_echo
    feeds = [{"title": f"feed {i}"} for i in range(6)]
    (tmp_path / "feeds.json").write_text(json.dumps(feeds), encoding="utf-8")
    app = await make_app(
        [
            agent(
                "morning",
                inputs={"feeds": {"file": "feeds.json"}},
                subagents={
                    "over": "inputs.feeds",
                    "task": "classify",
                    "prompt": "Summarize {{ item.title }}",
                },
                message="Digest:{% for r in subresults %} [{{ r.output }}]{% endfor %}",
            )
        ],
        concurrency={"agents": 2, "subagents": 2},
    )
    run = await app.runner.run("morning", "cli")
    assert run.status == "ok", run.error
    assert run.output == "Digest: " + " ".join(f"[Summarize feed {i}]" for i in range(6))
    assert app.runner.peak["subagents"] == 2  # never more than the limit, and it was used
    rows = await app.store.fetchall(
        "SELECT COUNT(*) FROM attempts WHERE run_id = ?", (str(run.id),)
    )
    assert rows[0][0] == 7  # six children and the parent, all on the parent's run id
    children = await app.store.fetchall(
        "SELECT COUNT(*) FROM sessions WHERE parent_id = ?", (run.session_id,)
    )
    assert children[0][0] == 6


async def test_agent_limit_queues_the_rest_visibly(make_app: AppFactory, fake_llm: FakeLLM) -> None:
    fake_llm.default = slow_echo
    app = await make_app(
        [agent(f"a{i}") for i in range(5)], concurrency={"agents": 2, "subagents": 4}
    )
    ids = [await app.runner.start(f"a{i}", "api") for i in range(5)]
    seen_waiting = 0

    def all_through() -> bool:
        nonlocal seen_waiting
        depth = app.runner.queue_depths()
        seen_waiting = max(seen_waiting, depth["agents_waiting"])
        return depth["agents_waiting"] == 0 and depth["agents_running"] == 0 and seen_waiting > 0

    await until(all_through, 20, "every run through the two agent slots")
    runs = [await wait_done(app, rid) for rid in ids]
    assert all(r.status == "ok" for r in runs)
    assert app.runner.peak["agents"] == 2
    assert seen_waiting >= 1


async def test_failure_streak_alerts_then_disables(make_app: AppFactory, fake_llm: FakeLLM) -> None:
    fake_llm.default = Reply(status=500)
    app = await make_app(
        [agent("flaky", deliver=["log"])],
        alerts={"deliver": ["log"], "failures_before_alert": 2, "failures_before_disable": 3},
    )
    for expected_streak in (1, 2, 3):
        run = await app.runner.run("flaky", "cli")
        assert run.status == "failed" and "no model could answer" in (run.error or "")
        assert (await app.runner.states.get("flaky")).consecutive_failures == expected_streak
    every = await outbox(app, "alert")
    # each model's breaker opened too: one alert per model for the whole outage
    breakers = [a for a in every if "breaker opened" in a["body"]]
    assert len(breakers) == len(app.config.models)
    alerts = [a for a in every if a not in breakers]
    assert len(alerts) == 2
    assert "failed 2 times in a row" in alerts[0]["body"]
    assert "disabled after 3 failures in a row" in alerts[1]["body"]
    state = await app.runner.states.get("flaky")
    assert state.disabled and "3 failures" in (state.disabled_reason or "")
    assert await outbox(app, "result") == []  # failures are not delivered as results
    await app.scheduler.fire("flaky")  # a disabled agent's schedule does nothing
    assert len(await app.runner.runs.recent("flaky")) == 3
    await app.runner.states.set_disabled("flaky", False)
    assert (await app.runner.states.get("flaky")).consecutive_failures == 0


async def test_a_success_resets_the_streak(make_app: AppFactory, fake_llm: FakeLLM) -> None:
    fake_llm.script("qwen3:14b", Reply(status=400))
    fake_llm.script("gemini-flash", Reply(status=400))
    fake_llm.script("deepseek-chat", Reply(status=400))
    fake_llm.script("deepseek-backup", Reply(status=400))
    fake_llm.script("claude-opus", Reply(status=400))
    app = await make_app([agent("x")])
    assert (await app.runner.run("x", "cli")).status == "failed"
    fake_llm.default = Reply(text="fine")
    app.health._breakers.clear()
    assert (await app.runner.run("x", "cli")).status == "ok"
    assert (await app.runner.states.get("x")).consecutive_failures == 0


async def test_timeout_fails_the_run_and_keeps_the_attempt(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = Reply(hang=True)
    app = await make_app([agent("slow", timeout_s=0.3)])
    run = await app.runner.run("slow", "cli")
    assert run.status == "failed" and run.error == "timed out after 0.3s (the agent's timeout_s)"
    rows = await app.store.fetchall("SELECT outcome FROM attempts WHERE run_id = ?", (str(run.id),))
    assert [r[0] for r in rows] == ["cancelled"]


async def test_rerun_links_to_the_original(make_app: AppFactory, fake_llm: FakeLLM) -> None:
    fake_llm.default = echo
    app = await make_app([agent("r", message="again {{ message }}")])
    first = await app.runner.run("r", "chat", message="please")
    rid = await app.runner.rerun(first.id)
    second = await wait_done(app, rid)
    assert (second.trigger, second.parent_run, second.message) == ("rerun", first.id, "please")
    assert second.output == first.output == "again please"


async def test_unknown_agent_names_the_closest(make_app: AppFactory) -> None:
    app = await make_app([agent("morning-digest"), agent("evening-digest")])
    with pytest.raises(UnknownAgent, match="did you mean morning-digest"):
        await app.runner.run("morning-digets", "cli")


async def test_queued_runs_from_another_process_are_adopted(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([agent("q")])
    rid = await app.runner.queue("q", Trigger.CLI)  # as `openclaw run` does
    assert await app.runner.adopt_unclaimed() == 1
    assert await app.runner.adopt_unclaimed() == 0  # claimed once only
    run = await wait_done(app, rid)
    assert run.status == "ok" and run.owner == app.owner


async def test_recovery_requeues_a_run_a_dead_process_never_started(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    # a dead process (pid 999999 on this host) had taken two runs: one was running, the
    # other still waited for a slot when it died
    fake_llm.default = echo
    app = await make_app([agent("q")])
    dead = f"{socket.gethostname()}:999999:1"
    running = await add_run(app, "q", "schedule", owner=dead)
    await app.runner.runs.start(running, "s-1")
    waiting = await add_run(app, "q", "recovery", parent_run=running, owner=dead)

    requeued = await app.runner.recover()

    # the running one was interrupted and is retried; the waiting one (itself a retry,
    # which is never retried again) was not interrupted: it is queued again, unowned
    assert (await app.runner.runs.get(running)).status == "interrupted"  # type: ignore[union-attr]
    again = await app.runner.runs.get(waiting)
    assert again is not None and (again.status, again.owner) == ("queued", None)
    assert requeued == []  # `running` already has a retry: `waiting`
    assert await app.runner.adopt_unclaimed() == 1
    assert (await wait_done(app, waiting)).status == "ok"


async def test_a_catch_up_run_handed_back_by_recovery_still_ends_late(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = echo
    app = await make_app([agent("q")])
    dead = f"{socket.gethostname()}:999999:1"
    an_hour_ago = utcnow_iso(datetime.now(UTC) - timedelta(hours=1))
    late = await add_run(app, "q", "schedule", scheduled_for=an_hour_ago, owner=dead)
    on_time = await add_run(app, "q", "schedule", scheduled_for=utcnow_iso(), owner=dead)
    await app.runner.recover()
    assert await app.runner.adopt_unclaimed() == 2
    assert (await wait_done(app, late)).status == "late"
    assert (await wait_done(app, on_time)).status == "ok"


# real triggers that fail one of the two writes: (event, table, when)
REFUSE_OUTBOX_ROWS = ("INSERT", "outbox", None)
REFUSE_THE_OUTCOME = ("UPDATE OF status", "runs", "NEW.status <> 'running'")


@pytest.mark.parametrize(
    "trigger", [REFUSE_OUTBOX_ROWS, REFUSE_THE_OUTCOME], ids=["outbox", "outcome"]
)
async def test_a_run_outcome_and_its_messages_are_written_together(
    make_app: AppFactory,
    fake_llm: FakeLLM,
    new_location: NewLocation,
    trigger: tuple[str, str, str | None],
) -> None:
    # whichever of the two writes fails, the other must not land: a finished run without
    # its digest loses the digest; a digest queued for a run still "running" is sent again
    # when recovery retries the run
    fake_llm.default = echo
    app = await make_app([agent("d", deliver=["log"])])
    await asyncio.to_thread(add_refusal, new_location.made[0], "refuse", *trigger)
    with pytest.raises(REFUSED, match="refused"):
        await app.runner.run("d", "cli")
    assert len(fake_llm.requests) == 1  # the work was done: only its record failed
    (row,) = await app.store.fetchall("SELECT status, finished_at, output, error FROM runs")
    assert tuple(row) == ("running", None, None, None)
    assert await outbox(app) == []


async def test_a_retry_interrupted_again_is_retried_up_to_the_limit(
    make_app: AppFactory,
) -> None:
    app = await make_app([agent("q")])
    runs = app.runner.runs

    async def chain(length: int) -> list[int]:
        ids = [await add_run(app, "q", "schedule", status="interrupted")]
        for _ in range(length):
            ids.append(
                await add_run(app, "q", "recovery", status="interrupted", parent_run=ids[-1])
            )
        return ids

    short = await chain(1)  # the original and one retry, both interrupted
    spent = await chain(MAX_RECOVERIES)  # retried as often as allowed

    requeued = await app.runner.recover()

    assert len(requeued) == 1
    again = await runs.get(requeued[0])
    assert again is not None and (again.trigger, again.parent_run) == ("recovery", short[-1])
    assert not [r for r in await runs.recent("q", 50) if r.parent_run == spent[-1]]


async def test_a_runs_times_come_from_its_clock_and_its_enums_read_as_text(
    make_app: AppFactory,
) -> None:
    app = await make_app([agent("q")])
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    runs = Runs(app.store, clock=lambda: now)
    async with app.store.transaction() as tx:
        rid = await runs.create(tx, "q", Trigger.CLI)
    now += timedelta(seconds=5)
    await runs.start(rid, "s-1")
    now += timedelta(seconds=5)
    async with app.store.transaction() as tx:
        await runs.finish(tx, rid, Status.OK, output="done")
    run = await runs.get(rid)
    assert run is not None
    assert (run.created_at, run.started_at, run.finished_at) == (
        "2026-03-01T12:00:00.000000Z",
        "2026-03-01T12:00:05.000000Z",
        "2026-03-01T12:00:10.000000Z",
    )
    assert (run.trigger, run.status) == (Trigger.CLI, Status.OK)
    stored = await app.store.fetchall("SELECT trigger, status FROM runs WHERE id = ?", (rid,))
    assert tuple(stored[0]) == ("cli", "ok")  # the same text as before the enums
    shown = json.loads(json.dumps(run.as_dict()))
    assert (shown["trigger"], shown["status"]) == ("cli", "ok")
