"""Cluster throughput: 1 vs 3 ``openclaw serve`` instances on one PostgreSQL database,
and one instance on SQLite vs on PostgreSQL, side by side in one run.

Starts a throwaway PostgreSQL (``tests/pg.py``), the loopback upstream (``_common``), a
webhook receiver in this process, and ``serve`` processes on a generated config: one agent
without a schedule that delivers to the receiver. Per case:

- runs/s: ``--runs`` runs queued with ``POST /api/agents/NAME/run``, round-robin over the
  instances; the time until none is queued or running (read from the database);
- deliveries/s: the same runs; the time until the receiver got every message;
- gateway req/s, p50/p99 of ``/v1/chat/completions`` at ``--concurrency`` in all, the load
  split evenly over the instances.

``[concurrency] agents`` is cluster-wide (slots in the database), so 3 instances share the
same 16 slots one instance has. Everything listens on 127.0.0.1; processes are stopped by
PID and the temp dirs removed by path on the way out.

    .venv/bin/python bench/cluster.py [--runs 300] [--requests 1500] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import psycopg
from _common import (
    HOST,
    Phase,
    child_env,
    exit_on_sigterm,
    gateway_command,
    machine_info,
    one_tier_config,
    run_phase,
    start_upstream,
    stop,
    wait_for_line,
    write_results,
)
from aiohttp import web

from tests.pg import Cluster, start_cluster, stop_cluster

TOKEN = "bench-cluster-token"
AGENT = "bench"
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "cluster.json"
START_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 120.0


def config(upstream_port: int, hook_url: str) -> str:
    return (
        one_tier_config(upstream_port)
        + f"""
[serve]
shutdown_grace_s = 0.5

[cluster]
heartbeat_s = 0.5
leader_timeout_s = 3.0
recover_every_s = 1.0

[concurrency]
agents = 16

[delivery]
poll_interval_s = 0.2

[channels.webhook.hook]
url = "{hook_url}"
timeout_s = 5

[[agents]]
name = "{AGENT}"
message = "run {{{{ message }}}}"
deliver = ["webhook:hook"]
"""
    )


class Receiver:
    """The webhook channel's target: counts what arrives."""

    def __init__(self) -> None:
        self.count = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        self.port = next(int(a[1]) for a in self.runner.addresses if isinstance(a, tuple))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def start_instance(
    workdir: Path, cfg: str, db: str, deadline: float
) -> tuple[subprocess.Popen[bytes], int]:
    """One ``openclaw serve`` on ``db`` (a PostgreSQL URL or a SQLite path)."""
    workdir.mkdir(parents=True)
    (workdir / "openclaw.toml").write_text(cfg)
    out_path, err_path = workdir / "serve.out", workdir / "serve.err"
    env = {
        "OPENCLAW_CONFIG": str(workdir / "openclaw.toml"),
        "OPENCLAW_DB": db,
        "OPENCLAW_GATEWAY_TOKEN": TOKEN,
    }
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            gateway_command(), stdout=out, stderr=err, cwd=workdir, env=child_env(env)
        )
    try:
        line = wait_for_line(proc, out_path, "gateway http://", deadline)
    except BaseException:
        stop(proc)
        sys.stderr.write(err_path.read_text(errors="replace")[-4000:])
        raise
    return proc, int(line.split()[1].rsplit(":", 1)[1])


def unsettled(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"
        ).fetchone()
    return int(row[0]) if row else 0


async def runs_case(ports: list[int], db_url: str, rx: Receiver, n: int) -> dict[str, Any]:
    """Queue ``n`` runs round-robin; seconds until all settled and all delivered."""
    rx.count = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses: dict[int, int] = {}
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers) as session:

        async def post(i: int) -> None:
            url = f"http://{HOST}:{ports[i % len(ports)]}/api/agents/{AGENT}/run"
            async with session.post(url, json={"message": f"m{i}"}) as resp:
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        sem = asyncio.Semaphore(16)

        async def bounded(i: int) -> None:
            async with sem:
                await post(i)

        await asyncio.gather(*(bounded(i) for i in range(n)))
    queued_s = time.perf_counter() - t0
    settled_s = delivered_s = None
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline and (settled_s is None or delivered_s is None):
        if settled_s is None and await asyncio.to_thread(unsettled, db_url) == 0:
            settled_s = time.perf_counter() - t0
        if delivered_s is None and rx.count >= n:
            delivered_s = time.perf_counter() - t0
        await asyncio.sleep(0.05)
    return {
        "runs": n,
        "post_statuses": statuses,
        "queued_s": round(queued_s, 3),
        "settled_s": None if settled_s is None else round(settled_s, 3),
        "delivered_s": None if delivered_s is None else round(delivered_s, 3),
        "received": rx.count,
        "runs_per_s": None if settled_s is None else round(n / settled_s, 1),
        "deliveries_per_s": None if delivered_s is None else round(n / delivered_s, 1),
    }


