"""Per-agent state that outlives a process: last fire, failure streak, disabled flag."""

from __future__ import annotations

from dataclasses import dataclass

from core.store.sqlite import Store


@dataclass(frozen=True, slots=True)
class AgentState:
    agent: str
    last_fire: str | None = None
    consecutive_failures: int = 0
    disabled: bool = False
    disabled_reason: str | None = None


class AgentStates:
    """Reads and updates ``agent_state`` rows (created on first write)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, agent: str) -> AgentState:
        """The agent's state (defaults if never written)."""
        rows = await self.store.fetchall(
            "SELECT agent, last_fire, consecutive_failures, disabled, disabled_reason"
            " FROM agent_state WHERE agent = ?",
            (agent,),
        )
        if not rows:
            return AgentState(agent)
        r = rows[0]
        return AgentState(r[0], r[1], int(r[2]), bool(r[3]), r[4])

    async def set_last_fire(self, agent: str, when: str) -> None:
        """Remember the newest scheduled fire that was handled (run or recorded missed)."""
        await self.store.execute(*self.last_fire_statement(agent, when))

    @staticmethod
    def last_fire_statement(agent: str, when: str) -> tuple[str, tuple[str, str]]:
        """The write of :meth:`set_last_fire`, to commit with the run it starts."""
        return (
            "INSERT INTO agent_state (agent, last_fire) VALUES (?, ?)"
            " ON CONFLICT (agent) DO UPDATE SET last_fire = excluded.last_fire",
            (agent, when),
        )

    async def record_result(self, agent: str, ok: bool) -> int:
        """Reset or extend the failure streak; returns the streak after this run."""
        if ok:
            await self.store.execute(
                "INSERT INTO agent_state (agent, consecutive_failures) VALUES (?, 0)"
                " ON CONFLICT (agent) DO UPDATE SET consecutive_failures = 0",
                (agent,),
            )
            return 0
        await self.store.execute(
            "INSERT INTO agent_state (agent, consecutive_failures) VALUES (?, 1)"
            " ON CONFLICT (agent) DO UPDATE SET"
            " consecutive_failures = agent_state.consecutive_failures + 1",
            (agent,),
        )
        return (await self.get(agent)).consecutive_failures

    async def set_disabled(self, agent: str, disabled: bool, reason: str | None = None) -> None:
        """Disable (with why) or re-enable an agent; re-enabling clears the failure streak."""
        await self.store.execute(
            "INSERT INTO agent_state (agent, disabled, disabled_reason) VALUES (?, ?, ?)"
            " ON CONFLICT (agent) DO UPDATE SET disabled = excluded.disabled,"
            " disabled_reason = excluded.disabled_reason,"
            " consecutive_failures = CASE WHEN excluded.disabled = 0 THEN 0"
            " ELSE agent_state.consecutive_failures END",
            (agent, int(disabled), reason if disabled else None),
        )
