"""Idle serve: time from spawn to the first ``/readyz`` 200, then RSS and CPU while idle.

Starts ``openclaw serve`` ``--runs`` times (fresh store each time) on a config shaped
like ``openclaw.example.toml`` — four tiers, keyed cloud providers, the example agents —
but with no embedded model and no real network: the local provider is a loopback
upstream (so a tier is healthy and ``/readyz`` can answer 200), every other provider
points at 127.0.0.1 and lacks its key, as on a machine with none set up, and the
digest's feeds point at the upstream. The Telegram bot is off (no token).

Per start: the seconds from spawn to the first ``/readyz`` 200 (polled every 10 ms),
RSS (VmRSS) at ready and after ``--idle-s`` seconds of idling, the CPU time used over
that idle stretch, and how long a SIGTERM takes to stop it. Reports min/median/max.

    .venv/bin/python bench/idle_serve.py [--runs 5] [--idle-s 5]

Everything listens on 127.0.0.1; temp dirs and subprocesses are removed/stopped on the
way out, and the whole run is bounded by ``--timeout-s``.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    HOST,
    UPSTREAM_MODEL,
    child_env,
    cpu_s,
    gateway_command,
    machine_info,
    rss_kib,
    start_upstream,
    stop,
    write_results,
)

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "idle_serve.json"
POLL_S = 0.01
CLOSED = "http://127.0.0.1:9"  # discard: nothing listens, a connect fails at once
# no proxy from the environment: loopback stays on loopback
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CONFIG = """\
[gateway]
host = "127.0.0.1"
port = {gateway_port}

[concurrency]
agents = 2
subagents = 4

[telegram]
admins = []
allowed_users = []

[routing]
default_task = "chat"

[approvals]
default = "deny"
timeout_s = 300

[providers.local]
api = "openai-completions"
base_url = "http://127.0.0.1:{upstream_port}/v1"
timeout_s = 120

[providers.gemini]
api = "google-generative-ai"
base_url = "{closed}"
api_key_env = "GEMINI_API_KEY"
timeout_s = 60

[providers.deepseek]
api = "openai-completions"
base_url = "{closed}/v1"
api_key_env = "DEEPSEEK_API_KEY"
timeout_s = 90

[providers.anthropic]
api = "anthropic-messages"
base_url = "{closed}"
api_key_env = "ANTHROPIC_API_KEY"
timeout_s = 120

[models."local/{model}"]
max_tokens = 2048
cost = {{ input = 0.0, output = 0.0 }}

[models."gemini/gemini-3.8-flash"]
reasoning = true
max_tokens = 2048
cost = {{ input = 0.75, output = 3.75 }}
drop_params = ["temperature", "top_p", "top_k"]

[models."deepseek/deepseek-flash"]
reasoning = true
max_tokens = 4096
cost = {{ input = 0.30, output = 1.20, cached_input = 0.006 }}
tools = false
json = "object"

[models."anthropic/claude-opus-5-5"]
max_tokens = 8192
cost = {{ input = 4.0, output = 20.0, cached_input = 0.20 }}

[[tiers]]
level = 0
models = ["local/{model}"]

[[tiers]]
level = 1
models = ["gemini/gemini-3.8-flash"]

[[tiers]]
level = 2
models = ["deepseek/deepseek-flash"]

[[tiers]]
level = 3
models = ["anthropic/claude-opus-5-5"]
requires_approval = true

[tasks]
chat = 0
classify = 0
extract = {{ tier = 0, json = true }}
summarize = {{ tier = 1, min_chars = 40 }}
analysis = 2
strategy = 3

[alerts]
deliver = ["log"]

[[agents]]
name = "morning-digest"
description = "Summarize the morning's feeds, one subagent per feed"
task = "summarize"
schedule = "0 7 * * *"
timezone = "Europe/Berlin"
kind = "agentTurn"
session = "isolated"
message = "Summarize: {{{{ subresults }}}}"
deliver = ["log"]
timeout_s = 600
[agents.inputs.feeds]
http = ["http://127.0.0.1:{upstream_port}/feed"]
timeout_s = 20
max_items = 10
[agents.subagents]
over = "inputs.feeds"
task = "classify"
prompt = "Summarize this feed: {{{{ item }}}}"

