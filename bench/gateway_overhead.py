"""Latency the gateway adds over calling the upstream directly.

Starts a loopback upstream that answers every chat completion with the same small body,
starts ``openclaw serve`` routed to it, then sends the same requests straight to the
upstream and through the gateway at each concurrency, and compares percentiles.

    .venv/bin/python bench/gateway_overhead.py [--concurrency 1,16,64] [--requests N]

Everything listens on 127.0.0.1; the temp dir and both subprocesses are removed/stopped
on the way out, and the whole run is bounded by ``--timeout-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
UPSTREAM_MODEL = "bench-model"
GATEWAY_MODEL = "auto"
STOP_GRACE_S = 10.0
REQUEST_TIMEOUT_S = 30.0
DEFAULT_REQUESTS = {1: 2000, 64: 4000}  # other concurrencies get the larger figure
TARGET_P50_C1_MS = 1.0
TARGET_P99_C64_MS = 15.0
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "gateway_overhead.json"

# The fixed answer; the adapter needs content, finish_reason and usage.
UPSTREAM_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": UPSTREAM_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "pong"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    },
    separators=(",", ":"),
).encode()

CONFIG_TEMPLATE = """\
[gateway]
port = 0
[routing]
default_task = "chat"
[providers.up]
api = "openai-completions"
base_url = "http://127.0.0.1:{upstream_port}/v1"
timeout_s = 30
[models."up/{model}"]
max_tokens = 64
[[tiers]]
level = 0
models = ["up/{model}"]
[tasks]
chat = 0
"""


# -- the upstream (runs in its own process: `gateway_overhead.py --upstream`) ----------------


async def _upstream_chat(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=UPSTREAM_BODY, content_type="application/json")


async def _serve_upstream() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _upstream_chat)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = next(int(a[1]) for a in runner.addresses if isinstance(a, tuple))
    print(f"upstream-port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


# -- subprocesses ---------------------------------------------------------------------------


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment without proxies, so loopback traffic stays on loopback."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def _wait_for_line(proc: subprocess.Popen[bytes], log: Path, prefix: str, deadline: float) -> str:
    """Poll ``log`` until a line starts with ``prefix``; fail if the process exits first."""
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name}: process exited with {proc.returncode} before ready")
        time.sleep(0.05)
    raise TimeoutError(f"{log.name}: no line starting with {prefix!r} in time")


def _gateway_command() -> list[str]:
    script = Path(sys.executable).parent / "openclaw"
    if script.exists():
        return [str(script), "serve", "--port", "0"]
    return [sys.executable, "-m", "core.cli", "serve", "--port", "0"]


def _stop(proc: subprocess.Popen[bytes] | None) -> int | None:
    """SIGTERM the process we started, wait, kill it if it hangs; its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# -- load generation --------------------------------------------------------------------------


@dataclass
class Phase:
    target: str
    concurrency: int
    requests: int
    ok: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    def pct(self, p: float) -> float:
        """Nearest-rank percentile of the successful requests, in ms."""
        xs = sorted(self.latencies_ms)
        if not xs:
            return math.nan
        return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "wall_s": round(self.wall_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.pct(50), 3),
            "p95_ms": round(self.pct(95), 3),
            "p99_ms": round(self.pct(99), 3),
            "mean_ms": round(sum(self.latencies_ms) / max(1, len(self.latencies_ms)), 3),
            "max_ms": round(max(self.latencies_ms, default=math.nan), 3),
        }


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[float, str]:
    """One request; its latency in ms and an error ('' when it answered with content)."""
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as e:
        return (time.perf_counter() - t0) * 1000, f"{type(e).__name__}: {e}"
    elapsed_ms = (time.perf_counter() - t0) * 1000
    if status != 200:
        return elapsed_ms, f"HTTP {status}: {raw[:200]!r}"
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return elapsed_ms, f"malformed body: {raw[:200]!r}"
    return elapsed_ms, "" if content else "empty content"


