"""Agent runs: inputs → subagents → prompt → engine → validators → outbox.

Every trigger (schedule, chat, CLI, API, rerun) goes through ``AgentRunner``:
a queued run row first, then an agent slot, a fresh session, and the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import aiohttp

from core.agents.inputs.base import InputError
from core.agents.inputs.gather import gather_inputs
from core.agents.loop import LoopStopped, ToolLoop
from core.agents.memory import Memory
from core.agents.runs import AlreadyExists, Run, Runs, Status, Trigger
from core.agents.sessions import Sessions, child_session_id, session_id
from core.agents.state import AgentStates
from core.agents.steps import RunSteps, Step
from core.agents.templating import TemplateError, Templates
from core.agents.tools.base import ToolContext, ToolFailure
from core.agents.tools.registry import build_tools
from core.agents.verdicts import Verdict, verdict
from core.config.agents import AgentConfig
from core.config.models import Config
from core.delivery.outbox import Outbox, OutboxRow
from core.engine.engine import Engine, Result
from core.errors import AllAttemptsFailed, OpenClawError, RoutingError, StoreUnavailable
from core.ops.backoff import Backoff
from core.ops.logs import RUN_ID
from core.store.base import Store, Transaction
from core.store.times import utcnow_iso
from core.suggest import close_matches
from core.types import ChatRequest, Message

log = logging.getLogger("openclaw.agents")
T = TypeVar("T")
# a run interrupted again and again (a crash loop it may cause itself) stops being retried
MAX_RECOVERIES = 3
ADOPT_BATCH = 10  # queued runs taken per claim
# a run's record that the store cannot take (the database is down) is tried again this
# often at most, as long as the process lives: the work done is not thrown away
RECORD_RETRY_CAP_S = 15.0


class AgentError(OpenClawError):
    """An agent run cannot go on; the message is what the run record says."""


class UnknownAgent(OpenClawError):
    """No agent by that name; the message lists the closest names."""


def resolve_path(context: dict[str, Any], path: str) -> Any:
    """``"inputs.feeds"`` → ``context["inputs"]["feeds"]`` (list indices allowed)."""
    node: Any = context
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise AgentError(f"subagents.over: {path!r} does not resolve (no {part!r})")
    return node


class AgentRunner:
    """Runs agents with bounded concurrency; the one entry point for every trigger."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        engine: Engine,
        runs: Runs,
        states: AgentStates,
        sessions: Sessions,
        outbox: Outbox,
        templates: Templates,
        http: Callable[[], aiohttp.ClientSession],
        owner: str,
        base_dir: Any,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        steps: RunSteps | None = None,
        memory: Memory | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock  # recovery's window and the prompt's ``now``
        self.engine = engine
        self.runs = runs
        self.states = states
        self.sessions = sessions
        self.outbox = outbox
        self.templates = templates
        self.http = http
        self.owner = owner
        self.base_dir = base_dir
        self.agent_slots = asyncio.Semaphore(config.concurrency.agents)
        self.sub_slots = asyncio.Semaphore(config.concurrency.subagents)
        self.waiting = {"agents": 0, "subagents": 0}
        self.in_flight = {"agents": 0, "subagents": 0}
        self.peak = {"agents": 0, "subagents": 0}
        self._shared: dict[str, asyncio.Lock] = {}
        self._tasks: dict[int, asyncio.Task[Run]] = {}  # run id → its task
        self.steps = steps or RunSteps(store, clock)
        self.memory = memory or Memory(store, clock)
        self.secrets = tuple(secrets)  # kept out of recorded tool arguments
        # called with every recorded step of a tool loop (the bot's /run progress)
        self.step_observers: list[Callable[[Step], None]] = []
        self.queued = asyncio.Event()  # set: a run was queued for any instance to adopt
        # a slot of the whole cluster (core.cluster.pg); none beyond this process's by default
        self.cluster_slot: Callable[[str, int], AbstractAsyncContextManager[None]] = (
            lambda kind, limit: contextlib.nullcontext()
        )

    # -- entry points --------------------------------------------------------------

    def agent(self, name: str) -> AgentConfig:
        """The configured agent, or UnknownAgent naming the closest ones."""
        a = self.config.agent(name)
        if a is None:
            names = [x.name for x in self.config.agents]
            close = close_matches(name, names)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else (f"; agents: {', '.join(names)}" if names else "; no agents are configured")
            )
            raise UnknownAgent(f"no agent named {name!r}{hint}")
        return a

    async def run(
        self,
        name: str,
        trigger: Trigger,
        *,
        message: str | None = None,
        parent_run: int | None = None,
        late: bool = False,
    ) -> Run:
        """Create a run owned by this process and carry it out; returns the finished run."""
        _, task = await self.commit_then_launch(
            lambda tx: self.add(tx, name, trigger, message=message, parent_run=parent_run),
            late=late,
        )
        return await asyncio.shield(task)

    async def start(
        self,
        name: str,
        trigger: Trigger,
        *,
        message: str | None = None,
        parent_run: int | None = None,
    ) -> int:
        """Like ``run`` but in the background; returns the run id at once."""
        rid, _ = await self.commit_then_launch(
            lambda tx: self.add(tx, name, trigger, message=message, parent_run=parent_run)
        )
        return rid

    async def commit_then_launch(
        self, write: Callable[[Transaction], Awaitable[int]], *, late: bool = False
    ) -> tuple[int, asyncio.Task[Run]]:
        """Commit the queued run ``write`` adds (with whatever else it writes in the same
        transaction), then start carrying it out: one step a cancelled caller cannot cut in
        two. A caller cancelled mid-commit (a client that hung up, a job stopped) would
        otherwise leave a committed run queued under this live process, which neither
        adoption (unowned runs only) nor recovery (dead owners only) would ever take."""

        async def step() -> tuple[int, asyncio.Task[Run]]:
            async with self.store.transaction() as tx:
                rid = await write(tx)
            return rid, self.launch(rid, late=late)

        inner = asyncio.create_task(step())
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            # the step goes on; its failure, if any, is logged rather than lost
            inner.add_done_callback(_log_step_failure)
            raise

    async def add(
        self,
        tx: Transaction,
        name: str,
        trigger: Trigger,
        *,
        message: str | None = None,
        parent_run: int | None = None,
        scheduled_for: str | None = None,
        dedupe_key: str | None = None,
    ) -> int:
        """A queued run of agent ``name`` owned by this process, written in ``tx`` (with
        what must not exist without it: a scheduler's record of the fire); once ``tx``
        committed, :meth:`follow` or :meth:`launch` carries it out. ``dedupe_key``: see
        :meth:`Runs.create` (raises AlreadyExists)."""
        self.agent(name)
        return await self.runs.create(
            tx,
            name,
            trigger,
            message=message,
            parent_run=parent_run,
            scheduled_for=scheduled_for,
            owner=self.owner,
            dedupe_key=dedupe_key,
        )

    async def follow(self, run_id: int, *, late: bool = False) -> Run:
        """Carry out a run :meth:`add` wrote; returns it finished.

        The run is a tracked task, so shutdown waits for it (or interrupts it) even when
        whoever awaited it here (a scheduler job, a request) has gone away."""
        return await asyncio.shield(self.launch(run_id, late=late))

    def launch(self, run_id: int, *, late: bool = False) -> asyncio.Task[Run]:
        """Carry out a run :meth:`add` wrote, in the background (a tracked task)."""
        task = asyncio.create_task(self.execute(run_id, late=late))
        self._track(run_id, task)
        return task

    async def queue(self, name: str, trigger: Trigger, *, message: str | None = None) -> int:
        """A queued run no process owns yet: a running serve's adoption loop takes it."""
        self.agent(name)
        async with self.store.transaction() as tx:
            return await self.runs.create(tx, name, trigger, message=message)

    async def rerun(self, run_id: int, trigger: Trigger = Trigger.RERUN) -> int:
        """Start a new run of the same agent with the same message, linked to the old one."""
        old = await self.runs.get(run_id)
        if old is None:
            raise AgentError(f"no run {run_id}")
        return await self.start(old.agent, trigger, message=old.message, parent_run=run_id)

    async def reply(self, target: str, external_id: str, text: str) -> int | None:
        """Someone answered the message a run delivered to ``target`` as ``external_id``
        (one of the ids the channel confirmed): start a child run of that agent that
        continues the run's session with ``text``, its result delivered to ``target``
        only. None: no run's result was delivered there as that message."""
        rows = await self.store.fetchall(
            "SELECT run_id FROM outbox WHERE target = ? AND kind = 'result'"
            " AND status = 'delivered' AND run_id IS NOT NULL"
            " AND (',' || external_id || ',') LIKE ? ORDER BY id DESC LIMIT 1",
            (target, f"%,{external_id},%"),
        )
        parent = await self.runs.get(int(rows[0][0])) if rows else None
        if parent is None:
            return None

        async def write(tx: Transaction) -> int:
            rid = await self.add(
                tx, parent.agent, Trigger.REPLY, message=text, parent_run=parent.id
            )
            # in the run's row: a run recovered after a restart still answers there
            await tx.execute("UPDATE runs SET reply_to = ? WHERE id = ?", (target, rid))
            return rid

        rid, _ = await self.commit_then_launch(write)
        return rid

    async def adopt_unclaimed(self) -> int:
        """Take queued runs no process owns (queued by another process); returns how many."""
        taken = 0
        while True:
            batch = await self.runs.claim_queued(self.owner, ADOPT_BATCH)
            for rid in batch:
                self.launch(rid)
            taken += len(batch)
            if len(batch) < ADOPT_BATCH:
                return taken

    async def recover(self) -> list[int]:
        """At start: runs a dead process left running become ``interrupted`` (those it
        left queued, never started, are queued again unowned); then every recently
        interrupted run (by a crash or a shutdown's grace running out) is queued again
        (trigger ``recovery``, linked to it) if its agent allows and the same work was not
        already retried ``MAX_RECOVERIES`` times. Returns the new run ids (queued and
        unowned: the adoption loop takes them)."""
        for run in await self.runs.orphans(self.owner):
            # never started: nothing was interrupted, so it simply waits its turn again
            if run.status == Status.QUEUED and await self.runs.release(run.id, str(run.owner)):
                continue
            await self._finish_alone(
                run.id,
                Status.INTERRUPTED,
                error="the process running it stopped before it finished",
            )
        since = utcnow_iso(self.clock() - timedelta(seconds=self.config.serve.recover_within_s))
        requeued = []
        for run in await self.runs.interrupted_without_retry(since):
            agent = self.config.agent(run.agent)
            if agent is None or not agent.retry_interrupted:
                continue
            if await self._recoveries(run) >= MAX_RECOVERIES:
                log.warning(
                    "run %s: interrupted %d times in a row; not retried", run.id, 1 + MAX_RECOVERIES
                )
                continue
            try:
                async with self.store.transaction() as tx:
                    rid = await self.runs.create(
                        tx,
                        run.agent,
                        Trigger.RECOVERY,
                        parent_run=run.id,
                        message=run.message,
                        scheduled_for=run.scheduled_for,
                        dedupe_key=f"recovery:{run.id}",
                    )
            except AlreadyExists:  # another instance's recovery retried it just now
                continue
            requeued.append(rid)
        return requeued

    async def _recoveries(self, run: Run) -> int:
        """How many retries after an interruption led to ``run`` (0: it is the original)."""
        depth = 0
        while (
            run.trigger == Trigger.RECOVERY
            and run.parent_run is not None
            and depth < MAX_RECOVERIES
        ):
            parent = await self.runs.get(run.parent_run)
            if parent is None:
                break
            depth, run = depth + 1, parent
        return depth

    async def _finish_alone(self, run_id: int, status: Status, *, error: str) -> None:
        """Record an outcome that comes with no messages."""
        async with self.store.transaction() as tx:
            await self.runs.finish(tx, run_id, status, error=error)

    def _track(self, run_id: int, task: asyncio.Task[Run]) -> None:
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def wait(self, run_id: int, poll_s: float = 0.2) -> Run:
        """The run once it is done: its task when it runs here, else the store."""
        task = self._tasks.get(run_id)
        if task is not None:
            return await asyncio.shield(task)
        while True:
            run = await self.runs.get(run_id)
            if run is None:
                raise AgentError(f"no run {run_id}")
            if run.done:
                return run
            await asyncio.sleep(poll_s)

    async def shutdown(self, grace_s: float) -> None:
        """Let background runs finish for ``grace_s``, then interrupt the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks.values()), timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def queue_depths(self) -> dict[str, int]:
        """Runs and subagent calls waiting for a slot, and in flight."""
        return {
            "agents_waiting": self.waiting["agents"],
            "agents_running": self.in_flight["agents"],
            "subagents_waiting": self.waiting["subagents"],
            "subagents_running": self.in_flight["subagents"],
        }

    # -- one run -------------------------------------------------------------------

    async def execute(self, run_id: int, *, late: bool = False) -> Run:
        """Carry out a run this process owns: slot, session, work, outcome, delivery."""
        RUN_ID.set(str(run_id))  # log lines of this task name the run (the task's own context)
        run = await self._stored(run_id, "reading it", lambda: self.runs.get(run_id))
        if run is None:
            raise AgentError(f"no run {run_id}")
        # also a catch-up run handed back by recovery, which lost the caller's flag
        late = late or run.created_late
        agent = self.config.agent(run.agent)
        if agent is None:
            await self._finish_alone(
                run_id, Status.FAILED, error=f"agent {run.agent!r} is no longer configured"
            )
            return await self._reload(run_id)
        nested = run.trigger == Trigger.AGENT
        slot = (
            self._slot("subagents", self.sub_slots)
            if nested
            else self._slot("agents", self.agent_slots)
        )
        async with slot:
            shared = self._shared.setdefault(agent.name, asyncio.Lock())
            async with shared if agent.session == "shared" else contextlib.nullcontext():
                sid = session_id(agent.name, run_id, agent.session)
                await self._stored(
                    run_id,
                    "opening its session",
                    lambda: self.sessions.open(
                        sid, mode=agent.session, agent=agent.name, run_id=run_id
                    ),
                )
                await self._stored(run_id, "starting it", lambda: self.runs.start(run_id, sid))
                output = route = error = None
                try:
                    async with asyncio.timeout(agent.timeout_s):
                        output, route = await self._work(agent, run, sid)
                except TimeoutError:
                    error = f"timed out after {agent.timeout_s:g}s (the agent's timeout_s)"
                except (
                    AgentError,
                    InputError,
                    AllAttemptsFailed,
                    TemplateError,
                    RoutingError,
                    LoopStopped,
                ) as e:
                    error = str(e)
                except StoreUnavailable as e:
                    # the database went away under it: interrupted, so recovery retries it
                    # (if its agent allows) once the record is written
                    why = f"the store was unavailable: {e}"
                    await self._stored(
                        run_id,
                        "recording the interruption",
                        lambda: self._finish_alone(run_id, Status.INTERRUPTED, error=why),
                    )
                    return await self._stored(run_id, "reading it", lambda: self._reload(run_id))
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(
                            self._finish_alone(
                                run_id, Status.INTERRUPTED, error="stopped before it finished"
                            )
                        )
                    raise
                except Exception as e:  # a bug must still leave a record
                    log.exception("agent %s run %s crashed", agent.name, run_id)
                    error = f"{type(e).__name__}: {e}"
                said = verdict(output) if output and agent.kind != "systemEvent" else Verdict()
                error = error or said.failure
                status = Status.FAILED if error else (Status.LATE if late else Status.OK)
                # the messages are written with the outcome: a crash between the two
                # would leave a finished run whose digest is never sent
                # a run_agent run's answer goes back to the run that asked, not out
                messages = (
                    []
                    if said.quiet or nested
                    else await self._messages(agent, run, status, output, error)
                )

                async def record() -> None:
                    async with self.store.transaction() as tx:
                        await self.runs.finish(
                            tx,
                            run_id,
                            status,
                            output=output,
                            error=error,
                            route=route,
                            quiet=said.quiet and not error,
                        )
                        await self.outbox.add(tx, messages)

                await self._stored(run_id, "recording its outcome", record)
                if messages:
                    self.outbox.notify()
                await self._after(agent, run_id, status, output, error)
        return await self._reload(run_id)

    async def _stored(self, run_id: int, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """``step`` (a read or write of the run's record), tried again while the store is
        unavailable (the database is down or read-only): the run waits for its record
        rather than losing it, or its finished work. Shutdown cancels the wait; the run is
        then left to recovery, as a killed one is."""
        backoff = Backoff(f"run {run_id}: {what}", log, cap_s=RECORD_RETRY_CAP_S)
        while True:
            try:
                result = await step()
            except StoreUnavailable as e:
                await asyncio.sleep(backoff.failed(e))
                continue
            backoff.succeeded()
            return result

    async def _reload(self, run_id: int) -> Run:
        run = await self.runs.get(run_id)
        assert run is not None
        return run

    @contextlib.asynccontextmanager
    async def _slot(self, kind: str, sem: asyncio.Semaphore) -> Any:
        """This process's slot of ``kind``, then (several instances on one database,
        unless ``[concurrency] per_instance``) one of the cluster's."""
        limit = getattr(self.config.concurrency, kind)
        self.waiting[kind] += 1
        try:
            await sem.acquire()
            try:
                cluster_slot = self.cluster_slot(kind, limit)
                await cluster_slot.__aenter__()
            except BaseException:
                sem.release()
                raise
        finally:
            self.waiting[kind] -= 1
        self.in_flight[kind] += 1
        self.peak[kind] = max(self.peak[kind], self.in_flight[kind])
        try:
            yield
        finally:
            self.in_flight[kind] -= 1
            try:
                await cluster_slot.__aexit__(None, None, None)
            finally:
                sem.release()

    async def _context(self, agent: AgentConfig, run: Run) -> dict[str, Any]:
        inputs = {}
        if agent.inputs:
            inputs = await gather_inputs(agent.inputs, session=self.http(), base_dir=self.base_dir)
        return {
            "agent": {"name": agent.name, "description": agent.description, "task": agent.task},
            "now": self.clock().astimezone(ZoneInfo(agent.timezone)),
            "last_run": await self.runs.last_output(agent.name, run.id),
            "message": run.message or "",
            "inputs": inputs,
        }

    async def _render(self, agent: AgentConfig, context: dict[str, Any]) -> str:
        if agent.prompt is not None:
            return await self.templates.render_file(agent.prompt, context)
        assert agent.message is not None
        return self.templates.render_string(agent.message, context, f"agent {agent.name} message")

    async def _work(self, agent: AgentConfig, run: Run, sid: str) -> tuple[str, str | None]:
        if run.trigger == Trigger.REPLY:
            return await self._continue(agent, run, sid)
        context = await self._context(agent, run)
        if agent.subagents is not None:
            context["subresults"] = await self._fan_out(agent, run, sid, context)
        text = await self._render(agent, context)
        if agent.kind == "systemEvent":  # delivered as rendered: no model call
            await self.sessions.append(sid, "system", text)
            return text, None
        if not text.strip():
            raise AgentError("the prompt rendered empty")
        system = (
            self.templates.render_string(agent.system, context, f"agent {agent.name} system")
            if agent.system
            else None
        )
        history = await self.sessions.history(sid) if agent.session == "shared" else []
        user = text + (f"\n\n{run.message}" if run.message and agent.message is None else "")
        messages = (
            ([Message("system", system)] if system else []) + history + [Message("user", user)]
        )
        await self.sessions.append(sid, "user", user)
        return await self._answer(agent, run, sid, tuple(messages))

    async def _answer(
        self, agent: AgentConfig, run: Run, sid: str, messages: tuple[Message, ...]
    ) -> tuple[str, str | None]:
        """The agent's model call for a run, its answer kept in the run's session."""
        if agent.tools:
            result = await self._loop(agent, run, sid, messages)
            return result.content, result.route_header()
        result = await self.engine.complete(
            ChatRequest(
                messages,
                task=agent.task,
                tier=agent.tier,
                max_tokens=agent.max_tokens,
                run_id=str(run.id),
                agent=agent.name,
                keep_lower_on_deny=agent.keep_lower_on_deny,
            ),
            rules=agent.validators,
        )
        await self.sessions.append(sid, "assistant", result.content)
        return result.content, result.route_header()

    async def _loop(
        self, agent: AgentConfig, run: Run, sid: str, messages: tuple[Message, ...]
    ) -> Result:
        """An agent with tools: the tool loop in the run's session."""
        depth = await self._depth(run)

        async def notify(target: str, text: str) -> None:
            await self.outbox.enqueue(
                run.id,
                "notify",
                [target],
                {"agent": agent.name, "run_id": run.id, "status": "notify", "text": text},
            )

        async def run_agent(name: str, message: str) -> str:
            return await self._nested(run, name, message)

        ctx = ToolContext(
            agent.name,
            run.id,
            depth,
            http=self.http,
            base_dir=Path(self.base_dir),
            notify=notify,
            run_agent=run_agent,
        )
        tools = build_tools(agent, self.config, base_dir=Path(self.base_dir), memory=self.memory)
        loop = ToolLoop(
            self.engine,
            self.sessions,
            self.steps,
            approver=self.engine.approver,
            secrets=self.secrets,
            observers=self.step_observers,
        )
        return await loop.run(agent, run.id, sid, messages, tools, ctx)

    async def _depth(self, run: Run) -> int:
        """How many run_agent calls led to ``run`` (0: a trigger started it)."""
        depth = 0
        while run.trigger == Trigger.AGENT and run.parent_run is not None and depth < 10:
            parent = await self.runs.get(run.parent_run)
            if parent is None:
                break
            depth, run = depth + 1, parent
        return depth

    async def _nested(self, parent: Run, name: str, message: str) -> str:
        """A run of agent ``name`` started by ``parent``'s run_agent tool: its final answer,
        or ToolFailure with why it has none. It takes a subagent slot, not an agent slot:
        the parent holds an agent slot while it waits, and two parents waiting for agent
        slots their own children need would wait forever."""
        if self.config.agent(name) is None:
            raise ToolFailure(f"no agent named {name!r}")
        rid, task = await self.commit_then_launch(
            lambda tx: self.add(tx, name, Trigger.AGENT, message=message, parent_run=parent.id)
        )
        child = await asyncio.shield(task)
        if child.status not in (Status.OK, Status.LATE) or child.output is None:
            raise ToolFailure(f"agent {name} (run #{rid}) {child.status}: {child.error or ''}")
        return child.output

    async def _continue(self, agent: AgentConfig, run: Run, sid: str) -> tuple[str, str | None]:
        """A reply run: the parent run's own messages, then the reply, and nothing of any
        other run. The exchange is copied into this run's session, so a reply to this
        run's answer continues the whole conversation."""
        parent = await self.runs.get(run.parent_run) if run.parent_run is not None else None
        psid = parent.session_id if parent is not None else None
        if psid is None or not psid.startswith("cron:"):
            raise AgentError(
                "only an isolated run's answer can be continued by a reply"
                " (a shared session holds every run's messages)"
            )
        history = await self.sessions.history(psid)
        user = Message("user", run.message or "")
        for m in (*history, user):
            await self.sessions.add(sid, m)  # a loop's tool calls and results too
        return await self._answer(agent, run, sid, (*history, user))

    async def _fan_out(
        self, agent: AgentConfig, run: Run, sid: str, context: dict[str, Any]
    ) -> list[dict[str, Any]]:
        sub = agent.subagents
        assert sub is not None
        items = resolve_path(context, sub.over)
        if not isinstance(items, list):
            raise AgentError(
                f"subagents.over: {sub.over!r} is a {type(items).__name__}, not a list"
            )

        async def child(index: int, item: Any) -> dict[str, Any]:
            async with self._slot("subagents", self.sub_slots):
                csid = child_session_id(sid, index)
                await self.sessions.open(
                    csid, mode="child", agent=agent.name, run_id=run.id, parent_id=sid
                )
                try:
                    prompt = self.templates.render_string(
                        sub.prompt,
                        {**context, "item": item, "index": index},
                        f"agent {agent.name} subagents.prompt",
                    )
                    messages = ([Message("system", sub.system)] if sub.system else []) + [
                        Message("user", prompt)
                    ]
                    await self.sessions.append(csid, "user", prompt)
                    result = await self.engine.complete(
                        ChatRequest(
                            tuple(messages),
                            task=sub.task,
                            tier=sub.tier,
                            max_tokens=sub.max_tokens,
                            run_id=str(run.id),
                            agent=agent.name,
                        )
                    )
                except (AllAttemptsFailed, TemplateError, RoutingError) as e:
                    return {"index": index, "item": item, "output": None, "error": str(e)}
                await self.sessions.append(csid, "assistant", result.content)
                return {"index": index, "item": item, "output": result.content, "error": None}

        # a TaskGroup: if one child fails unexpectedly, its siblings stop spending too
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(child(i, it)) for i, it in enumerate(items)]
        results = [t.result() for t in tasks]
        if results and all(r["error"] for r in results):
            raise AgentError(f"every subagent failed; the first: {results[0]['error']}")
        return results

    async def _messages(
        self, agent: AgentConfig, run: Run, status: Status, output: str | None, error: str | None
    ) -> list[OutboxRow]:
        """The outbox rows of a successful run, rendered (not yet written); a reply run's go
        only where the reply was made."""
        run_id, reply_to = run.id, run.reply_to
        if error is not None:
            return []
        try:
            return await self.outbox.render_rows(
                run_id,
                "result",
                [reply_to] if reply_to else agent.deliver,
                {"agent": agent.name, "run_id": run_id, "status": status, "text": output or ""},
            )
        except Exception:  # a broken channel template must not lose the run's record
            log.exception("agent %s run %s: rendering its messages failed", agent.name, run_id)
            return []

    async def _after(
        self, agent: AgentConfig, run_id: int, status: Status, output: str | None, error: str | None
    ) -> None:
        if error is None:
            await self.states.record_result(agent.name, True)
            return
        streak = await self.states.record_result(agent.name, False)
        alerts = self.config.alerts
        text = None
        if streak == alerts.failures_before_disable:
            reason = f"disabled after {streak} failures in a row; last: {error}"
            await self.states.set_disabled(agent.name, True, reason)
            text = f"{reason}. Re-enable it from the bot or the API once fixed."
        elif streak == alerts.failures_before_alert:
            text = f"failed {streak} times in a row; last: {error}"
        if text:
            log.warning("agent %s: %s", agent.name, text)
            await self.outbox.enqueue(
                run_id,
                "alert",
                alerts.deliver,
                {"agent": agent.name, "run_id": run_id, "status": "alert", "text": text},
            )


def _log_step_failure(task: asyncio.Task[tuple[int, asyncio.Task[Run]]]) -> None:
    """A commit-then-launch step whose caller was cancelled failed: say so."""
    if not task.cancelled() and task.exception() is not None:
        log.error("queuing a run failed after its caller left", exc_info=task.exception())
