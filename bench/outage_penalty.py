"""Outage penalty: what a dead Tier 0 costs each request once the breaker knows (issue 9).

Tier 1 is the loopback upstream of ``_common`` (a fixed small chat completion). Tier 0 is
a second loopback upstream of this file that plays the outage, in one of two modes:

- ``refused``: nothing listens on its port (connection refused);
- ``hang``: it accepts the connection and the request, and never answers.

For each system and mode a fresh front (``openclaw serve``, or a LiteLLM proxy) and a fresh
Tier 0 are started, so every scenario begins with closed breakers and no cooldowns. Then
``--requests`` rounds are sent one request at a time; each round has three requests:

- the *outage* request: a route that starts at Tier 0 (OpenClaw ``tier:0``, whose plan
  goes on to Tier 1; LiteLLM model ``tier0``);
- the *baseline* request: the same front, straight to Tier 1 (OpenClaw ``tier:1``,
  LiteLLM model ``tier1``);
- the *direct* request: straight to the Tier 1 upstream, no front at all.

Interleaving the three keeps the baseline honest on a busy machine: it is measured in the
same seconds as the outage requests. Their order rotates from round to round (round 1
starts with the outage request), so none of them always comes first after a pause.

**Penalty** = p50 (p95, p99) of outage requests 2..N minus the same percentile of the
baseline; the paired figure is the median of (outage i − baseline i) over rounds 2..N.
Target: penalty p50 ≤ 5 ms with no failed request. Request 1 is reported on its own: it is
the one that finds the outage and pays for it.

Choices (``--outage-from``):

- ``warm`` (default): Tier 0 works when the front starts; a few warm-up rounds go through
  it, then it dies (its process is stopped: refused) or starts hanging (it is told to), and
  the measured rounds begin. This is an outage in the middle of the day, and request 1
  pays for finding it.
- ``start``: Tier 0 is already dead when the front starts, and the warm-up rounds leave
  its route alone, so request 1 is the first request to meet it. ``openclaw serve`` probes
  every provider at start-up, so its breaker is open before request 1.

Tier 0's timeout is ``--hang-timeout-s`` (default 2 s), the same for both systems: OpenClaw's
``[providers.t0] timeout_s`` and LiteLLM's ``litellm_params.timeout`` on the tier0
deployment. Without it a hang would cost OpenClaw's default 60 s, or LiteLLM's default
``request_timeout`` (6000 s in the pinned version).
Everything else is each system's default: OpenClaw's breaker opens after 1 failure and
cools down 30 s → 1 min → 5 min, then lets one half-open probe through. When a scenario
lasts over 30 s, such a probe lands inside the run, pays Tier 0's cost again, and shows in
``tier0_retried`` (requests whose ``x-openclaw-route`` says more than one attempt, or in
hang mode that took at least half the timeout): that is the design, and it is reported.

LiteLLM (pinned by ``litellm_peer.py``, in its own venv; logging kept quiet and spend logs
off as there) runs with three configs (``--litellm-variants``):

- ``default``: model_list with a ``tier0`` and a ``tier1`` deployment, nothing else. The
  client asks for ``tier0``; with no fallback there is no way to Tier 1, so requests fail:
  they are counted, and their latency is reported.
- ``fallback``: the same plus ``router_settings.fallbacks: [{"tier0": ["tier1"]}]`` (a
  one-model fallback group); retries, cooldowns and ``allowed_fails`` stay default. In the
  pinned version that means ``num_retries`` 2 (with backoff) before the fallback, and no
  cooldown for a model group of one deployment (it cools down only at 100 % failures over
  1000 requests a minute), so every request pays Tier 0 three times.
- ``tuned`` (not asked for by the issue; shows what LiteLLM can do): ``fallbacks`` plus
  ``num_retries: 0``, ``allowed_fails: 0`` (cool down at the first failure) and
  ``cooldown_time: 30``, the nearest thing to OpenClaw's breaker.

Whether Tier 0 was called again is known for OpenClaw (``attempts=`` in the route header),
and in hang mode for both (the hanging Tier 0 counts its calls, and a hung call takes the
whole timeout); for LiteLLM with Tier 0 refusing it is not observable ("?").

A scenario stops after ``--scenario-budget-s`` of measured rounds (LiteLLM's defaults pay
seconds per request, and 200 of them would take many minutes); the rounds actually sent
are reported, and the percentiles are over those.

    .venv/bin/python bench/outage_penalty.py [--requests 200] [--no-litellm]
        [--modes refused,hang] [--outage-from warm|start] [--hang-timeout-s 2]
        [--litellm-variants default,fallback,tuned] [--interval-ms 0]

Everything listens on 127.0.0.1; every process started here is stopped by its own PID,
the temp dir is removed by its exact path, and the run is bounded by ``--timeout-s``.
Results: a table on stdout and ``bench/results/outage_penalty.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    HOST,
    REQUEST_TIMEOUT_S,
    RESULTS_DIR,
    UPSTREAM_BODY,
    UPSTREAM_MODEL,
    chat_body,
    machine_info,
    pct,
    serve_until_signalled,
    start_gateway,
    start_upstream,
    stop,
    wait_ready,
    write_results,
)
from aiohttp import web

RESULTS_PATH = RESULTS_DIR / "outage_penalty.json"
Procs = dict[str, subprocess.Popen[bytes]]
TARGET_PENALTY_P50_MS = 5.0
MODES = ("refused", "hang")
WARMUP_ROUNDS = 20
T0_REF = f"t0/{UPSTREAM_MODEL}"
T1_REF = f"t1/{UPSTREAM_MODEL}"
# send order per round (0 outage, 1 baseline, 2 direct); round 1 starts with the outage request
ORDERS = ((0, 1, 2), (1, 2, 0), (2, 0, 1))

OPENCLAW_CONFIG = """\
[gateway]
port = 0
[routing]
default_task = "chat"
[providers.t0]
api = "openai-completions"
base_url = "http://127.0.0.1:{t0_port}/v1"
timeout_s = {hang_timeout_s}
[providers.t1]
api = "openai-completions"
base_url = "http://127.0.0.1:{t1_port}/v1"
timeout_s = 30
[models."{t0_ref}"]
max_tokens = 64
[models."{t1_ref}"]
max_tokens = 64
[[tiers]]
level = 0
models = ["{t0_ref}"]
[[tiers]]
level = 1
models = ["{t1_ref}"]
[tasks]
chat = 0
"""

LITELLM_CONFIG = """\
model_list:
  - model_name: tier0
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{t0_port}/v1
      api_key: sk-bench-not-a-secret
      timeout: {hang_timeout_s}
  - model_name: tier1
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{t1_port}/v1
      api_key: sk-bench-not-a-secret
      timeout: 30
