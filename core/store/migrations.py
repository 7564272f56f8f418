"""The numbered migrations of both engines, applied in order, each once (in a transaction
of its own, recorded in ``schema_migrations``).

Each is DDL written once in a portable dialect, which is SQLite's as it has always been
written here (so a SQLite file migrated before this module existed has the very same
schema): ``INTEGER PRIMARY KEY`` for a table's id, ``INTEGER``, ``REAL``, ``TEXT``, string
defaults in single quotes. An engine translates what differs in its own module:
:func:`core.store.sqlite.translate_ddl` keeps it as it is,
:func:`core.store.postgres.translate_ddl` makes the id an identity column and widens the
types (``BIGINT``, ``DOUBLE PRECISION``).

Money and cost (``cost_usd``, ``amount_usd``, ``estimated_cost_usd``, ``threshold``) are
double precision on both engines, decided: SQLite's REAL already is an 8-byte double, so
both hold the same values; NUMERIC would come back from PostgreSQL as ``Decimal`` and
break the float arithmetic of budgets and the ledger (``Decimal + float`` raises); and a
cost is a sum of at most a few thousand values of a few cents, far from a double's 15-16
significant digits. A 4-byte ``real`` is never used.

Migrations take a :class:`DDL` (one ``execute`` of a statement, translated on the way)
and nothing else: no data, no engine's own SQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class DDL(Protocol):
    """Where a migration's statements go: the engine translates and runs each."""

    async def execute(self, sql: str) -> None:
        """Run one DDL statement of the portable dialect."""
        ...


Migration = Callable[[DDL], Awaitable[None]]


async def _m001_attempts(db: DDL) -> None:
    await db.execute(
        """CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            request_id TEXT NOT NULL,
            run_id TEXT,
            agent TEXT,
            task TEXT,
            min_tier INTEGER NOT NULL,
            tier INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            status INTEGER,
            latency_ms REAL NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            streamed INTEGER NOT NULL DEFAULT 0
        )"""
    )
    await db.execute("CREATE INDEX attempts_ts ON attempts (ts)")
    await db.execute("CREATE INDEX attempts_request ON attempts (request_id)")


async def _m002_attempts_caller(db: DDL) -> None:
    await db.execute("ALTER TABLE attempts ADD COLUMN caller TEXT")


