"""The ledger on a real SQLite file: rows, cost arithmetic, groups, tier shares, savings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.engine.ledger import Ledger, RequestMeta, baselines, price
from core.parsing import parse_since
from core.store.base import Store
from core.store.migrations import MIGRATIONS
from core.store.open import open_store
from core.store.path import DbLocation, PostgresURL
from core.types import Attempt, Usage
from tests.configs import make_config
from tests.stores import run_sql

CFG = make_config()


def att(tier: int, ref: str, outcome: str = "ok", tin: int = 0, tout: int = 0) -> Attempt:
    provider, model = ref.split("/", 1)
    usage = Usage(tin, tout)
    return Attempt(
        tier,
        provider,
        model,
        outcome,
        usage=usage,  # type: ignore[arg-type]
        cost_usd=price(CFG, ref, usage),
        latency_ms=12.5,
    )


def test_price_is_usd_per_million_tokens() -> None:
    assert price(CFG, "flash/gemini-flash", Usage(1_000_000, 0)) == pytest.approx(0.3)
    assert price(CFG, "flash/gemini-flash", Usage(2000, 1000, 600)) == pytest.approx(
        2000 * 0.3e-6 + 1000 * 2.5e-6
    )
    assert price(CFG, "local/qwen3:14b", Usage(10**6, 10**6)) == 0.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 7 * 86400), ("24h", 86400), ("30m", 1800), ("2w", 14 * 86400)]
)
def test_parse_since(text: str, seconds: int) -> None:
    assert parse_since(text) == timedelta(seconds=seconds)


def test_parse_since_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="use a number and a unit"):
        parse_since("seven days")


async def test_migrations_are_recorded_and_idempotent(
    request: pytest.FixtureRequest, store_engine: str, tmp_path: Path
) -> None:
    location: DbLocation = tmp_path / "m.db"
    if store_engine == "postgres":  # an empty database, not the migrated template's copy
        location = PostgresURL(request.getfixturevalue("pg_url"))
    s = await open_store(location)
    await s.close()
    s = await open_store(location)  # the second open applies none again
    try:
        assert await s.applied_migrations() == [name for name, _ in MIGRATIONS]
        assert await s.writable()
        if store_engine == "sqlite":
            mode = await s.fetchall("PRAGMA journal_mode")
            assert mode[0][0] == "wal"
    finally:
        await s.close()


def test_postgres_numbers_are_8_bytes_or_exact(pg_migrated_url: str) -> None:
    """After every migration no column is a 4-byte ``real`` (money and cost stay double
    precision: a float4 sum of cents drifts within a day) nor a 4-byte ``integer`` or a
    ``smallint`` (ids, tokens and counts are bigint, as SQLite's integers are 8 bytes)."""
    location = PostgresURL(pg_migrated_url)
    rows = run_sql(
        location,
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema()",
    )
    narrow = [r for r in rows if r[2] in ("real", "integer", "smallint")]
    assert narrow == []
    types = {(table, column): kind for table, column, kind in rows}
    money = {k: v for k, v in types.items() if k[1].endswith("_usd") or k[1] == "threshold"}
    assert len(money) >= 5 and set(money.values()) <= {"double precision", "numeric"}, money
    assert types[("attempts", "id")] == "bigint"
    assert types[("runs", "id")] == "bigint"


async def test_report_groups_shares_and_savings(store: Store) -> None:
    ledger = Ledger(store, CFG)
    # r1: tier-0 task answered locally (free)
    await ledger.record(RequestMeta("r1", 0, "chat"), att(0, "local/qwen3:14b", tin=1000, tout=500))
    # r2: tier-0 task, local timed out, answered by flash
    await ledger.record(RequestMeta("r2", 0, "chat"), att(0, "local/qwen3:14b", "unavailable"))
    await ledger.record(
        RequestMeta("r2", 0, "chat"), att(1, "flash/gemini-flash", tin=1000, tout=1000)
    )
    # r3: tier-2 task answered at tier 2, with an agent
    await ledger.record(
        RequestMeta("r3", 2, "analysis", agent="digest"),
        att(2, "deep/deepseek-chat", tin=2000, tout=1000),
    )
    # r4: failed everywhere
    await ledger.record(RequestMeta("r4", 3, "strategy"), att(3, "opus/claude-opus", "fatal"))

    rep = await ledger.report(timedelta(days=1), "tier")
    assert [r.key for r in rep.rows] == ["0", "1", "2", "3"]
    assert rep.requests == 4 and rep.answered == 3
    assert rep.tier_share == pytest.approx({0: 100 / 3, 1: 100 / 3, 2: 100 / 3})
    tier0 = rep.rows[0]
    assert (tier0.attempts, tier0.answered, tier0.requests) == (2, 1, 2)
    actual = 1000 * 0.3e-6 + 1000 * 2.5e-6 + 2000 * 0.28e-6 + 1000 * 0.42e-6
    assert rep.cost_usd == pytest.approx(actual)
    # cloud-only: min-tier-0 work priced at tier 1 (flash); min-tier-2 work at tier 2 (deep)
    cloud = (2000 * 0.3e-6 + 1500 * 2.5e-6) + (2000 * 0.28e-6 + 1000 * 0.42e-6)
    assert rep.cloud_only_usd == pytest.approx(cloud)
    top = 4000 * 5e-6 + 2500 * 25e-6
    assert rep.all_top_tier_usd == pytest.approx(top)
    assert rep.savings_vs_cloud_usd == pytest.approx(cloud - actual)
    assert rep.savings_vs_top_usd == pytest.approx(top - actual)

    by_agent = await ledger.report(timedelta(days=1), "agent")
    assert {r.key: r.requests for r in by_agent.rows} == {"-": 3, "digest": 1}
    by_model = await ledger.report(timedelta(days=1), "model")
    assert "deep/deepseek-chat" in {r.key for r in by_model.rows}
    by_day = await ledger.report(timedelta(days=1), "day")
    assert [r.key for r in by_day.rows] == [datetime.now(UTC).strftime("%Y-%m-%d")]


async def test_report_respects_the_period(store: Store) -> None:
    ledger = Ledger(store, CFG)
    old = datetime.now(UTC) - timedelta(days=10)
    await ledger.record(RequestMeta("old", 0), att(1, "flash/gemini-flash", tin=10), when=old)
    await ledger.record(RequestMeta("new", 0), att(1, "flash/gemini-flash", tin=10))
    assert (await ledger.report(timedelta(days=7))).requests == 1
    assert (await ledger.report(timedelta(days=30))).requests == 2


async def test_daily_counts_answers_and_cost_per_day_and_model(store: Store) -> None:
    ledger = Ledger(store, CFG)
    now = datetime.now(UTC)
    yesterday, long_ago = now - timedelta(days=1), now - timedelta(days=10)
    flash = att(1, "flash/gemini-flash", tin=1000)
    await ledger.record(RequestMeta("a", 0), att(0, "local/qwen3:14b"), when=yesterday)
    await ledger.record(RequestMeta("b", 0), att(0, "local/qwen3:14b", "unavailable"))
    await ledger.record(RequestMeta("b", 0), flash)
    await ledger.record(RequestMeta("c", 0), flash)
    await ledger.record(RequestMeta("old", 0), flash, when=long_ago)  # outside the period
    days = await ledger.daily(timedelta(days=7))
    today, before = now.strftime("%Y-%m-%d"), yesterday.strftime("%Y-%m-%d")
    assert [(d.day, d.tier, d.ref, d.answered) for d in days] == [
        (before, 0, "local/qwen3:14b", 1),
        (today, 0, "local/qwen3:14b", 0),  # tried, not answered
        (today, 1, "flash/gemini-flash", 2),
    ]
    assert days[2].cost_usd == pytest.approx(2 * 1000 * 0.3e-6)


async def test_report_rejects_unknown_group(store: Store) -> None:
    with pytest.raises(ValueError, match="use one of tier, model"):
        await Ledger(store, CFG).report(timedelta(days=1), "colour")


def test_baselines_without_cloud_tier_above() -> None:
    cloud, top = baselines(CFG, {3: (1_000_000, 0)})
    assert cloud == pytest.approx(5.0) and top == pytest.approx(5.0)


async def test_what_if_reprices_only_what_was_recorded(store: Store) -> None:
    from core.engine.whatif import what_if
    from tests.configs import pyramid

    ledger = Ledger(store, CFG)
    # r1: summarize (min tier 1) answered by flash; it never ran on tier 0
    await ledger.record(
        RequestMeta("r1", 1, "summarize"), att(1, "flash/gemini-flash", tin=1000, tout=100)
    )
    # r2: chat, tier 0 unusable, then flash
    await ledger.record(
        RequestMeta("r2", 0, "chat"), att(0, "local/qwen3:14b", "unusable", tin=50, tout=50)
    )
    await ledger.record(
        RequestMeta("r2", 0, "chat"), att(1, "flash/gemini-flash", tin=2000, tout=200)
    )
    # r3: chat answered locally; r4 never answered
    await ledger.record(RequestMeta("r3", 0, "chat"), att(0, "local/qwen3:14b", tin=10, tout=5))
    await ledger.record(RequestMeta("r4", 0, "chat"), att(0, "local/qwen3:14b", "fatal"))
    doc = pyramid()
    doc["tasks"]["summarize"] = 0  # "what if summarize went to tier 0?"
    doc["models"]["flash/gemini-flash"]["cost"] = {"input": 0.6, "output": 5.0}  # and dearer
    from core.config.load import parse_config

    other = parse_config(doc, warnings=[])
    w = what_if(await ledger.requests_since(timedelta(days=1)), other)
    assert (w.requests, w.known) == (3, 2)
    assert dict(w.unknown) == {0: 1}  # r1 never ran on tier 0: counted, not guessed
    assert w.actual_usd == pytest.approx(2000 * 0.3e-6 + 200 * 2.5e-6)
    assert w.what_if_usd == pytest.approx(2000 * 0.6e-6 + 200 * 5.0e-6)
    assert w.difference_usd == pytest.approx(w.actual_usd)  # twice the price
    assert w.moved == 0


def test_savings_percentages() -> None:
    from core.engine.ledger import UsageReport

    r = UsageReport(
        "", "tier", [], 1, 1, {}, cost_usd=1.0, cloud_only_usd=4.0, all_top_tier_usd=10.0
    )
    assert r.savings_vs_cloud_pct == pytest.approx(75.0)
    assert r.savings_vs_top_pct == pytest.approx(90.0)