[[agents]]
name = "water-reminder"
description = "A reminder; no model call"
kind = "systemEvent"
session = "shared"
schedule = "0 10-18/2 * * 1-5"
timezone = "Europe/Berlin"
message = "Time for a glass of water ({{{{ now.strftime('%H:%M') }}}})."
deliver = ["log"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def readyz(port: int) -> int | None:
    """The status of ``GET /readyz``; None while nothing answers."""
    try:
        with OPENER.open(f"http://{HOST}:{port}/readyz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def one_start(upstream_port: int, idle_s: float, deadline: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="openclaw-bench-idle-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        config = tmp / "openclaw.toml"
        config.write_text(
            CONFIG.format(
                gateway_port=port, upstream_port=upstream_port, model=UPSTREAM_MODEL, closed=CLOSED
            )
        )
        env = child_env(
            {
                "OPENCLAW_CONFIG": str(config),
                "OPENCLAW_DB": str(tmp / "openclaw.db"),
                "OPENCLAW_GATEWAY_TOKEN": secrets.token_urlsafe(24),
            }
        )
        for key in ("GEMINI_API_KEY", "DEEPSEEK_API_KEY", "ANTHROPIC_API_KEY"):
            env.pop(key, None)
        env.pop("TELEGRAM_BOT_TOKEN", None)
        with (tmp / "serve.out").open("wb") as out, (tmp / "serve.err").open("wb") as err:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                gateway_command("--port", str(port)), stdout=out, stderr=err, cwd=tmp, env=env
            )
        first_answer_s: float | None = None
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("no /readyz 200 before --timeout-s")
            if proc.poll() is not None:
                tail = (tmp / "serve.err").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"serve exited with {proc.returncode}:\n{tail}")
            status = readyz(port)
            if status is not None and first_answer_s is None:
                first_answer_s = time.monotonic() - t0
            if status == 200:
                ready_s = time.monotonic() - t0
                break
            time.sleep(POLL_S)
        rss_ready = rss_kib(proc.pid)
        cpu_ready = cpu_s(proc.pid)
        time.sleep(idle_s)
        rss_idle = rss_kib(proc.pid)
        cpu_idle = cpu_s(proc.pid)
        t_stop = time.monotonic()
        code = stop(proc)
        stop_s = time.monotonic() - t_stop
        return {
            "first_answer_s": None if first_answer_s is None else round(first_answer_s, 3),
            "ready_s": round(ready_s, 3),
            "rss_ready_mib": None if rss_ready is None else round(rss_ready / 1024, 1),
            "rss_idle_mib": None if rss_idle is None else round(rss_idle / 1024, 1),
            "startup_cpu_s": None if cpu_ready is None else round(cpu_ready, 3),
            "idle_cpu_s": (
                None if cpu_ready is None or cpu_idle is None else round(cpu_idle - cpu_ready, 3)
            ),
            "stop_s": round(stop_s, 3),
            "exit_code": code,
        }
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def stats(values: list[float | None]) -> dict[str, float | None]:
    xs = [v for v in values if v is not None]
    if not xs:
        return {"min": None, "median": None, "max": None}
    return {"min": min(xs), "median": round(statistics.median(xs), 3), "max": max(xs)}


METRICS = (
    ("first_answer_s", "first answer (any status), s"),
    ("ready_s", "spawn → /readyz 200, s"),
    ("startup_cpu_s", "CPU used to get ready, s"),
    ("rss_ready_mib", "RSS at ready, MiB"),
    ("rss_idle_mib", "RSS after the idle stretch, MiB"),
    ("idle_cpu_s", "CPU used while idle, s"),
    ("stop_s", "SIGTERM → exit, s"),
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    deadline = time.monotonic() + args.timeout_s
    tmp = Path(tempfile.mkdtemp(prefix="openclaw-bench-idle-up-"))
    upstream: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, Any]] = []
    try:
        upstream, upstream_port = start_upstream(tmp, deadline)
        for i in range(args.runs):
            r = one_start(upstream_port, args.idle_s, deadline)
            runs.append(r)
            print(
                f"start {i + 1}/{args.runs}: ready in {r['ready_s']:.2f} s, RSS"
                f" {r['rss_ready_mib']} → {r['rss_idle_mib']} MiB, idle CPU {r['idle_cpu_s']} s,"
                f" stopped in {r['stop_s']:.2f} s (exit {r['exit_code']})",
                flush=True,
            )
    finally:
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {key: stats([r[key] for r in runs]) for key, _ in METRICS}
    print(f"\n{'':<34} {'min':>8} {'median':>8} {'max':>8}")
    for key, label in METRICS:
        s = summary[key]
        print(f"{label:<34} " + " ".join(f"{s[k]:>8}" for k in ("min", "median", "max")))
    idle = summary["idle_cpu_s"]["median"]
    if idle is not None:
        print(f"idle CPU: {100 * idle / args.idle_s:.2f}% of one core (median)")
    clean = all(r["exit_code"] == 0 for r in runs)
    print(f"clean exits: {'yes' if clean else 'NO'}")
    write_results(
        args.output,
        {
            "benchmark": "idle_serve",
            "machine": machine_info(),
            "parameters": {
                "runs": args.runs,
                "idle_s": args.idle_s,
                "poll_s": POLL_S,
                "config": "example-like: 4 tiers, 2 agents, no embedded model, bot off",
            },
            "runs": runs,
            "summary": summary,
        },
    )
    return 0 if clean else 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--idle-s", type=float, default=5.0, help="idle stretch after ready")
    p.add_argument("--timeout-s", type=float, default=300.0, help="bound on the whole run")
    p.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results path")
    args = p.parse_args(argv)
    if args.runs < 1 or args.idle_s <= 0:
        p.error("--runs must be >= 1 and --idle-s > 0")
    return args


if __name__ == "__main__":
    sys.exit(main())