async def gateway_case(ports: list[int], requests: int, concurrency: int) -> Phase:
    """``requests`` chat completions at ``concurrency`` in all, split over the instances."""
    each_c = max(1, concurrency // len(ports))
    each_n = requests // len(ports)
    phases = await asyncio.gather(
        *(
            run_phase(
                f"{HOST}:{p}",
                f"http://{HOST}:{p}/v1/chat/completions",
                "auto",
                TOKEN,
                each_c,
                each_n,
                warmup=each_c * 2,
            )
            for p in ports
        )
    )
    merged = Phase(f"{len(ports)} instance(s)", each_c * len(ports), each_n * len(ports))
    for ph in phases:
        merged.ok += ph.ok
        merged.errors += ph.errors
        merged.latencies_ms.extend(ph.latencies_ms)
        merged.first_error = merged.first_error or ph.first_error
    merged.wall_s = max(ph.wall_s for ph in phases)
    return merged


async def one_case(
    name: str,
    instances: int,
    db: str,
    db_url: str | None,
    cfg: str,
    root: Path,
    rx: Receiver,
    args: argparse.Namespace,
) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        ports = []
        for i in range(instances):
            proc, port = start_instance(root / f"{name}-{i}", cfg, db, deadline)
            procs.append(proc)
            ports.append(port)
        lines = [
            next(
                (
                    ln
                    for ln in (root / f"{name}-{i}" / "serve.out").read_text().splitlines()
                    if ln.startswith("Cluster:")
                ),
                "",
            )
            for i in range(instances)
        ]
        out: dict[str, Any] = {"case": name, "instances": instances, "cluster_lines": lines}
        if db_url is not None:
            out["runs"] = await runs_case(ports, db_url, rx, args.runs)
        phase = await gateway_case(ports, args.requests, args.concurrency)
        out["gateway"] = phase.summary()
        return out
    finally:
        for proc in procs:
            stop(proc)


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


async def main_async(args: argparse.Namespace, root: Path, pg: Cluster) -> dict[str, Any]:
    rx = Receiver()
    await rx.start()
    upstream, up_port = start_upstream(root, time.monotonic() + 30)
    try:
        cfg = config(up_port, f"http://{HOST}:{rx.port}/hook")
        cases = []
        for n in (1, 3):
            db = pg.url(pg.new_database())
            cases.append(await one_case(f"pg{n}", n, db, db, cfg, root, rx, args))
        sqlite = str(root / "sqlite" / "openclaw.db")
        (root / "sqlite").mkdir()
        cases.append(await one_case("sqlite1", 1, sqlite, None, cfg, root, rx, args))
        return {"cases": cases}
    finally:
        stop(upstream)
        await rx.stop()


def table(result: dict[str, Any], info: dict[str, Any]) -> str:
    by = {c["case"]: c for c in result["cases"]}
    pg1, pg3, sq1 = by["pg1"], by["pg3"], by["sqlite1"]
    rows = [
        ("runs/s (queue → settled)", pg1["runs"]["runs_per_s"], pg3["runs"]["runs_per_s"], None),
        ("deliveries/s", pg1["runs"]["deliveries_per_s"], pg3["runs"]["deliveries_per_s"], None),
        ("gateway req/s", pg1["gateway"]["rps"], pg3["gateway"]["rps"], sq1["gateway"]["rps"]),
        (
            "gateway p50 ms",
            pg1["gateway"]["p50_ms"],
            pg3["gateway"]["p50_ms"],
            sq1["gateway"]["p50_ms"],
        ),
        (
            "gateway p99 ms",
            pg1["gateway"]["p99_ms"],
            pg3["gateway"]["p99_ms"],
            sq1["gateway"]["p99_ms"],
        ),
    ]
    head = f"{'':28} {'PG x1':>10} {'PG x3':>10} {'SQLite x1':>10}"
    lines = [
        f"cluster bench: {info.get('cpu_count')} cores, {info.get('platform', '')}",
        f"{pg1['runs']['runs']} runs, [concurrency] agents = 16 (cluster-wide); gateway "
        f"{pg1['gateway']['requests']} requests at concurrency {pg1['gateway']['concurrency']}",
        head,
    ]
    for label, a, b, c in rows:
        lines.append(f"{label:28} {fmt(a):>10} {fmt(b):>10} {fmt(c):>10}")
    added = pg1["gateway"]["p50_ms"] - sq1["gateway"]["p50_ms"]
    lines.append(f"PostgreSQL vs SQLite, one instance: {added:+.2f} ms p50 per gateway request")
    errs = {c["case"]: c["gateway"]["errors"] for c in result["cases"]}
    lines.append(f"gateway errors: {errs}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args()
    exit_on_sigterm()
    root = Path(tempfile.mkdtemp(prefix="openclaw-bench-cluster-"))
    os.chmod(root, 0o755)
    pg: Cluster | None = None
    try:
        pg = start_cluster()
        result = asyncio.run(main_async(args, root, pg))
    finally:
        if pg is not None:
            stop_cluster(pg)
        shutil.rmtree(root, ignore_errors=True)
    info = machine_info()
    print(table(result, info), flush=True)
    write_results(RESULTS_PATH, {"machine": info, "args": vars(args), **result})


if __name__ == "__main__":
    main()
