"""Load: many gateway requests at once while the upstream fails at random.

The real gateway (``App.open`` + ``Gateway`` on 127.0.0.1) in front of the fake LLM
server, whose every answer is drawn from a seeded generator: 90% good, 10% one of a mix
of faults (5xx, 429 with and without Retry-After, malformed JSON, wrong content-type,
cut and dropped streams, a stall, a hang, an empty answer). Two tier-0 models fail over to
each other; an unusable answer climbs to tier 1. Half the requests stream.

Checked: every request is answered or cleanly failed (an OpenAI-shaped 503, or for a
stream that broke after its first byte an OpenAI-shaped error event — never a dropped
connection, a 500 or a traceback); the ledger has one row per upstream call and one
``ok`` row per answer; no asyncio task, socket or file descriptor outlives the load; RSS
does not keep growing between the first and the second half.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.app import App
from core.config.load import parse_config
from core.config.settings import Settings
from core.gateway import Gateway
from core.gateway.handlers import STATE
from core.store.path import DbLocation
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.fakes.wait import until
from tests.reliability import secrets
from tests.reliability.scale import scale

REQUESTS = scale(600, 2000)
CONCURRENCY = 100
WARMUP = scale(100, 200)  # fills pools and caches before anything is measured
FAULT_RATE = 0.10
SEED = 20260409
MODELS = {"primary": "openai-completions", "backup": "anthropic-messages", "top": "ollama"}
# RSS may grow a little in the second half (allocator arenas, SQLite's page cache), but
# not with the number of requests: measured, it adds 0-2 MiB; a leak of 6 KiB per request
# would add that much again per 1,000 requests
RSS_SLACK_BYTES = 6 * 1024 * 1024


def fault_mix() -> list[Reply]:
    partial = Reply(text="a partial answer", reasoning="pondering")
    return [
        Reply(status=500),
        Reply(status=502),
        Reply(status=503),
        Reply(status=429),
        Reply(status=429, retry_after=0.05),
        Reply(text="", malformed=True),
        Reply(content_type="text/html"),
        Reply(text="visible words, then the cut", cut_stream=True, cut_body=True),
        replace(partial, abort_stream=True, cut_body=True),
        replace(partial, stall=True),
        Reply(hang=True),
        Reply(text=""),  # unusable: climbs a tier
    ]


@dataclass
class Upstream:
    """The fake's answers: seeded, 10% faults; counts every call it answered."""

    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    faults: list[Reply] = field(default_factory=fault_mix)
    calls: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def __call__(self, req: RecordedRequest) -> Reply:
        self.calls += 1
        if self.rng.random() < FAULT_RATE:
            i = self.rng.randrange(len(self.faults))
            self.kinds[f"fault{i}"] += 1
            return self.faults[i]
        self.kinds["ok"] += 1
        text = f"answer to {req.last_user_text}"
        if leaves(int(text.rsplit(" ", 1)[1])):  # a slow stream its client will not wait for
            return Reply(text=text + " and more" * 20, frame_delay_s=0.01)
        return Reply(text=text)


def leaves(n: int) -> bool:
    """About 3% of clients hang up early: streams after their first chunk, JSON at once."""
    return n % 37 == 5


def config_doc(fake: FakeLLM, dead_url: str) -> dict[str, Any]:
    """Tier 0: a dead model (nothing listens), then primary and backup; tier 1: top.

    Cooldowns are short, so breakers open, half-open and probe all through the load.
    """

    def provider(api: str) -> dict[str, Any]:
        return {"api": api, "base_url": fake.base_url(api), "timeout_s": 1.0}

    providers = {name: provider(api) for name, api in MODELS.items()}
    providers["dead"] = {"api": "openai-completions", "base_url": dead_url, "timeout_s": 1.0}
    return {
        "routing": {"default_task": "chat", "failure_threshold": 2, "cooldowns_s": [0.05, 0.1]},
        "approvals": {"default": "deny"},
        "providers": providers,
        "models": {
            "dead/m0": {"max_tokens": 64, "cost": {"input": 1.0, "output": 2.0}},
            "primary/m1": {"max_tokens": 64, "cost": {"input": 1.0, "output": 2.0}},
            "backup/m2": {"max_tokens": 64, "cost": {"input": 3.0, "output": 6.0}},
            "top/m3": {"max_tokens": 64, "cost": {"input": 5.0, "output": 10.0}},
        },
        "tiers": [
            {"level": 0, "models": ["dead/m0", "primary/m1", "backup/m2"]},
            {"level": 1, "models": ["top/m3"]},
        ],
        "tasks": {"chat": 0},
        # a cap far above what the load spends: every call reserves its worst case and
        # settles it, so a reservation a failure or a hang-up forgot would show
        "budgets": {"total": {"day": 1000.0}},
    }


