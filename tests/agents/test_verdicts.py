"""NO_REPLY and AUTOMATION_FAILED: what an agent's answer says about its run."""

from __future__ import annotations

from typing import Any

import pytest

from core.agents.runs import Trigger
from core.agents.verdicts import Verdict, verdict
from tests.agents.conftest import AppFactory
from tests.fakes.llm import FakeLLM, Reply


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ("NO_REPLY", Verdict(quiet=True)),
        ("\n  NO_REPLY  \nnothing changed since yesterday", Verdict(quiet=True)),
        ("NO_REPLY, but here is a digest", Verdict()),  # the first line must be exactly it
        ("Nothing new. NO_REPLY", Verdict()),
        ("no_reply", Verdict()),
        (
            "AUTOMATION_FAILED: backup is 3 days old",
            Verdict(failure="the agent reported a failure: backup is 3 days old"),
        ),
        ("AUTOMATION_FAILED:", Verdict(failure="the agent reported a failure: (no reason given)")),
        ("The backup ran. AUTOMATION_FAILED: no", Verdict()),
        ("all good", Verdict()),
    ],
)
def test_the_first_line_decides(answer: str, said: Verdict) -> None:
    assert verdict(answer) == said


def agent(**kw: Any) -> dict[str, Any]:
    return {"name": "watch", "message": "anything new?", "task": "chat", "deliver": ["log"], **kw}


async def outbox(app: Any) -> list[str]:
    return [r[0] for r in await app.store.fetchall("SELECT kind FROM outbox ORDER BY id")]


async def test_no_reply_is_an_ok_quiet_run_that_delivers_nothing(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.script("qwen3:14b", Reply(text="NO_REPLY"), Reply(text="It changed: v2 is out."))
    app = await make_app([agent()])
    quiet = await app.runner.run("watch", "cli")
    assert (quiet.status, quiet.quiet, quiet.output, quiet.error) == ("ok", True, "NO_REPLY", None)
    assert await outbox(app) == []
    assert (await app.runner.states.get("watch")).consecutive_failures == 0
    loud = await app.runner.run("watch", "cli")
    assert (loud.status, loud.quiet) == ("ok", False)
    assert await outbox(app) == ["result"]
    assert (await app.runner.runs.get(quiet.id)).quiet  # type: ignore[union-attr]


async def test_automation_failed_fails_the_run_and_counts_in_the_streak(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    fake_llm.default = Reply(text="AUTOMATION_FAILED: the backup is 3 days old\ndetails…")
    app = await make_app(
        [agent()],
        alerts={"deliver": ["log"], "failures_before_alert": 2, "failures_before_disable": 3},
    )
    for streak in (1, 2):
        run = await app.runner.run("watch", "cli")
        assert run.status == "failed" and not run.quiet
        assert run.error == "the agent reported a failure: the backup is 3 days old"
        assert run.output is not None and run.output.startswith("AUTOMATION_FAILED:")  # kept
        assert (await app.runner.states.get("watch")).consecutive_failures == streak
    assert await outbox(app) == ["alert"]  # no result was delivered, the alert was


async def test_a_system_event_is_delivered_as_written(make_app: AppFactory) -> None:
    app = await make_app(
        [agent(kind="systemEvent", session="shared", message="NO_REPLY is only for models")]
    )
    run = await app.runner.run("watch", "cli")
    assert (run.status, run.quiet) == ("ok", False)
    assert await outbox(app) == ["result"]


async def test_a_reply_run_recovered_by_another_process_still_answers_in_the_reply_chat(
    make_app: AppFactory, fake_llm: FakeLLM
) -> None:
    # the reply's target is in the run's row, not in the process that queued it
    fake_llm.default = Reply(text="more")
    app = await make_app(
        [agent(deliver=["log", "slack:ops"])],
        channels={"slack": {"ops": {"webhook_url_env": "SLACK_OPS_UNSET"}}},
    )
    parent = await app.runner.run("watch", "cli")
    async with app.store.transaction() as tx:
        rid = await app.runner.add(tx, "watch", Trigger.REPLY, message="and?", parent_run=parent.id)
        await tx.execute("UPDATE runs SET reply_to = 'log' WHERE id = ?", (rid,))
    run = await app.runner.execute(rid)
    assert (run.status, run.reply_to) == ("ok", "log")
    targets = await app.store.fetchall("SELECT target FROM outbox WHERE run_id = ?", (rid,))
    assert [t[0] for t in targets] == ["log"]
