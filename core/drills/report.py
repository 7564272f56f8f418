"""A drill's report as text: the same table in the CLI and in the chat."""

from __future__ import annotations

from typing import Any


def _s(value: float | None) -> str:
    return "—" if value is None else f"+{value:.1f}s"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def report_lines(r: dict[str, Any]) -> list[str]:
    """One line per measurement of a report (as ``GET /api/drills/{id}`` answers it)."""
    bound = f"{r['for_s']:.0f}s" + (
        f" or {r['max_requests']} requests" if r.get("max_requests") else ""
    )
    state = "running" if r["state"] == "running" else f"ended ({r.get('end_reason') or '?'})"
    lines = [
        f"drill {r['id']}: {r['model']} fault {r['fault']} for {bound}; {state}",
        f"{'started':<16} {r['started_at']}"
        + (f", ended {r['ended_at']}" if r["ended_at"] else ""),
        f"{'faulted':<16} {r['faulted_requests']} requests hit the fault;"
        f" {r['affected_requests']} requests met the drill",
    ]
    opened = r.get("breaker_opened_after_s")
    lines.append(
        f"{'breaker opened':<16} "
        + (
            f"{_s(opened)} after the start"
            if opened is not None
            else "never (answers that are unusable count as the model working)"
            if r["fault"] in ("empty", "reasoning_only")
            else "never"
        )
    )
    if r["failover"]:
        went = ", ".join(f"{f['model']} ×{f['requests']}" for f in r["failover"])
    else:
        went = "nowhere (no request was answered by another model)"
    lines.append(f"{'failed over to':<16} {went}")
    if r.get("unanswered"):
        lines.append(f"{'unanswered':<16} {r['unanswered']} requests no model answered")
    added, answers = r["added_latency_ms"], r["failover_latency_ms"]
    lines.append(
        f"{'added latency':<16} median {_ms(added['median'])}, p95 {_ms(added['p95'])}"
        " (time on the faulted model, per request that met the drill)"
    )
    lines.append(
        f"{'fallback answer':<16} median {_ms(answers['median'])}, p95 {_ms(answers['p95'])};"
        f" {r['model']} normally {_ms(r.get('normal_latency_ms'))} (median, the day before)"
    )
    if not r["alerts"]:
        lines.append(f"{'alert':<16} none queued")
    for a in r["alerts"]:
        if a["delivered_after_s"] is not None:
            how = f"delivered {_s(a['delivered_after_s'])} (queued {_s(a['queued_after_s'])})"
        else:
            how = f"{a['status']}, not delivered (queued {_s(a['queued_after_s'])})"
        lines.append(f"{'alert':<16} {a['target']}: {how}")
    healthy = r.get("healthy_after_s")
    lines.append(
        f"{'healthy again':<16} "
        + (
            f"{_s(healthy)} after the drill ended (its first answer)"
            if healthy is not None
            else "not yet (no answer from it since the drill ended)"
            if r["state"] == "ended"
            else "— (the drill is running)"
        )
    )
    return lines
