"""The /usage chart: tier shares against the target, and cost per day (PNG, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt

from core.engine.ledger import UsageReport
from core.engine.tier_targets import TARGET_MID_PCT  # middle of each tier's target share, %


def usage_png(by_tier: UsageReport, by_day: UsageReport, period: str) -> bytes:
    """Render both panels; CPU-bound, so call it in a thread."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    try:
        tiers = sorted(set(TARGET_MID_PCT) | set(by_tier.tier_share))
        share = [by_tier.tier_share.get(t, 0.0) for t in tiers]
        target = [TARGET_MID_PCT.get(t, 0.0) for t in tiers]
        xs = range(len(tiers))
        left.bar([x - 0.2 for x in xs], share, width=0.4, label="actual")
        left.bar([x + 0.2 for x in xs], target, width=0.4, label="target", alpha=0.5)
        left.set_xticks(list(xs), [f"tier {t}" for t in tiers])
        left.set_ylabel("% of answers")
        left.set_title(f"Tier share, {period}")
        left.legend()
        days = [r.key[5:] for r in by_day.rows]
        cost = [r.cost_usd for r in by_day.rows]
        right.plot(days, cost, marker="o")
        right.set_title("Cost per day (USD)")
        right.tick_params(axis="x", labelrotation=45)
        if not days:
            right.text(0.5, 0.5, "no requests", ha="center", va="center", transform=right.transAxes)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
