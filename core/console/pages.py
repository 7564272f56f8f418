"""The console's pages (GET): each reads the facade the API reads, one query per part."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from core.agents.assurance import PROBLEMS, parse_period, summary
from core.agents.runner import UnknownAgent
from core.agents.runs import Run, Status
from core.agents.steps import SECRET_NAME, Step, redact_arguments
from core.console import charts
from core.console.web import CONSOLE, render
from core.delivery.deliveries import Delivery
from core.engine.ledger import TraceStep
from core.engine.tier_targets import TARGET_MID_PCT, TARGET_SHARE
from core.engine.tuning import tune_report
from core.facade import Facade
from core.ops.redaction import REDACTED
from core.parsing import parse_id, parse_since

USAGE_PERIODS = ("24h", "7d", "30d")


def _facade(request: web.Request) -> Facade:
    return request.app[CONSOLE].gateway.facade


def _note(request: web.Request) -> str:
    """A one-line result of the last action, carried by the redirect (escaped on output)."""
    return request.query.get("note", "")[:300]


async def overview(request: web.Request) -> web.Response:
    """Tiers and models with breaker state and last latency, queues, pending approvals and
    deliveries, and what the plug-ins report (heartbeat, cluster, Telegram)."""
    st = request.app[CONSOLE].gateway
    snap = await st.facade.overview.status(st.uptime_s())
    plugins = {k: v for k, v in snap.plugins.items() if isinstance(v, dict)}
    instances = await st.facade.instances() if snap.store == "ok" else []
    context: dict[str, Any] = {"snap": snap, "plugins": plugins, "instances": instances}
    return render(request, "overview.html", note=_note(request), **context)


async def runs(request: web.Request) -> web.Response:
    """Recent runs, newest first; filters: agent, status."""
    facade = _facade(request)
    agent = request.query.get("agent") or None
    status = request.query.get("status") or None
    if agent is not None and facade.config.agent(agent) is None:
        agent = None
    wanted = Status(status) if status in set(Status) else None
    found = await facade.runs.recent(agent, 100, wanted)
    context: dict[str, Any] = {
        "runs": found,
        "agents": [a.name for a in facade.config.agents],
        "statuses": [str(s) for s in Status],
        "agent": agent or "",
        "status": str(wanted or ""),
    }
    return render(request, "runs.html", **context)


@dataclass(frozen=True, slots=True)
class RunView:
    """Everything a run's page shows, read together (the page and its live stream)."""

    run: Run
    attempts: list[TraceStep]
    steps: list[Step]
    deliveries: list[Delivery]


async def run_view(facade: Facade, run_id: int) -> RunView | None:
    """The run with its attempts, tool steps and deliveries; None when there is no such."""
    run = await facade.runs.get(run_id)
    if run is None:
        return None
    attempts = await facade.ledger.trace(run.id)
    steps = await facade.steps.for_run(run.id)
    deliveries = await facade.deliveries.of_run(run.id)
    return RunView(run, attempts, steps, deliveries)


def run_id_of(request: web.Request) -> int:
    """The ``{run_id}`` of the path; 404 when it is no id."""
    try:
        return parse_id(request.match_info["run_id"])
    except ValueError:
        raise web.HTTPNotFound() from None


async def run_page(request: web.Request) -> web.Response:
    """One run: every attempt, every tool step, its output and deliveries; live while it
    runs (``run.js`` listens to ``/ui/runs/{id}/events``)."""
    view = await run_view(_facade(request), run_id_of(request))
    if view is None:
        return render(request, "refused.html", http_status=404, status_code=404, why="no such run")
    return render(request, "run.html", v=view, note=_note(request))


async def agents(request: web.Request) -> web.Response:
    """Every agent: schedule, next fire, last status, cost today; Run now, enable/disable."""
    rows = await _facade(request).overview.agents()
    return render(request, "agents.html", agents=rows, note=_note(request))


