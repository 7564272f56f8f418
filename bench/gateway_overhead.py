"""Latency the gateway adds over calling the upstream directly, next to LiteLLM's proxy.

Starts a loopback upstream that answers every chat completion with the same small body,
``openclaw serve`` routed to it and a LiteLLM proxy (pinned, in its own venv: see
``litellm_peer.py``) routed to it too, then sends the same requests straight to the
upstream, through OpenClaw and through LiteLLM at each concurrency, and compares
percentiles, requests/s and the server process's CPU time per request (the figure to trust
on a busy machine, where wall-clock latencies are noisy).

Two kinds of request, measured in the same run, taking turns: ``plain`` (one short user
message) and ``tools`` (an agent turn: system and user message, two tools with JSON-Schema
parameters, tool_choice auto), which the upstream answers with one tool call. OpenClaw
holds that answer until it has checked the call's arguments against the tool's schema, so
the ``tools`` rows show what that costs; the same targets apply to both kinds.

    .venv/bin/python bench/gateway_overhead.py [--concurrency 1,16,64] [--requests N]
                                               [--kind plain,tools] [--rounds 4]
                                               [--no-litellm] [--timeout-s 900]

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    HOST,
    REQUEST_TIMEOUT_S,
    RESULTS_DIR,
    UPSTREAM_MODEL,
    Phase,
    chat_body,
    exit_on_sigterm,
    machine_info,
    one_request,
    one_tier_config,
    rss_kib,
    run_phase,
    start_gateway,
    start_upstream,
    stop,
    tool_chat_body,
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
# the request bodies by kind, for a target's model name
BODIES: dict[str, Callable[[str], bytes]] = {"plain": chat_body, "tools": tool_chat_body}


@dataclass
class Server:
    """A target the load goes to."""

    name: str
    url: str
    model: str
    token: str | None
    pid: int | None  # whose CPU time a phase records


# -- measuring ----------------------------------------------------------------------------


async def _probe(s: Server, kind: str) -> str:
    """One request of ``kind`` to ``s``; '' when it answers as a phase would count it."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {s.token}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        _, err = await one_request(
            session, s.url, BODIES[kind](s.model), headers, want_tool_calls=kind == "tools"
        )
    return err


async def _bench(
    servers: list[Server],
    ready_urls: list[tuple[str, dict[str, str] | None]],
    kinds: Sequence[str],
    concurrencies: Sequence[int],
    requests: dict[int, int],
    warmup: int,
    rounds: int,
    deadline: float,
    skipped: dict[str, str],
) -> dict[int, dict[str, dict[str, Phase]]]:
    """Phases by concurrency, kind and target; a LiteLLM that cannot answer a kind is left
    out of it, the reason in ``skipped[kind]``."""
    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
        for url, headers in ready_urls:
            await wait_ready(url, deadline, headers)
        runs: dict[str, list[Server]] = {}
        for kind in kinds:
            runs[kind] = list(servers)
            peer = next((s for s in servers if s.name == "litellm"), None)
            if peer is not None and (err := await _probe(peer, kind)):
                skipped[kind] = f"cannot answer the {kind} request through its proxy: {err}"
                print(f"litellm {skipped[kind]}", file=sys.stderr, flush=True)
                runs[kind].remove(peer)
        out: dict[int, dict[str, dict[str, Phase]]] = {}
        for c in concurrencies:
            n = requests[c]
            names = ", ".join(s.name for s in servers)
            print(
                f"c={c}: {n} requests of each kind ({', '.join(kinds)}) to each target in "
                f"{rounds} turns (+{warmup} warm-up each): {names}",
                flush=True,
            )
            out[c] = {k: {s.name: Phase(s.name, c, 0) for s in runs[k]} for k in kinds}
            # the targets and the kinds take turns, so that a change in the machine's load
            # (other work on a small machine) falls on all of them rather than on one
            for r in range(rounds):
                share = n // rounds + (1 if r < n % rounds else 0)
                for kind in kinds if r % 2 == 0 else kinds[::-1]:
                    order = runs[kind] if r % 2 == 0 else runs[kind][::-1]
                    for s in order:
                        ph = await run_phase(
                            s.name,
                            s.url,
                            s.model,
                            s.token,
                            c,
                            share,
                            warmup,  # every turn: each opens its own connections
                            server_pid=s.pid,
                            body=BODIES[kind](s.model),
                            want_tool_calls=kind == "tools",
                        )
                        _merge(out[c][kind][s.name], ph)
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


