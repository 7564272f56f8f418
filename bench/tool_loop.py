"""The tool loop's own overhead per step, beside one plain request through the same engine.

One process, one real ``App`` (``App.open``) on a temp SQLite file, in front of the tests'
fake provider (``tests/fakes/llm.py``, a real aiohttp server on 127.0.0.1 speaking the
OpenAI format, in this event loop). Two agents run one after another, alternating:

- ``loop``: ``tools = ["notify"]``; the model asks for one ``notify`` call per turn for four
  turns, then answers: 5 model turns and 4 tool calls, 9 steps. ``notify`` to ``log`` queues
  one outbox row (no delivery: the worker is not started).
- ``plain``: no tools; one model turn.

For each run: the wall time of ``app.runner.run(name, "cli")``, minus the model's share
(the sum of its ledger attempts' ``latency_ms``: the provider adapter encoding the request
and parsing the answer, the loopback HTTP call and the fake's handler), minus the tools'
share (the tool steps' ``latency_ms``: the notify call and its outbox transaction) = the
overhead: the run row, the session, engine routing, ledger rows, session messages,
run_steps rows, the arguments' JSON and redaction, the final outbox row. "store" is the
part of it spent waiting for the SQLite thread (every ``on_thread`` call, outside the
tools' own), measured by timing that one function.

The event loop is uvloop where installed and the collector is set as ``serve`` sets it
(``gc.freeze()`` after start-up, young threshold 10,000); logging is not configured.

    .venv/bin/python bench/tool_loop.py [--runs 50] [--warmup 5]

Bounded by ``--timeout-s``; the temp dir is removed on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# the repo root, for core/ and the fake provider in tests/fakes
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine_info, pct, write_results

import core.store.sqlite as sqlite_store
from core.agents.runs import Trigger
from core.app import App
from core.config.load import parse_config
from core.config.settings import Settings
from core.ops.serve import GC_YOUNG_THRESHOLD
from tests.fakes.llm import OPENAI, FakeLLM, FakeToolCall, RecordedRequest, Reply

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "tool_loop.json"
MODEL = "bench-model"
TOOL_TURNS = 4  # the model asks for one notify call on each of these turns, then answers
LOOP_STEPS = 2 * TOOL_TURNS + 1  # model turns and tool calls
T = TypeVar("T")


def config(base_url: str) -> Any:
    """One provider on the fake, one tier, and the two agents."""
    return parse_config(
        {
            "routing": {"default_task": "chat"},
            "providers": {"up": {"api": OPENAI, "base_url": base_url, "timeout_s": 30}},
            "models": {f"up/{MODEL}": {"max_tokens": 64}},
            "tiers": [{"level": 0, "models": [f"up/{MODEL}"]}],
            "tasks": {"chat": 0},
            "agents": [
                {
                    "name": "loop",
                    "message": "check the disks and tell me",
                    "deliver": ["log"],
                    "tools": ["notify"],
                    "max_steps": TOOL_TURNS + 1,
                },
                {"name": "plain", "message": "check the disks and tell me", "deliver": ["log"]},
            ],
        },
        warnings=[],
    )


def scripted(request: RecordedRequest) -> Reply:
    """A call of notify while the run's session holds fewer than TOOL_TURNS tool results,
    then the answer (a request without tools is answered at once). Stateless, so every
    run of the loop gets the same five turns."""
    body = request.body if isinstance(request.body, dict) else {}
    done = sum(m.get("role") == "tool" for m in body.get("messages", []))
    if body.get("tools") and done < TOOL_TURNS:
        return Reply(text="", tool_calls=[FakeToolCall("notify", {"text": f"disk {done} at 91%"})])
    return Reply(text="All disks checked: two are above 90%, notices sent.")


@dataclass
class StoreClock:
    """Wall time spent awaiting the SQLite thread: ``on_thread`` wrapped, so every read,
    write and commit of every part counts (two clock reads per call, well under 1 µs)."""

    ms: float = 0.0
    original: Callable[..., Awaitable[Any]] = field(default=sqlite_store.on_thread)

    def install(self) -> None:
        original = self.original

        async def timed(db: Any, fn: Callable[..., Any], *args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await original(db, fn, *args)
            finally:
                self.ms += (time.perf_counter() - t0) * 1000

        sqlite_store.on_thread = timed

    def uninstall(self) -> None:
        sqlite_store.on_thread = self.original  # type: ignore[assignment]


@dataclass
class Sample:
    """One measured run, in ms."""

    wall: float
    model: float
    tool: float
    store: float  # outside the tools
    steps: int  # model turns + tool calls

    @property
    def overhead(self) -> float:
        return self.wall - self.model - self.tool


async def measure(app: App, name: str, store: StoreClock, tool_store: list[float]) -> Sample:
    """Run agent ``name`` once; its times (read from the store after the clock stopped)."""
    store_before, tool_store_before = store.ms, tool_store[0]
    t0 = time.perf_counter()
    run = await app.runner.run(name, Trigger.CLI)
    wall = (time.perf_counter() - t0) * 1000
    store_ms = store.ms - store_before - (tool_store[0] - tool_store_before)
    if run.status != "ok":
        raise RuntimeError(f"run {run.id} of {name}: {run.status}: {run.error}")
    rows = await app.store.fetchall(
        "SELECT latency_ms, outcome FROM attempts WHERE run_id = ?", (str(run.id),)
    )
    if not rows or any(r[1] != "ok" for r in rows):
        raise RuntimeError(f"run {run.id} of {name}: attempts {[tuple(r) for r in rows]}")
    steps = await app.runner.steps.for_run(run.id)
    tools = [s for s in steps if s.kind == "tool"]
    if any(s.outcome != "ok" for s in tools):
        raise RuntimeError(f"run {run.id} of {name}: a tool step failed: {tools}")
    return Sample(
        wall=wall,
        model=sum(float(r[0]) for r in rows),
        tool=sum(s.latency_ms or 0.0 for s in tools),
        store=store_ms,
        steps=len(rows) + len(tools),
    )


async def bench(args: argparse.Namespace, tmp: Path, deadline: float) -> dict[str, list[Sample]]:
    store = StoreClock()
    tool_store = [0.0]  # store ms inside the notify tool (its outbox transaction)
    async with FakeLLM(check_wire=False) as fake:  # the SDKs' checks would be the fake's time
        fake.default = scripted
        app = await App.open(
            config(fake.base_url(OPENAI)),
            Settings(_env_file=None),
            tmp / "openclaw.db",
            base_dir=tmp,
        )
        enqueue = app.runner.outbox.enqueue

        async def timed_enqueue(*a: Any, **kw: Any) -> None:
            before = store.ms
            try:
                await enqueue(*a, **kw)
            finally:
                tool_store[0] += store.ms - before

        app.runner.outbox.enqueue = timed_enqueue  # type: ignore[method-assign]
        store.install()
        samples: dict[str, list[Sample]] = {"plain": [], "loop": []}
        try:
            for _ in range(args.warmup):
                for name in samples:
                    await measure(app, name, store, tool_store)
            gc.collect()
            gc.freeze()  # as serve does after start-up
            gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
            for i in range(args.runs):
                if time.monotonic() > deadline:
                    print(f"--timeout-s reached after {i} runs of each", flush=True)
                    break
                # alternate, and swap which goes first, so drift falls on both
                names = list(samples) if i % 2 == 0 else list(reversed(samples))
                for name in names:
                    samples[name].append(await measure(app, name, store, tool_store))
        finally:
            store.uninstall()
            await app.runner.shutdown(5)
            app.scheduler.stop()
            await app.close()
    return samples


def summary(xs: list[Sample]) -> dict[str, Any]:
    def p(values: list[float], q: float) -> float:
        return round(pct(values, q), 3)

    over = [s.overhead for s in xs]
    steps = xs[0].steps
    store_share = sum(s.store for s in xs) / max(1e-9, sum(over))
    return {
        "runs": len(xs),
        "steps": steps,
        **{
            f"{k}_ms": {"p50": p(v, 50), "p95": p(v, 95)}
            for k, v in {
                "wall": [s.wall for s in xs],
                "model": [s.model for s in xs],
                "tool": [s.tool for s in xs],
                "overhead": over,
                "overhead_per_step": [o / steps for o in over],
                "store": [s.store for s in xs],
            }.items()
        },
        "store_share_of_overhead": round(store_share, 3),
    }


def report(results: dict[str, dict[str, Any]]) -> list[str]:
    head = (
        f"{'agent':<6} {'runs':>4} {'steps':>5} {'wall p50':>9} {'model p50':>9} "
        f"{'tool p50':>8} {'overhead p50':>12} {'p95':>7} {'per step p50':>12} {'p95':>7} "
        f"{'store':>6}"
    )
    lines = [head]
    for name, r in results.items():
        lines.append(
            f"{name:<6} {r['runs']:>4} {r['steps']:>5} {r['wall_ms']['p50']:>9.2f} "
            f"{r['model_ms']['p50']:>9.2f} {r['tool_ms']['p50']:>8.2f} "
            f"{r['overhead_ms']['p50']:>12.2f} {r['overhead_ms']['p95']:>7.2f} "
            f"{r['overhead_per_step_ms']['p50']:>12.3f} {r['overhead_per_step_ms']['p95']:>7.3f} "
            f"{r['store_share_of_overhead']:>6.0%}"
        )
    loop, plain = results["loop"], results["plain"]
    extra = loop["steps"] - plain["steps"]
    per_extra = (loop["overhead_ms"]["p50"] - plain["overhead_ms"]["p50"]) / extra
    per_turn = loop["overhead_ms"]["p50"] / (TOOL_TURNS + 1)
    lines += [
        "(ms; overhead = wall − model − tool; store = the share of it spent awaiting SQLite)",
        f"loop overhead per model turn (÷ {TOOL_TURNS + 1}): p50 {per_turn:.3f} ms",
        f"each step beyond the plain request's one ((loop − plain) ÷ {extra}): "
        f"p50 {per_extra:.3f} ms",
        "tool: notify to target log (queues one outbox row; the worker is not started)",
    ]
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=50, help="measured runs of each agent")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured runs of each agent first")
    p.add_argument("--timeout-s", type=float, default=300.0, help="bound on the measured runs")
    p.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results path")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be ≥ 1 and --warmup ≥ 0")
    return args


def run_loop(coro: Awaitable[T]) -> T:
    """uvloop where installed, as the CLI runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout_s
    tmp = Path(tempfile.mkdtemp(prefix="openclaw-bench-loop-"))
    try:
        samples = run_loop(bench(args, tmp, deadline))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = {name: summary(xs) for name, xs in samples.items() if xs}
    if set(results) != {"loop", "plain"}:
        print("no run was measured (raise --timeout-s)", file=sys.stderr)
        return 1
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}, load average {load}"
    )
    print(f"{args.runs} runs of each agent after {args.warmup} warm-up runs, alternating\n")
    print("\n".join(report(results)), flush=True)
    write_results(
        args.output,
        {
            "benchmark": "tool_loop",
            "unix_time": round(time.time()),
            "machine": machine_info(),
            "parameters": {
                "runs": args.runs,
                "warmup": args.warmup,
                "tool_turns": TOOL_TURNS,
                "tool": "notify to log (one outbox row)",
                "provider_api": OPENAI,
            },
            "results": results,
            "samples_ms": {
                name: [{k: round(v, 3) for k, v in vars(s).items()} for s in xs]
                for name, xs in samples.items()
            },
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