# -- what the process holds --------------------------------------------------------------


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
    return out


def tcp_sockets() -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of this process's TCP sockets on 127.0.0.1."""
    inodes = {
        target[len("socket:[") : -1]
        for target in open_fds().values()
        if target.startswith("socket:[")
    }
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes:
                local, remote, state = cols[1], cols[2], cols[3]
                out.append((int(local.split(":")[1], 16), int(remote.split(":")[1], 16), state))
    return out


LISTEN = "0A"


def connections(port: int) -> tuple[int, int]:
    """(accepted by the server on ``port``, opened by clients to ``port``), non-listening."""
    socks = tcp_sockets()
    served = sum(1 for lp, _, st in socks if lp == port and st != LISTEN)
    opened = sum(1 for _, rp, st in socks if rp == port and st != LISTEN)
    return served, opened


async def settle(check: Any, what: str, timeout_s: float = 10.0) -> None:
    """Wait until ``check()`` holds (connections close and tasks end asynchronously)."""
    await until(check, timeout_s, what, every_s=0.05)  # a check reads /proc/net/tcp*


# -- the load ------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # answered | failed | broken (a stream that broke after its first byte) | bad
    rid: str = ""
    attempts: int = 0
    detail: str = ""
    cost_usd: float | None = None  # what the gateway said the request cost (JSON answers)


def attempts_of(route: str) -> int:
    """``tier=0; model=…; attempts=2`` or ``failed; attempts=3`` → the number of calls."""
    return int(route.rsplit("attempts=", 1)[1])


async def one(http: aiohttp.ClientSession, url: str, n: int, stream: bool) -> Outcome:
    prompt = f"request {n}"
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}], "stream": stream}
    if leaves(n):
        return await leave_early(http, url, body, stream)
    try:
        async with http.post(url + "/v1/chat/completions", json=body) as resp:
            raw = await resp.read()
            rid = resp.headers.get("x-openclaw-request-id", "")
            route = resp.headers.get("x-openclaw-route", "")
            media = resp.headers.get("content-type", "")
            cost = resp.headers.get("x-openclaw-cost-usd")
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as e:
        return Outcome("bad", detail=f"{prompt}: {type(e).__name__}: {e}")
    text = raw.decode(errors="replace")
    bad = Outcome("bad", rid, detail=f"{prompt}: HTTP {status} {media}: {text[:300]}")
    if "Traceback" in text or not rid or "attempts=" not in route:
        return bad
    if status == 503 and media.startswith("application/json"):
        err = json.loads(text).get("error", {})
        if err.get("code") != "all_models_failed" or set(err) != {
            "message",
            "type",
            "param",
            "code",
        }:
            return bad
        return Outcome("failed", rid, attempts_of(route))
    if status != 200:
        return bad
    if not stream:
        data = json.loads(text)
        if data["choices"][0]["message"]["content"] != f"answer to {prompt}" or cost is None:
            return bad
        return Outcome("answered", rid, attempts_of(route), cost_usd=float(cost))
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e.strip()]
    if events and events[-1] == "[DONE]":
        pieces = [json.loads(e)["choices"] for e in events[:-1]]
        content = "".join(c[0]["delta"].get("content") or "" for c in pieces if c)
        ok = content == f"answer to {prompt}"
        return Outcome("answered", rid, attempts_of(route)) if ok else bad
    last = json.loads(events[-1]) if events else {}
    if last.get("error", {}).get("code") == "stream_interrupted":
        return Outcome("broken", rid, attempts_of(route))
    return bad


async def leave_early(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], stream: bool
) -> Outcome:
    """Hang up mid-request: a stream after its first chunk, a JSON call after 20 ms."""
    if not stream:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.02):
                async with http.post(url + "/v1/chat/completions", json=body) as resp:
                    await resp.read()
        return Outcome("gone")
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        rid = resp.headers.get("x-openclaw-request-id", "")
        await resp.content.readany()
        resp.close()  # drops the connection
    return Outcome("gone", rid)


async def burst(url: str, numbers: range, concurrency: int) -> list[Outcome]:
    """``numbers`` requests, ``concurrency`` at a time; the client is closed afterwards."""
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:

        async def guarded(n: int) -> Outcome:
            async with limit:
                return await one(http, url, n, stream=n % 2 == 1)

        return list(await asyncio.gather(*(guarded(n) for n in numbers)))


