"""Server-side SVG charts as plain geometry; the templates draw them (``_charts.html``).

Why SVG from the server: no JavaScript library to vendor and keep patched, nothing for
the CSP to allow, a chart is a few hundred bytes of markup that jinja2 escapes like the
rest of the page, and it renders the same in a screenshot or with scripts off.
Functions here are pure: data in, rectangles out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.agents.assurance import Fire
from core.engine.ledger import DayUsage

WIDTH = 640
HEIGHT = 180
PAD_LEFT = 64  # room for the axis labels
MAX_BAR = 48  # a column this wide at most, however few days there are
MIN_SEGMENT = 2.0  # a bar's non-zero segment is never thinner
PAD_BOTTOM = 22
# one colour per tier, cheapest (local) greenest; models take the palette in turn
TIER_COLOURS = {0: "#2e8b57", 1: "#4682b4", 2: "#daa520", 3: "#c0392b"}
PALETTE = ("#2e8b57", "#4682b4", "#daa520", "#c0392b", "#8e44ad", "#16a085", "#7f8c8d")


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    title: str  # the tooltip: what the bar is, in words


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass
class Chart:
    """What ``_charts.html`` draws: bars, labels and a legend."""

    title: str
    width: int = WIDTH
    height: int = HEIGHT
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, name)

    @property
    def empty(self) -> bool:
        """Nothing to draw: the template says so in words instead."""
        return not self.rects


def _columns(keys: Sequence[str], width: float) -> tuple[float, float]:
    """The step between columns and a bar's width, for ``keys`` columns."""
    step = (width - PAD_LEFT) / max(len(keys), 1)
    return step, min(max(step * 0.7, 2.0), MAX_BAR)


def tier_share(days: Sequence[DayUsage], target: Mapping[int, float]) -> Chart:
    """Per day, a 100% column split by tier; the last column is the target pyramid."""
    chart = Chart("Tier share per day (last column: the target pyramid)")
    per_day: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for d in days:
        per_day[d.day][d.tier] += d.answered
    columns = {day: {t: float(n) for t, n in tiers.items()} for day, tiers in per_day.items()}
    columns = {k: v for k, v in columns.items() if sum(v.values()) > 0}
    if not columns:
        return chart
    columns["target"] = dict(target)
    keys = [*sorted(k for k in columns if k != "target"), "target"]
    step, bar = _columns(keys, chart.width)
    plot_h = chart.height - PAD_BOTTOM
    for i, key in enumerate(keys):
        total = sum(columns[key].values())
        x = PAD_LEFT + i * step
        y = float(plot_h)
        for tier in sorted(columns[key]):
            share = columns[key][tier] / total if total else 0.0
            h = share * (plot_h - 4)
            y -= h
            chart.rects.append(
                Rect(
                    x, y, bar, h, TIER_COLOURS.get(tier, "#999"), f"{key}: tier {tier} {share:.0%}"
                )
            )
        chart.labels.append(
            Label(x + bar / 2, chart.height - 6, key[5:] if key != "target" else key)
        )
    chart.labels += [
        Label(PAD_LEFT - 6, 10, "100%", "end"),
        Label(PAD_LEFT - 6, plot_h, "0%", "end"),
    ]
    chart.legend = [(c, f"tier {t}") for t, c in TIER_COLOURS.items()]
    return chart


