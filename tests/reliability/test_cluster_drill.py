"""The cluster drill: three `openclaw serve` processes on one real PostgreSQL database,
agents firing every minute, gateway load spread over the instances, outbox rows to the
fake Bot API and a webhook receiver, and, at seeded random moments, ``kill -9`` of the
leader, ``kill -9`` of a follower and a SIGSTOP of the leader (each one replaced or woken
again). Then the database and what the fakes received are checked:

- no scheduled fire ran twice, and every fire of the drill's span is accounted for (a run
  for it, ok or late, or a missed record that covers it);
- every run settled; a run a kill interrupted is retried exactly once (recovery), and
  each kill -9 did interrupt one: a run whose model call the fake LLM holds until the
  victim is dead (only runs the drill's last, graceful stop interrupted stay unretried);
- every outbox row delivered — or, a Telegram row killed between its send and its
  confirmation, ``unknown``: never sent again, its card sent to the admin (issue 18) —
  and none received twice except inside the documented crash window: a second copy only
  after a ``kill -9`` that came between the two;
- each target (each chat, the webhook) got its messages in the order they were queued
  (rows written by overlapping transactions of two instances have no such order);
- the budget cap never passed by the sum over the instances;
- after each loss of the leader a new one within a bound (the times are printed).

Short form in ``make test``; ``OPENCLAW_RELIABILITY=full`` runs more rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from core.store.times import utcnow_iso
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.fakes.receiver import Answer, FakeReceiver
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wait import until
from tests.procs import Served, clean_env, start_serve
from tests.reliability import secrets
from tests.reliability.scale import scale

SEED = 20_26_12_02
ROUNDS = scale(1, 4)  # one round: leader killed, follower killed, leader frozen
CHATS = (5101, 5102)
CAP_USD = 0.005  # reached during the drill: later paid requests are refused
UNSETTLED = (
    "SELECT 'run' AS what, id, status, owner AS who FROM runs WHERE status IN ('queued', 'running')"
    " UNION ALL SELECT 'outbox', id, status, claimed_by FROM outbox"
    " WHERE status IN ('pending', 'sending')"
)
NEW_LEADER_BOUND_S = 30.0  # a bound on failover, not a speed expectation
SETTLE_S = 120.0
MAX_REQUESTS = scale(150, 600)  # the load is bounded in count as well as in time
# two rows to one target whose transactions overlapped (two instances finishing runs at
# once) have no queue order: the one committed first may be sent first. Rows written
# further apart than this must arrive in id order
OVERLAP_S = 1.0

CONFIG = """
[gateway]
port = 0

[serve]
shutdown_grace_s = 0.5

[cluster]
heartbeat_s = 0.2
leader_timeout_s = 2.0
recover_every_s = 0.5

[concurrency]
agents = 3

[routing]
default_task = "chat"
probe_interval_s = 0

[delivery]
claim_timeout_s = 1
poll_interval_s = 0.2
backoff_s = [0.2]

[budgets]
total = {{ day = {cap} }}

[telegram]
admins = [{chat_a}]
default_chat = {chat_a}

[channels.webhook.hook]
url = "{hook}"
timeout_s = 5

[providers.local]
api = "ollama"
base_url = "{ollama}"
timeout_s = 30

[providers.paid]
api = "openai-completions"
base_url = "{openai}"
api_key_env = "PAID_KEY"
timeout_s = 30

[models."local/m"]

[models."paid/p"]
max_tokens = 100
cost = {{ input = 1.0, output = 10.0 }}

[[tiers]]
level = 0
models = ["local/m"]

[[tiers]]
level = 1
models = ["paid/p"]

[tasks]
chat = 0
paid = 1

[[agents]]
name = "quick"
message = "quick {{{{ message }}}}"
deliver = ["webhook:hook", "telegram:{chat_a}"]

[[agents]]
name = "other"
message = "other {{{{ message }}}}"
deliver = ["telegram:{chat_b}"]
{tickers}"""
TICKERS = ("tick1", "tick2", "tick3")
TICKER_CONFIG = "".join(
    f"""
