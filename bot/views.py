"""Message texts (Telegram HTML) for the bot's replies. Pure: data in, HTML out."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bot.text import ELLIPSIS, escape, truncate, utf16_len
from core.agents.runs import Run, Status
from core.agents.steps import Step
from core.delivery.deliveries import Delivery, DeliveryStatus
from core.engine.approvals import ApprovalRecord
from core.engine.ledger import TraceStep, UsageReport
from core.engine.tier_targets import TARGET_SHARE
from core.overview import AgentRow, StatusSnapshot, key_line
from core.types import Attempt

# the progress message shows its last lines, each cut so that, escaped, it fits its share
# of Telegram's 4096 units next to the head (an agent name is at most 64 characters): a
# line of "&" escapes to five times its length, so cutting the plain text is not enough
PROGRESS_LINES = 8
PROGRESS_LINE_UNITS = 480
STEP_LINE_UNITS = 400  # a step's line in Details, escaped (many are split into parts)
STEP_ARGUMENTS_CHARS = 120  # a step's redacted arguments in Details

STATUS_ICON: dict[str, str] = {
    Status.OK: "✅",
    Status.LATE: "🕗",
    Status.FAILED: "❌",
    Status.MISSED: "⏭",
    Status.INTERRUPTED: "⏹",
    Status.QUEUED: "⏳",
    Status.RUNNING: "⏳",
}

ADMIN_COMMANDS = [
    ("agents", "agents, their schedules and last runs"),
    ("run", "run an agent now: /run <agent> [message]"),
    ("runs", "recent runs: /runs [agent]"),
    ("memory", "what an agent remembered: /memory <agent>"),
    ("usage", "usage per tier and model: /usage [today|7d|30d]"),
    ("schedule", "expected fires vs what ran: /schedule [24h|7d]"),
    ("tune", "are the task → tier mappings right? /tune [30d]"),
    ("status", "provider health, queues, pending approvals"),
    ("approvals", "pending approvals: Tier-3 escalations, agents' tool calls"),
    ("budget", "spend caps, what is left, the month-end forecast"),
    ("deliveries", "failed deliveries and those that may not have arrived: /deliveries [page]"),
    ("drill", "fault one model for a while, then the report: /drill <model> <fault> [60s|N]"),
    ("drills", "failure drills kept, or one report: /drills [id]"),
    ("ask", "ask the models: /ask [task:<t>|tier:<n>] <question>"),
    ("new", "start a new conversation for /ask"),
    ("help", "what this bot does"),
]
READ_ONLY = {
    "agents",
    "runs",
    "memory",
    "usage",
    "schedule",
    "tune",
    "drills",
    "status",
    "budget",
    "ask",
    "new",
    "help",
}


def help_text(is_admin: bool) -> str:
    """What the bot does, and the commands this user may use."""
    lines = [
        "<b>OpenClaw</b> runs your agents on a four-tier model pyramid, cheapest first, "
        "and delivers their results here.",
        "",
    ]
    for cmd, desc in ADMIN_COMMANDS:
        if is_admin or cmd in READ_ONLY:
            lines.append(f"/{cmd} — {escape(desc)}")
    if not is_admin:
        lines += ["", "<i>Running agents and approving escalations is for admins.</i>"]
    return "\n".join(lines)


def fire_time(iso: str) -> str:
    """``2026-12-02 07:00`` of an ISO time, with the seconds when they are not zero: a
    top-of-hour stagger offset (``[scheduler] spread_s``) of 46 s shows as ``07:00:46``."""
    text = iso.replace("T", " ")
    return text[:19] if len(text) >= 19 and text[17:19] != "00" else text[:16]


def agents_text(rows: list[AgentRow], page: int, pages: int) -> str:
    """The /agents list (one page)."""
    if not rows:
        return "No agents are configured. Add <code>[[agents]]</code> to the config."
    lines = [f"<b>Agents</b> (page {page + 1}/{pages})"]
    for r in rows:
        icon = STATUS_ICON.get(r.last_status or "", "·")
        when = (
            "disabled"
            if not r.enabled
            else (f"next {fire_time(r.next_fire)}" if r.next_fire else "on demand")
        )
        lines.append(
            f"{icon} <b>{escape(r.name)}</b> — {escape(r.schedule or '')} {escape(when)}".replace(
                "  ", " "
            )
        )
    return "\n".join(lines)


def agent_detail(row: AgentRow, runs: list[Run]) -> str:
    """One agent: schedule, state, cost today, last runs."""
    lines = [f"<b>{escape(row.name)}</b>"]
    if row.description:
        lines.append(escape(row.description))
    sched = f"{row.schedule} ({row.timezone})" if row.schedule else "on demand"
    lines.append(f"Schedule: {escape(sched)}")
    if row.next_fire:
        lines.append(f"Next: {escape(fire_time(row.next_fire))}")
    state = "enabled" if row.enabled else f"disabled ({row.disabled_reason or ''})"
    lines.append(f"State: {escape(state)}")
    lines.append(f"Cost today: ${row.cost_today_usd:.4f}")
    if runs:
        lines.append("")
        lines.append("<b>Last runs</b>")
        lines += [run_line(r) for r in runs]
    return "\n".join(lines)


def run_line(run: Run) -> str:
    """One line per run: icon, id, agent, status, cost, tier."""
    tier = ""
    if run.route:
        tier = " " + escape(run.route.split(";")[0].replace("tier=", "tier "))
    return (
        f"{STATUS_ICON.get(run.status, '·')} #{run.id} {escape(run.agent)} "
        f"{escape(run.status)}{' quiet' if run.quiet else ''}{tier} ${run.cost_usd:.4f}"
    )


def run_result(run: Run) -> str:
    """The result message of a run."""
    head = (
        f"{STATUS_ICON.get(run.status, '·')} <b>{escape(run.agent)}</b> #{run.id} "
        f"{escape(run.status)}"
    )
    if run.route:
        head += f" · {escape(run.route)}"
    head += f" · ${run.cost_usd:.4f}"
    if run.error:
        return f"{head}\n\n<i>{escape(run.error)}</i>"
    if run.quiet:  # asked for (/run, Rerun): say why nothing else came
        return f"{head}\n\n<i>quiet: the agent answered NO_REPLY, nothing was delivered</i>"
    return f"{head}\n\n{escape(run.output or '')}"


def progress_text(agent: str, run_id: int | None, lines: list[str]) -> str:
    """The status message edited while a run goes on."""
    head = f"⏳ Running <b>{escape(agent)}</b>" + (f" #{run_id}" if run_id else "") + "…"
    return "\n".join([head, *progress_lines(lines)])


def progress_lines(lines: list[str]) -> list[str]:
    """The last progress lines, escaped, each within its share of one message."""
    return [escape_within(line, PROGRESS_LINE_UNITS) for line in lines[-PROGRESS_LINES:]]


def escape_within(text: str, limit: int) -> str:
    """Plain ``text`` escaped, cut (ending in "…") so the escaped form is at most ``limit``
    UTF-16 units; an entity is never split."""
    out = escape(text)
    if utf16_len(out) <= limit:
        return out
    budget, used, kept = limit - utf16_len(ELLIPSIS), 0, []
    for char in text:
        piece = escape(char)
        used += utf16_len(piece)
        if used > budget:
            break
        kept.append(piece)
    return "".join(kept) + ELLIPSIS


def step_line(s: Step) -> str:
    """A tool-loop step in the Details trace: its line, latency, cost, redacted arguments."""
    args = ""
    if s.arguments:
        shown = " ".join(s.arguments.split())
        args = f" <code>{escape(truncate(shown, STEP_ARGUMENTS_CHARS))}</code>"
    return (
        f"{escape_within(s.line(), STEP_LINE_UNITS)} · {s.latency_ms:.0f} ms, "
        f"${s.cost_usd:.5f}{args}"
    )


def attempt_line(a: Attempt) -> str:
    """A progress line for one attempt."""
    reason = f" ({truncate(a.reason, 80)})" if a.reason else ""
    return f"tier {a.tier} {a.ref}: {a.outcome}{reason}"


def trace_text(run: Run, steps: list[TraceStep], run_steps: Sequence[Step] = ()) -> str:
    """The route trace of a run (Details button): its attempts, then its tool-loop steps."""
    lines = [f"<b>Route of #{run.id}</b> ({escape(run.agent)})"]
    for s in steps:
        reason = f" — {escape(truncate(s.reason, 120))}" if s.reason else ""
        calls = (
            f", {s.tool_calls} tool call{'s' if s.tool_calls != 1 else ''}" if s.tool_calls else ""
        )
        lines.append(
            f"tier {s.tier} {escape(s.provider)}/{escape(s.model)}: "
            f"<b>{escape(s.outcome)}</b> {s.latency_ms:.0f} ms, "
            f"{s.input_tokens}→{s.output_tokens} tok{calls}, ${s.cost_usd:.5f}"
            f"{reason}"
        )
    if len(lines) == 1:
        lines.append("<i>no model was called</i>")
    if run_steps:
        lines += ["", "<b>Steps</b>", *(step_line(s) for s in run_steps)]
    return "\n".join(lines)


def usage_text(r: UsageReport, period: str) -> str:
    """Tier shares against the target pyramid, cost per model, savings."""
    lines = [
        f"<b>Usage, {escape(period)}</b>",
        f"Requests {r.requests}, answered {r.answered}",
        "",
        "<pre>tier  share   target  requests",
    ]
    for row in r.rows:
        tier = int(row.key)
        share = r.tier_share.get(tier, 0.0)
        lines.append(
            f"{tier:>4}  {share:5.1f}%  {TARGET_SHARE.get(tier, '-'):>6}  {row.requests:>8}"
        )
    lines.append("</pre>")
    return "\n".join(lines)


def model_costs_text(r: UsageReport) -> str:
    """Cost per model and the savings lines."""
    lines = ["<pre>model                         answers    cost $"]
    for row in r.rows:
        lines.append(f"{escape(truncate(row.key, 28)):<29} {row.answered:>7} {row.cost_usd:>9.4f}")
    lines.append("</pre>")
    lines.append(
        f"Cost ${r.cost_usd:.4f} · cloud-only ${r.cloud_only_usd:.4f} "
        f"(saved ${r.savings_vs_cloud_usd:.4f}) · all-top-tier "
        f"${r.all_top_tier_usd:.4f} (saved ${r.savings_vs_top_usd:.4f})"
    )
    return "\n".join(lines)


def status_text(status: StatusSnapshot) -> str:
    """/status: health per tier, breakers, queues, approvals, deliveries, uptime."""
    lines = [f"<b>OpenClaw {escape(status.version)}</b> · up {status.uptime_s:.0f}s"]
    for tier in status.tiers:
        lines.append(f"<b>Tier {tier.level}</b>: {escape(tier.state)}")
        for m in status.models:
            if m.tier == tier.level:
                lat = f" {m.last_latency_ms:.0f} ms" if m.last_latency_ms else ""
                err = f" — {escape(truncate(m.last_error, 80))}" if m.last_error else ""
                lines.append(f"  {escape(m.model)}: {escape(m.state)}{lat}{err}")
    for k in status.keys:  # the keys out of routing, by variable name (never the value)
        if k.state != "closed":
            lines.append(f"Key {escape(key_line(asdict(k)))}")
    q = status.queues
    lines.append(
        f"Queues: agents {q.agents_running} running / {q.agents_waiting} "
        f"waiting, subagents {q.subagents_running} / {q.subagents_waiting}"
    )
    approvals = "?" if status.pending_approvals is None else status.pending_approvals
    deliveries = "?" if q.outbox_pending is None else q.outbox_pending
    unknown = "?" if q.outbox_unknown is None else q.outbox_unknown
    lines.append(f"Pending: {approvals} approvals, {deliveries} deliveries, {unknown} unknown")
    if q.outbox_unknown:
        lines.append("Unknown deliveries may or may not have arrived: see /deliveries")
    if status.store != "ok":
        lines.append(f"Store: {escape(truncate(status.store, 200))}")
    tg = status.plugins.get("telegram")
    if tg:
        lines.append(f"Telegram: {escape(tg['mode'])}, {escape(tg['state'])}")
    hb = status.plugins.get("heartbeat")
    if hb:
        last = hb["last_ping"] or "never"
        lines.append(f"Heartbeat: {escape(truncate(hb['state'], 200))}; last ping {escape(last)}")
    return "\n".join(lines)


def approval_text(rec: ApprovalRecord) -> str:
    """What the admins see when a request wants a tier that needs approval, or an agent
    wants to run an operator tool marked ``approval = true``."""
    req = rec.request
    if req.tool is not None:
        return _tool_approval_text(rec)
    who = req.agent or req.caller or "a gateway client"
    lines = [
        f"🔐 <b>Approval needed</b> #{rec.id}",
        f"From: {escape(who)}" + (f" (run #{escape(req.run_id)})" if req.run_id else ""),
        f"Task: {escape(req.task or '-')} → tier {req.tier} {escape(req.model)}",
        f"Why: {escape(truncate(req.reason, 600))}",
        f"Estimated cost: ${req.estimated_cost_usd:.4f}",
    ]
    if req.preview:
        lines.append(f"Prompt: <i>{escape(truncate(req.preview, 300))}</i>")
    return "\n".join(lines)


def _tool_approval_text(rec: ApprovalRecord) -> str:
    req = rec.request
    run = f" (run #{escape(req.run_id)})" if req.run_id else ""
    lines = [
        f"🔐 <b>Approval needed</b> #{rec.id}",
        f"🔧 Agent <b>{escape(req.agent or '?')}</b>{run} wants to run"
        f" <code>{escape(req.tool or '')}</code>",
    ]
    if req.arguments:
        # truncated before escaping, so a cut never splits an entity like &lt;
        lines.append(f"Arguments: <pre>{escape(truncate(req.arguments, 600))}</pre>")
    return "\n".join(lines)


def approval_outcome(rec: ApprovalRecord) -> str:
    """The approval message after it was decided or expired."""
    icon = {"approved": "✅ Approved", "denied": "❌ Denied", "expired": "⌛ Expired"}
    outcome = icon.get(rec.status, rec.status)
    by = f" by {escape(rec.decided_by)}" if rec.decided_by and rec.status != "expired" else ""
    return f"{approval_text(rec)}\n\n<b>{outcome}{by}</b>"


def budget_text(rows: list[dict[str, Any]], timezone: str) -> str:
    """/budget: one line per cap."""
    if not rows:
        return "No spend caps are configured (<code>[budgets]</code>)."
    lines = [f"<b>Budgets</b> ({escape(timezone)})"]
    for r in rows:
        icon = "🟥" if r["used_pct"] >= 100 else "🟧" if r["used_pct"] >= 80 else "🟩"
        line = (
            f"{icon} {escape(r['label'])}: ${r['spent_usd']:.2f} spent, "
            f"${r['reserved_usd']:.2f} reserved, ${r['remaining_usd']:.2f} left"
        )
        if r["period"] == "month":
            line += f" · forecast ${r['forecast_usd']:.2f}"
        lines.append(line)
    return "\n".join(lines)


DELIVERY_START_CHARS = 300  # of a message's text on its card and in /deliveries
DELIVERY_LINE_CHARS = 80
_TAG_RE = re.compile(r"<[^>]*>")


def delivery_plain(d: Delivery) -> str:
    """A delivery's text as plain text: Telegram HTML without its tags, a webhook's JSON
    by its ``text`` field, Slack's mrkdwn as it is."""
    if d.channel == "telegram":
        return html.unescape(_TAG_RE.sub("", d.body))
    if d.channel == "webhook":
        try:
            payload = json.loads(d.body)
        except ValueError:
            return d.body
        if isinstance(payload, dict) and isinstance(payload.get("text"), str):
            return str(payload["text"])
    return d.body


