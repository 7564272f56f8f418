"""A caller cancelled while its run is being committed (a client that hung up, a stopped
job) does not leave the run queued under this live process: the commit and the launch are
one step, so the run is carried out, or was never written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.agents.runs import Status, Trigger
from tests.agents.conftest import AppFactory, wait_done
from tests.fakes.llm import FakeLLM, echo
from tests.fakes.wait import until
from tests.stores import NewLocation, write_lock_held


def agent(name: str) -> dict[str, Any]:
    return {"name": name, "message": f"hello from {name}", "task": "chat"}


async def _yield(times: int = 3) -> None:
    for _ in range(times):  # let the caller reach its first wait (no time passes)
        await asyncio.sleep(0)


@pytest.mark.parametrize("entry", ["start", "run"])
async def test_a_caller_cancelled_mid_commit_still_gets_its_run_carried_out(
    make_app: AppFactory, fake_llm: FakeLLM, new_location: NewLocation, entry: str
) -> None:
    fake_llm.default = echo
    app = await make_app([agent("a")])
    # another connection holds the write lock: the run's transaction waits inside the
    # database; the block's end releases it, and the store's transaction commits
    with write_lock_held(new_location.made[0]):
        call = getattr(app.runner, entry)("a", Trigger.API)
        caller = asyncio.create_task(call)
        await _yield()
        caller.cancel()
        await _yield()
    with pytest.raises(asyncio.CancelledError):
        await caller
    (row,) = await _wait_for_run(app)
    run = await wait_done(app, int(row[0]))
    assert run.status == Status.OK and run.output == "hello from a"


async def _wait_for_run(app: Any) -> list[Any]:
    async def rows() -> list[Any] | None:
        found = await app.store.fetchall("SELECT id FROM runs")
        return list(found) or None

    return await until(rows, 10, "the cancelled caller's run row")
