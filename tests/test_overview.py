"""The overview on a real SQLite store, stamped with a test's clock: one query for the
agents whatever their number, and the records the gateway and the CLI print."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from core.app import App
from core.config.settings import Settings
from core.engine.ledger import RequestMeta, TraceStep
from core.types import Attempt, Usage
from tests.configs import make_config
from tests.stores import NewLocation

# 12:00 UTC: midnight in Tokyo (UTC+9) was at 15:00 UTC the day before
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
Opener = Callable[..., Awaitable[App]]


@pytest.fixture
async def open_app(new_location: NewLocation) -> AsyncIterator[Opener]:
    opened: list[App] = []

    async def open_(agents: list[dict[str, Any]]) -> App:
        app = await App.open(
            make_config(agents=agents),
            Settings(_env_file=None),  # type: ignore[call-arg]
            new_location(),
            clock=lambda: NOW,
        )
        opened.append(app)
        return app

    yield open_
    for app in opened:
        await app.close()


def agent(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "task": "chat", "message": "hi", **kw}


async def insert(app: App, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Rows written as they are (times the store would not pick)."""
    async with app.store.transaction() as tx:
        await tx.executemany(sql, rows)


async def statements(
    app: App, read: Callable[[], Awaitable[Any]], monkeypatch: pytest.MonkeyPatch
) -> int:
    """How many SQL statements ``read()`` makes the store run (on either engine: every
    read outside a transaction goes through ``Store.fetchall``)."""
    seen: list[str] = []
    fetchall = app.store.fetchall

    async def counted(sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        return await fetchall(sql, params)

    with monkeypatch.context() as patch:
        patch.setattr(app.store, "fetchall", counted)
        await read()
    return len(seen)


@pytest.mark.parametrize("n", [1, 1000])
async def test_the_agents_overview_is_one_query_for_any_number_of_agents(
    open_app: Opener, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was three per agent (state, last run, cost today): 3,000 for 1,000 agents."""
    app = await open_app([agent(f"a{i}", schedule="0 7 * * *") for i in range(n)])
    await insert(
        app,
        "INSERT INTO runs (agent, trigger, status, created_at, cost_usd) VALUES (?, 'cli', 'ok',"
        " '2026-03-10T08:00:00.000000Z', 0.5)",
        [(f"a{i}",) for i in range(n)],
    )
    rows: list[Any] = []

    async def read() -> None:
        rows.extend(await app.overview.agents())

    assert await statements(app, read, monkeypatch) == 1
    assert [r.name for r in rows] == [f"a{i}" for i in range(n)]
    assert {r.cost_today_usd for r in rows} == {0.5}


async def test_no_agents_no_query(open_app: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    app = await open_app([])
    assert await statements(app, app.overview.agents, monkeypatch) == 0


async def test_each_agent_in_its_own_day_and_state(open_app: Opener) -> None:
    app = await open_app(
        [
            agent("tokyo", schedule="30 9 * * *", timezone="Asia/Tokyo", description="d"),
            agent("utc", schedule="0 7 * * *"),
            agent("off", schedule="0 8 * * *", enabled=False),
            agent("paused", deliver=["log", "telegram:1"]),
        ]
    )
    # 16:00 UTC yesterday is today in Tokyo, not in UTC
    await insert(
        app,
        "INSERT INTO runs (agent, trigger, status, created_at, cost_usd)"
        " VALUES (?, 'cli', ?, ?, ?)",
        [
            ("tokyo", "ok", "2026-03-09T14:59:59.999999Z", 4.0),
            ("tokyo", "failed", "2026-03-09T16:00:00.000000Z", 0.25),
            ("utc", "late", "2026-03-09T16:00:00.000000Z", 1.0),
            ("utc", "ok", "2026-03-10T00:00:00.000000Z", 0.125),
            ("gone", "ok", "2026-03-10T01:00:00.000000Z", 9.0),  # no longer configured
        ],
    )
    await app.runner.states.set_disabled("paused", True, "by @op")
    await insert(
        app, "INSERT INTO agent_state (agent, consecutive_failures) VALUES (?, ?)", [("utc", 2)]
    )
    rows = {r.name: r.as_dict() for r in await app.overview.agents()}
    assert list(rows) == ["tokyo", "utc", "off", "paused"]
    assert rows["tokyo"] == {
        "name": "tokyo",
        "description": "d",
        "kind": "agentTurn",
        "schedule": "30 9 * * *",
        "timezone": "Asia/Tokyo",
        "enabled": True,
        "disabled_reason": None,
        "next_fire": "2026-03-11T09:30:00+09:00",  # 09:30 Tokyo today was 00:30 UTC
        "last_status": "failed",
        "last_run": 2,
        "consecutive_failures": 0,
        "cost_today_usd": 0.25,
        "deliver": ["log"],
    }
    assert list(rows["tokyo"]) == list(rows["utc"])  # the order /api/agents answers in
    utc = rows["utc"]
    assert (utc["next_fire"], utc["last_run"], utc["last_status"]) == (
        "2026-03-11T07:00:00+00:00",
        4,
        "ok",
    )
    assert (utc["cost_today_usd"], utc["consecutive_failures"]) == (0.125, 2)
    off = rows["off"]
    assert (off["enabled"], off["disabled_reason"], off["next_fire"]) == (
        False,
        "enabled = false in the config",
        None,
    )
    paused = rows["paused"]
    assert (paused["enabled"], paused["disabled_reason"], paused["last_run"]) == (
        False,
        "by @op",
        None,
    )
    assert paused["deliver"] == ["log", "telegram:1"]


async def test_status_snapshot_keys_and_plugins(open_app: Opener) -> None:
    app = await open_app([])
    snap = (await app.overview.status(1.5)).as_dict()
    assert [k for k in snap if k != "cluster"] == [
        "version",
        "uptime_s",
        "tiers",
        "models",
        "keys",
        "embedded",
        "queues",
        "pending_approvals",
        "store",
        "telegram",
    ]
    assert snap["telegram"] == {"mode": "off", "state": "TELEGRAM_BOT_TOKEN not set"}
    assert list(snap["queues"]) == [
        "agents_waiting",
        "agents_running",
        "subagents_waiting",
        "subagents_running",
        "outbox_pending",
        "outbox_unknown",
    ]
    assert snap["queues"]["outbox_unknown"] == 0
    assert snap["tiers"][0] == {
        "level": 0,
        "models": ["local/qwen3:14b"],
        "requires_approval": False,
        "state": "ok",
    }
    assert snap["models"][0] == {
        "model": "local/qwen3:14b",
        "state": "closed",
        "cooldown_left_s": 0.0,
        "consecutive_failures": 0,
        "last_outcome": "",
        "last_error": "",
        "last_latency_ms": None,
        "tier": 0,
        "provider": "local",
        "api": "ollama",
    }
    app.facade.add_status_hook("other", lambda: {"x": 1})
    app.facade.add_status_hook("telegram", lambda: {"mode": "polling"})
    snap = (await app.overview.status(1.5)).as_dict()
    assert [k for k in snap if k != "cluster"][-2:] == ["telegram", "other"]
    assert snap["telegram"] == {"mode": "polling"}
    ready = await app.overview.readiness()
    assert ready.ready and ready.store_ok and set(ready.tiers.values()) == {"ok"}


async def test_a_runs_trace_comes_from_the_ledger_in_order(open_app: Opener) -> None:
    app = await open_app([agent("a")])
    for run_id, outcome in (("7", "unusable"), ("8", "ok"), ("7", "ok")):
        meta = RequestMeta(f"r{run_id}", 0, run_id=run_id, agent="a")
        attempt = Attempt(0, "local", "qwen3:14b", outcome, "", None, 12.5, Usage(10, 20), 0.1)
        await app.ledger.record(meta, attempt)
    assert await app.ledger.trace(7) == [
        TraceStep(0, "local", "qwen3:14b", "unusable", "", 12.5, 10, 20, 0.1),
        TraceStep(0, "local", "qwen3:14b", "ok", "", 12.5, 10, 20, 0.1),
    ]
    assert await app.ledger.trace(9) == []