[[agents]]
name = "{name}"
schedule = "* * * * *"
catch_up_s = 120
message = "tick {name} {{{{{{{{ now.isoformat() }}}}}}}}"
deliver = ["webhook:hook", "telegram:{{chat_a}}"]
"""
    for name in TICKERS
)


@pytest.fixture
async def hook() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as rx:
        yield rx


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=secrets.TELEGRAM_TOKEN) as fake:
        yield fake


def _answers(rng: random.Random, holds: dict[str, asyncio.Event]) -> Any:
    def answer(req: RecordedRequest) -> Reply:
        text = req.last_user_text
        for marker, release in holds.items():  # a run the next kill -9 must interrupt
            if marker in text and not release.is_set():
                return Reply(text=text, hold=release, output_tokens=20)
        return Reply(text=text, delay_s=rng.uniform(0.05, 0.5), output_tokens=20)

    return answer


def _rows(url: str, sql: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return list(conn.execute(sql).fetchall())


def _leader(url: str, but: str | None = None) -> str | None:
    rows = _rows(
        url,
        "SELECT owner FROM instances WHERE leader = 1 AND stopped_at IS NULL"
        " ORDER BY leader_since DESC",
    )
    owners = [r["owner"] for r in rows if r["owner"] != but]
    return owners[0] if owners else None


class Drill:
    """Three instances, who leads, and what happened to them when."""

    def __init__(
        self,
        env: dict[str, str],
        url: str,
        log: Path,
        hook: FakeReceiver,
        tg: FakeTelegram,
        llm: FakeLLM,
    ) -> None:
        self.env = env
        self.url = url
        self.log = log
        self.hook = hook
        self.tg = tg
        self.llm = llm
        self.served: list[Served] = []
        # marker in a run's message → set once the instance running it was killed
        self.holds: dict[str, asyncio.Event] = {}
        self.held: list[int] = []  # those runs' ids
        self.held_s = 0.0  # the time spent waiting for them to reach the model
        # after each kill -9: how many webhook and Telegram receipts there were by then
        self.marks: list[tuple[int, int]] = []
        self.failovers: list[tuple[str, float]] = []

    async def start(self) -> Served:
        s = await start_serve(self.env, stderr_path=self.log)
        self.served.append(s)
        return s

    def owner_of(self, s: Served) -> str:
        line = next(x for x in s.lines if x.startswith("Cluster:"))
        return line.split("(", 1)[1].split(")", 1)[0]

    def live(self) -> list[Served]:
        return [s for s in self.served if s.proc.returncode is None]

    def by_owner(self, owner: str | None) -> Served | None:
        return next((s for s in self.live() if self.owner_of(s) == owner), None)

    async def leader(self) -> Served:
        got: list[Served] = []

        async def found() -> bool:
            s = self.by_owner(_leader(self.url))
            if s is not None:
                got.append(s)
            return s is not None

        await until(found, timeout_s=NEW_LEADER_BOUND_S, what="a leader")
        return got[-1]

    async def new_leader_after(self, what: str, old: str, began: float) -> None:
        """Wait for an instance other than ``old`` to lead; the time since ``began`` (the
        kill or the stop) is kept for the report."""
        await until(
            lambda: _leader(self.url, but=old) is not None,
            timeout_s=NEW_LEADER_BOUND_S,
            what=f"a new leader after {what}",
            every_s=0.05,
        )
        self.failovers.append((what, time.monotonic() - began))

    async def run_held(self, s: Served) -> None:
        """A run on ``s`` that is running when ``s`` is killed: its model call waits for
        the kill (:meth:`kill` releases it, so its retry is answered)."""
        began = time.monotonic()
        marker = f"[held {len(self.holds)}]"
        self.holds[marker] = asyncio.Event()
        headers = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            r = await client.post(f"{s.url}/api/agents/quick/run", json={"message": marker})
        assert r.status_code == 202, r.text
        self.held.append(int(r.json()["run_id"]))
        await self.llm.wait_for_requests(
            1, timeout_s=NEW_LEADER_BOUND_S, where=lambda q: marker in q.last_user_text
        )
        self.held_s += time.monotonic() - began

    async def kill(self, s: Served) -> None:
        await self.run_held(s)
        assert await s.stop(signal.SIGKILL) == -signal.SIGKILL
        for release in self.holds.values():
            release.set()
        # what the dead process had sent reaches the fakes: bytes still in the kernel's
        # buffers signal nothing when they are read, so a short grace it is
        await asyncio.sleep(0.2)
        self.marks.append((len(self.hook.at("/hook")), len(self.tg.sent())))


async def _load(drill: Drill, rng: random.Random, stop: asyncio.Event, out: dict[str, int]) -> None:
    """Runs and paid chat completions, each sent to a random live instance."""
    headers = {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        i = 0
        while not stop.is_set() and i < MAX_REQUESTS:
            i += 1
            live = drill.live()
            if not live:
                await asyncio.sleep(0.05)
                continue
            target = rng.choice(live)
            with contextlib.suppress(httpx.HTTPError):
                if i % 3:
                    agent = rng.choice(["quick", "other"])
                    r = await client.post(
                        f"{target.url}/api/agents/{agent}/run", json={"message": f"m{i}"}
                    )
                    out[f"run {r.status_code}"] = out.get(f"run {r.status_code}", 0) + 1
                else:
                    r = await client.post(
                        f"{target.url}/v1/chat/completions",
                        json={
                            "model": "task:paid",
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    )
                    out[f"chat {r.status_code}"] = out.get(f"chat {r.status_code}", 0) + 1
            await asyncio.sleep(rng.uniform(0.02, 0.15))


@pytest.mark.timeout(900)
async def test_three_instances_survive_kills_and_a_frozen_leader(
    fake_llm: FakeLLM,
    hook: FakeReceiver,
    tg: FakeTelegram,
    pg_url: str,
    tmp_path: Path,
    log_dir: Path,
) -> None:
    rng = random.Random(SEED)
    holds: dict[str, asyncio.Event] = {}
    fake_llm.default = _answers(random.Random(SEED + 1), holds)
    hook.script("/hook", *(Answer(delay_s=rng.uniform(0.0, 0.3)) for _ in range(20_000)))
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(
        CONFIG.format(
            cap=CAP_USD,
            chat_a=CHATS[0],
            chat_b=CHATS[1],
            hook=hook.url + "/hook",
            ollama=fake_llm.base_url("ollama"),
            openai=fake_llm.base_url("openai-completions"),
            tickers=TICKER_CONFIG.format(chat_a=CHATS[0]),
        ),
        encoding="utf-8",
    )
    env = clean_env(
        cfg,
        Path(pg_url),  # the URL as OPENCLAW_DB
        OPENCLAW_GATEWAY_TOKEN=secrets.GATEWAY_TOKEN,
        TELEGRAM_BOT_TOKEN=secrets.TELEGRAM_TOKEN,
        TELEGRAM_API_BASE=tg.url,
        PAID_KEY="sk-paid-test",
    )
    env["OPENCLAW_DB"] = pg_url
    drill = Drill(env, pg_url, log_dir / "cluster_drill.serve.log", hook, tg, fake_llm)
    drill.holds = holds
    stop_load = asyncio.Event()
    counts: dict[str, int] = {}
    load: asyncio.Task[None] | None = None
    try:
        for _ in range(3):
            await drill.start()
        # the first leader's scheduler is on: fires from here on are expected (the
        # first start with an agent misses nothing, by design)
        began = datetime.now(UTC)
        load = asyncio.create_task(_load(drill, random.Random(SEED + 2), stop_load, counts))
        for _ in range(ROUNDS):
            # 1. kill -9 of the leader, a new instance in its place
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            leader = await drill.leader()
            owner = drill.owner_of(leader)
            killed_at = time.monotonic()
            await drill.kill(leader)
            await drill.new_leader_after("kill -9 of the leader", owner, killed_at)
            await drill.start()
            # 2. kill -9 of a follower, replaced
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            leader = await drill.leader()
            follower = rng.choice([s for s in drill.live() if s is not leader])
            await drill.kill(follower)
            await drill.start()
            # 3. SIGSTOP of the leader past leader_timeout_s, then SIGCONT
            await asyncio.sleep(rng.uniform(2.0, 6.0))
            leader = await drill.leader()
            owner = drill.owner_of(leader)
            stopped_at = time.monotonic()
            leader.proc.send_signal(signal.SIGSTOP)
            try:
                await drill.new_leader_after("SIGSTOP of the leader", owner, stopped_at)
                await asyncio.sleep(rng.uniform(0.0, 2.0))
            finally:
                leader.proc.send_signal(signal.SIGCONT)
        # the drill spans a minute boundary, so scheduled fires happen under it
        boundary = (began + timedelta(minutes=1)).replace(second=0, microsecond=0)
        wait_s = (boundary - datetime.now(UTC)).total_seconds() + 5
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        minute_s = max(0.0, wait_s)
        stop_load.set()
        await load
        load = None
        ended = datetime.now(UTC)

        async def settled() -> bool:
            runs = _rows(
                pg_url, "SELECT COUNT(*) AS n FROM runs WHERE status IN ('queued', 'running')"
            )
            rows = _rows(
                pg_url,
                "SELECT COUNT(*) AS n FROM outbox WHERE status IN ('pending', 'sending')"
                " OR (status = 'unknown' AND asked_at IS NULL)",  # unknown: its card sent
            )
            return runs[0]["n"] == 0 and rows[0]["n"] == 0

        await until(
            settled,
            timeout_s=SETTLE_S,
            what=lambda: f"settled: {_rows(pg_url, UNSETTLED)}",
            every_s=0.2,
        )
        await asyncio.sleep(0.5)  # the last receipts reach the fakes
    finally:
        stop_load.set()
        if load is not None:
            with contextlib.suppress(Exception):
                await load
        for release in holds.values():
            release.set()
        # a fire from here on may be cut short by this stop, and no instance is left
        # to retry it
        stopping = utcnow_iso()
        for s in drill.served:
            with contextlib.suppress(ProcessLookupError):
                if s.proc.returncode is None:
                    s.proc.send_signal(signal.SIGCONT)
            await s.stop()

    runs = {r["id"]: r for r in _rows(pg_url, "SELECT * FROM runs ORDER BY id")}
    outbox = _rows(pg_url, "SELECT * FROM outbox ORDER BY id")

    # -- scheduled fires: each once, every one of the span accounted for --------------------
    fires: defaultdict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs.values():
        if run["trigger"] == "schedule" and run["status"] != "missed":
            fires[(run["agent"], run["scheduled_for"])].append(run)
    for key, same in fires.items():
        assert len(same) == 1, f"fire {key} ran {len(same)} times"
    first_minute = (began + timedelta(minutes=1)).replace(second=0, microsecond=0)
    minute = first_minute
    expected = 0
    while minute <= ended - timedelta(seconds=2):
        stamp = minute.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
        for agent in TICKERS:
            expected += 1
            ran = (agent, stamp) in fires
            missed = any(
                r["agent"] == agent and r["status"] == "missed" and stamp in (r["error"] or "")
                for r in runs.values()
            )
            assert ran or missed, f"fire {agent}@{stamp} is not accounted for: " + str(
                [
                    (r["id"], r["status"], r["scheduled_for"], r["created_at"], r["owner"])
                    for r in runs.values()
                    if r["agent"] == agent
                ]
            )
        minute += timedelta(minutes=1)
    assert expected >= len(TICKERS)

    # -- runs: settled; an interrupted one retried exactly once ----------------------------
    retries: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
    for run in runs.values():
        if run["trigger"] == "recovery":
            retries[run["parent_run"]].append(run)
    for run in runs.values():
        assert run["status"] in ("ok", "late", "missed", "interrupted"), run
        if run["status"] == "interrupted" and run["finished_at"] < stopping:
            assert len(retries[run["id"]]) == 1, f"run {run['id']} interrupted, not retried"
    for parent, children in retries.items():
        assert len(children) == 1, f"run {parent} retried {len(children)} times"
    assert len(drill.held) == len(drill.marks)  # one held run per kill -9
    for rid in drill.held:  # the kill did interrupt it, and it was retried
        assert runs[rid]["status"] == "interrupted", runs[rid]
        assert len(retries[rid]) == 1, f"held run {rid}: {retries[rid]}"

    # -- deliveries: all delivered, a second copy only across a kill -9, order per chat -----
    for row in outbox:
        unknown_ok = row["status"] == "unknown" and row["target"].startswith("telegram:")
        assert row["status"] == "delivered" or unknown_ok, row
    unknown = [r for r in outbox if r["status"] == "unknown"]
    cards = [m for m in tg.sent() if "may not have arrived" in m["text"]]
    for row in unknown:  # each has its card (the leader's), and each card is one's
        assert any(f"#{row['id']} to " in c["text"] for c in cards), row
    for c in cards:
        assert any(f"#{row['id']} to " in c["text"] for row in unknown), c
    hook_rows = {
        (r["run_id"], r["target"]): r["id"] for r in outbox if r["target"] == "webhook:hook"
    }
    tg_rows = {
        (r["target"], r["body"]): r["id"] for r in outbox if r["target"].startswith("telegram:")
    }
    # a receipt's epoch: how many kills came before it
    receipts: defaultdict[int, list[int]] = defaultdict(list)
    # per target, the rows in the order their first copy arrived
    order: defaultdict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(hook.at("/hook")):
        key = (rec.body["run_id"], rec.body["target"])
        assert key in hook_rows, f"the receiver got a message no row holds: {rec.body}"
        receipts[hook_rows[key]].append(sum(1 for m in drill.marks if m[0] <= i))
        if hook_rows[key] not in order["webhook:hook"]:
            order["webhook:hook"].append(hook_rows[key])
    for i, sent in enumerate(tg.sent()):
        if sent in cards:
            continue
        key = (f"telegram:{sent['chat_id']}", sent["text"])
        assert key in tg_rows, f"Telegram got a message no row holds: {sent}"
        receipts[tg_rows[key]].append(sum(1 for m in drill.marks if m[1] <= i))
        if tg_rows[key] not in order[key[0]]:
            order[key[0]].append(tg_rows[key])
    resent = 0
    for row in outbox:
        if row["target"] == "log":  # the budget's alerts, written to serve's log
            assert row["kind"] == "alert", row
            continue
        seen = receipts[row["id"]]
        if row["status"] == "unknown":  # it may or may not have arrived; never twice
            assert len(seen) <= 1, f"unknown row {row['id']} sent {len(seen)} times"
            continue
        assert seen, f"row {row['id']} ({row['target']}) is delivered but never arrived"
        assert len(seen) == len(set(seen)), (
            f"row {row['id']} received twice with no kill -9 in between"
        )
        resent += len(seen) - 1
    written = {r["id"]: datetime.fromisoformat(r["created_at"]) for r in outbox}
    overlapped = 0
    assert set(order) == {"webhook:hook", *(f"telegram:{c}" for c in CHATS)}, list(order)
    for target, ids in order.items():
        for pos, first in enumerate(ids):
            for later in ids[pos + 1 :]:
                if later > first:
                    continue
                # ``later`` (a lower id) arrived after ``first``: only rows written at
                # about the same time, by overlapping transactions, may do that
                gap_s = (written[first] - written[later]).total_seconds()
                assert gap_s < OVERLAP_S, (
                    f"{target}: row {first} arrived before row {later}, written {gap_s:.2f}s"
                    " after it"
                )
                overlapped += 1

    # -- the budget: one cap for every instance together -----------------------------------
    spent = _rows(pg_url, "SELECT COALESCE(SUM(cost_usd), 0) AS s FROM attempts")[0]["s"]
    assert float(spent) <= CAP_USD + 1e-9, f"spent ${spent} against a ${CAP_USD} cap"
    assert counts.get("chat 200", 0) >= 1
    refused = sum(n for k, n in counts.items() if k.startswith("chat ") and k != "chat 200")
    assert refused, f"the cap was never reached: {counts}"

    print(
        f"\ncluster drill, {ROUNDS} round(s): {len(drill.served)} instances started, "
        f"{len(drill.marks)} kill -9, {len(runs)} runs "
        f"({sum(r['trigger'] == 'recovery' for r in runs.values())} recoveries, "
        f"{sum(r['status'] == 'interrupted' for r in runs.values())} interrupted, "
        f"{len(fires)} scheduled fires, {expected} expected), {len(outbox)} messages, "
        f"{resent} re-sent across a kill -9, {len(unknown)} unknown (asked), {overlapped} "
        "pair(s) of one target's rows written at once arrived in commit order, not id order; "
        f"spent ${float(spent):.4f} of ${CAP_USD}; "
        f"requests {dict(sorted(counts.items()))}; {drill.held_s:.1f}s waiting for the held "
        f"runs, {minute_s:.1f}s for the minute's fires; new leader after: "
        + ", ".join(f"{what} {s:.2f}s" for what, s in drill.failovers)
    )