litellm_settings:
  set_verbose: false
  json_logs: false
  telemetry: false
general_settings:
  disable_spend_logs: true
  disable_error_logs: true
"""

# appended to LITELLM_CONFIG per variant ("default" adds nothing)
LITELLM_VARIANTS = {
    "default": "",
    "fallback": """\
router_settings:
  fallbacks: [{"tier0": ["tier1"]}]
""",
    # as close to OpenClaw's breaker as LiteLLM's documented knobs go: no retries, a
    # deployment cools down after its first failure (allowed_fails counts those *over*
    # which it cools down), for 30 s
    "tuned": """\
router_settings:
  fallbacks: [{"tier0": ["tier1"]}]
  num_retries: 0
  allowed_fails: 0
  cooldown_time: 30
""",
}


# -- Tier 0: an upstream that works until told to hang (its own process) -----------------------


async def _serve_tier0(mode: str) -> None:
    """Answer like the Tier 1 upstream until ``POST /__hang``; then accept and never answer."""
    state: dict[str, Any] = {"mode": mode, "chat": 0, "models": 0}
    release = asyncio.Event()  # set at shutdown, so hung handlers end and cleanup is quick

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        state["chat"] += 1
        if state["mode"] == "hang":
            await release.wait()
            return web.Response(status=503)
        return web.Response(body=UPSTREAM_BODY, content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        state["models"] += 1
        if state["mode"] == "hang":
            await release.wait()
            return web.Response(status=503)
        return web.json_response({"object": "list", "data": [{"id": UPSTREAM_MODEL}]})

    async def hang(request: web.Request) -> web.Response:
        state["mode"] = "hang"
        return web.json_response(state)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/models", models)
    app.router.add_post("/__hang", hang)
    app.router.add_get("/__stats", stats)
    await serve_until_signalled(app, on_stop=release.set, shutdown_timeout=2.0)


def _start_tier0(workdir: Path, mode: str, deadline: float) -> tuple[subprocess.Popen[bytes], int]:
    argv = (str(Path(__file__).resolve()), "--tier0-upstream", mode)
    return start_upstream(workdir, deadline, argv, f"tier0-{mode}.log")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment to pick it, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- measurement ---------------------------------------------------------------------------------


@dataclass
class Sample:
    ms: float
    error: str  # "" when it answered with content
    route: str  # what the front says about how it answered (headers), "" if nothing


@dataclass
class Front:
    """A system under test: where to send, which model names mean what."""

    system: str
    url: str
    headers: dict[str, str]
    outage_model: str
    baseline_model: str
    describe_route: Callable[[Any], str]
    tier0_marker: str  # in the route note when Tier 0 answered
    status_url: str = ""


@dataclass
class Scenario:
    system: str
    mode: str
    outage: list[Sample] = field(default_factory=list)
    baseline: list[Sample] = field(default_factory=list)
    direct: list[Sample] = field(default_factory=list)
    warmup_tier0_answered: int | None = None
    budget_hit: bool = False
    wall_s: float = 0.0
    tier0_before: dict[str, Any] = field(default_factory=dict)  # Tier 0's own counts, then
    tier0_counts: dict[str, Any] = field(default_factory=dict)  # after the measured rounds
    breaker_after: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _openclaw_route(headers: Any) -> str:
    return str(headers.get("x-openclaw-route", ""))


def _litellm_route(headers: Any) -> str:
    keys = (
        ("x-litellm-attempted-fallbacks", "fallbacks"),
        ("x-litellm-attempted-retries", "retries"),
        ("x-litellm-model-api-base", "api_base"),
    )
    return "; ".join(f"{short}={headers[k]}" for k, short in keys if k in headers)


async def _request(
    session: aiohttp.ClientSession,
    url: str,
    model: str,
    headers: dict[str, str],
    describe: Callable[[Any], str],
) -> Sample:
    """One chat completion; latency, error ('' when it answered) and the front's route note.

    ``_common.one_request`` does the same but drops the response headers, which say here
    whether Tier 0 was tried.
    """
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=chat_body(model), headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
            route = describe(resp.headers)
    except (aiohttp.ClientError, TimeoutError) as e:
        return Sample((time.perf_counter() - t0) * 1000, f"{type(e).__name__}: {e}", "")
    ms = (time.perf_counter() - t0) * 1000
    if status != 200:
        return Sample(ms, f"HTTP {status}: {raw[:160]!r}", route)
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return Sample(ms, f"malformed body: {raw[:160]!r}", route)
    return Sample(ms, "" if content else "empty content", route)


async def _get_json(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> Any:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return await r.json(content_type=None)
    return None


async def _measure(
    front: Front,
    scenario: Scenario,
    direct_url: str,
    t0_url: str | None,
    break_tier0: Callable[[], Any] | None,
    rounds: int,
    warmup: int,
    budget_s: float,
    request_timeout_s: float,
    interval_s: float,
) -> None:
    """Warm up, break Tier 0 (``break_tier0``, in warm mode), then run the measured rounds."""
    json_headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def send(which: int) -> Sample:
            if which == 2:
                return await _request(session, direct_url, UPSTREAM_MODEL, json_headers, str)
            model = front.outage_model if which == 0 else front.baseline_model
            return await _request(session, front.url, model, front.headers, front.describe_route)

        async def round_(i: int, record: bool, outage: bool = True) -> Sample | None:
            # rotate who goes first, so no series always follows the pause or another one
            order = [w for w in ORDERS[i % len(ORDERS)] if outage or w != 0]
            got = {which: await send(which) for which in order}
            if record:
                scenario.outage.append(got[0])
                scenario.baseline.append(got[1])
                scenario.direct.append(got[2])
            return got.get(0)

        # with Tier 0 dead from the start, warming up its route would find the outage before
        # request 1 does: warm up only the others then
        warm = [await round_(i, False, break_tier0 is not None) for i in range(warmup)]
        if t0_url is not None:
            scenario.tier0_before = await _get_json(session, f"{t0_url}/__stats") or {}
        if break_tier0 is not None:
            scenario.warmup_tier0_answered = sum(
                1 for s in warm if s and not s.error and front.tier0_marker in s.route
            )
            result = break_tier0()
            if asyncio.iscoroutine(result):
                await result
        start = time.monotonic()
        for i in range(rounds):
            if time.monotonic() - start > budget_s:
                scenario.budget_hit = True
                break
            if i and interval_s:
                await asyncio.sleep(interval_s)
            await round_(i, True)
        scenario.wall_s = time.monotonic() - start
        if t0_url is not None:
            scenario.tier0_counts = await _get_json(session, f"{t0_url}/__stats") or {}
        if front.status_url:
            status = await _get_json(session, front.status_url, front.headers)
            for row in (status or {}).get("models", []):
                if row.get("model") == T0_REF:
                    scenario.breaker_after = row


def _tier0_tried(system: str, mode: str, s: Sample, hang_timeout_ms: float) -> bool | None:
    """Did this outage request call Tier 0? None where nothing tells (LiteLLM, refused)."""
    if mode == "hang":
        return s.ms >= hang_timeout_ms / 2  # a hung call costs the whole timeout
    if system == "openclaw":
        # "attempts=N" counts calls made; 1 means Tier 0 was skipped (breaker open)
        for part in s.route.split(";"):
            k, _, v = part.strip().partition("=")
            if k == "attempts" and v.isdigit():
                return int(v) > 1
        return False
    return None  # LiteLLM's headers say a fallback happened, not whether Tier 0 was called


# -- systems -------------------------------------------------------------------------------------


def _scenario_openclaw(
    mode: str,
    args: argparse.Namespace,
    tmp: Path,
    t1_port: int,
    deadline: float,
    procs: Procs,
) -> Scenario:
    sc = Scenario("openclaw", mode)
    work = tmp / f"openclaw-{mode}"
    work.mkdir()
    t0_proc, t0_port, t0_url, breaker = _tier0_for(mode, args.outage_from, work, deadline, procs)
    token = secrets.token_urlsafe(24)
    config = OPENCLAW_CONFIG.format(
        t0_port=t0_port,
        t1_port=t1_port,
        t0_ref=T0_REF,
        t1_ref=T1_REF,
        hang_timeout_s=args.hang_timeout_s,
    )
    gw, port = start_gateway(config, work, token, deadline)
    procs[f"openclaw-{mode}"] = gw
    try:
        base = f"http://{HOST}:{port}"
        asyncio.run(wait_ready(f"{base}/readyz", deadline))
        front = Front(
            "openclaw",
            f"{base}/v1/chat/completions",
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            "tier:0",
            "tier:1",
            _openclaw_route,
            "tier=0;",
            status_url=f"{base}/api/status",
        )
        _run_scenario(front, sc, args, t1_port, t0_url, breaker, deadline)
    finally:
        stop(gw)
        stop(t0_proc)
    return sc


def _scenario_litellm(
    variant: str,
    mode: str,
    args: argparse.Namespace,
    tmp: Path,
    t1_port: int,
    deadline: float,
    procs: Procs,
) -> Scenario:
    import litellm_peer

    sc = Scenario(f"litellm-{variant}", mode)
    work = tmp / f"litellm-{variant}-{mode}"
    work.mkdir()
    t0_proc, t0_port, t0_url, breaker = _tier0_for(mode, args.outage_from, work, deadline, procs)
    config = LITELLM_CONFIG.format(
        model=UPSTREAM_MODEL, t0_port=t0_port, t1_port=t1_port, hang_timeout_s=args.hang_timeout_s
    )
    config += LITELLM_VARIANTS[variant]
    proxy, port, key = litellm_peer.start_proxy(config, work, deadline)
    procs[sc.system + f"-{mode}"] = proxy
    try:
        front = Front(
            sc.system,
            f"http://{HOST}:{port}/v1/chat/completions",
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            "tier0",
            "tier1",
            _litellm_route,
            f":{t0_port}/",  # x-litellm-model-api-base names the deployment that answered
        )
        _run_scenario(front, sc, args, t1_port, t0_url, breaker, deadline)
    finally:
        stop(proxy)
        stop(t0_proc)
    return sc


def _tier0_for(
    mode: str,
    outage_from: str,
    work: Path,
    deadline: float,
    procs: Procs,
) -> tuple[subprocess.Popen[bytes] | None, int, str | None, Callable[[], Any] | None]:
    """Start Tier 0 for this scenario: its process, port, URL, and how to break it later."""
    if outage_from == "start" and mode == "refused":
        return None, _closed_port(), None, None
    proc, port = _start_tier0(work, "hang" if outage_from == "start" else "ok", deadline)
    procs[f"{work.name}-tier0"] = proc
    url = f"http://{HOST}:{port}"
    if outage_from == "start":
        return proc, port, url, None
    if mode == "refused":

        async def kill() -> None:
            await asyncio.to_thread(stop, proc)  # its port closes with it: connection refused

        return proc, port, None, kill

    async def hang() -> None:
        async with aiohttp.ClientSession() as s, s.post(f"{url}/__hang") as r:
            r.raise_for_status()

    return proc, port, url, hang


def _run_scenario(
    front: Front,
    sc: Scenario,
    args: argparse.Namespace,
    t1_port: int,
    t0_url: str | None,
    breaker: Callable[[], Any] | None,
    deadline: float,
) -> None:
    print(f"{sc.system} / {sc.mode}: {args.requests} rounds ...", flush=True)
    budget = min(args.scenario_budget_s, max(0.0, deadline - time.monotonic() - 30))
    request_timeout = max(REQUEST_TIMEOUT_S, 10 * args.hang_timeout_s)
    asyncio.run(
        _measure(
            front,
            sc,
            f"http://{HOST}:{t1_port}/v1/chat/completions",
            t0_url,
            breaker,
            args.requests,
            args.warmup,
            budget,
            request_timeout,
            args.interval_ms / 1000,
        )
    )


# -- report --------------------------------------------------------------------------------------


def _ms(x: float) -> float | None:
    return None if x != x else round(x, 3)  # NaN → None (JSON null)


def _stats(samples: Sequence[Sample]) -> dict[str, Any]:
    ok = [s.ms for s in samples if not s.error]
    failed = [s.ms for s in samples if s.error]
    return {
        "sent": len(samples),
        "ok": len(ok),
        "errors": len(failed),
        "first_error": next((s.error for s in samples if s.error), ""),
        "p50_ms": _ms(pct(ok, 50)),
        "p95_ms": _ms(pct(ok, 95)),
        "p99_ms": _ms(pct(ok, 99)),
        "max_ms": _ms(max(ok, default=float("nan"))),
        "failed_p50_ms": _ms(pct(failed, 50)),
        "failed_max_ms": _ms(max(failed, default=float("nan"))),
    }


def _summarize(sc: Scenario, hang_timeout_s: float) -> dict[str, Any]:
    rest = sc.outage[1:]
    base_ok = [s.ms for s in sc.baseline if not s.error]
    direct_ok = [s.ms for s in sc.direct if not s.error]
    rest_ok = [s.ms for s in rest if not s.error]
    penalty = {f"p{p}_ms": _ms(pct(rest_ok, p) - pct(base_ok, p)) for p in (50, 95, 99)}
    paired = [
        o.ms - b.ms
        for o, b in zip(sc.outage[1:], sc.baseline[1:], strict=True)
        if not o.error and not b.error
    ]
    over_direct = _ms(pct(rest_ok, 50) - pct(direct_ok, 50))
    tried = [_tier0_tried(sc.system, sc.mode, s, hang_timeout_s * 1000) for s in sc.outage]
    retried = (
        None
        if None in tried
        else [
            {"request": i + 1, "ms": round(s.ms, 3), "route": s.route, "error": s.error}
            for i, (s, t) in enumerate(zip(sc.outage, tried, strict=True))
            if i > 0 and t
        ]
    )
    calls = None
    if "chat" in sc.tier0_counts and "chat" in sc.tier0_before:
        calls = sc.tier0_counts["chat"] - sc.tier0_before["chat"]
    first = sc.outage[0] if sc.outage else None
    p50 = penalty["p50_ms"]
    met = (
        bool(rest)
        and not any(s.error for s in rest)
        and p50 is not None
        and p50 <= TARGET_PENALTY_P50_MS
    )
    verdict = "PASS" if met else ("n/a" if not rest else "MISS")
    return {
        "system": sc.system,
        "tier0": sc.mode,
        "rounds_sent": len(sc.outage),
        "stopped_by_budget": sc.budget_hit,
        "wall_s": round(sc.wall_s, 2),
        "warmup_answered_by_tier0": sc.warmup_tier0_answered,
        "request_1": None
        if first is None
        else {"ms": round(first.ms, 3), "error": first.error, "route": first.route},
        "outage_2_n": _stats(rest),
        "baseline_tier1_same_front": _stats(sc.baseline),
        "direct_tier1": _stats(sc.direct),
        "penalty_ms": penalty,
        "penalty_paired_median_ms": _ms(statistics.median(paired)) if paired else None,
        "outage_p50_over_direct_ms": over_direct,
        "tier0_retried": retried,
        "routes_2_n": _route_counts(rest),
        "tier0_calls_during_run": calls,
        "tier0_server_counts": sc.tier0_counts,
        "tier0_breaker_after": sc.breaker_after,
        "verdict": verdict,
        "notes": sc.notes,
    }


def _route_counts(samples: Sequence[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        key = s.route or ("(error) " + s.error[:80] if s.error else "(no route header)")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:6])


def _f(x: float | None, sign: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.2f}" if sign else f"{x:.2f}"


def _print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'system':<17} {'tier0':<8} {'sent':>4} {'req1 ms':>9} {'2..N ok':>7} {'err':>4} "
        f"{'p50':>8} {'p95':>8} {'p99':>8} {'base p50':>8} {'dir p50':>7} "
        f"{'Δp50':>8} {'Δp95':>8} {'Δp99':>8} {'paired':>7} {'t0 again':>8}  verdict"
    )
    lines = ["", head, "-" * len(head)]
    for r in rows:
        o, b, d, pen = (
            r["outage_2_n"],
            r["baseline_tier1_same_front"],
            r["direct_tier1"],
            r["penalty_ms"],
        )
        req1 = r["request_1"]
        req1_s = "—" if req1 is None else f"{req1['ms']:.1f}" + ("!" if req1["error"] else "")
        lines.append(
            f"{r['system']:<17} {r['tier0']:<8} {r['rounds_sent']:>4} {req1_s:>9} "
            f"{o['ok']:>7} {o['errors']:>4} {_f(o['p50_ms']):>8} {_f(o['p95_ms']):>8} "
            f"{_f(o['p99_ms']):>8} {_f(b['p50_ms']):>8} {_f(d['p50_ms']):>7} "
            f"{_f(pen['p50_ms'], True):>8} {_f(pen['p95_ms'], True):>8} "
            f"{_f(pen['p99_ms'], True):>8} {_f(r['penalty_paired_median_ms'], True):>7} "
            f"{'?' if r['tier0_retried'] is None else len(r['tier0_retried']):>8}  "
            f"{r['verdict']}"
        )
    lines.append(
        "ms; p50/p95/p99 = outage requests 2..N that answered; Δ = those minus the baseline "
        "(Tier 1 through the same front, interleaved); paired = median per-round difference; "
        "req1 '!' = request 1 failed; t0 again = requests 2..N that called Tier 0 again "
        "(OpenClaw: half-open probes; ? = not observable); "
        f"target Δp50 ≤ {TARGET_PENALTY_P50_MS} ms with no errors."
    )
    for r in rows:
        o = r["outage_2_n"]
        extra = []
        if o["errors"]:
            extra.append(
                f"{o['errors']} failed (p50 {_f(o['failed_p50_ms'])} ms): {o['first_error'][:120]}"
            )
        if r["tier0_retried"]:
            shown = ", ".join(f"#{t['request']} {t['ms']:.0f} ms" for t in r["tier0_retried"][:5])
            extra.append(f"Tier 0 called again: {shown}")
        if r["tier0_calls_during_run"] is not None:
            extra.append(
                f"Tier 0 received {r['tier0_calls_during_run']} calls during "
                f"{r['rounds_sent']} rounds"
            )
        if r["stopped_by_budget"]:
            extra.append(f"stopped by --scenario-budget-s after {r['rounds_sent']} rounds")
        if r["request_1"] and r["request_1"]["error"]:
            extra.append(f"request 1 failed: {r['request_1']['error'][:120]}")
        extra += r["notes"]
        for e in extra:
            lines.append(f"  {r['system']} / {r['tier0']}: {e}")
    print("\n".join(lines), flush=True)


# -- entry ---------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--tier0-upstream", choices=("ok", "hang"), help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, default=200, help="measured rounds per scenario")
    p.add_argument("--warmup", type=int, default=WARMUP_ROUNDS, help="unmeasured rounds first")
    p.add_argument("--modes", default=",".join(MODES), help="refused,hang (default both)")
    p.add_argument("--outage-from", choices=("warm", "start"), default="warm")
    p.add_argument("--hang-timeout-s", type=float, default=2.0, help="Tier 0 timeout, both")
    p.add_argument(
        "--interval-ms",
        type=float,
        default=0.0,
        help="pause between rounds (e.g. 200 spreads 200 rounds over 40 s, past the 30 s "
        "cooldown, to see a half-open probe)",
    )
    p.add_argument("--scenario-budget-s", type=float, default=120.0, help="per scenario")
    p.add_argument("--no-litellm", action="store_true", help="OpenClaw only")
    p.add_argument(
        "--litellm-variants",
        default=",".join(LITELLM_VARIANTS),
        help="LiteLLM configs to run (default: default,fallback,tuned)",
    )
    p.add_argument("--timeout-s", type=float, default=1500.0, help="bound on the whole run")
    p.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results path")
    args = p.parse_args(argv)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.mode_list or any(m not in MODES for m in args.mode_list):
        p.error(f"--modes takes a comma-separated subset of {','.join(MODES)}")
    args.variant_list = [v.strip() for v in args.litellm_variants.split(",") if v.strip()]
    if any(v not in LITELLM_VARIANTS for v in args.variant_list):
        p.error(f"--litellm-variants takes a subset of {','.join(LITELLM_VARIANTS)}")
    if args.requests < 2:
        p.error("--requests must be ≥ 2 (request 1 is reported on its own)")
    if args.warmup < 0 or args.interval_ms < 0:
        p.error("--warmup and --interval-ms must be ≥ 0")
    if args.hang_timeout_s <= 0 or args.scenario_budget_s <= 0:
        p.error("--hang-timeout-s and --scenario-budget-s must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.tier0_upstream:
        asyncio.run(_serve_tier0(args.tier0_upstream))
        return 0

    deadline = time.monotonic() + args.timeout_s
    litellm_info: dict[str, Any] = {"skipped": "--no-litellm"} if args.no_litellm else {}
    if not args.no_litellm:
        import litellm_peer

        try:
            litellm_peer.ensure_venv()
            litellm_info = {"version": litellm_peer.PINNED_VERSION, "failed": []}
        except litellm_peer.LiteLLMUnavailable as e:  # OpenClaw's half still runs
            print(f"LiteLLM skipped: {e}", file=sys.stderr, flush=True)
            litellm_info = {"skipped": str(e)}
            args.no_litellm = True

    tmp = Path(tempfile.mkdtemp(prefix="openclaw-outage-"))
    procs: Procs = {}  # label → process, each stopped by its own PID at the end
    rows: list[dict[str, Any]] = []
    try:
        t1, t1_port = start_upstream(tmp, deadline)
        procs["tier1"] = t1
        print(f"tier 1 upstream :{t1_port} (pid {t1.pid}); temp dir {tmp}", flush=True)
        runs: list[tuple[str, Callable[[], Scenario]]] = []
        common = (args, tmp, t1_port, deadline, procs)
        for mode in args.mode_list:
            runs.append((f"openclaw/{mode}", partial(_scenario_openclaw, mode, *common)))
            if not args.no_litellm:
                for v in args.variant_list:
                    runs.append(
                        (f"litellm-{v}/{mode}", partial(_scenario_litellm, v, mode, *common))
                    )
        for name, run in runs:
            if time.monotonic() > deadline - 30:
                print(f"skipping {name}: --timeout-s nearly spent", flush=True)
                continue
            try:
                sc = run()
            except Exception as e:
                if name.startswith("openclaw"):
                    raise
                # a peer that won't start is reported, not fatal (LiteLLMUnavailable & co.)
                print(f"{name} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                litellm_info["failed"].append({"scenario": name, "error": f"{e}"[-2000:]})
                continue
            rows.append(_summarize(sc, args.hang_timeout_s))
    finally:
        exit_codes = {f"{k} (pid {p.pid})": stop(p) for k, p in procs.items()}
        shutil.rmtree(tmp, ignore_errors=True)

    _print_table(rows)
    write_results(
        args.output,
        {
            "benchmark": "outage_penalty",
            "unix_time": round(time.time()),
            "machine": machine_info(),
            "litellm": litellm_info,
            "parameters": {
                "requests": args.requests,
                "warmup_rounds": args.warmup,
                "modes": args.mode_list,
                "outage_from": args.outage_from,
                "hang_timeout_s": args.hang_timeout_s,
                "scenario_budget_s": args.scenario_budget_s,
                "interval_ms": args.interval_ms,
                "target_penalty_p50_ms": TARGET_PENALTY_P50_MS,
                "litellm_config_default": LITELLM_CONFIG,
                "litellm_variants": args.variant_list,
                "litellm_config_extra_per_variant": {
                    v: LITELLM_VARIANTS[v] for v in args.variant_list
                },
            },
            "results": rows,
            "exit_codes": exit_codes,
        },
    )
    openclaw_rows = [r for r in rows if r["system"] == "openclaw"]
    return 0 if openclaw_rows and all(r["verdict"] == "PASS" for r in openclaw_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
