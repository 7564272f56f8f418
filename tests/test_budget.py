"""Spend caps under concurrency, period roll-over in the configured zone, alerts once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.app import App
from core.config.settings import Settings
from core.engine.budget import BudgetGuard, period_end, period_start
from core.engine.ledger import RequestMeta
from core.errors import AllAttemptsFailed
from core.store.path import DbLocation
from core.types import Attempt, ChatRequest, Message, StreamDelta, Usage
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.stores import NewLocation, location_env

BERLIN = ZoneInfo("Europe/Berlin")
# deep/deepseek-chat: 0.28 in, 0.42 out per 1M; max_tokens 512; prompt "hi" → 1 token
WORST = (1 * 0.28 + 512 * 0.42) / 1e6


@pytest.fixture
async def app_factory(
    fake_llm: FakeLLM, tmp_path: Path, new_location: NewLocation
) -> AsyncIterator[Any]:
    opened: list[App] = []

    async def make(**overrides: Any) -> App:
        base = pyramid_urls(fake_llm.base_url)
        app = await App.open(
            make_config(base, **overrides),
            Settings(_env_file=None),  # type: ignore[call-arg]
            new_location(),
            base_dir=tmp_path,
        )
        opened.append(app)
        return app

    yield make
    for app in opened:
        await app.close()


def slow_full(request: RecordedRequest) -> Reply:
    # bills the whole budget: actual cost == the reserved worst case
    return Reply(text="x", delay_s=0.05, input_tokens=1, output_tokens=512)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_fifty_concurrent_requests_never_pass_the_cap(
    app_factory: Any, fake_llm: FakeLLM, stream: bool
) -> None:
    fake_llm.default = slow_full
    cap = 10.5 * WORST  # room for ten
    app = await app_factory(budgets={"tier": {"2": {"day": cap}}}, approvals={"default": "deny"})
    req = ChatRequest((Message("user", "hi"),), tier=2)

    async def one() -> str:
        try:
            if stream:
                async for item in app.engine.stream(req):
                    if isinstance(item, StreamDelta):
                        pass
                return "ok"
            await app.engine.complete(req)
            return "ok"
        except AllAttemptsFailed as e:
            assert "over budget: tier 2 day cap" in str(e)
            return "over"

    results = await asyncio.gather(*(one() for _ in range(50)))
    spent = (
        await app.store.fetchall("SELECT COALESCE(SUM(cost_usd), 0) FROM attempts WHERE tier = 2")
    )[0][0]
    assert spent <= cap + 1e-12
    assert results.count("ok") == 10 and results.count("over") == 40
    (report,) = await app.engine.budget.report()  # type: ignore[union-attr]
    assert report["reserved_usd"] == 0 and report["remaining_usd"] < WORST


async def test_a_tier3_cap_never_blocks_tier0(app_factory: Any, fake_llm: FakeLLM) -> None:
    fake_llm.default = Reply(text="free answer")
    app = await app_factory(budgets={"tier": {"3": {"day": 0.0}}})
    result = await app.engine.complete(ChatRequest((Message("user", "hi"),), task="chat"))
    assert result.answered_by.tier == 0


async def test_over_budget_is_skipped_with_the_reason_and_falls_back(
    app_factory: Any, fake_llm: FakeLLM
) -> None:
    fake_llm.default = Reply(text="fine", input_tokens=1, output_tokens=1)
    app = await app_factory(budgets={"model": {"deep/deepseek-chat": {"day": 0.0}}})
    result = await app.engine.complete(ChatRequest((Message("user", "hi"),), tier=2))
    assert result.answered_by.ref == "deep2/deepseek-backup"
    skipped = result.attempts[0]
    assert skipped.outcome == "skipped"
    assert skipped.reason == "over budget: model deep/deepseek-chat day cap $0.00, spent $0.00"


def att(tier: int, ref: str, cost: float) -> Attempt:
    provider, model = ref.split("/", 1)
    return Attempt(tier, provider, model, "ok", usage=Usage(1, 1), cost_usd=cost)


async def test_periods_roll_over_at_local_midnight_and_month_end(app_factory: Any) -> None:
    app = await app_factory(
        budgets={"timezone": "Europe/Berlin", "total": {"day": 1.0, "month": 3.0}}
    )
    now = [datetime(2026, 11, 30, 22, 30, tzinfo=UTC)]  # 23:30 in Berlin, the month's last day
    guard = BudgetGuard(app.store, app.config, clock=lambda: now[0])
    await app.ledger.record(
        RequestMeta("r1", 2), att(2, "deep/deepseek-chat", 0.9), when=now[0] - timedelta(minutes=5)
    )
    await app.ledger.record(
        RequestMeta("r0", 2),
        att(2, "deep/deepseek-chat", 1.5),
        when=datetime(2026, 11, 10, tzinfo=UTC),
    )
    rid, why = await guard.reserve(2, "deep/deepseek-chat", None, 0.2)
    assert rid is None and why == "over budget: total day cap $1.00, spent $0.90"
    now[0] = datetime(2026, 11, 30, 23, 1, tzinfo=UTC)  # 00:01 on 1 December in Berlin
    rid, why = await guard.reserve(2, "deep/deepseek-chat", None, 0.2)
    assert why is None and rid is not None  # a new day and a new month
    rows = {r["period"]: r for r in await guard.report()}
    assert rows["day"]["spent_usd"] == 0 and rows["day"]["reserved_usd"] == pytest.approx(0.2)
    assert rows["month"]["spent_usd"] == 0


@pytest.mark.parametrize(
    ("now", "period", "start", "end"),
    [
        (
            datetime(2026, 3, 29, 12, tzinfo=UTC),
            "day",
            datetime(2026, 3, 28, 23, tzinfo=UTC),
            datetime(2026, 3, 29, 22, tzinfo=UTC),
        ),  # the 23-hour DST day
        (
            datetime(2026, 2, 14, tzinfo=UTC),
            "month",
            datetime(2026, 1, 31, 23, tzinfo=UTC),
            datetime(2026, 2, 28, 23, tzinfo=UTC),
        ),
        (
            datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
            "month",
            datetime(2026, 12, 31, 23, tzinfo=UTC),
            datetime(2027, 1, 31, 23, tzinfo=UTC),
        ),
    ],
)
def test_period_bounds(now: datetime, period: str, start: datetime, end: datetime) -> None:
    assert period_start(period, now, BERLIN) == start
    assert period_end(period, now, BERLIN) == end


async def test_alerts_fire_once_per_threshold_and_period(app_factory: Any) -> None:
    app = await app_factory(budgets={"total": {"day": 1.0}})
    alerts: list[str] = []

    async def alert(text: str) -> None:
        alerts.append(text)

    now = [datetime(2026, 11, 25, 12, tzinfo=UTC)]
    guard = BudgetGuard(app.store, app.config, alert, clock=lambda: now[0])

    async def spend(amount: float) -> None:
        rid, why = await guard.reserve(2, "deep/deepseek-chat", None, amount)
        assert why is None and rid is not None
        await app.ledger.record(
            RequestMeta("r", 2), att(2, "deep/deepseek-chat", amount), when=now[0]
        )
        await guard.settle(rid, 2, "deep/deepseek-chat", None)

    await spend(0.5)
    assert alerts == []
    await spend(0.35)  # 85%
    await spend(0.05)  # 90%: still the same threshold
    assert alerts == ["budget: total day cap $1.00 reached 80% ($0.85 spent)"]
    _, why = await guard.reserve(2, "deep/deepseek-chat", None, 0.2)
    assert why is not None
    _, why = await guard.reserve(2, "deep/deepseek-chat", None, 0.2)
    assert len(alerts) == 2 and "is exhausted: calls are refused" in alerts[1]
    now[0] += timedelta(days=1)
    await spend(0.9)
    assert len(alerts) == 3  # a new day: the 80% alert again


async def test_budget_views_api_and_cli(app_factory: Any) -> None:
    app = await app_factory(budgets={"total": {"month": 40.0}, "agent": {}})
    rows = await app.engine.budget.report()  # type: ignore[union-attr]
    assert rows[0]["label"] == "total month cap $40.00" and rows[0]["forecast_usd"] == 0


def test_cli_budget_table(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_location: DbLocation,
) -> None:
    from core.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[providers.x]\napi = "ollama"\n[models."x/m"]\n[[tiers]]\nlevel = 0\n'
        'models = ["x/m"]\n[budgets]\ntotal.month = 40.0\ntier.0.day = 1.5\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(cfg), "--db", location_env(store_location), "budget"]) == 0
    out = capsys.readouterr().out
    assert "total month cap $40.00" in out and "tier 0 day cap $1.50" in out


async def test_no_admin_is_asked_to_approve_a_call_over_budget(
    app_factory: Any, fake_llm: FakeLLM
) -> None:
    asked: list[Any] = []

    app = await app_factory(budgets={"tier": {"3": {"day": 0.0}}})

    class Approver:
        async def decide(self, request: Any) -> Any:
            asked.append(request)
            raise AssertionError("must not be asked")

    app.engine.approver = Approver()
    with pytest.raises(AllAttemptsFailed, match="over budget: tier 3 day cap"):
        await app.engine.complete(ChatRequest((Message("user", "hi"),), tier=3))
    assert asked == []
