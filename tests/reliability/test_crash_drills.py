"""Crash drills: `openclaw serve` is killed with SIGKILL at seeded random moments while
agent runs and deliveries are in flight, restarted on the same database each time, and
finally left to finish. Then the database and what the fake targets received are checked:

- every run is settled: ok / late / missed, or interrupted with a recovery retry (up to
  ``MAX_RECOVERIES`` retries of the same work: the crash-loop guard), never queued or
  running, never failed (nothing here fails);
- every finished run has its outbox rows (one per target), and every row is delivered —
  or, a Telegram row killed between its send and its confirmation, ``unknown``: never
  sent again, its card sent to the admin instead (issue 18);
- every row reached its target, at most once per process, and a row the database had
  confirmed before a kill is never sent again: a second copy is only ever the documented
  window (a webhook killed after the target took it, before the confirmation was stored,
  resent with the same Idempotency-Key).

Upstreams are loopback fakes: an LLM with random latency (so kills land mid-run), a
webhook receiver with random answer delays (so kills land mid-send), and the fake
Telegram Bot API (the bot's own delivery channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.agents.runner import MAX_RECOVERIES
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.fakes.receiver import Answer, FakeReceiver
from tests.fakes.telegram import FakeTelegram
from tests.fakes.wait import until
from tests.procs import Served, clean_env, start_serve
from tests.reliability import secrets
from tests.reliability.scale import FULL, scale

KILLS = scale(3, 20)
SEED = 20_26_11_26
CHAT_QUICK, CHAT_SLOW = 4101, 4102
SETTLE_S = 120.0  # a bound on the final wait, not a speed expectation

CONFIG = """
[gateway]
port = 0

[serve]
shutdown_grace_s = 0.5

[concurrency]
agents = 4

[routing]
default_task = "chat"
probe_interval_s = 0

[delivery]
claim_timeout_s = 1
poll_interval_s = 0.2
backoff_s = [0.2]

[telegram]
admins = [{chat_quick}]
default_chat = {chat_quick}

[channels.webhook.hook]
url = "{hook}"
timeout_s = 5

[providers.local]
api = "ollama"
base_url = "{ollama}"
timeout_s = 30

[models."local/m"]

[[tiers]]
level = 0
models = ["local/m"]

[tasks]
chat = 0

[[agents]]
name = "quick"
message = "quick {{{{ message }}}}"
deliver = ["webhook:hook", "telegram:{chat_quick}"]

[[agents]]
name = "slow"
message = "slow {{{{ message }}}}"
deliver = ["webhook:hook", "telegram:{chat_slow}"]

[[agents]]
name = "ticker"
schedule = "* * * * *"
message = "tick {{{{ now.isoformat() }}}}"
deliver = ["webhook:hook"]
{more_tickers}"""
# more agents on the minute, so that a minute boundary inside the drills starts several
# scheduled runs at once (and a restart across one, catch-up runs) for the kills to hit
TICKERS = ("ticker", "ticker2", "ticker3", "ticker4")
MORE_TICKERS = "".join(
    f"""