async def _m003_agents(db: DDL) -> None:
    await db.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            agent TEXT NOT NULL,
            trigger TEXT NOT NULL,
            parent_run INTEGER,
            status TEXT NOT NULL,
            scheduled_for TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            session_id TEXT,
            message TEXT,
            output TEXT,
            error TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            route TEXT,
            owner TEXT
        )"""
    )
    await db.execute("CREATE INDEX runs_agent ON runs (agent, id)")
    await db.execute("CREATE INDEX runs_status ON runs (status)")
    await db.execute(
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            agent TEXT,
            run_id INTEGER,
            parent_id TEXT,
            mode TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    await db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            ts TEXT NOT NULL
        )"""
    )
    await db.execute("CREATE INDEX messages_session ON messages (session_id, id)")
    await db.execute(
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            external_id TEXT,
            created_at TEXT NOT NULL,
            delivered_at TEXT,
            claimed_by TEXT,
            claimed_at TEXT
        )"""
    )
    await db.execute("CREATE INDEX outbox_due ON outbox (status, next_attempt_at)")
    await db.execute(
        """CREATE TABLE agent_state (
            agent TEXT PRIMARY KEY,
            last_fire TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            disabled INTEGER NOT NULL DEFAULT 0,
            disabled_reason TEXT
        )"""
    )


async def _m004_approvals(db: DDL) -> None:
    await db.execute(
        """CREATE TABLE approvals (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            run_id TEXT,
            agent TEXT,
            caller TEXT,
            task TEXT,
            tier INTEGER NOT NULL,
            model TEXT NOT NULL,
            reason TEXT NOT NULL,
            estimated_cost_usd REAL NOT NULL,
            preview TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            decided_by TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            decided_at TEXT,
            messages TEXT NOT NULL DEFAULT '[]'
        )"""
    )
    await db.execute("CREATE INDEX approvals_status ON approvals (status)")


async def _m005_budgets(db: DDL) -> None:
    await db.execute(
        """CREATE TABLE reservations (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            tier INTEGER NOT NULL,
            model TEXT NOT NULL,
            agent TEXT,
            amount_usd REAL NOT NULL
        )"""
    )
    await db.execute(
        """CREATE TABLE budget_alerts (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            threshold REAL NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (scope, period, threshold)
        )"""
    )


async def _m006_attempts_cached_tokens(db: DDL) -> None:
    await db.execute("ALTER TABLE attempts ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0")


async def _m007_outbox_open_by_target(db: DDL) -> None:
    # the claim picks each target's oldest open row: this index answers that per-target
    # MIN(id) from the index alone (10x faster at 1k pending rows, 2x at 100k)
    await db.execute("CREATE INDEX outbox_open ON outbox (status, target, id)")


async def _m008_attempts_in_flight(db: DDL) -> None:
    # a call is a 'pending' row before it leaves; the owner tells recovery whose it was
    await db.execute("ALTER TABLE attempts ADD COLUMN owner TEXT")
    await db.execute("CREATE INDEX attempts_pending ON attempts (id) WHERE outcome = 'pending'")


async def _m009_attempts_tool_calls(db: DDL) -> None:
    # the tool calls a model asked for in the attempt (an answer that is only tool calls
    # has no text, and a run's tool loop is counted by them)
    await db.execute("ALTER TABLE attempts ADD COLUMN tool_calls INTEGER NOT NULL DEFAULT 0")


async def _m010_runs_quiet(db: DDL) -> None:
    # a run whose answer said NO_REPLY: ok, and nothing was delivered on purpose
    await db.execute("ALTER TABLE runs ADD COLUMN quiet INTEGER NOT NULL DEFAULT 0")


async def _m011_runs_reply_to(db: DDL) -> None:
    # a reply run answers in the chat the reply came from, also after a restart
    await db.execute("ALTER TABLE runs ADD COLUMN reply_to TEXT")


async def _m012_tool_loop(db: DDL) -> None:
    # one row per step of an agent's tool loop: a model turn, or one tool call it asked for
    await db.execute(
        """CREATE TABLE run_steps (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            kind TEXT NOT NULL,
            tier INTEGER,
            model TEXT,
            tool TEXT,
            target TEXT NOT NULL DEFAULT '',
            call_id TEXT,
            arguments TEXT,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            size INTEGER NOT NULL DEFAULT 0,
            excerpt TEXT NOT NULL DEFAULT '',
            latency_ms REAL NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            ts TEXT NOT NULL
        )"""
    )
    await db.execute("CREATE INDEX run_steps_run ON run_steps (run_id, id)")
    # a session of a tool loop holds assistant tool calls and tool results: a reply run
    # that continues it must send them back as they were
    await db.execute("ALTER TABLE messages ADD COLUMN tool_calls TEXT")
    await db.execute("ALTER TABLE messages ADD COLUMN tool_call_id TEXT")
    await db.execute("ALTER TABLE messages ADD COLUMN name TEXT")
    # remember/recall: a per-agent memory that outlives runs and restarts
    await db.execute(
        """CREATE TABLE agent_memory (
            agent TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            run_id INTEGER,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (agent, key)
        )"""
    )


async def _m013_approvals_tool(db: DDL) -> None:
    # an agent's operator tool call, approved like an escalation (tool NULL: an escalation)
    await db.execute("ALTER TABLE approvals ADD COLUMN tool TEXT")
    await db.execute("ALTER TABLE approvals ADD COLUMN arguments TEXT NOT NULL DEFAULT ''")


async def _m014_cluster(db: DDL) -> None:
    # several instances on one database (issue 17). A scheduled fire, a catch-up's missed
    # record and a recovery of an interrupted run each carry a key no second row may
    # share, so two schedulers (a leader and a frozen one it replaced) cannot run one fire
    # twice and one interruption is retried once: "fire:AGENT@TIME", "missed:AGENT@TIME",
    # "recovery:PARENT". NULL for every other run (NULLs never collide), and for the rows
    # written before this migration, which may repeat one (nothing is rewritten)
    await db.execute("ALTER TABLE runs ADD COLUMN dedupe_key TEXT")
    await db.execute("CREATE UNIQUE INDEX runs_dedupe_key ON runs (dedupe_key)")
    # the instance a pending approval's run waits on: only a dead one's are abandoned
    await db.execute("ALTER TABLE approvals ADD COLUMN owner TEXT")
    # one row per instance that ran serve: its heartbeat, and which one leads (the lock
    # is the truth; the row is what status shows and what a follower judges staleness by)
    await db.execute(
        """CREATE TABLE instances (
            owner TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,
            leader INTEGER NOT NULL DEFAULT 0,
            leader_since TEXT,
            stopped_at TEXT
        )"""
    )
    # Telegram updates taken through the webhook, by update_id: one redelivered to
    # another instance behind the load balancer is answered 200 and not handled again
    await db.execute(
        """CREATE TABLE telegram_updates (
            update_id INTEGER NOT NULL PRIMARY KEY,
            received_at TEXT NOT NULL,
            owner TEXT NOT NULL
        )"""
    )


async def _m015_outbox_unknown(db: DDL) -> None:
    # a row whose claim expired while sending is 'unknown' (status is free text: no
    # constraint to change); asked_at: when the admins were shown it (so a restart asks
    # once, not again); note: who settled it by hand (an admin's "Mark delivered")
    await db.execute("ALTER TABLE outbox ADD COLUMN asked_at TEXT")
    await db.execute("ALTER TABLE outbox ADD COLUMN note TEXT")


async def _m016_reports(db: DDL) -> None:
    # reports sent, by name (``daily:2026-12-03``): one per day however many instances
    # or restarts try, recorded with its outbox rows
    await db.execute(
        """CREATE TABLE reports (
            name TEXT NOT NULL PRIMARY KEY,
            sent_at TEXT NOT NULL
        )"""
    )
    # the schedule report joins a period's fires with the runs made for them
    await db.execute("CREATE INDEX runs_scheduled_for ON runs (scheduled_for)")


async def _m018_attempts_trial(db: DDL) -> None:
    # 1: the request was started one tier lower by its task's trial ([tasks.NAME] trial),
    # so `openclaw tune` measures the lower tier on those rows apart from the others
    await db.execute("ALTER TABLE attempts ADD COLUMN trial INTEGER NOT NULL DEFAULT 0")


async def _m017_drills(db: DDL) -> None:
    # failure drills (``openclaw drill``): one row per drill, its measurements as a JSON
    # report written while it runs and when the model is healthy again
    await db.execute(
        """CREATE TABLE drills (
            id INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            fault TEXT NOT NULL,
            duration_s REAL NOT NULL,
            max_requests INTEGER,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            end_reason TEXT,
            owner TEXT,
            report TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    # the drill an attempt was faulted by: such rows are left out of usage, cost, savings,
    # budgets and what-if (they never reached the provider)
    await db.execute("ALTER TABLE attempts ADD COLUMN drill INTEGER")


async def _m019_agent_state_schedule(db: DDL) -> None:
    # the schedule (cron, timezone, top-of-hour offset) the scheduler last started the
    # agent with, and since when: the schedule report expects no fire from before it (an
    # agent added mid-day, a fresh database, a changed cron). A row from before this has
    # neither: its fires are expected as they were until the scheduler next starts
    await db.execute("ALTER TABLE agent_state ADD COLUMN schedule_key TEXT")
    await db.execute("ALTER TABLE agent_state ADD COLUMN schedule_since TEXT")


async def _m020_approvals_leader(db: DDL) -> None:
    # several instances: the leader alone shows approvals and closes their copies.
    # shown_by: the instance that claimed showing a pending one (NULL: nobody yet);
    # closed: 1 once an instance claimed closing the copies of a decided one. Rows from
    # before were closed by whoever decided them, hence the default (inserts give 0).
    await db.execute("ALTER TABLE approvals ADD COLUMN shown_by TEXT")
    await db.execute("ALTER TABLE approvals ADD COLUMN closed INTEGER NOT NULL DEFAULT 1")
    await db.execute("CREATE INDEX approvals_closed ON approvals (closed)")


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_attempts", _m001_attempts),
    ("002_attempts_caller", _m002_attempts_caller),
    ("003_agents", _m003_agents),
    ("004_approvals", _m004_approvals),
    ("005_budgets", _m005_budgets),
    ("006_attempts_cached_tokens", _m006_attempts_cached_tokens),
    ("007_outbox_open_by_target", _m007_outbox_open_by_target),
    ("008_attempts_in_flight", _m008_attempts_in_flight),
    ("009_attempts_tool_calls", _m009_attempts_tool_calls),
    ("010_runs_quiet", _m010_runs_quiet),
    ("011_runs_reply_to", _m011_runs_reply_to),
    ("012_tool_loop", _m012_tool_loop),
    ("013_approvals_tool", _m013_approvals_tool),
    ("014_cluster", _m014_cluster),
    ("015_outbox_unknown", _m015_outbox_unknown),
    ("016_reports", _m016_reports),
    ("017_drills", _m017_drills),
    ("018_attempts_trial", _m018_attempts_trial),
    ("019_agent_state_schedule", _m019_agent_state_schedule),
    ("020_approvals_leader", _m020_approvals_leader),
]