def _limit(value: float | str | None, limit: str, ok: bool | None) -> dict[str, Any]:
    return {"value": value, "limit": limit, "verdict": _verdict(ok)}


def _kind_targets(
    added: dict[int, dict[str, dict[int, float]]], ratios: dict[str, float | None]
) -> dict[str, Any]:
    """The four targets for one kind of request (the same limits for every kind)."""

    def get(c: int, name: str, p: int) -> float | None:
        return added.get(c, {}).get(name, {}).get(p)

    p50_c1 = get(1, "openclaw", 50)
    p99_c64 = get(64, "openclaw", 99)
    r_c1 = ratios.get("c1_p50")
    r_c64 = ratios.get("c64_p99")
    return {
        "openclaw_p50_added_c1_ms": _limit(
            _round(p50_c1),
            f"≤ {TARGET_P50_C1_MS}",
            None if p50_c1 is None else p50_c1 <= TARGET_P50_C1_MS,
        ),
        "openclaw_p99_added_c64_ms": _limit(
            _round(p99_c64),
            f"≤ {TARGET_P99_C64_MS}",
            None if p99_c64 is None else p99_c64 <= TARGET_P99_C64_MS,
        ),
        "litellm_over_openclaw_p50_added_c1": _limit(
            _round(r_c1, 2),
            f"≥ {TARGET_RATIO_C1}",
            None if r_c1 is None else r_c1 >= TARGET_RATIO_C1,
        ),
        "litellm_over_openclaw_p99_added_c64": _limit(
            _round(r_c64, 2),
            f"≥ {TARGET_RATIO_C64}",
            None if r_c64 is None else r_c64 >= TARGET_RATIO_C64,
        ),
    }


