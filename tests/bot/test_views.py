"""The bot's texts for the overview's records, pinned (Telegram HTML, exactly as sent)."""

from __future__ import annotations

from dataclasses import replace

from bot.views import agent_detail, agents_text, status_text, trace_text
from core.agents.runs import Run
from core.engine.ledger import TraceStep
from core.overview import AgentRow, KeyState, ModelState, Queues, StatusSnapshot, TierState

MORNING = AgentRow(
    name="morning",
    description="the <b> digest",
    kind="agentTurn",
    schedule="0 7 * * *",
    timezone="Europe/Berlin",
    enabled=True,
    disabled_reason=None,
    next_fire="2026-12-02T07:00:00+01:00",
    last_status="failed",
    last_run=2,
    consecutive_failures=1,
    cost_today_usd=0.625,
    deliver=["log"],
)
ON_DEMAND = replace(
    MORNING,
    name="ondemand",
    description="",
    schedule=None,
    timezone="UTC",
    next_fire=None,
    last_status=None,
    last_run=None,
    cost_today_usd=0.0,
)
PAUSED = replace(
    ON_DEMAND,
    name="paused",
    schedule="0 9 * * *",
    enabled=False,
    disabled_reason="by @x",
    last_status="late",
    cost_today_usd=0.25,
)


def run(id: int, agent: str, status: str, cost: float) -> Run:
    return Run(
        id=id,
        agent=agent,
        trigger="cli",
        parent_run=None,
        status=status,
        scheduled_for=None,
        created_at="2026-12-01T10:00:00.000000Z",
        started_at=None,
        finished_at=None,
        session_id=None,
        message=None,
        output="out",
        error=None,
        cost_usd=cost,
        route="tier=0; local/m",
        owner=None,
    )


def test_agents_page() -> None:
    assert agents_text([MORNING, ON_DEMAND, PAUSED], 0, 2) == (
        "<b>Agents</b> (page 1/2)\n"
        "❌ <b>morning</b> — 0 7 * * * next 2026-12-02 07:00\n"
        "· <b>ondemand</b> — on demand\n"
        "🕗 <b>paused</b> — 0 9 * * * disabled"
    )
    assert agents_text([], 0, 1) == (
        "No agents are configured. Add <code>[[agents]]</code> to the config."
    )


def test_a_stagger_offset_shows_its_seconds() -> None:
    """``[scheduler] spread_s``: 46 s past the hour is not shown as the hour."""
    staggered = replace(MORNING, next_fire="2026-12-02T07:00:46+01:00")
    assert "next 2026-12-02 07:00:46\n" in agents_text([staggered, ON_DEMAND], 0, 1)
    assert "\nNext: 2026-12-02 07:00:46\n" in agent_detail(staggered, [])
    assert "\nNext: 2026-12-02 07:00\n" in agent_detail(MORNING, [])  # :00 is left off


def test_agent_details() -> None:
    runs = [run(2, "morning", "failed", 0.5), run(1, "morning", "ok", 0.125)]
    assert agent_detail(MORNING, runs) == (
        "<b>morning</b>\nthe &lt;b&gt; digest\nSchedule: 0 7 * * * (Europe/Berlin)\n"
        "Next: 2026-12-02 07:00\nState: enabled\nCost today: $0.6250\n\n<b>Last runs</b>\n"
        "❌ #2 morning failed tier 0 $0.5000\n✅ #1 morning ok tier 0 $0.1250"
    )
    assert agent_detail(ON_DEMAND, []) == (
        "<b>ondemand</b>\nSchedule: on demand\nState: enabled\nCost today: $0.0000"
    )
    assert agent_detail(PAUSED, []) == (
        "<b>paused</b>\nSchedule: 0 9 * * * (UTC)\nState: disabled (by @x)\nCost today: $0.2500"
    )


def test_status() -> None:
    snap = StatusSnapshot(
        version="0.1.0",
        uptime_s=12.0,
        tiers=[
            TierState(0, ["local/m"], False, "ok"),
            TierState(1, ["cloud/x"], False, "down (cloud/x: no key)"),
        ],
        models=[
            ModelState("local/m", "closed", 0.0, 0, "ok", "", 41.6, 0, "local", "ollama"),
            ModelState("cloud/x", "open", 9.5, 3, "unavailable", "no <key>", None, 1, "cloud", "x"),
        ],
        embedded=[],
        queues=Queues(1, 2, 3, 4, 5, 0),
        pending_approvals=6,
        plugins={"telegram": {"mode": "polling", "state": "ok"}},
    )
    assert status_text(snap) == (
        "<b>OpenClaw 0.1.0</b> · up 12s\n<b>Tier 0</b>: ok\n  local/m: closed 42 ms\n"
        "<b>Tier 1</b>: down (cloud/x: no key)\n  cloud/x: open — no &lt;key&gt;\n"
        "Queues: agents 2 running / 1 waiting, subagents 4 / 3\n"
        "Pending: 6 approvals, 5 deliveries, 0 unknown\nTelegram: polling, ok"
    )


def test_status_shows_the_heartbeat() -> None:
    """As the heartbeat's describe() puts it in the snapshot (see tests/test_heartbeat.py)."""
    snap = StatusSnapshot(
        version="0.1.0",
        uptime_s=1.0,
        tiers=[],
        models=[],
        embedded=[],
        queues=Queues(0, 0, 0, 0, 0),
        pending_approvals=0,
        plugins={
            "heartbeat": {
                "url_env": "HEARTBEAT_URL",
                "every_s": 60.0,
                "last_ping": "2026-12-01T08:00:00.000000Z",
                "state": "withheld: the scheduler made no run for agent <d>'s fire of …",
            }
        },
    )
    assert status_text(snap).splitlines()[-1] == (
        "Heartbeat: withheld: the scheduler made no run for agent &lt;d&gt;'s fire of …;"
        " last ping 2026-12-01T08:00:00.000000Z"
    )
    snap.plugins["heartbeat"] |= {"state": "starting", "last_ping": None}
    assert status_text(snap).splitlines()[-1] == "Heartbeat: starting; last ping never"


def test_status_lists_the_keys_out_of_routing_by_name() -> None:
    snap = StatusSnapshot(
        version="0.1.0",
        uptime_s=1.0,
        tiers=[],
        models=[],
        embedded=[],
        queues=Queues(0, 0, 0, 0, 0),
        pending_approvals=0,
        plugins={},
        keys=[
            KeyState("deep", "DEEP_KEY_A", "open", 17940.0, 1, "billing", "billing HTTP 402"),
            KeyState("deep", "DEEP_KEY_B", "closed", 0.0, 0, "ok", ""),
        ],
    )
    text = status_text(snap)
    assert "Key deep DEEP_KEY_A: open (billing HTTP 402, 4h59m left)" in text
    assert "DEEP_KEY_B" not in text  # a working key is no news


def test_route_trace() -> None:
    steps = [
        TraceStep(0, "local", "m", "unusable", "empty <x>", 12.5, 10, 20, 0.0625),
        TraceStep(0, "local", "m", "ok", "", 12.5, 10, 20, 0.0625),
    ]
    assert trace_text(run(2, "morning", "ok", 0.125), steps) == (
        "<b>Route of #2</b> (morning)\n"
        "tier 0 local/m: <b>unusable</b> 12 ms, 10→20 tok, $0.06250 — empty &lt;x&gt;\n"
        "tier 0 local/m: <b>ok</b> 12 ms, 10→20 tok, $0.06250"
    )
    assert trace_text(run(3, "a", "failed", 0.0), []).endswith("<i>no model was called</i>")