@dataclass
class Load:
    app: App
    gateway: Gateway
    fake: FakeLLM
    upstream: Upstream


@contextlib.asynccontextmanager
async def fake_in_thread() -> AsyncIterator[FakeLLM]:
    """The fake upstream on its own event loop and thread, like a server elsewhere: the
    gateway's loop then holds only the gateway's tasks, which is what the test counts."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-llm", daemon=True)
    thread.start()

    async def on_fake_loop(coro: Any) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    fake = FakeLLM()
    try:
        await on_fake_loop(fake.start())
        yield fake
    finally:
        await on_fake_loop(fake.close())
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        loop.close()


@contextlib.asynccontextmanager
async def running(location: DbLocation) -> AsyncIterator[Load]:
    """The fake upstream, the App and its gateway; all closed on the way out."""
    async with fake_in_thread() as fake:
        upstream = Upstream()
        fake.default = upstream
        with socket.socket() as s:  # a port just closed: connecting is refused
            s.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{s.getsockname()[1]}"
        cfg = parse_config(config_doc(fake, dead_url), warnings=[])
        app = await App.open(cfg, Settings(_env_file=None), location)
        gateway = Gateway(app.facade, secrets.GATEWAY_TOKEN, "127.0.0.1", 0)
        try:
            await gateway.start()
            yield Load(app, gateway, fake, upstream)
        finally:
            await gateway.stop()
            await app.close()


def fake_port(fake: FakeLLM) -> int:
    return int(fake.url.rsplit(":", 1)[1])


class _Errors(logging.Handler):
    """Keeps the product's ERROR records (and nothing else: RSS is being measured)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()[:300]}")


@pytest.mark.timeout(scale(60, 300))
async def test_load_with_random_upstream_faults(store_location: DbLocation) -> None:
    """On both engines (the ledger's group commit is engine code)."""
    # the baseline is taken before anything of the test exists, so the final count
    # after teardown shows whatever leaked from any part: gateway, engine, adapters, fake
    gc.collect()
    fds_at_start = open_fds()
    tasks_at_start = len(asyncio.all_tasks())

    errors = _Errors()
    product = logging.getLogger("openclaw")
    # aiosqlite logs every statement with its parameters at DEBUG, and pytest keeps each
    # record of a test for its report: over thousands of requests that is the harness's
    # memory growing, not the gateway's (ledger rows carry no secrets: the scan loses nothing)
    sql = logging.getLogger("aiosqlite")
    sql_level = sql.level
    sql.setLevel(logging.INFO)
    product.addHandler(errors)
    try:
        async with running(store_location) as rig:
            await run_load(rig)
    finally:
        product.removeHandler(errors)
        sql.setLevel(sql_level)

    # no request ended in the gateway's "unexpected error" handler, nor an adapter bug
    assert not errors.lines, errors.lines[:10]

    await settle(lambda: len(asyncio.all_tasks()) <= tasks_at_start, "tasks outlived the load")
    assert len(asyncio.all_tasks()) == tasks_at_start
    gc.collect()
    await settle(lambda: len(open_fds()) <= len(fds_at_start), "descriptors leaked")
    leaked = {fd: t for fd, t in open_fds().items() if fds_at_start.get(fd) != t}
    assert not leaked, f"descriptors leaked: {leaked}"


