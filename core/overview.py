"""What the CLI, the gateway and the bot show about agents and runs."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core import __version__
from core.app import App
from core.store.times import utcnow_iso


async def agents_overview(app: App) -> list[dict[str, Any]]:
    """One row per configured agent: schedule, next fire, state, last run, cost today."""
    rows = []
    for agent in app.config.agents:
        state = await app.runner.states.get(agent.name)
        last = await app.runner.runs.recent(agent.name, limit=1)
        tz = ZoneInfo(agent.timezone)
        midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        nxt = None if state.disabled else app.scheduler.next_fire(agent)
        rows.append(
            {
                "name": agent.name,
                "description": agent.description,
                "kind": agent.kind,
                "schedule": agent.schedule,
                "timezone": agent.timezone,
                "enabled": agent.enabled and not state.disabled,
                "disabled_reason": state.disabled_reason
                if state.disabled
                else (None if agent.enabled else "enabled = false in the config"),
                "next_fire": nxt.isoformat() if nxt else None,
                "last_status": last[0].status if last else None,
                "last_run": last[0].id if last else None,
                "consecutive_failures": state.consecutive_failures,
                "cost_today_usd": await app.runner.runs.cost_today(
                    agent.name, utcnow_iso(midnight)
                ),
                "deliver": agent.deliver,
            }
        )
    return rows


def tier_health(app: App) -> dict[str, str]:
    """Per tier: "ok" while some model may be called, else what is down."""
    snap = app.health.snapshot(time.monotonic())
    out = {}
    for t in sorted(app.config.tiers, key=lambda t: t.level):
        down = [f"{ref}: {snap.blocked[ref]}" for ref in t.models if ref in snap.blocked]
        out[str(t.level)] = "ok" if len(down) < len(t.models) else "down (" + "; ".join(down) + ")"
    return out


# a model no request has touched yet
_UNTOUCHED = {
    "state": "closed",
    "cooldown_left_s": 0.0,
    "consecutive_failures": 0,
    "last_outcome": "",
    "last_error": "",
    "last_latency_ms": None,
}


async def status_snapshot(app: App, uptime_s: float) -> dict[str, Any]:
    """Everything /api/status and the bot's /status show. No secrets."""
    cfg = app.config
    live = {row["model"]: row for row in app.health.status(time.monotonic())}
    health = tier_health(app)
    models = []
    tiers = []
    for t in sorted(cfg.tiers, key=lambda t: t.level):
        tiers.append(
            {
                "level": t.level,
                "models": t.models,
                "requires_approval": t.requires_approval,
                "state": health[str(t.level)],
            }
        )
        for ref in t.models:
            provider = ref.split("/", 1)[0]
            row = live.get(ref, {"model": ref, **_UNTOUCHED})
            models.append(
                {**row, "tier": t.level, "provider": provider, "api": cfg.providers[provider].api}
            )
    snap: dict[str, Any] = {
        "version": __version__,
        "uptime_s": uptime_s,
        "tiers": tiers,
        "models": models,
        "embedded": [m.describe() for m in app.embedded.values()],
        "queues": {**app.runner.queue_depths(), "outbox_pending": await app.outbox.pending_count()},
        "pending_approvals": len(await app.approvals.pending()),
    }
    snap["telegram"] = {"mode": "off", "state": "TELEGRAM_BOT_TOKEN not set"}
    for name, hook in app.status_hooks.items():  # parts that plug in report themselves
        snap[name] = hook()
    return snap
