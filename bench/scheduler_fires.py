"""Scheduler: many minutely systemEvent agents in ``openclaw serve`` — fire delay and RSS.

Writes a config with ``--agents`` agents of kind ``systemEvent`` (session ``shared``;
``isolated`` + ``systemEvent`` is a config error), each on ``* * * * *`` and delivering
to ``log``, starts ``openclaw serve`` on it as a subprocess (models point at a loopback
upstream; systemEvent runs call none), and lets it fire for ``--minutes`` whole minutes.
Then, from the runs table of its store, per fire: the fire delay (run row created −
scheduled fire time), the start delay (run started − scheduled) and the finish delay,
as percentiles, and the runs created against those expected. RSS (VmRSS) and CPU time
of the serve process are sampled every second.

    .venv/bin/python bench/scheduler_fires.py [--agents 1000] [--minutes 3]

Everything listens on 127.0.0.1; the temp dir and both subprocesses are removed/stopped
on the way out, and the run is bounded by ``--timeout-s``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    cpu_s,
    machine_info,
    one_tier_config,
    pct,
    rss_kib,
    start_gateway,
    start_upstream,
    stop,
    write_results,
)

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "scheduler_fires.json"
SETTLE_S = 50.0  # after the last measured fire: time for its runs to finish
SAMPLE_S = 1.0

AGENT = """
[[agents]]
name = "tick-{i:04d}"
kind = "systemEvent"
session = "shared"
task = "chat"
schedule = "* * * * *"
timezone = "UTC"
message = "tick {i} at {{{{ now.strftime('%H:%M') }}}}"
deliver = ["log"]
"""


def make_config(upstream_port: int, agents: int) -> str:
    head = one_tier_config(upstream_port)
    return head + "".join(AGENT.format(i=i) for i in range(agents))


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def next_minute(t: datetime) -> datetime:
    """The first whole minute strictly after ``t``."""
    return t.replace(second=0, microsecond=0) + timedelta(minutes=1)


def read_runs(db: Path) -> list[dict[str, Any]]:
    """The scheduled runs, read-only (serve may still be writing)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        con.row_factory = sqlite3.Row
        rows = con.execute(
            "SELECT agent, status, scheduled_for, created_at, started_at, finished_at"
            " FROM runs WHERE trigger = 'schedule'"
        ).fetchall()
        return [dict(r) for r in rows]
    finally:
        con.close()


def summarize(values_s: list[float]) -> dict[str, float | None]:
    if not values_s:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": round(pct(values_s, 50) * 1000, 1),
        "p95_ms": round(pct(values_s, 95) * 1000, 1),
        "p99_ms": round(pct(values_s, 99) * 1000, 1),
        "max_ms": round(max(values_s) * 1000, 1),
    }