[[agents]]
name = "{name}"
schedule = "* * * * *"
message = "tick {name} {{{{ now.isoformat() }}}}"
deliver = ["webhook:hook", "telegram:{CHAT_QUICK}"]
"""
    for name in TICKERS[1:]
)


@pytest.fixture
async def hook() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as rx:
        yield rx


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=secrets.TELEGRAM_TOKEN) as fake:
        yield fake


def _latency(rng: random.Random) -> Any:
    """Echo the prompt after a random delay: slow runs take longer, so kills land mid-run."""

    def answer(req: RecordedRequest) -> Reply:
        text = req.last_user_text
        delay = rng.uniform(0.5, 2.0) if text.startswith("slow") else rng.uniform(0.05, 0.6)
        return Reply(text=text, delay_s=delay)

    return answer


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def _rows(path: Path, sql: str) -> list[dict[str, Any]]:
    with contextlib.closing(_db(path)) as conn:
        return [dict(r) for r in conn.execute(sql)]


async def _post_run(client: httpx.AsyncClient, agent: str, message: str, got: list[int]) -> None:
    # a kill may land while the request is in flight: then the run may or may not exist,
    # and the checks below cover every row the database holds either way
    with contextlib.suppress(httpx.HTTPError):
        r = await client.post(f"/api/agents/{agent}/run", json={"message": message})
        if r.status_code == 202:
            got.append(int(r.json()["run_id"]))


async def _settled(db: Path) -> bool:
    runs = _rows(db, "SELECT COUNT(*) AS n FROM runs WHERE status IN ('queued', 'running')")
    rows = _rows(
        db,
        "SELECT COUNT(*) AS n FROM outbox WHERE status IN ('pending', 'sending')"
        " OR (status = 'unknown' AND asked_at IS NULL)",  # an unknown row: its card sent
    )
    return runs[0]["n"] == 0 and rows[0]["n"] == 0


@pytest.mark.timeout(900)
async def test_kill_9_at_random_points_loses_no_run_and_no_message(
    fake_llm: FakeLLM, hook: FakeReceiver, tg: FakeTelegram, tmp_path: Path, log_dir: Path
) -> None:
    rng = random.Random(SEED)
    fake_llm.default = _latency(random.Random(SEED + 1))
    # the receiver answers after a random pause: some kills land between its receipt
    # and the confirmation
    hook.script("/hook", *(Answer(delay_s=rng.uniform(0.0, 0.4)) for _ in range(5000)))
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(
        CONFIG.format(
            hook=hook.url + "/hook",
            ollama=fake_llm.base_url("ollama"),
            chat_quick=CHAT_QUICK,
            chat_slow=CHAT_SLOW,
            more_tickers=MORE_TICKERS,
        ),
        encoding="utf-8",
    )
    db = tmp_path / "drill.db"
    env = clean_env(
        cfg,
        db,
        OPENCLAW_GATEWAY_TOKEN=secrets.GATEWAY_TOKEN,
        TELEGRAM_BOT_TOKEN=secrets.TELEGRAM_TOKEN,
        TELEGRAM_API_BASE=tg.url,
    )
    stderr = log_dir / "crash_drills.serve.log"
    accepted: list[int] = []
    # receipts are tagged with the process ("epoch") that sent them; after each kill the
    # confirmed rows are read from the database the dead process left behind
    hook_marks: list[int] = []
    tg_marks: list[int] = []
    confirmed_after: list[set[int]] = []
    kills = 0

    async def serve() -> Served:
        return await start_serve(env, stderr_path=stderr)

    for cycle in range(KILLS):
        served = await serve()
        try:
            async with httpx.AsyncClient(
                base_url=served.url,
                timeout=5,
                headers={"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"},
            ) as client:
                posts = [
                    _post_run(client, agent, f"c{cycle}-{i}", accepted)
                    for i, agent in enumerate(
                        rng.choice(["quick", "quick", "slow"]) for _ in range(rng.randint(2, 4))
                    )
                ]
                # the kill lands at a random moment: during the requests, mid-run, mid-send
                delay = rng.uniform(0.0, 2.5)
                sends = asyncio.gather(*posts)
                try:
                    await asyncio.sleep(delay)
                    assert await served.stop(signal.SIGKILL) == -signal.SIGKILL
                    kills += 1
                finally:
                    await sends  # each request ends: answered, or cut off by the kill
        finally:
            await served.stop(signal.SIGKILL)
        # What the dead process had sent reaches the fakes: bytes still in the kernel's
        # buffers signal nothing when they are read, so a short grace it is (a receipt
        # read after it would count as the next process's).
        await asyncio.sleep(0.2)
        hook_marks.append(len(hook.at("/hook")))
        tg_marks.append(len(tg.sent()))
        confirmed_after.append(
            {r["id"] for r in _rows(db, "SELECT id FROM outbox WHERE status = 'delivered'")}
        )

    # the last process: no new work, everything left behind must settle
    served = await serve()
    try:
        recovered = [line for line in served.lines if line.startswith("Recovered:")]
        await until(
            lambda: _settled(db),
            timeout_s=SETTLE_S,
            what=lambda: (
                f"settled: {_rows(db, 'SELECT id, status, trigger FROM runs')} "
                f"{_rows(db, 'SELECT id, target, status, next_attempt_at FROM outbox')}"
            ),
            every_s=0.2,  # each check opens the database twice, in this loop
        )
    finally:
        assert await served.stop() == 0
    assert kills == KILLS

    runs = {r["id"]: r for r in _rows(db, "SELECT * FROM runs ORDER BY id")}
    outbox = _rows(db, "SELECT * FROM outbox ORDER BY id")
    agents = {"quick", "slow", *TICKERS}
    targets = {
        "quick": {"webhook:hook", f"telegram:{CHAT_QUICK}"},
        "slow": {"webhook:hook", f"telegram:{CHAT_SLOW}"},
        "ticker": {"webhook:hook"},
    } | {name: {"webhook:hook", f"telegram:{CHAT_QUICK}"} for name in TICKERS[1:]}
    if FULL:  # two minutes of drills cross a minute boundary: scheduled runs were hit too
        assert any(r["trigger"] == "schedule" for r in runs.values())

    # -- runs: none lost ------------------------------------------------------------------
    assert set(accepted) <= set(runs), "an accepted run has no row"
    retries = defaultdict(list)
    for run in runs.values():
        if run["trigger"] == "recovery":
            retries[run["parent_run"]].append(run)
    for run in runs.values():
        assert run["agent"] in agents
        assert run["status"] in ("ok", "late", "missed", "interrupted"), run
        if run["status"] == "interrupted":
            # it had started: a run that a kill found still waiting is queued again as is
            assert run["started_at"] is not None, run
            depth, parent = 0, run
            while parent["trigger"] == "recovery":
                depth, parent = depth + 1, runs[parent["parent_run"]]
            if depth < MAX_RECOVERIES:  # beyond that, the crash-loop guard gives up
                assert len(retries[run["id"]]) == 1, f"run {run['id']} interrupted, not retried"
        if run["status"] == "missed":
            assert run["agent"] in TICKERS and run["trigger"] == "schedule"
    for parent, children in retries.items():
        assert len(children) == 1, f"run {parent} retried {len(children)} times"
        assert runs[parent]["status"] == "interrupted"

    # -- outbox: every finished run's messages exist and are delivered ---------------------
    by_run: defaultdict[int, set[str]] = defaultdict(set)
    for row in outbox:
        if row["kind"] == "alert":  # none expected: each unknown row's card reached the admin
            raise AssertionError(f"an alert: {row}")
        unknown_ok = row["status"] == "unknown" and row["target"].startswith("telegram:")
        assert row["status"] == "delivered" or unknown_ok, row
        assert row["kind"] == "result", row
        assert row["target"] not in by_run[row["run_id"]], f"two rows for {row}"
        by_run[row["run_id"]].add(row["target"])
    for run in runs.values():
        expected = targets[run["agent"]] if run["status"] in ("ok", "late") else set()
        assert by_run.get(run["id"], set()) == expected, f"run {run['id']} {run['status']}"

    # -- receipts: each row received, never again once confirmed ---------------------------
    row_of_hook = {
        (r["run_id"], r["target"]): r["id"] for r in outbox if r["target"] == "webhook:hook"
    }
    row_of_tg = {(r["target"], r["body"]): r["id"] for r in outbox if r["target"] != "webhook:hook"}
    epochs: defaultdict[int, list[int]] = defaultdict(list)  # row id → epochs it arrived in
    for i, rec in enumerate(hook.at("/hook")):
        key = (rec.body["run_id"], rec.body["target"])
        assert key in row_of_hook, f"the receiver got a message no row holds: {rec.body}"
        epochs[row_of_hook[key]].append(sum(1 for m in hook_marks if m <= i))
    cards = [m for m in tg.sent() if "may not have arrived" in m["text"]]
    unknown = [r for r in outbox if r["status"] == "unknown"]
    # each unknown row has its card (a second one only if a kill landed between the card
    # and its record), and each card is an unknown row's
    for row in unknown:
        assert any(f"#{row['id']} to " in c["text"] for c in cards), row
    for c in cards:
        assert any(f"#{row['id']} to " in c["text"] for row in unknown), c
    for i, sent in enumerate(tg.sent()):
        if sent in cards:
            continue
        key = (f"telegram:{sent['chat_id']}", sent["text"])
        assert key in row_of_tg, f"Telegram got a message no row holds: {sent}"
        epochs[row_of_tg[key]].append(sum(1 for m in tg_marks if m <= i))
    resent = 0
    for row in outbox:
        seen = epochs[row["id"]]
        if row["status"] == "unknown":  # it may or may not have arrived; never twice
            assert len(seen) <= 1, f"unknown row {row['id']} sent {len(seen)} times"
            continue
        assert seen, f"row {row['id']} ({row['target']}) is delivered but never arrived"
        assert len(seen) == len(set(seen)), f"row {row['id']} sent twice by one process"
        first_confirmed = next(
            (k for k, done in enumerate(confirmed_after) if row["id"] in done), None
        )
        if first_confirmed is not None:
            late = [e for e in seen if e > first_confirmed]
            assert not late, f"row {row['id']} confirmed before kill {first_confirmed}, resent"
        resent += len(seen) - 1
    print(
        f"\n{KILLS} kills: {len(runs)} runs "
        f"({sum(r['trigger'] == 'recovery' for r in runs.values())} recoveries, "
        f"{sum(r['trigger'] == 'recovery' and r['status'] == 'interrupted' for r in runs.values())}"
        " of them interrupted again, "
        f"{sum(len(v) > 0 for v in retries.values())} runs retried, "
        f"{sum(r['status'] == 'missed' for r in runs.values())} missed), {len(outbox)} "
        f"messages, {resent} re-sent after a kill between send and confirmation, "
        f"{len(unknown)} unknown (asked, not re-sent); "
        f"{json.dumps(recovered)}"
    )
