"""An App with agents, in front of the fake LLM server, on each engine's fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.agents.runs import Run, Trigger
from core.app import App
from core.config.settings import Settings
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM
from tests.fakes.wait import until
from tests.stores import NewLocation

AppFactory = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_app(
    fake_llm: FakeLLM, tmp_path: Path, new_location: NewLocation
) -> AsyncIterator[AppFactory]:
    opened: list[App] = []

    async def make(agents: list[dict[str, Any]], **overrides: Any) -> App:
        base = pyramid_urls(fake_llm.base_url)
        cfg = make_config(base, agents=agents, **overrides)
        app = await App.open(
            cfg,
            Settings(_env_file=None),  # type: ignore[call-arg]
            new_location(),
            base_dir=tmp_path,
        )
        opened.append(app)
        return app

    yield make
    for app in opened:
        await app.runner.shutdown(5)
        app.scheduler.stop()
        await app.close()


async def wait_done(app: App, run_id: int, limit_s: float = 20) -> Run:
    """Poll a background run until it finishes (bounded)."""

    async def finished() -> Run | None:
        run = await app.runner.runs.get(run_id)
        return run if run is not None and run.done else None

    return await until(finished, limit_s, f"run {run_id} finishing")


async def add_run(app: App, agent: str, trigger: str, **fields: Any) -> int:
    """A run row as another process (or an earlier one) left it."""
    async with app.store.transaction() as tx:
        return await app.runner.runs.create(tx, agent, Trigger(trigger), **fields)


async def set_last_fire(app: App, agent: str, when: str) -> None:
    """The agent's last handled fire, as an earlier process recorded it."""
    async with app.store.transaction() as tx:
        await app.runner.states.set_last_fire(tx, agent, when)


async def set_seen(app: App, agent: str, since: str | None) -> None:
    """The scheduler started the agent with its current schedule at ``since``, as an
    earlier process recorded it (None: its fires are expected as far back as asked)."""
    from core.agents.scheduler import schedule_key

    cfg = app.config.agent(agent)
    assert cfg is not None
    async with app.store.transaction() as tx:
        key = schedule_key(cfg, app.config.scheduler.spread_s)
        await app.runner.states.set_schedule(tx, agent, key, since)