async def _drive(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    n: int,
    concurrency: int,
    phase: Phase | None,
) -> None:
    """Send ``n`` requests with ``concurrency`` workers; record into ``phase`` if given."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            ms, err = await _one(session, url, body, headers)
            if phase is None:
                continue
            if err:
                phase.errors += 1
                phase.first_error = phase.first_error or err
            else:
                phase.ok += 1
                phase.latencies_ms.append(ms)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _run_phase(
    target: str, url: str, model: str, token: str | None, concurrency: int, n: int, warmup: int
) -> Phase:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 16}
    ).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    phase = Phase(target, concurrency, n)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _drive(session, url, body, headers, warmup, concurrency, None)
        t0 = time.perf_counter()
        await _drive(session, url, body, headers, n, concurrency, phase)
        phase.wall_s = time.perf_counter() - t0
    return phase


async def _wait_ready(url: str, deadline: float) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 in time")


async def _bench(
    upstream_port: int,
    gateway_port: int,
    token: str,
    concurrencies: Sequence[int],
    requests: dict[int, int],
    warmup: int,
    deadline: float,
) -> list[tuple[Phase, Phase]]:
    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
        await _wait_ready(f"http://{HOST}:{gateway_port}/readyz", deadline)
        out = []
        direct_url = f"http://{HOST}:{upstream_port}/v1/chat/completions"
        gateway_url = f"http://{HOST}:{gateway_port}/v1/chat/completions"
        for c in concurrencies:
            n = requests[c]
            print(f"c={c}: {n} requests each (+{warmup} warm-up) direct, then gateway", flush=True)
            direct = await _run_phase("direct", direct_url, UPSTREAM_MODEL, None, c, n, warmup)
            gateway = await _run_phase("gateway", gateway_url, GATEWAY_MODEL, token, c, n, warmup)
            out.append((direct, gateway))
        return out


# -- report -------------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def _report(pairs: list[tuple[Phase, Phase]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    added_by_c: dict[int, dict[int, float]] = {}
    lines = [
        "",
        f"{'c':>3} {'target':<8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'req/s':>8} {'ok':>6} {'err':>4}",
    ]
    for direct, gateway in pairs:
        added = {p: gateway.pct(p) - direct.pct(p) for p in (50, 95, 99)}
        added_by_c[direct.concurrency] = added
        for ph in (direct, gateway):
            lines.append(
                f"{ph.concurrency:>3} {ph.target:<8} {ph.pct(50):>8.3f} {ph.pct(95):>8.3f} "
                f"{ph.pct(99):>8.3f} {ph.rps:>8.0f} {ph.ok:>6} {ph.errors:>4}"
            )
        lines.append(
            f"{'':>3} {'added':<8} {added[50]:>+8.3f} {added[95]:>+8.3f} {added[99]:>+8.3f} "
            f"{gateway.rps / direct.rps if direct.rps else math.nan:>7.2f}x"
        )
        for ph in (direct, gateway):
            if ph.first_error:
                lines.append(f"    {ph.target} first error: {ph.first_error}")
        rows.append(
            {
                "concurrency": direct.concurrency,
                "direct": direct.summary(),
                "gateway": gateway.summary(),
                "added_ms": {f"p{p}": round(v, 3) for p, v in added.items()},
            }
        )
    p50_c1 = round(added_by_c[1][50], 3) if 1 in added_by_c else None
    p99_c64 = round(added_by_c[64][99], 3) if 64 in added_by_c else None
    no_errors = all(d.errors == 0 and g.errors == 0 for d, g in pairs)
    targets = {
        "p50_added_c1_ms": {
            "value": p50_c1,
            "limit": TARGET_P50_C1_MS,
            "verdict": _verdict(None if p50_c1 is None else p50_c1 <= TARGET_P50_C1_MS),
        },
        "p99_added_c64_ms": {
            "value": p99_c64,
            "limit": TARGET_P99_C64_MS,
            "verdict": _verdict(None if p99_c64 is None else p99_c64 <= TARGET_P99_C64_MS),
        },
        "no_errors": no_errors,
    }
    lines.append("")
    for name, t in targets.items():
        if isinstance(t, dict):
            value = "n/a" if t["value"] is None else f"{t['value']:+.3f} ms"
            lines.append(f"target {name} ≤ {t['limit']} ms: {value}  {t['verdict']}")
    lines.append(f"errors: {'none' if no_errors else 'SOME (see above)'}")
    print("\n".join(lines), flush=True)
    return rows, targets


# -- entry ------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--concurrency", default="1,64", help="comma-separated (default 1,64)")
    p.add_argument(
        "--requests",
        type=int,
        help="measured requests per target and concurrency (default 2000 at c=1, 4000 otherwise)",
    )
    p.add_argument("--warmup", type=int, default=200, help="unmeasured requests per target")
    p.add_argument("--timeout-s", type=float, default=300.0, help="bound on the whole run")
    p.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results path")
    args = p.parse_args(argv)
    try:
        args.concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        p.error("--concurrency takes whole numbers separated by commas, e.g. 1,16,64")
    if not args.concurrencies or min(args.concurrencies) < 1:
        p.error("--concurrency needs at least one value, each ≥ 1")
    if args.requests is not None and args.requests < 1:
        p.error("--requests must be ≥ 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.upstream:
        asyncio.run(_serve_upstream())
        return 0

    deadline = time.monotonic() + args.timeout_s
    requests = {
        c: args.requests or DEFAULT_REQUESTS.get(c, max(DEFAULT_REQUESTS.values()))
        for c in args.concurrencies
    }
    token = secrets.token_urlsafe(24)
    tmp = Path(tempfile.mkdtemp(prefix="openclaw-bench-"))
    upstream: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    exit_codes: dict[str, int | None] = {}
    try:
        up_log = tmp / "upstream.log"
        with up_log.open("wb") as out:
            upstream = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--upstream"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                env=_child_env({}),
            )
        upstream_port = int(_wait_for_line(upstream, up_log, "upstream-port ", deadline).split()[1])

        config = tmp / "openclaw.toml"
        config.write_text(CONFIG_TEMPLATE.format(upstream_port=upstream_port, model=UPSTREAM_MODEL))
        gw_out, gw_err = tmp / "gateway.out", tmp / "gateway.err"
        with gw_out.open("wb") as out, gw_err.open("wb") as err:
            gateway = subprocess.Popen(
                _gateway_command(),
                stdout=out,
                stderr=err,
                cwd=tmp,  # no stray ./openclaw.toml or ./.env from wherever we were run
                env=_child_env(
                    {
                        "OPENCLAW_CONFIG": str(config),
                        "OPENCLAW_DB": str(tmp / "openclaw.db"),
                        "OPENCLAW_GATEWAY_TOKEN": token,
                    }
                ),
            )
        try:
            line = _wait_for_line(gateway, gw_out, "gateway http://", deadline)
        except (RuntimeError, TimeoutError):
            sys.stderr.write(gw_err.read_text(errors="replace")[-4000:])
            raise
        gateway_port = int(line.split()[1].rsplit(":", 1)[1])
        print(
            f"upstream :{upstream_port}  gateway :{gateway_port}  (pids {upstream.pid}, "
            f"{gateway.pid})",
            flush=True,
        )

        pairs = asyncio.run(
            _bench(
                upstream_port,
                gateway_port,
                token,
                args.concurrencies,
                requests,
                args.warmup,
                deadline,
            )
        )
        rows, targets = _report(pairs)
    finally:
        exit_codes["gateway"] = _stop(gateway)
        exit_codes["upstream"] = _stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)

    result = {
        "benchmark": "gateway_overhead",
        "unix_time": round(time.time()),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "python": sys.version,
        "aiohttp": aiohttp.__version__,
        "parameters": {
            "concurrency": args.concurrencies,
            "requests": {str(c): n for c, n in requests.items()},
            "warmup": args.warmup,
            "timeout_s": args.timeout_s,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "direct_model": UPSTREAM_MODEL,
            "gateway_model": GATEWAY_MODEL,
            "max_tokens": 16,
        },
        "results": rows,
        "targets": targets,
        "exit_codes": exit_codes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}  (exit codes: {exit_codes})")
    failed = targets["no_errors"] is False
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
