"""Pieces the benchmarks share: subprocess handling, a loopback upstream, load generation.

Bench scripts are run as ``python bench/NAME.py``, so ``bench/`` is ``sys.path[0]`` and they
import this module as ``from _common import ...``.

The loopback upstream runs in its own process: ``python bench/_common.py upstream`` prints
``upstream-port N`` once it listens on 127.0.0.1 and answers every
``POST /v1/chat/completions`` with the same small OpenAI-style body, or, when the request
offers ``tools``, with one call of the first tool whose arguments match its JSON Schema
(``start_upstream`` does all of that for you).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
STOP_GRACE_S = 10.0
REQUEST_TIMEOUT_S = 30.0
UPSTREAM_MODEL = "bench-model"
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent

# The fixed answer; OpenClaw's adapter needs content, finish_reason and usage.
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


# An agent-style turn: a system prompt, a user question, two tools with JSON-Schema
# parameters, tool_choice auto (about 1.2 KB, against the plain request's 80 bytes).
AGENT_SYSTEM = (
    "You are the operations assistant of a small web shop. Answer briefly. Use a tool "
    "when the question needs live data; never guess order states or stock levels."
)
AGENT_USER = "Where is order 40512, and is the blue kettle (SKU KT-220-BL) back in stock?"
AGENT_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Look up an order's state and its carrier's tracking number.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string", "description": "the order number"},
                    "include_items": {"type": "boolean", "description": "list the items"},
                },
                "required": ["order_id"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "check_stock",
            "description": "Units in stock of a product per warehouse.",
            "parameters": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"},
                    "warehouse": {"type": "string", "enum": ["all", "north", "south"]},
                    "min_units": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                "required": ["sku"],
                "additionalProperties": False,
            },
        },
    },
]


def one_tier_config(upstream_port: int, model: str = UPSTREAM_MODEL) -> str:
    """An OpenClaw config: the gateway on a free port, one tier of one model on the
    loopback upstream (the benchmarks append their own tables)."""
    return f"""\
