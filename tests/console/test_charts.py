"""The SVG charts' geometry, from data (no browser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.agents.assurance import Fire, Outcome
from core.console import charts
from core.engine.ledger import DayUsage
from core.engine.tier_targets import TARGET_MID_PCT

DAYS = [
    DayUsage("2026-12-01", 0, "local/q", 6, 0.0),
    DayUsage("2026-12-01", 2, "deep/d", 2, 0.02),
    DayUsage("2026-12-02", 0, "local/q", 3, 0.0),
    DayUsage("2026-12-02", 3, "opus/o", 1, 0.5),
]


def test_tier_share_columns_fill_the_height_and_end_with_the_target() -> None:
    chart = charts.tier_share(DAYS, TARGET_MID_PCT)
    plot = chart.height - charts.PAD_BOTTOM - 4
    first_day = [r for r in chart.rects if r.title.startswith("2026-12-01")]
    assert [r.fill for r in first_day] == [charts.TIER_COLOURS[0], charts.TIER_COLOURS[2]]
    assert abs(sum(r.h for r in first_day) - plot) < 1e-6
    assert [r.h / plot for r in first_day] == [0.75, 0.25]
    assert [lbl.text for lbl in chart.labels[:3]] == ["12-01", "12-02", "target"]
    assert len([r for r in chart.rects if r.title.startswith("target")]) == len(TARGET_MID_PCT)


def test_cost_per_day_stacks_models_on_one_scale() -> None:
    chart = charts.cost_per_day(DAYS)
    by_title = {r.title.split(" $")[0]: r for r in chart.rects}
    assert set(by_title) == {"2026-12-01: deep/d", "2026-12-02: opus/o"}
    assert by_title["2026-12-02: opus/o"].h == 25 * by_title["2026-12-01: deep/d"].h
    assert [name for _, name in chart.legend] == ["deep/d", "opus/o"]


def test_no_data_is_an_empty_chart() -> None:
    assert charts.tier_share([], TARGET_MID_PCT).empty
    assert charts.cost_per_day([DayUsage("2026-12-01", 0, "local/q", 5, 0.0)]).empty


def test_hbars_clip_at_the_scale() -> None:
    chart = charts.hbars("t", [("cap", [(3.0, "#1", "spent"), (3.0, "#2", "reserved")], 4.0)])
    background, spent, reserved = chart.rects
    assert spent.w == background.w * 0.75
    assert spent.x + spent.w + reserved.w == background.x + background.w  # clipped at the cap


def test_timeline_marks_each_fire_in_its_lane() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    end = start + timedelta(hours=10)
    fires = [
        Fire("a", start + timedelta(hours=5), Outcome.OK, 1),
        Fire("b", start + timedelta(hours=10), Outcome.NO_RUN),
        Fire("gone", start, Outcome.OK),  # an agent no longer scheduled: no lane
    ]
    chart = charts.timeline(["a", "b"], fires, start, end)
    lanes, marks = chart.rects[:2], chart.rects[2:]
    assert len(marks) == 2
    a, b = marks
    assert a.y == lanes[0].y and b.y == lanes[1].y
    assert abs(a.x + 1.5 - (lanes[0].x + lanes[0].w / 2)) < 1e-6
    assert b.fill == charts.OUTCOME_COLOURS["no run"] and "run #" not in b.title
    assert [name for _, name in chart.legend] == ["no run", "ok"]
