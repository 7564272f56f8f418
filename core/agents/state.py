"""Per-agent state that outlives a process: last fire, failure streak, disabled flag."""

from __future__ import annotations

from dataclasses import dataclass

from core.store.base import Store, Transaction


@dataclass(frozen=True, slots=True)
class AgentState:
    agent: str
    last_fire: str | None = None
    consecutive_failures: int = 0
    disabled: bool = False
    disabled_reason: str | None = None
    # the schedule the scheduler last started the agent with (see core.agents.scheduler.
    # schedule_key) and since when it has had it: no fire before that is expected
    schedule_key: str | None = None
    schedule_since: str | None = None


class AgentStates:
    """Reads and updates ``agent_state`` rows (created on first write)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, agent: str) -> AgentState:
        """The agent's state (defaults if never written)."""
        rows = await self.store.fetchall(
            "SELECT agent, last_fire, consecutive_failures, disabled, disabled_reason,"
            " schedule_key, schedule_since FROM agent_state WHERE agent = ?",
            (agent,),
        )
        if not rows:
            return AgentState(agent)
        r = rows[0]
        return AgentState(r[0], r[1], int(r[2]), bool(r[3]), r[4], r[5], r[6])

    async def set_last_fire(self, tx: Transaction, agent: str, when: str) -> None:
        """Remember, in ``tx``, the newest scheduled fire that was handled (run or recorded
        missed): with the run it starts, or a crash between the two loses the fire."""
        await tx.execute(
            "INSERT INTO agent_state (agent, last_fire) VALUES (?, ?)"
            " ON CONFLICT (agent) DO UPDATE SET last_fire = excluded.last_fire",
            (agent, when),
        )

    async def set_schedule(self, tx: Transaction, agent: str, key: str, since: str | None) -> None:
        """Remember, in ``tx``, the schedule the scheduler starts the agent with and since
        when its fires are expected (None: as far back as asked)."""
        await tx.execute(
            "INSERT INTO agent_state (agent, schedule_key, schedule_since) VALUES (?, ?, ?)"
            " ON CONFLICT (agent) DO UPDATE SET schedule_key = excluded.schedule_key,"
            " schedule_since = excluded.schedule_since",
            (agent, key, since),
        )

    async def record_result(self, agent: str, ok: bool) -> int:
        """Reset or extend the failure streak; returns the streak after this run."""
        if ok:
            async with self.store.transaction() as tx:
                await tx.execute(
                    "INSERT INTO agent_state (agent, consecutive_failures) VALUES (?, 0)"
                    " ON CONFLICT (agent) DO UPDATE SET consecutive_failures = 0",
                    (agent,),
                )
            return 0
        async with self.store.transaction() as tx:
            (row,) = await tx.fetchall(
                "INSERT INTO agent_state (agent, consecutive_failures) VALUES (?, 1)"
                " ON CONFLICT (agent) DO UPDATE SET"
                " consecutive_failures = agent_state.consecutive_failures + 1"
                " RETURNING consecutive_failures",
                (agent,),
            )
        return int(row[0])

    async def set_disabled(self, agent: str, disabled: bool, reason: str | None = None) -> None:
        """Disable (with why) or re-enable an agent; re-enabling clears the failure streak."""
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO agent_state (agent, disabled, disabled_reason) VALUES (?, ?, ?)"
                " ON CONFLICT (agent) DO UPDATE SET disabled = excluded.disabled,"
                " disabled_reason = excluded.disabled_reason,"
                " consecutive_failures = CASE WHEN excluded.disabled = 0 THEN 0"
                " ELSE agent_state.consecutive_failures END",
                (agent, int(disabled), reason if disabled else None),
            )