def _mask_url(text: str) -> str:
    """A URL's password and its secret-named query values masked (``?token=…``)."""
    if "://" not in text:
        return text
    parts = urlsplit(text)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    query = urlencode(
        [
            (k, REDACTED if SECRET_NAME.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _mask_urls(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _mask_urls(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask_urls(v) for v in node]
    return _mask_url(node) if isinstance(node, str) else node


def masked_config(facade: Facade, name: str) -> str:
    """An agent's config as JSON: secret-named keys (``headers.Authorization``), URL
    passwords and secret-named query values, and every known secret value masked."""
    agent = facade.runner.agent(name)
    secrets = list(facade.runner.secrets)
    token = facade.settings.openclaw_gateway_token
    if token is not None:
        secrets.append(token.get_secret_value())
    doc = _mask_urls(agent.model_dump(mode="json"))
    text = redact_arguments(json.dumps(doc), secrets)
    return json.dumps(json.loads(text), indent=2, ensure_ascii=False)


async def agent_page(request: web.Request) -> web.Response:
    """One agent: its row, its config (secrets masked), its memory and recent runs."""
    facade = _facade(request)
    name = request.match_info["name"]
    try:
        config = masked_config(facade, name)
    except UnknownAgent as e:
        return render(request, "refused.html", http_status=404, status_code=404, why=str(e))
    row = next(r for r in await facade.overview.agents() if r.name == name)
    memory = await facade.memory.entries(name)
    recent = await facade.runs.recent(name, 20)
    return render(
        request,
        "agent.html",
        a=row,
        config=config,
        memory=memory,
        runs=recent,
        note=_note(request),
    )


async def approvals(request: web.Request) -> web.Response:
    """Pending approvals with Approve / Deny."""
    pending = await _facade(request).approvals.pending()
    return render(request, "approvals.html", pending=pending, note=_note(request))


async def usage(request: web.Request) -> web.Response:
    """Tier share per day against the target, cost per day and model, savings."""
    facade = _facade(request)
    since = request.query.get("since", "7d")
    if since not in USAGE_PERIODS:
        since = "7d"
    period: timedelta = parse_since(since)
    report = await facade.ledger.report(period, "model")
    days = await facade.ledger.daily(period)
    tuned = await tune_report(facade.ledger, period)  # GET /api/tune's report
    cost = report.cost_usd
    cloud = report.cloud_only_usd
    saving = charts.hbars(
        "Cost against cloud-only (the same answers, all from the cheapest cloud tier)",
        [
            ("this pyramid", [(cost, "#2e8b57", f"${cost:.4f}")], max(cloud, cost)),
            ("cloud-only", [(cloud, "#c0392b", f"${cloud:.4f}")], max(cloud, cost)),
        ],
    )
    return render(
        request,
        "usage.html",
        since=since,
        periods=USAGE_PERIODS,
        report=report,
        share=charts.tier_share(days, TARGET_MID_PCT),
        cost=charts.cost_per_day(days),
        saving=saving,
        targets=TARGET_SHARE,
        suggestions=tuned.suggestions,
    )


async def budgets(request: web.Request) -> web.Response:
    """Each cap as a bar: spent, reserved, and the period-end forecast beside it."""
    facade = _facade(request)
    caps: list[dict[str, Any]] = await facade.budget.report() if facade.budget else []
    rows = []
    for c in caps:
        cap = float(c["cap_usd"])
        forecast = float(c["forecast_usd"])
        rows.append(
            (
                str(c["label"]),
                [
                    (float(c["spent_usd"]), "#4682b4", f"spent ${c['spent_usd']:.4f}"),
                    (float(c["reserved_usd"]), "#daa520", f"reserved ${c['reserved_usd']:.4f}"),
                ],
                cap,
            )
        )
        over = "#c0392b" if forecast > cap else "#9bbbd4"
        rows.append(("  forecast", [(forecast, over, f"forecast ${forecast:.4f}")], cap))
    bars = charts.hbars(
        "Spent (blue), reserved (gold), period-end forecast (red: over the cap); width: the cap",
        rows,
    )
    return render(request, "budgets.html", caps=caps, bars=bars)


SCHEDULE_PERIODS = ("24h", "7d")


async def schedule(request: web.Request) -> web.Response:
    """Per scheduled agent, its expected fires over the period and what became of each
    (the same fires as ``GET /api/schedule``)."""
    facade = _facade(request)
    since = request.query.get("since", "24h")
    if since not in SCHEDULE_PERIODS:
        since = "24h"
    now = facade.schedule.clock()
    start = now - parse_period(since)
    fires = await facade.schedule.fires(start, now)
    names = [a.name for a in facade.config.agents if a.schedule]
    problems = [f for f in fires if f.outcome in PROBLEMS]
    context: dict[str, Any] = {
        "since": since,
        "periods": SCHEDULE_PERIODS,
        "chart": charts.timeline(names, fires, start, now),
        "summary": summary(fires),
        "problems": problems[::-1][:50],  # the newest first
    }
    return render(request, "schedule.html", **context)


async def deliveries(request: web.Request) -> web.Response:
    """Failed and unknown deliveries, newest first, with Resend / Mark delivered."""
    rows, total = await _facade(request).deliveries.attention(100)
    return render(request, "deliveries.html", rows=rows, total=total, note=_note(request))