def _delivery_head(d: Delivery) -> str:
    run = f" · run #{d.run_id}" if d.run_id is not None else ""
    return f"#{d.id} to <code>{escape(d.target)}</code> ({escape(d.kind)}{run})"


def unknown_card_text(d: Delivery) -> str:
    """The card the admins get when a delivery may or may not have arrived."""
    start = escape(truncate(" ".join(delivery_plain(d).split()), DELIVERY_START_CHARS))
    return "\n".join(
        [
            f"❓ <b>Delivery may not have arrived</b> {_delivery_head(d)}",
            "The process sending it stopped before the channel confirmed it.",
            "<i>Resend</i> sends it once more (if it did arrive, it is there twice);"
            " <i>Mark delivered</i> if you see it there.",
            f"Starts: <i>{start}</i>",
        ]
    )


DELIVERY_OUTCOME = {"resend": "🔁 Resent", "delivered": "✅ Marked delivered"}


def delivery_outcome(d: Delivery, action: str, by: str) -> str:
    """A card after an admin settled it (no buttons left)."""
    return (
        f"{unknown_card_text(d)}\n\n<b>{DELIVERY_OUTCOME.get(action, action)} by {escape(by)}</b>"
    )


def delivery_line(d: Delivery) -> str:
    """One row of /deliveries."""
    icon = "❓ unknown" if d.status == DeliveryStatus.UNKNOWN else f"❌ {escape(d.status)}"
    start = escape(truncate(" ".join(delivery_plain(d).split()), DELIVERY_LINE_CHARS))
    why = f"\n   {escape(truncate(d.last_error, DELIVERY_LINE_CHARS))}" if d.last_error else ""
    return f"{icon} {_delivery_head(d)}, {escape(d.created_at[:16])}\n   <i>{start}</i>{why}"


def deliveries_text(rows: Sequence[Delivery], page: int, pages: int, total: int) -> str:
    """/deliveries: failed and unknown rows, newest first (one page)."""
    if not rows:
        return "No failed or unknown deliveries."
    lines = [f"<b>Deliveries to look at</b>: {total} (page {page}/{pages}, newest first)"]
    lines += [delivery_line(d) for d in rows]
    return "\n".join(lines)


def delivery_full(d: Delivery) -> str:
    """Show: the whole message, as Telegram HTML (a Telegram row's body already is)."""
    head = f"📄 {_delivery_head(d)}, {escape(d.status)}"
    body = d.body if d.channel == "telegram" else escape(d.body)
    return f"{head}\n\n{body}"
