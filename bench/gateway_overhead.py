"""Latency the gateway adds over calling the upstream directly, next to LiteLLM's proxy.

Starts a loopback upstream that answers every chat completion with the same small body,
``openclaw serve`` routed to it and a LiteLLM proxy (pinned, in its own venv: see
``litellm_peer.py``) routed to it too, then sends the same requests straight to the
upstream, through OpenClaw and through LiteLLM at each concurrency, and compares
percentiles, requests/s and the server process's CPU time per request (the figure to trust
on a busy machine, where wall-clock latencies are noisy).

    .venv/bin/python bench/gateway_overhead.py [--concurrency 1,16,64] [--requests N]
                                               [--rounds 4] [--no-litellm] [--timeout-s 900]

Everything listens on 127.0.0.1; the temp dir and every subprocess are removed/stopped on
the way out, and the whole run is bounded by ``--timeout-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    HOST,
    REQUEST_TIMEOUT_S,
    RESULTS_DIR,
    UPSTREAM_MODEL,
    Phase,
    exit_on_sigterm,
    machine_info,
    one_tier_config,
    rss_kib,
    run_phase,
    start_gateway,
    start_upstream,
    stop,
    wait_ready,
    write_results,
)

GATEWAY_MODEL = "auto"
DEFAULT_REQUESTS = {1: 2000, 16: 4000, 64: 4000}  # others get the largest figure
TARGET_P50_C1_MS = 1.0
TARGET_P99_C64_MS = 15.0
TARGET_RATIO_C1 = 4.0  # LiteLLM's added p50 over OpenClaw's, at c=1
TARGET_RATIO_C64 = 10.0  # LiteLLM's added p99 over OpenClaw's, at c=64
RESULTS_PATH = RESULTS_DIR / "gateway_overhead.json"
TARGETS = ("direct", "openclaw", "litellm")


@dataclass
class Server:
    """A target the load goes to."""

    name: str
    url: str
    model: str
    token: str | None
    pid: int | None  # whose CPU time a phase records


# -- measuring ----------------------------------------------------------------------------


async def _bench(
    servers: list[Server],
    ready_urls: list[tuple[str, dict[str, str] | None]],
    concurrencies: Sequence[int],
    requests: dict[int, int],
    warmup: int,
    rounds: int,
    deadline: float,
) -> dict[int, dict[str, Phase]]:
    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
        for url, headers in ready_urls:
            await wait_ready(url, deadline, headers)
        out: dict[int, dict[str, Phase]] = {}
        for c in concurrencies:
            n = requests[c]
            names = ", ".join(s.name for s in servers)
            print(
                f"c={c}: {n} requests each in {rounds} turns (+{warmup} warm-up each): {names}",
                flush=True,
            )
            out[c] = {s.name: Phase(s.name, c, 0) for s in servers}
            # the targets take turns, so that a change in the machine's load (other work
            # on a small machine) falls on all of them rather than on one
            for r in range(rounds):
                share = n // rounds + (1 if r < n % rounds else 0)
                for s in servers if r % 2 == 0 else servers[::-1]:
                    ph = await run_phase(
                        s.name,
                        s.url,
                        s.model,
                        s.token,
                        c,
                        share,
                        warmup,  # every turn: each opens its own connections
                        server_pid=s.pid,
                    )
                    _merge(out[c][s.name], ph)
        return out


def _merge(into: Phase, ph: Phase) -> None:
    into.requests += ph.requests
    into.ok += ph.ok
    into.errors += ph.errors
    into.wall_s += ph.wall_s
    into.latencies_ms.extend(ph.latencies_ms)
    into.first_error = into.first_error or ph.first_error
    if ph.server_cpu_s is not None:
        into.server_cpu_s = (into.server_cpu_s or 0.0) + ph.server_cpu_s


# -- report -------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def _ratio(peer: float | None, ours: float | None) -> float | None:
    """How many times more latency the peer adds; inf when ours adds none at all."""
    if peer is None or ours is None or math.isnan(peer) or math.isnan(ours):
        return None
    if ours <= 0:
        return math.inf if peer > 0 else None
    return peer / ours


def _fmt(x: float | None, spec: str) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf"
    return format(x, spec)


def _times(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.1f}x"


def _round(x: float | None, digits: int = 3) -> float | str | None:
    if x is None or math.isnan(x):
        return None
    if math.isinf(x):
        return "inf"
    return round(x, digits)


def _report(
    phases: dict[int, dict[str, Phase]], litellm_note: str
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    rows: list[dict[str, Any]] = []
    added: dict[int, dict[str, dict[int, float]]] = {}
    head = (
        f"{'c':>3} {'target':<9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'+p50':>8} {'+p95':>8} {'+p99':>8} {'req/s':>7} {'cpu ms/req':>10} "
        f"{'ok':>6} {'err':>4}"
    )
    lines = ["", head]
    for c, by_name in phases.items():
        direct = by_name["direct"]
        added[c] = {}
        row: dict[str, Any] = {"concurrency": c}
        for name in TARGETS:
            ph = by_name.get(name)
            if ph is None:
                why = "see below" if litellm_note else "not run"
                lines.append(f"{c:>3} {name:<9} {'n/a':>8}  ({why})")
                row[name] = None
                continue
            add = {p: ph.pct(p) - direct.pct(p) for p in (50, 95, 99)}
            if name != "direct":
                added[c][name] = add
            plus = (
                "".join(f" {add[p]:>+8.3f}" for p in (50, 95, 99))
                if name != "direct"
                else f" {'':>8} {'':>8} {'':>8}"
            )
            lines.append(
                f"{c:>3} {name:<9} {ph.pct(50):>8.3f} {ph.pct(95):>8.3f} {ph.pct(99):>8.3f}"
                f"{plus} {ph.rps:>7.0f} {_fmt(ph.cpu_ms_per_request, '.3f'):>10} "
                f"{ph.ok:>6} {ph.errors:>4}"
            )
            row[name] = ph.summary()
            if name != "direct":
                row[name]["added_ms"] = {f"p{p}": _round(v) for p, v in add.items()}
        for name in TARGETS:
            ph = by_name.get(name)
            if ph is not None and ph.first_error:
                lines.append(f"    {name} first error: {ph.first_error}")
        rows.append(row)

    def get(c: int, name: str, p: int) -> float | None:
        return added.get(c, {}).get(name, {}).get(p)

    ratios: dict[str, float | None] = {}
    cpu_ratios: dict[str, float | None] = {}
    for c, by_name in phases.items():
        for p in (50, 95, 99):
            ratios[f"c{c}_p{p}"] = _ratio(get(c, "litellm", p), get(c, "openclaw", p))
        ours, peer = by_name.get("openclaw"), by_name.get("litellm")
        if ours and peer and ours.cpu_ms_per_request and peer.cpu_ms_per_request:
            cpu_ratios[f"c{c}"] = peer.cpu_ms_per_request / ours.cpu_ms_per_request
    if ratios:
        lines.append("")
        lines.append(
            "LiteLLM added ÷ OpenClaw added: "
            + "  ".join(f"{k} {_times(v)}" for k, v in ratios.items())
        )
    if cpu_ratios:
        lines.append(
            "LiteLLM CPU/request ÷ OpenClaw's: "
            + "  ".join(f"{k} {_times(v)}" for k, v in cpu_ratios.items())
        )

    p50_c1 = get(1, "openclaw", 50)
    p99_c64 = get(64, "openclaw", 99)
    r_c1 = ratios.get("c1_p50")
    r_c64 = ratios.get("c64_p99")
    targets: dict[str, Any] = {
        "openclaw_p50_added_c1_ms": {
            "value": _round(p50_c1),
            "limit": f"≤ {TARGET_P50_C1_MS}",
            "verdict": _verdict(None if p50_c1 is None else p50_c1 <= TARGET_P50_C1_MS),
        },
        "openclaw_p99_added_c64_ms": {
            "value": _round(p99_c64),
            "limit": f"≤ {TARGET_P99_C64_MS}",
            "verdict": _verdict(None if p99_c64 is None else p99_c64 <= TARGET_P99_C64_MS),
        },
        "litellm_over_openclaw_p50_added_c1": {
            "value": _round(r_c1, 2),
            "limit": f"≥ {TARGET_RATIO_C1}",
            "verdict": _verdict(None if r_c1 is None else r_c1 >= TARGET_RATIO_C1),
        },
        "litellm_over_openclaw_p99_added_c64": {
            "value": _round(r_c64, 2),
            "limit": f"≥ {TARGET_RATIO_C64}",
            "verdict": _verdict(None if r_c64 is None else r_c64 >= TARGET_RATIO_C64),
        },
    }
    ours_ok = all(
        by_name[n].errors == 0 for by_name in phases.values() for n in ("direct", "openclaw")
    )
    lines.append("")
    for name, t in targets.items():
        value = "n/a" if t["value"] is None else str(t["value"])
        lines.append(f"target {name} {t['limit']}: {value}  {t['verdict']}")
    lines.append(f"errors (direct, openclaw): {'none' if ours_ok else 'SOME (see above)'}")
    if litellm_note:
        lines.append(f"litellm: {litellm_note}")
    targets["no_errors"] = ours_ok
    targets["ratios_added"] = {k: _round(v, 2) for k, v in ratios.items()}
    targets["ratios_cpu_per_request"] = {k: _round(v, 2) for k, v in cpu_ratios.items()}
    return rows, targets, lines


# -- entry --------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated (default 1,16,64)")
    p.add_argument(
        "--requests",
        type=int,
        help="measured requests per target and concurrency (default 2000 at c=1, 4000 otherwise)",
    )
    p.add_argument(
        "--warmup", type=int, default=200, help="unmeasured requests per target and turn"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="split each target's requests into this many turns, alternating targets (default 4)",
    )
    p.add_argument("--timeout-s", type=float, default=900.0, help="bound on the whole run")
    p.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results path")
    p.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    args = p.parse_args(argv)
    try:
        args.concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        p.error("--concurrency takes whole numbers separated by commas, e.g. 1,16,64")
    if not args.concurrencies or min(args.concurrencies) < 1:
        p.error("--concurrency needs at least one value, each ≥ 1")
    if args.requests is not None and args.requests < 1:
        p.error("--requests must be ≥ 1")
    if args.rounds < 1:
        p.error("--rounds must be ≥ 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    exit_on_sigterm()
    deadline = time.monotonic() + args.timeout_s
    requests = {
        c: args.requests or DEFAULT_REQUESTS.get(c, max(DEFAULT_REQUESTS.values()))
        for c in args.concurrencies
    }
    token = secrets.token_urlsafe(24)
    tmp = Path(tempfile.mkdtemp(prefix="openclaw-bench-"))
    procs: dict[str, subprocess.Popen[bytes] | None] = {}
    exit_codes: dict[str, int | None] = {}
    rss: dict[str, int | None] = {}
    litellm_note = "skipped (--no-litellm)" if args.no_litellm else ""
    litellm_version: str | None = None
    try:
        procs["upstream"], upstream_port = start_upstream(tmp, deadline)
        config = one_tier_config(upstream_port)
        procs["openclaw"], gateway_port = start_gateway(config, tmp, token, deadline)
        servers = [
            Server(
                "direct",
                f"http://{HOST}:{upstream_port}/v1/chat/completions",
                UPSTREAM_MODEL,
                None,
                procs["upstream"].pid,
            ),
            Server(
                "openclaw",
                f"http://{HOST}:{gateway_port}/v1/chat/completions",
                GATEWAY_MODEL,
                token,
                procs["openclaw"].pid,
            ),
        ]
        ready: list[tuple[str, dict[str, str] | None]] = [
            (f"http://{HOST}:{gateway_port}/readyz", None)
        ]
        if not args.no_litellm:
            try:
                import litellm_peer  # here, so --no-litellm needs nothing of it

                proxy, port, key = litellm_peer.start_proxy(
                    litellm_peer.openai_upstream_yaml(upstream_port), tmp, deadline
                )
                procs["litellm"] = proxy
                litellm_version = litellm_peer.PINNED_VERSION
                servers.append(
                    Server(
                        "litellm",
                        f"http://{HOST}:{port}/v1/chat/completions",
                        UPSTREAM_MODEL,
                        key,
                        proxy.pid,
                    )
                )
            except Exception as e:  # honest n/a columns rather than no figures at all
                litellm_note = f"unavailable: {type(e).__name__}: {e}"[:1500]
                print(f"litellm {litellm_note}", file=sys.stderr, flush=True)
        print(
            "  ".join(f"{s.name} pid {s.pid} {s.url.rsplit('/v1', 1)[0]}" for s in servers),
            flush=True,
        )
        phases = asyncio.run(
            _bench(servers, ready, args.concurrencies, requests, args.warmup, args.rounds, deadline)
        )
        for s in servers:
            rss[s.name] = rss_kib(s.pid) if s.pid else None
        rows, targets, lines = _report(phases, litellm_note)
    finally:
        for name in reversed(list(procs)):
            exit_codes[name] = stop(procs[name])
        shutil.rmtree(tmp, ignore_errors=True)

    lines.append(
        "RSS after the run (MiB): "
        + "  ".join(f"{k} {v / 1024:.0f}" for k, v in rss.items() if v is not None)
    )
    print("\n".join(lines), flush=True)
    result = {
        "benchmark": "gateway_overhead",
        "unix_time": round(time.time()),
        "machine": machine_info(),
        "litellm_version": litellm_version,
        "litellm_note": litellm_note,
        "parameters": {
            "concurrency": args.concurrencies,
            "requests": {str(c): n for c, n in requests.items()},
            "warmup": args.warmup,
            "rounds": args.rounds,
            "timeout_s": args.timeout_s,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "direct_model": UPSTREAM_MODEL,
            "gateway_model": GATEWAY_MODEL,
            "max_tokens": 16,
        },
        "results": rows,
        "targets": targets,
        "rss_kib_after": rss,
        "exit_codes": exit_codes,
    }
    write_results(args.output, result)
    print(f"exit codes: {exit_codes}")
    return 0 if targets["no_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