def analyse(runs: list[dict[str, Any]], fires: list[datetime], agents: int) -> dict[str, Any]:
    by_fire: dict[datetime, list[dict[str, Any]]] = {f: [] for f in fires}
    other = 0
    for r in runs:
        when = _ts(r["scheduled_for"])
        if when is not None and when in by_fire:
            by_fire[when].append(r)
        else:
            other += 1
    per_minute = []
    all_fire: list[float] = []
    all_start: list[float] = []
    all_done: list[float] = []
    for fire, rows in by_fire.items():
        fire_d = [(_ts(r["created_at"]) - fire).total_seconds() for r in rows]  # type: ignore[operator]
        start_d = [(s - fire).total_seconds() for r in rows if (s := _ts(r["started_at"]))]
        done_d = [(f - fire).total_seconds() for r in rows if (f := _ts(r["finished_at"]))]
        all_fire += fire_d
        all_start += start_d
        all_done += done_d
        per_minute.append(
            {
                "scheduled_for": fire.isoformat(),
                "runs": len(rows),
                "expected": agents,
                "agents_fired": len({r["agent"] for r in rows}),
                "finished_ok": sum(r["status"] == "ok" for r in rows),
                "fire_delay": summarize(fire_d),
                "start_delay": summarize(start_d),
                "finish_delay": summarize(done_d),
            }
        )
    return {
        "per_minute": per_minute,
        "runs": sum(m["runs"] for m in per_minute),
        "expected": agents * len(fires),
        "finished_ok": sum(m["finished_ok"] for m in per_minute),
        "unmatched_runs": other,
        "fire_delay": summarize(all_fire),
        "start_delay": summarize(all_start),
        "finish_delay": summarize(all_done),
    }


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def report(result: dict[str, Any], rss: dict[str, Any]) -> None:
    print()
    print(
        f"{'fire (UTC)':<10} {'runs':>11} {'fire p50':>9} {'p95':>8} {'p99':>8} {'max':>8}"
        f" {'start p99':>10} {'done p99':>9} {'RSS MiB':>8}"
    )
    for m, minute_rss in zip(result["per_minute"], rss["per_minute"], strict=False):
        f, s, d = m["fire_delay"], m["start_delay"], m["finish_delay"]
        print(
            f"{m['scheduled_for'][11:16]:<10} {m['runs']:>5}/{m['expected']:<5}"
            f" {_ms(f['p50_ms']):>9} {_ms(f['p95_ms']):>8} {_ms(f['p99_ms']):>8}"
            f" {_ms(f['max_ms']):>8} {_ms(s['p99_ms']):>10} {_ms(d['p99_ms']):>9}"
            f" {minute_rss['rss_mib']:>8}"
        )
    f, s, d = result["fire_delay"], result["start_delay"], result["finish_delay"]
    print(
        f"{'all':<10} {result['runs']:>5}/{result['expected']:<5}"
        f" {_ms(f['p50_ms']):>9} {_ms(f['p95_ms']):>8} {_ms(f['p99_ms']):>8}"
        f" {_ms(f['max_ms']):>8} {_ms(s['p99_ms']):>10} {_ms(d['p99_ms']):>9}"
    )
    print("  (delays in ms after the scheduled fire: fire = run row created, start = run")
    print("   started after waiting for an agent slot, done = run finished)")
    print(
        f"RSS MiB: at ready {rss['ready_mib']}, peak {rss['peak_mib']}, end {rss['end_mib']};"
        f" serve CPU {rss['cpu_s']} s over {rss['wall_s']} s"
    )


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    deadline = time.monotonic() + args.timeout_s
    tmp = Path(tempfile.mkdtemp(prefix="openclaw-bench-sched-"))
    upstream: subprocess.Popen[bytes] | None = None
    serve: subprocess.Popen[bytes] | None = None
    samples: list[tuple[float, int | None]] = []  # (unix time, VmRSS KiB)
    exit_codes: dict[str, int | None] = {}
    try:
        upstream, port = start_upstream(tmp, deadline)
        t_spawn = time.monotonic()
        serve, _ = start_gateway(
            make_config(port, args.agents), tmp, secrets.token_urlsafe(24), deadline
        )
        ready_s = time.monotonic() - t_spawn
        ready_at = datetime.now(UTC)
        cpu0 = cpu_s(serve.pid)
        samples.append((time.time(), rss_kib(serve.pid)))
        first = next_minute(ready_at + timedelta(seconds=1))
        fires = [first + timedelta(minutes=k) for k in range(args.minutes)]
        end = fires[-1].timestamp() + SETTLE_S
        print(
            f"serve (pid {serve.pid}) up with {args.agents} agents in {ready_s:.1f} s; measuring"
            f" the fires of {fires[0]:%H:%M}..{fires[-1]:%H:%M} UTC, until {SETTLE_S:g} s after"
            " the last",
            flush=True,
        )
        db = tmp / "openclaw.db"
        next_report = fires[0].timestamp() + 30
        done = 0
        while time.time() < end:
            if time.monotonic() > deadline:
                raise TimeoutError("--timeout-s reached")
            if serve.poll() is not None:
                raise RuntimeError(f"serve exited with {serve.returncode}")
            samples.append((time.time(), rss_kib(serve.pid)))
            if time.time() >= next_report:
                with contextlib.suppress(sqlite3.Error):
                    runs = read_runs(db)
                    done = sum(r["finished_at"] is not None for r in runs)
                    print(
                        f"  {datetime.now(UTC):%H:%M:%S} runs {len(runs)} ({done} finished),"
                        f" RSS {_mib(samples[-1][1])} MiB",
                        flush=True,
                    )
                next_report += 60
                # the last fire's runs all done: no need to wait out the settle time
                if time.time() > fires[-1].timestamp() and done >= args.agents * args.minutes:
                    break
            time.sleep(SAMPLE_S)
        cpu1 = cpu_s(serve.pid)
        wall_s = time.monotonic() - t_spawn
        exit_codes["serve"] = stop(serve)
        runs = read_runs(db)
        log_tail = (tmp / "gateway.err").read_text(errors="replace")
    finally:
        exit_codes["serve"] = stop(serve)
        exit_codes["upstream"] = stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)

    result = analyse(runs, fires, args.agents)
    skipped = log_tail.count("maximum number of running instances")
    missed = log_tail.count("was missed by")
    rss_minutes = []
    for fire in fires:
        window = [k for t, k in samples if fire.timestamp() <= t < fire.timestamp() + 60 and k]
        before = [k for t, k in samples if t < fire.timestamp() and k]
        rss_minutes.append(
            {
                "minute": fire.isoformat(),
                "before_fire_mib": _mib(before[-1] if before else None),
                "peak_mib": _mib(max(window) if window else None),
                "rss_mib": _mib(window[-1] if window else None),
            }
        )
    values = [k for _, k in samples if k]
    rss = {
        "ready_mib": _mib(samples[0][1]),
        "peak_mib": _mib(max(values) if values else None),
        "end_mib": _mib(values[-1] if values else None),
        "per_minute": rss_minutes,
        "cpu_s": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 2),
        "wall_s": round(wall_s, 1),
        "samples": [(round(t - samples[0][0], 1), _mib(k)) for t, k in samples[:: max(1, 10)]],
    }
    report(result, rss)
    print(f"APScheduler log: {skipped} fires skipped (instance running), {missed} missed")
    ok = result["runs"] == result["expected"] and not skipped and not missed
    print(f"every fire ran: {'PASS' if ok else 'MISS'}")
    write_results(
        args.output,
        {
            "benchmark": "scheduler_fires",
            "machine": machine_info(),
            "parameters": {
                "agents": args.agents,
                "minutes": args.minutes,
                "kind": "systemEvent",
                "session": "shared",
                "schedule": "* * * * *",
                "deliver": ["log"],
                "concurrency_agents": "default",
            },
            "serve_ready_s": round(ready_s, 2),
            "results": result,
            "rss": rss,
            "apscheduler_skipped": skipped,
            "apscheduler_missed": missed,
            "every_fire_ran": ok,
            "exit_codes": exit_codes,
        },
    )
    return 0 if ok else 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--minutes", type=int, default=3, help="whole minutes of fires (1 = quick)")
    p.add_argument("--timeout-s", type=float, help="bound on the whole run")
    p.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results path")
    args = p.parse_args(argv)
    if args.agents < 1 or args.minutes < 1:
        p.error("--agents and --minutes must be >= 1")
    if args.timeout_s is None:
        args.timeout_s = 60.0 * args.minutes + 240.0
    if not math.isfinite(args.timeout_s) or args.timeout_s <= 0:
        p.error("--timeout-s must be > 0")
    return args


if __name__ == "__main__":
    sys.exit(main())