def cost_per_day(days: Sequence[DayUsage]) -> Chart:
    """Per day, a column of cost stacked by model."""
    chart = Chart("Cost per day, by model (USD)")
    per_day: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for d in days:
        per_day[d.day][d.ref] += d.cost_usd
    top = max((sum(v.values()) for v in per_day.values()), default=0.0)
    if top <= 0:
        return chart
    models = sorted({d.ref for d in days if d.cost_usd > 0})
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    keys = sorted(per_day)
    step, bar = _columns(keys, chart.width)
    plot_h = chart.height - PAD_BOTTOM
    for i, day in enumerate(keys):
        x = PAD_LEFT + i * step
        y = float(plot_h)
        for ref in models:
            cost = per_day[day].get(ref, 0.0)
            if cost <= 0:
                continue
            h = cost / top * (plot_h - 4)
            y -= h
            chart.rects.append(Rect(x, y, bar, h, colour[ref], f"{day}: {ref} ${cost:.4f}"))
        chart.labels.append(Label(x + bar / 2, chart.height - 6, day[5:]))
    chart.labels += [
        Label(PAD_LEFT - 6, 10, f"${top:.4f}", "end"),
        Label(PAD_LEFT - 6, plot_h, "$0", "end"),
    ]
    chart.legend = [(colour[m], m) for m in models]
    return chart


def hbars(title: str, rows: Sequence[tuple[str, Sequence[tuple[float, str, str]], float]]) -> Chart:
    """Horizontal bars: per row a label, its stacked segments (value, colour, what) and
    the full scale (a cap; segments past it are clipped at the edge)."""
    row_h = 26
    chart = Chart(title, height=max(row_h * len(rows) + 8, 30))
    left = 200
    span = chart.width - left - 8
    for i, (label, segments, scale) in enumerate(rows):
        y = 4 + i * row_h
        chart.rects.append(Rect(left, y, span, row_h - 8, "#eeeeee", f"{label}: scale {scale:g}"))
        x = float(left)
        for value, fill, what in segments:
            w = min(value / scale, 1.0) * span if scale > 0 else span
            if value > 0:
                w = max(w, MIN_SEGMENT)  # a cent of a 50-dollar cap still shows
            w = min(w, left + span - x)
            if w > 0:
                chart.rects.append(Rect(x, y, w, row_h - 8, fill, f"{label}: {what}"))
                x += w
        chart.labels.append(Label(left - 6, y + row_h - 12, label, "end"))
    return chart


OUTCOME_COLOURS = {
    "ok": "#2e8b57",
    "quiet": "#8fbc8f",
    "late": "#daa520",
    "running": "#4682b4",
    "due": "#87ceeb",
    "disabled": "#aaaaaa",
    "failed": "#c0392b",
    "interrupted": "#e67e22",
    "missed": "#8e44ad",
    "no run": "#000000",
}


def timeline(agents: Sequence[str], fires: Sequence[Fire], start: datetime, end: datetime) -> Chart:
    """Per agent a lane from ``start`` to ``end``; each expected fire a mark at its time,
    coloured by what became of it (ok, late, failed, no run …)."""
    lane_h = 24
    left = 160
    chart = Chart("Expected fires and what became of them", height=lane_h * len(agents) + 30)
    span = chart.width - left - 8
    total_s = max((end - start).total_seconds(), 1.0)
    for i, agent in enumerate(agents):
        y = 4 + i * lane_h
        chart.rects.append(Rect(left, y, span, lane_h - 8, "#eeeeee", agent))
        chart.labels.append(Label(left - 6, y + lane_h - 12, agent, "end"))
    lane = {a: i for i, a in enumerate(agents)}
    for f in fires:
        if f.agent not in lane:
            continue
        x = left + (f.at - start).total_seconds() / total_s * span
        y = 4 + lane[f.agent] * lane_h
        what = f"{f.agent} {f.at:%Y-%m-%d %H:%M} UTC: {f.outcome}" + (
            f" (run #{f.run_id})" if f.run_id else ""
        )
        chart.rects.append(
            Rect(x - 1.5, y, 3, lane_h - 8, OUTCOME_COLOURS.get(str(f.outcome), "#999"), what)
        )
    bottom = chart.height - 6
    chart.labels += [
        Label(left, bottom, f"{start:%m-%d %H:%M}", "start"),
        Label(left + span, bottom, f"{end:%m-%d %H:%M} UTC", "end"),
    ]
    seen = sorted({str(f.outcome) for f in fires})
    chart.legend = [(OUTCOME_COLOURS.get(o, "#999"), o) for o in seen]
    return chart
