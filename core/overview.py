"""What the CLI, the gateway and the bot show about agents and runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.app import App
from core.runs import Run
from core.store import utcnow_iso


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


def run_summary(run: Run) -> dict[str, Any]:
    """A run as JSON (output included)."""
    return run.as_dict()