[gateway]
port = 0
[routing]
default_task = "chat"
[providers.up]
api = "openai-completions"
base_url = "http://{HOST}:{upstream_port}/v1"
timeout_s = 30
[models."up/{model}"]
max_tokens = 64
[[tiers]]
level = 0
models = ["up/{model}"]
[tasks]
chat = 0
"""


# -- the loopback upstream (its own process) ------------------------------------------------


async def _upstream_chat(request: web.Request) -> web.Response:
    raw = await request.read()
    # a plain body is not parsed at all, so the plain figures stay what they were
    if b'"tools"' in raw:
        tools = json.loads(raw).get("tools")
        if tools:
            function = tools[0]["function"]
            name = function["name"]
            params = json.dumps(function.get("parameters") or {}, sort_keys=True)
            return web.Response(body=tool_call_body(name, params), content_type="application/json")
    return web.Response(body=UPSTREAM_BODY, content_type="application/json")


@lru_cache(maxsize=64)
def tool_call_body(name: str, parameters_json: str) -> bytes:
    """The upstream's answer to a request offering tools: one call of ``name`` with
    arguments built from its parameters' JSON Schema (given as JSON text, so it can key the
    cache), content null and finish_reason tool_calls, as OpenAI answers."""
    arguments = example_value(json.loads(parameters_json))
    call = {
        "id": "call_bench_0",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, separators=(",", ":"))},
    }
    return json.dumps(
        {
            "id": "chatcmpl-bench-tools",
            "object": "chat.completion",
            "created": 0,
            "model": UPSTREAM_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
        separators=(",", ":"),
    ).encode()


def example_value(schema: Mapping[str, Any]) -> Any:
    """A small value that satisfies the simple JSON Schemas tools declare: every property
    of an object, the first of an enum, a number within its bounds, a string the
    benchmark's own patterns accept."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: example_value(v) for k, v in props.items()}
    if kind == "array":
        return [example_value(schema["items"])] * schema.get("minItems", 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "A1" if "pattern" in schema else "bench"


async def _upstream_models(request: web.Request) -> web.Response:
    models = [{"id": UPSTREAM_MODEL, "object": "model"}]
    return web.json_response({"object": "list", "data": models})


async def serve_upstream() -> None:
    """Serve the fixed chat completion on a free loopback port until SIGTERM/SIGINT."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _upstream_chat)
    app.router.add_post("/chat/completions", _upstream_chat)
    app.router.add_get("/v1/models", _upstream_models)
    await serve_until_signalled(app)


async def serve_until_signalled(
    app: web.Application, on_stop: Callable[[], None] | None = None, shutdown_timeout: float = 60.0
) -> None:
    """Serve ``app`` on a free loopback port, print ``upstream-port N``, and run until
    SIGTERM/SIGINT; ``on_stop`` runs first on the way out (to release hung handlers)."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = next(int(a[1]) for a in runner.addresses if isinstance(a, tuple))
    print(f"upstream-port {port}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        if on_stop is not None:
            on_stop()
        await runner.cleanup()


def start_upstream(
    workdir: Path,
    deadline: float,
    argv: Sequence[str] = (str(Path(__file__).resolve()), "upstream"),
    log_name: str = "upstream.log",
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a loopback upstream (``python ARGV``, by default this module's fixed answer),
    which prints ``upstream-port N``; the process and its port. Its log: ``workdir/log_name``.
    """
    log = workdir / log_name
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=child_env({}),
        )
    try:
        port = int(wait_for_line(proc, log, "upstream-port ", deadline).split()[1])
    except BaseException:
        stop(proc)
        raise
    return proc, port


# -- subprocesses ---------------------------------------------------------------------------


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment without proxies, so loopback traffic stays on loopback."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, prefix: str, deadline: float) -> str:
    """Poll ``log`` until a line starts with ``prefix``; fail if the process exits first."""
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name}: process exited with {proc.returncode} before ready")
        time.sleep(0.05)
    raise TimeoutError(f"{log.name}: no line starting with {prefix!r} in time")


def gateway_command(*extra_args: str) -> list[str]:
    """The ``openclaw serve`` command line of this venv, on a free port unless overridden."""
    args = ["serve", "--port", "0", *extra_args]
    script = Path(sys.executable).parent / "openclaw"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "core.cli", *args]


def start_gateway(
    config_toml: str, workdir: Path, token: str, deadline: float, *extra_args: str
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``openclaw serve`` on ``config_toml`` in ``workdir``; the process and its port.

    Its output goes to ``workdir/gateway.out`` and ``workdir/gateway.err``, its store to
    ``workdir/openclaw.db``; the tail of stderr is printed when it fails to come up.
    """
    config = workdir / "openclaw.toml"
    config.write_text(config_toml)
    gw_out, gw_err = workdir / "gateway.out", workdir / "gateway.err"
    with gw_out.open("wb") as out, gw_err.open("wb") as err:
        proc = subprocess.Popen(
            gateway_command(*extra_args),
            stdout=out,
            stderr=err,
            cwd=workdir,  # no stray ./openclaw.toml or ./.env from wherever we were run
            env=child_env(
                {
                    "OPENCLAW_CONFIG": str(config),
                    "OPENCLAW_DB": str(workdir / "openclaw.db"),
                    "OPENCLAW_GATEWAY_TOKEN": token,
                }
            ),
        )
    try:
        line = wait_for_line(proc, gw_out, "gateway http://", deadline)
    except BaseException:
        stop(proc)
        sys.stderr.write(gw_err.read_text(errors="replace")[-4000:])
        raise
    return proc, int(line.split()[1].rsplit(":", 1)[1])


def stop(proc: subprocess.Popen[bytes] | None) -> int | None:
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


def exit_on_sigterm() -> None:
    """Turn SIGTERM (``timeout``, a CI runner) into SystemExit, so ``finally`` blocks stop
    the children and remove the temp dirs instead of leaving them behind."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (VmRSS); None where /proc is missing or it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used (all threads); None without /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        # the command name may hold spaces and parentheses; fields resume after the last ')'
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid``'s live descendants (children of every thread, recursively); [] without /proc."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds of ``pid`` plus its live descendants (a server that forks workers)."""
    own = cpu_s(pid)
    if own is None:
        return None
    return own + sum(cpu_s(k) or 0.0 for k in descendants(pid))


# -- numbers and results -----------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0–100) of ``values``; NaN when empty."""
    xs = sorted(values)
    if not xs:
        return math.nan
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


def machine_info() -> dict[str, Any]:
    """What ran the benchmark: CPUs, platform, Python, aiohttp, load at the time."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": sys.version,
        "aiohttp": aiohttp.__version__,
    }
    with contextlib.suppress(OSError, AttributeError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return info


def write_results(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}", flush=True)


# -- load generation --------------------------------------------------------------------------


@dataclass
class Phase:
    """One measured run: a target at one concurrency."""

    target: str
    concurrency: int
    requests: int
    ok: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    first_error: str = ""
    # CPU seconds the target's server process used during the measured part, when known
    server_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        """Server CPU ms per measured request (ok or not); None when not measured."""
        if self.server_cpu_s is None or not (self.ok + self.errors):
            return None
        return self.server_cpu_s * 1000 / (self.ok + self.errors)

    def pct(self, p: float) -> float:
        """Nearest-rank percentile of the successful requests, in ms."""
        return pct(self.latencies_ms, p)

    def summary(self) -> dict[str, Any]:
        cpu = self.cpu_ms_per_request
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
            "server_cpu_ms_per_request": None if cpu is None else round(cpu, 4),
        }


def chat_body(model: str, content: str = "ping", max_tokens: int = 16) -> bytes:
    """A small non-streaming chat completion request body."""
    messages = [{"role": "user", "content": content}]
    return json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens}).encode()


def tool_chat_body(model: str, max_tokens: int = 16) -> bytes:
    """A non-streaming agent turn: system and user message, ``AGENT_TOOLS``, tool_choice auto."""
    messages = [
        {"role": "system", "content": AGENT_SYSTEM},
        {"role": "user", "content": AGENT_USER},
    ]
    body = {
        "model": model,
        "messages": messages,
        "tools": AGENT_TOOLS,
        "tool_choice": "auto",
        "max_tokens": max_tokens,
    }
    return json.dumps(body).encode()


async def one_request(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    want_tool_calls: bool = False,
) -> tuple[float, str]:
    """One request; its latency in ms and an error ('' when it answered with content, or
    with ``want_tool_calls`` when it answered with tool calls and finish_reason tool_calls).
    """
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
        choice = json.loads(raw)["choices"][0]
        message = choice["message"]
        if want_tool_calls:
            calls = message.get("tool_calls") or []
            named = all(c["function"]["name"] for c in calls)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return elapsed_ms, f"malformed body: {raw[:200]!r}"
    if want_tool_calls:  # an answer in text would mean the tools were lost on the way
        if not calls or not named or choice.get("finish_reason") != "tool_calls":
            return elapsed_ms, f"no tool call: {raw[:200]!r}"
        return elapsed_ms, ""
    return elapsed_ms, "" if message.get("content") else "empty content"


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    n: int,
    concurrency: int,
    phase: Phase | None,
    want_tool_calls: bool = False,
) -> None:
    """Send ``n`` requests with ``concurrency`` workers; record into ``phase`` if given."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            ms, err = await one_request(session, url, body, headers, want_tool_calls)
            if phase is None:
                continue
            if err:
                phase.errors += 1
                phase.first_error = phase.first_error or err
            else:
                phase.ok += 1
                phase.latencies_ms.append(ms)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_phase(
    target: str,
    url: str,
    model: str,
    token: str | None,
    concurrency: int,
    n: int,
    warmup: int,
    *,
    server_pid: int | None = None,
    body: bytes | None = None,
    want_tool_calls: bool = False,
) -> Phase:
    """Warm up, then send ``n`` measured requests at ``concurrency`` to ``url``.

    ``body`` defaults to ``chat_body(model)``; with ``want_tool_calls`` only an answer with
    tool calls counts (for ``tool_chat_body``). With ``server_pid`` the phase also records
    the CPU time of that process (and its children) over the measured part, a figure that
    stays meaningful on a busy machine where wall-clock ones do not.
    """
    body = body if body is not None else chat_body(model)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    phase = Phase(target, concurrency, n)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await drive(session, url, body, headers, warmup, concurrency, None, want_tool_calls)
        cpu0 = tree_cpu_s(server_pid) if server_pid else None
        t0 = time.perf_counter()
        await drive(session, url, body, headers, n, concurrency, phase, want_tool_calls)
        phase.wall_s = time.perf_counter() - t0
        cpu1 = tree_cpu_s(server_pid) if server_pid else None
    if cpu0 is not None and cpu1 is not None:
        phase.server_cpu_s = cpu1 - cpu0
    return phase


async def wait_ready(url: str, deadline: float, headers: dict[str, str] | None = None) -> None:
    """Poll ``GET url`` until it answers 200 or ``deadline`` (monotonic) passes."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, headers=headers) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 in time")


if __name__ == "__main__":
    if sys.argv[1:] != ["upstream"]:
        sys.exit("usage: python bench/_common.py upstream")
    asyncio.run(serve_upstream())