async def run_load(rig: Load) -> None:
    url = rig.gateway.url
    gw_port, up_port = rig.gateway.port, fake_port(rig.fake)
    half = REQUESTS // 2

    tasks_idle = len(asyncio.all_tasks())  # the gateway itself runs none until asked
    warm = await burst(url, range(-WARMUP, 0), CONCURRENCY)
    assert {o.kind for o in warm} <= {"answered", "failed", "broken", "gone"}, [
        o.detail for o in warm if o.kind == "bad"
    ][:5]
    await settle(lambda: connections(gw_port)[0] == 0, "the gateway kept client connections")
    rig.fake.requests.clear()  # the fake records every call: harness memory, not the gateway's
    gc.collect()
    rss_start = rss_bytes()

    first = await burst(url, range(half), CONCURRENCY)
    rig.fake.requests.clear()
    gc.collect()
    rss_mid = rss_bytes()
    second = await burst(url, range(half, REQUESTS), CONCURRENCY)
    rig.fake.requests.clear()
    gc.collect()
    rss_end = rss_bytes()
    outcomes = warm + first + second

    # every request answered or cleanly failed
    bad = [o.detail for o in outcomes if o.kind == "bad"]
    assert not bad, f"{len(bad)} requests neither answered nor cleanly failed:\n" + "\n".join(
        bad[:10]
    )
    kinds = Counter(o.kind for o in outcomes)
    assert kinds["answered"] >= 0.85 * len(outcomes), kinds
    assert rig.upstream.calls > len(outcomes)  # faults made the engine fail over
    assert rig.upstream.kinds["ok"] < rig.upstream.calls

    # a JSON call whose client left still runs to its end: wait for it, then count
    await settle(lambda: rig.gateway.web_app[STATE].in_flight == 0, "requests in flight")

    # the ledger: one row per upstream call, one request id per request, one ok per answer
    rows = await rig.app.store.fetchall(
        "SELECT request_id, outcome, COUNT(*) FROM attempts GROUP BY request_id, outcome"
    )
    per_request: dict[str, Counter[str]] = {}
    for rid, outcome, count in rows:
        per_request.setdefault(rid, Counter())[outcome] += count
    stayed = [o for o in outcomes if o.kind != "gone"]
    gone = [o for o in outcomes if o.kind == "gone"]
    assert {o.rid for o in stayed} <= set(per_request)
    total_rows = sum(sum(c.values()) for c in per_request.values())
    (dead,) = await rig.app.store.fetchall(
        "SELECT COUNT(*), SUM(CASE WHEN outcome = 'unavailable' THEN 1 ELSE 0 END)"
        " FROM attempts WHERE provider = 'dead'"
    )
    assert dead[0] == dead[1] > 0  # probed now and then, refused every time
    assert total_rows == rig.upstream.calls + dead[0]  # the refused calls never got there
    # the requests whose clients left have rows too (one engine run each, at most)
    assert len(per_request) - len(stayed) <= len(gone)
    assert total_rows - sum(o.attempts for o in stayed) >= len(per_request) - len(stayed)
    cancelled = sum(c["cancelled"] for c in per_request.values())
    assert 0 < cancelled <= len(gone)  # streams stopped when their clients left
    for o in stayed:
        got = per_request[o.rid]
        assert got["ok"] == (1 if o.kind == "answered" else 0), (o, got)
        assert sum(got.values()) == o.attempts, (o, got)
        assert got["cancelled"] == 0  # no caller went away
    # what the gateway told each caller it cost is what the ledger holds for it
    costs = dict(
        await rig.app.store.fetchall(
            "SELECT request_id, SUM(cost_usd) FROM attempts GROUP BY request_id"
        )
    )
    priced = [o for o in stayed if o.cost_usd is not None]
    assert priced
    for o in priced:
        assert o.cost_usd == pytest.approx(costs[o.rid], abs=1e-8), o
    # every reservation was settled, whatever became of its call
    (held,) = await rig.app.store.fetchall("SELECT COUNT(*) FROM reservations")
    assert held[0] == 0
    # a failed call is free; only answers, unusable answers and broken streams cost
    (free,) = await rig.app.store.fetchall(
        "SELECT COUNT(*) FROM attempts WHERE outcome IN ('unavailable', 'fatal')"
        " AND cost_usd > 0 AND streamed = 0"
    )
    assert free[0] == 0

    # nothing held once the load is over: no probe slot stays taken once cooldowns end
    # (asked of the breakers at a time past the longest cooldown, 0.1 s, not slept to)
    blocked = rig.app.health.snapshot(time.monotonic() + 1.0).blocked
    assert not blocked, blocked
    await settle(lambda: connections(gw_port)[0] == 0, "the gateway kept client connections")
    # upstream connections are only the adapters' idle keep-alive pool, each seen from both
    # ends (the fake runs in this process): no half-open or leaked sockets
    await settle(lambda: connections(up_port)[0] == connections(up_port)[1], "half-open sockets")
    assert connections(up_port)[1] <= 100 * len(MODELS)  # the adapters' pool limit
    await settle(lambda: len(asyncio.all_tasks()) <= tasks_idle, "tasks outlived the requests")
    assert len(asyncio.all_tasks()) == tasks_idle

    # RSS: the second half must not add what the first half added again
    growth_first, growth_second = rss_mid - rss_start, rss_end - rss_mid
    assert growth_second <= RSS_SLACK_BYTES, (
        f"RSS grew {growth_second / 2**20:.1f} MiB in the second half "
        f"(first half: {growth_first / 2**20:.1f} MiB, start {rss_start / 2**20:.1f} MiB)"
    )


def test_the_socket_counter_sees_a_connection() -> None:
    """The leak checks above count sockets through /proc: make sure that counting works."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                assert connections(port) == (1, 1)
                assert client.fileno() in open_fds()
    assert connections(port) == (0, 0)