def _report(
    phases: dict[int, dict[str, dict[str, Phase]]],
    litellm_note: str,
    skipped: dict[str, str],
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    rows: list[dict[str, Any]] = []
    kinds = list(next(iter(phases.values())))
    # kind → c → target → percentile → ms over direct
    added: dict[str, dict[int, dict[str, dict[int, float]]]] = {k: {} for k in kinds}
    head = (
        f"{'c':>3} {'kind':<5} {'target':<9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'+p50':>8} {'+p95':>8} {'+p99':>8} {'req/s':>7} {'cpu ms/req':>10} "
        f"{'ok':>6} {'err':>4}"
    )
    lines = ["", head]
    for c, by_kind in phases.items():
        for kind, by_name in by_kind.items():
            direct = by_name["direct"]
            added[kind][c] = {}
            row: dict[str, Any] = {"concurrency": c, "kind": kind}
            for name in TARGETS:
                ph = by_name.get(name)
                if ph is None:
                    why = "see below" if litellm_note or kind in skipped else "not run"
                    lines.append(f"{c:>3} {kind:<5} {name:<9} {'n/a':>8}  ({why})")
                    row[name] = None
                    continue
                add = {p: ph.pct(p) - direct.pct(p) for p in (50, 95, 99)}
                if name != "direct":
                    added[kind][c][name] = add
                plus = (
                    "".join(f" {add[p]:>+8.3f}" for p in (50, 95, 99))
                    if name != "direct"
                    else f" {'':>8} {'':>8} {'':>8}"
                )
                lines.append(
                    f"{c:>3} {kind:<5} {name:<9} {ph.pct(50):>8.3f} {ph.pct(95):>8.3f} "
                    f"{ph.pct(99):>8.3f}{plus} {ph.rps:>7.0f} "
                    f"{_fmt(ph.cpu_ms_per_request, '.3f'):>10} {ph.ok:>6} {ph.errors:>4}"
                )
                row[name] = ph.summary()
                if name != "direct":
                    row[name]["added_ms"] = {f"p{p}": _round(v) for p, v in add.items()}
            for name in TARGETS:
                ph = by_name.get(name)
                if ph is not None and ph.first_error:
                    lines.append(f"    {kind} {name} first error: {ph.first_error}")
            rows.append(row)

    def get(kind: str, c: int, name: str, p: int) -> float | None:
        return added[kind].get(c, {}).get(name, {}).get(p)

    targets: dict[str, Any] = {}
    all_ratios: dict[str, dict[str, float | str | None]] = {}
    all_cpu_ratios: dict[str, dict[str, float | str | None]] = {}
    compared: list[str] = []
    for kind in kinds:
        ratios: dict[str, float | None] = {}
        cpu_ratios: dict[str, float | None] = {}
        for c, by_kind in phases.items():
            ours, peer = by_kind[kind].get("openclaw"), by_kind[kind].get("litellm")
            if peer is None:
                continue
            for p in (50, 95, 99):
                ratios[f"c{c}_p{p}"] = _ratio(
                    get(kind, c, "litellm", p), get(kind, c, "openclaw", p)
                )
            if ours and ours.cpu_ms_per_request and peer.cpu_ms_per_request:
                cpu_ratios[f"c{c}"] = peer.cpu_ms_per_request / ours.cpu_ms_per_request
        if ratios:
            compared.append(
                f"{kind}: LiteLLM added ÷ OpenClaw added: "
                + "  ".join(f"{k} {_times(v)}" for k, v in ratios.items())
            )
        if cpu_ratios:
            compared.append(
                f"{kind}: LiteLLM CPU/request ÷ OpenClaw's: "
                + "  ".join(f"{k} {_times(v)}" for k, v in cpu_ratios.items())
            )
        targets[kind] = _kind_targets(added[kind], ratios)
        all_ratios[kind] = {k: _round(v, 2) for k, v in ratios.items()}
        all_cpu_ratios[kind] = {k: _round(v, 2) for k, v in cpu_ratios.items()}

    # what the tool-call request costs OpenClaw over the plain one, measured in the same run
    tools_minus_plain: dict[str, dict[str, float | str | None]] = {}
    if "plain" in kinds and "tools" in kinds:
        for c, by_kind in phases.items():
            plain, tools = by_kind["plain"]["openclaw"], by_kind["tools"]["openclaw"]
            delta = {
                f"added_p{p}_ms": _diff(
                    get("tools", c, "openclaw", p), get("plain", c, "openclaw", p)
                )
                for p in (50, 95, 99)
            }
            delta["cpu_ms_per_request"] = _diff(tools.cpu_ms_per_request, plain.cpu_ms_per_request)
            tools_minus_plain[f"c{c}"] = {k: _round(v) for k, v in delta.items()}
            compared.append(
                f"openclaw tools − plain at c={c}: "
                + "  ".join(f"{k} {_fmt(v, '+.3f')}" for k, v in delta.items())
            )

    ours_ok = all(
        by_name[n].errors == 0
        for by_kind in phases.values()
        for by_name in by_kind.values()
        for n in ("direct", "openclaw")
    )
    if compared:
        lines += ["", *compared]
    lines.append("")
    for kind in kinds:
        for name, t in targets[kind].items():
            value = "n/a" if t["value"] is None else str(t["value"])
            lines.append(f"target {kind} {name} {t['limit']}: {value}  {t['verdict']}")
    lines.append(f"errors (direct, openclaw): {'none' if ours_ok else 'SOME (see above)'}")
    if litellm_note:
        lines.append(f"litellm: {litellm_note}")
    for kind, why in skipped.items():
        lines.append(f"litellm {kind}: skipped, {why}")
    targets["no_errors"] = ours_ok
    targets["ratios_added"] = all_ratios
    targets["ratios_cpu_per_request"] = all_cpu_ratios
    targets["openclaw_tools_minus_plain"] = tools_minus_plain
    return rows, targets, lines


def _diff(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    return a - b


# -- entry --------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated (default 1,16,64)")
    p.add_argument(
        "--requests",
        type=int,
        help="measured requests per target, kind and concurrency "
        "(default 2000 at c=1, 4000 otherwise)",
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
    p.add_argument(
        "--kind",
        default=",".join(BODIES),
        help="comma-separated request kinds, plain and/or tools (default plain,tools)",
    )
    args = p.parse_args(argv)
    args.kinds = list(dict.fromkeys(k.strip() for k in args.kind.split(",") if k.strip()))
    unknown = [k for k in args.kinds if k not in BODIES]
    if unknown or not args.kinds:
        p.error(f"--kind takes plain and/or tools separated by commas, not {args.kind!r}")
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
    skipped: dict[str, str] = {}  # kind → why LiteLLM was left out of it
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
            _bench(
                servers,
                ready,
                args.kinds,
                args.concurrencies,
                requests,
                args.warmup,
                args.rounds,
                deadline,
                skipped,
            )
        )
        for s in servers:
            rss[s.name] = rss_kib(s.pid) if s.pid else None
        rows, targets, lines = _report(phases, litellm_note, skipped)
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
        "litellm_skipped_kinds": skipped,
        "parameters": {
            "kinds": args.kinds,
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
