"""Runs a routing plan: calls models in order, fails over, escalates, records every attempt.

Outcomes (see DESIGN.md): ``ok`` answers; ``unavailable`` (refused, timeout, 5xx,
429, malformed) tries the next model, same tier first; ``fatal`` (401/403/404, an
unknown model) does too but opens the breaker for long; ``rejected`` (a 400/413/422
caused by the request itself: a prompt over the context, a parameter out of range)
fails the request and touches no breaker, so one careless caller cannot push everyone
to pricier tiers; ``unusable`` (empty, reasoning spent, validator failed) climbs to the
next tier — after one retry with double the token budget when a thinking model spent it
all on reasoning.

``billing`` (HTTP 402, ``insufficient_quota``, a spent daily quota) means the key has no
credit or quota: the key is out for hours and the admins get one alert per episode. On a
billing answer, and on a 429 from a provider with several keys, the next key of the same
provider is tried before the next model; a run keeps the key that last worked for it, so
the provider's prompt cache stays warm.

Every call is in the ledger before it leaves (a ``pending`` row, turned into its outcome
when it ends): a crash mid-call leaves a row that recovery prices at the worst case, so
usage and budgets never miss a call a provider may bill, and a store that cannot take
the row stops the request before any upstream is paid.

A failure drill (:mod:`core.drills.board`) of a model hands each of its attempts a
ticket: the call goes to the drill server with the adapter's own parsing, its row is
marked with the drill (and costs nothing), and the engine tells the board when the
breaker opened, which alert went out and where the request was answered instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar, cast

from core.config.common import Validators
from core.config.models import Config, split_model_ref
from core.drills.board import DrillBoard
from core.engine.approvals import Approver, PolicyApprover
from core.engine.budget import BudgetGuard, estimate_input_tokens
from core.engine.gate import Gate, asked_for
from core.engine.health import HealthBoard
from core.engine.ledger import Ledger, RequestMeta, price
from core.engine.policy import Ended, Next, Step, next_step
from core.engine.routing import Candidate, Plan, plan
from core.engine.structured import check_json, check_tool_calls, output_format
from core.engine.validators import strip_fence, validate
from core.errors import AllAttemptsFailed, CannotServe, ProviderError, RequestRejected
from core.types import (
    Attempt,
    ChatRequest,
    ModelCall,
    ModelResponse,
    StreamDelta,
    ToolCall,
    Usage,
)

log = logging.getLogger("openclaw.engine")
_V = TypeVar("_V")
Alert = Callable[[str], Awaitable[Sequence[int] | None]]
# runs whose key is remembered (sticky keys): a bound, so a long-lived process does not
# grow; a run forgotten only loses its preference, never its answer
STICKY_RUNS = 4096


def new_request_id() -> str:
    """A short random id for a request (``req_`` + 24 hex digits).

    Unique, not secret: the fast PRNG is enough, and cheaper than urandom per request.
    """
    return f"req_{random.getrandbits(96):024x}"


class ChatModel(Protocol):
    """What the engine calls on a provider: an HTTP adapter (core/providers/base.py), or
    the in-process TestProvider that tests the failover table without sockets."""

    async def complete(self, model: str, call: ModelCall) -> ModelResponse:
        """One call, the whole answer; raises ProviderError."""
        ...

    def stream(self, model: str, call: ModelCall) -> AsyncIterator[StreamDelta | ModelResponse]:
        """One call, streamed: deltas, then exactly one ModelResponse; raises ProviderError."""
        ...


@dataclass(frozen=True, slots=True)
class Result:
    """The answer and the full route trace that produced it."""

    request_id: str
    content: str
    answered_by: Attempt
    attempts: tuple[Attempt, ...]
    plan: Plan
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # the calls the answering model asked for

    @property
    def usage(self) -> Usage:
        total = Usage()
        for a in self.attempts:
            total += a.usage
        return total

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)

    def trace(self) -> str:
        """The route trace, one line per attempt."""
        return format_trace(self.attempts)

    def route_header(self) -> str:
        """A one-line summary: answering tier/model and the attempts before it."""
        a = self.answered_by
        tried = len([x for x in self.attempts if x.outcome not in ("skipped", "denied")])
        return f"tier={a.tier}; model={a.ref}; attempts={tried}"


def format_trace(attempts: tuple[Attempt, ...] | list[Attempt]) -> str:
    """One line per attempt: tier, model, outcome, reason, latency, tokens, cost."""
    lines = []
    for a in attempts:
        line = f"tier {a.tier} {a.ref}: {a.outcome}"
        if a.reason:
            line += f" ({a.reason})"
        if a.outcome not in ("skipped", "denied"):
            u = a.usage
            line += (
                f" {a.latency_ms:.0f} ms, {u.input_tokens} in / {u.output_tokens} out"
                f" ({u.reasoning_tokens} reasoning), ${a.cost_usd:.6f}"
            )
            if a.tool_calls:
                line += f", {a.tool_calls} tool call" + ("s" if a.tool_calls != 1 else "")
        lines.append(line)
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Started:
    """Streaming: a model is about to send the first byte; failover is over."""

    request_id: str
    tier: int
    ref: str
    attempts_before: int  # calls made before this one

    def route_header(self) -> str:
        """The same one-line summary as Result.route_header, known at the first byte."""
        return f"tier={self.tier}; model={self.ref}; attempts={self.attempts_before + 1}"


StreamItem = StreamDelta | Started | Result


@dataclass(slots=True)
class _End:
    attempt: Attempt
    response: ModelResponse | None = None
    error: ProviderError | None = None
    committed: bool = False  # streaming: content already went out

    def ended(self) -> Ended:
        """What the policy needs to know of this attempt."""
        r = self.response
        return Ended(
            self.attempt.outcome,
            self.committed,
            r is not None and bool(r.content.strip() or r.tool_calls),
            r is not None and bool(r.reasoning or r.usage.reasoning_tokens),
        )


@dataclass(slots=True)
class _Verdict:
    end: _End  # the candidate's last attempt
    step: Step  # what the policy makes of it


@dataclass(slots=True)
class _State:
    request_id: str
    plan: Plan
    meta: RequestMeta
    rules: Validators
    attempts: list[Attempt] = field(default_factory=list)
    fit: bool = False  # some candidate could serve the request (it passed the capability gate)
    keys_tried: dict[str, list[str]] = field(default_factory=dict)  # provider -> key variables
    drilled: dict[int, float] = field(default_factory=dict)  # drill id -> ms on its faults
    answered: Attempt | None = None


class Engine:
    """The one way requests reach models: the CLI, gateway, agents and bot all call it."""

    def __init__(
        self,
        config: Config,
        providers: Mapping[str, ChatModel],
        *,
        health: HealthBoard,
        ledger: Ledger | None = None,
        approver: Approver | None = None,
        clock: Callable[[], float] = time.monotonic,
        observers: Sequence[Callable[[RequestMeta, Attempt], None]] = (),
        budget: BudgetGuard | None = None,
        keyed: Mapping[str, Mapping[str, ChatModel]] | None = None,
        alert: Alert | None = None,
        breaker_alert: Alert | None = None,
        drills: DrillBoard | None = None,
    ) -> None:
        self.config = config
        self.providers = providers
        # provider -> key variable -> the adapter sending that key, for providers with keys
        self.keyed: Mapping[str, Mapping[str, ChatModel]] = keyed or {}
        # to [alerts] deliver: a key ran out of credit or quota, a breaker opened; returns
        # the alert's outbox row ids (a failure drill's report reads them)
        self.alert = alert
        self.breaker_alert = breaker_alert
        self.drills = drills  # failure drills: their attempts go to the drill server
        if drills is not None:  # a drill's end frees its model for the next request's probe
            drills.on_end.append(lambda ref: self.health.drill_over(ref, self._clock()))
        self.health = health
        for name, adapters in self.keyed.items():
            health.set_keys(name, tuple(adapters))
        health.watch([ref for t in config.tiers for ref in t.models])
        # (run or caller, provider) -> the key that last answered for it
        self._sticky: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.ledger = ledger
        self.approver: Approver = approver or PolicyApprover(config.approvals)

        self._clock = clock
        # (model, parameter) pairs a dropped value was logged for
        self._warned_drops: set[tuple[str, str]] = set()
        self.observers = list(observers)  # e.g. metrics; called for every ledger row
        self.budget = budget  # spend caps: None when none are configured

    def plan(
        self,
        task: str | None = None,
        tier: int | None = None,
        max_tokens: int | None = None,
        request_id: str | None = None,
    ) -> Plan:
        """The plan a request would follow right now (raises RoutingError); with
        ``request_id``, that request's (a task's trial is picked by it)."""
        return plan(
            self.config,
            task=task,
            tier=tier,
            max_tokens=max_tokens,
            health=self.health.snapshot(self._clock()),
            request_id=request_id,
        )

    def _param(self, cand: Candidate, name: str, value: _V) -> _V | None:
        """A request parameter, unless the model must not get it (``drop_params``): then it
        is left out, with one warning per model and parameter the first time one is."""
        if value is None or value == () or name not in cand.drops:
            return value
        if (cand.ref, name) not in self._warned_drops:
            self._warned_drops.add((cand.ref, name))
            log.warning(
                "%s does not take %s: the caller's %r is not sent to it "
                '([models."%s"] drop_params)',
                cand.ref,
                name,
                value,
                cand.ref,
            )
        return None

    def _blocked_now(self, ref: str) -> str | None:
        """Why ``ref`` may not be called at this moment (the gate asks before each call)."""
        return self.health.blocked(ref, self._clock())

    async def complete(self, request: ChatRequest, rules: Validators | None = None) -> Result:
        """Answer a request; raises AllAttemptsFailed when no model could.

        ``rules`` replace the task's validators (agents bring their own).
        """
        async with aclosing(self._run(request, stream=False, rules=rules)) as items:
            async for item in items:
                if isinstance(item, Result):
                    return item
        raise AssertionError("engine run ended without a result")  # pragma: no cover

    def stream(
        self, request: ChatRequest, rules: Validators | None = None
    ) -> AsyncGenerator[StreamItem, None]:
        """Answer a request as a stream of content deltas followed by the Result.

        Failover happens before the first byte: nothing is yielded until a model
        produced visible content (for tasks with validators beyond non-empty, until
        the whole answer passed them). A ``Started`` event comes right before the
        first delta. A failure after that raises ProviderError.
        """
        return self._run(request, stream=True, rules=rules)

    async def _run(
        self, req: ChatRequest, *, stream: bool, rules: Validators | None = None
    ) -> AsyncGenerator[StreamItem, None]:
        health = self.health.snapshot(self._clock())
        rid = req.request_id or new_request_id()  # first: a task's trial is picked by it
        p = plan(
            self.config,
            task=req.task,
            tier=req.tier,
            max_tokens=req.max_tokens,
            health=health,
            request_id=rid,
        )
        meta = RequestMeta(
            rid, p.min_tier, p.task, req.run_id, req.agent, stream, req.caller, p.trial
        )
        st = _State(rid, p, meta, rules or p.rules)
        st.attempts.extend(
            Attempt(s.tier, *split_model_ref(s.ref), "skipped", s.reason) for s in p.skipped
        )
        gate = Gate(
            self.config,
            req,
            p,
            rid,
            approver=self.approver,
            budget=self.budget,
            blocked_now=self._blocked_now,
            planned_blocked=health.blocked.keys(),
        )
        try:
            async with aclosing(self._climb(st, gate, req, stream)) as items:
                async for item in items:
                    yield item
        finally:
            if self.drills is not None and self.drills.active:
                self._drill_done(st)

    def _drill_done(self, st: _State) -> None:
        """Tell the drills where a request that met one ended up."""
        assert self.drills is not None
        a = st.answered
        # a model the plan skipped counts only if the request climbed to its tier: a
        # request answered below it never needed it
        reached = a.tier if a is not None else max(self.config.levels)
        self.drills.request_done(
            st.drilled,
            {x.ref for x in st.attempts if x.outcome == "skipped" and x.tier <= reached},
            a.ref if a is not None else None,
            a.latency_ms if a is not None else 0.0,
        )

    async def _climb(
        self, st: _State, gate: Gate, req: ChatRequest, stream: bool
    ) -> AsyncGenerator[StreamItem, None]:
        p = st.plan
        climbed: int | None = None  # the last tier left for the next one
        kept: _End | None = None  # a lower tier's imperfect answer, in case a denial ends it
        for cand in p.candidates:
            if cand.tier == climbed:
                continue
            verdict: _Verdict | None = None
            async with aclosing(self._candidate(st, gate, cand, req, stream)) as parts:
                async for part in parts:
                    if isinstance(part, _Verdict):
                        verdict = part
                    else:
                        yield part
            assert verdict is not None
            end, step = verdict.end, verdict.step
            if step.next is Next.ANSWER:
                yield self._result(st, end, cand.tier)
                return
            if step.next is Next.NEXT_TIER:
                climbed = cand.tier
                kept = end if step.keep else kept
            _raise_on(step, end, st)
        if kept is not None and _keeps_lower(req, st, stream):
            yield self._result(st, kept, None)
            return
        if not st.fit and self._unservable(req, p, gate):
            raise CannotServe(self._trace(st))
        raise AllAttemptsFailed(self._trace(st), f"no model could answer {asked_for(p)}")

    def _unservable(self, req: ChatRequest, p: Plan, gate: Gate) -> bool:
        """No model of the plan can serve ``req``, healthy or not: the request's fault (or
        the config's), not an outage. The models the plan left out as blocked count too:
        one of them could have served it once healthy."""
        if not p.candidates and not p.skipped:
            return False
        every = plan(self.config, task=req.task, tier=req.tier, max_tokens=req.max_tokens)
        planned = {c.ref for c in p.candidates}
        return all(gate.unfit(c) is not None for c in every.candidates if c.ref not in planned)

    async def _candidate(
        self, st: _State, gate: Gate, cand: Candidate, req: ChatRequest, stream: bool
    ) -> AsyncGenerator[StreamDelta | Started | _Verdict, None]:
        """A candidate's attempts through the gate (two when the budget is doubled), each
        recorded in ``st``; ends with the policy's verdict on the last."""
        max_tokens, retried = cand.max_tokens, False
        while True:
            ticket = await gate.enter(cand, max_tokens, retry=retried, tried=st.attempts)
            st.fit = st.fit or not ticket.unfit
            end = _End(ticket.refused) if ticket.refused is not None else None
            key = self._key_for(st, cand, req) if end is None else None
            if end is None:
                try:
                    attempt = self._attempt(st, cand, req, max_tokens, stream, key)
                    async with aclosing(attempt) as it:
                        async for part in it:
                            if isinstance(part, _End):
                                end = part
                            else:
                                yield part
                finally:
                    await gate.leave(cand, ticket)
            assert end is not None
            st.attempts.append(end.attempt)
            if key is not None and self._next_key(st, cand, end, key):
                continue  # the same model with the provider's next key, before the next model
            step = next_step(end.ended(), cand, max_tokens, retried)
            if step.next is not Next.RETRY or step.max_tokens is None:
                yield _Verdict(end, step)
                return
            max_tokens, retried = step.max_tokens, True

    def _key_for(self, st: _State, cand: Candidate, req: ChatRequest) -> str | None:
        """The key this call of ``cand`` sends (its variable name), None for a provider
        without keys: the run's key while it may be called, else the first usable one not
        tried in this request."""
        envs = self.health.keys(cand.provider)
        if not envs:
            return None
        tried = tuple(st.keys_tried.get(cand.provider, ()))
        who = _sticky_id(req)
        prefer = self._sticky.get((who, cand.provider)) if who else None
        key = self.health.pick_key(cand.provider, self._clock(), prefer=prefer, tried=tried)
        # none usable: the plan picked the model as a last resort (or a race): its first key
        return key or envs[0]

    def _next_key(self, st: _State, cand: Candidate, end: _End, key: str) -> bool:
        """Whether a failed call of ``cand`` with ``key`` goes to the provider's next key:
        after a billing answer or a 429, when another key is left to try."""
        e = end.error
        if e is None or end.committed or e.kind not in ("billing", "rate_limited"):
            return False
        tried = st.keys_tried.setdefault(cand.provider, [])
        tried.append(key)
        left = self.health.pick_key(cand.provider, self._clock(), tried=tuple(tried))
        return left is not None

    def _result(self, st: _State, end: _End, upto_tier: int | None) -> Result:
        assert end.response is not None
        st.answered = end.attempt
        return Result(
            st.request_id,
            end.response.content,
            end.attempt,
            tuple(self._trace(st, upto_tier)),
            st.plan,
            end.response.finish_reason,
            end.response.tool_calls,
        )

    @staticmethod
    def _trace(st: _State, upto_tier: int | None = None) -> list[Attempt]:
        """Attempts in tier order; skips above the answering tier were never reached."""
        kept = [
            a
            for a in st.attempts
            if upto_tier is None or a.outcome != "skipped" or a.tier <= upto_tier
        ]
        return sorted(kept, key=lambda a: a.tier)  # stable: keeps order within a tier

    async def _attempt(
        self,
        st: _State,
        cand: Candidate,
        req: ChatRequest,
        max_tokens: int,
        stream: bool,
        key: str | None = None,
    ) -> AsyncGenerator[StreamDelta | Started | _End, None]:
        adapters = self.keyed.get(cand.provider, {})
        keyed = key is not None and key in adapters
        provider = adapters[key] if key is not None and keyed else self.providers[cand.provider]
        # a failure drill of this model: the call goes to the drill server (HTTP adapters;
        # the in-process TestProvider has no transport to divert)
        with_drill = getattr(provider, "with_drill", None)
        ticket = self.drills.take(cand.ref) if self.drills and with_drill else None
        if ticket is not None and with_drill is not None:
            provider = with_drill(ticket)
        drill = ticket.drill if ticket is not None else None
        fmt, messages = output_format(cand, req, st.rules.json_)
        tools, choice = req.tools, self._param(cand, "tool_choice", req.tool_choice)
        if choice is None and req.tool_choice is not None and req.tool_choice.mode == "none":
            tools = ()  # a model that takes no tool_choice is kept from calls by having none
        call = ModelCall(
            messages,
            max_tokens,
            self._param(cand, "temperature", req.temperature),
            cand.reasoning,
            cand.context,
            cand.no_think,
            tools,
            choice,
            self._param(cand, "parallel_tool_calls", req.parallel_tool_calls),
            fmt,
            self._param(cand, "stop", req.stop) or (),
            self._param(cand, "top_p", req.top_p),
            self._param(cand, "seed", req.seed),
        )
        # held until judged: a tool call or JSON answer that fails its checks climbs, and
        # what went out cannot be taken back
        hold = st.rules.strict or req.uses_tools or (fmt is not None and fmt.wants_json)
        committed = False
        # generated so far (answer and reasoning, sent on or held back): the upstream
        # bills a stream that breaks for what it generated, so the ledger does too
        received_chars = 0
        # in the ledger before it leaves: raises (StoreUnavailable) before anything is paid
        await self._begin(st, cand, req, max_tokens, drill)
        t0 = time.perf_counter()
        self.health.begin(cand.ref, self._clock(), key)
        resp: ModelResponse | None = None
        try:
            if not stream:
                resp = await provider.complete(cand.model, call)
            else:
                chunks = cast(
                    AsyncGenerator[StreamDelta | ModelResponse, None],
                    provider.stream(cand.model, call),
                )
                async with aclosing(chunks) as it:
                    async for item in it:
                        if isinstance(item, ModelResponse):
                            resp = item
                            continue
                        received_chars += len(item.content) + len(item.reasoning)
                        if committed:
                            if item.content:
                                yield StreamDelta(item.content)
                        elif item.content.strip() and not hold:
                            committed = True
                            yield self._started(st, cand)
                            yield StreamDelta(item.content.lstrip())
                if resp is None:
                    raise ProviderError(
                        "stream_cut",
                        cand.provider,
                        cand.model,
                        "stream ended without a final response",
                    )
        except (asyncio.CancelledError, GeneratorExit):
            await self._cancelled(st, cand, req, t0, max_tokens, key)
            raise
        except Exception as e:  # ProviderError, or an adapter bug: the row is kept either way
            err = _as_provider_error(cand, e)
            usage = self._streamed(req, received_chars)
            end = await self._failed(st, cand, err, t0, max_tokens, committed, usage, key, drill)
            if drill is not None:
                st.drilled[drill] = st.drilled.get(drill, 0.0) + end.attempt.latency_ms
            yield end
            return
        if key is not None and (who := _sticky_id(req)):
            self._remember_key(who, cand.provider, key)
        attempt = self._answered(st, cand, req, resp, t0, max_tokens, committed, key)
        if drill is not None:  # the drill server answered: no provider billed it
            attempt = replace(attempt, cost_usd=0.0)
        if self.drills is not None:
            self.drills.answered(cand.ref, drilled=drill is not None)
        if drill is not None:
            st.drilled[drill] = st.drilled.get(drill, 0.0) + attempt.latency_ms
        await self._record(st, attempt)
        reason = attempt.reason if attempt.outcome == "unusable" else None
        fmt_asked = req.response_format
        if reason is None and not committed and fmt_asked is not None and fmt_asked.wants_json:
            # JSON asked for is answered as JSON: a Markdown fence the check looked inside
            # would break the caller's json.loads
            resp = replace(resp, content=strip_fence(resp.content).strip())
        if stream and not committed and reason is None:
            committed = True
            yield self._started(st, cand)
            if resp.content.strip() or not resp.tool_calls:
                yield StreamDelta(resp.content.lstrip())
        yield _End(attempt, resp, None, committed)

    def _answered(
        self,
        st: _State,
        cand: Candidate,
        req: ChatRequest,
        resp: ModelResponse,
        t0: float,
        max_tokens: int,
        committed: bool,
        key: str | None = None,
    ) -> Attempt:
        """The attempt of a call that returned: ``ok``, or ``unusable`` with why."""
        latency = (time.perf_counter() - t0) * 1000
        self.health.success(cand.ref, latency, self._clock(), key)
        # what already went out cannot be judged any more: a streamed answer is final
        reason = None if committed else self._judge(st, req, resp)
        if reason == "empty answer" and (resp.reasoning or resp.usage.reasoning_tokens):
            reason = f"reasoning used the budget of {max_tokens} tokens, no answer"
        return Attempt(
            cand.tier,
            cand.provider,
            cand.model,
            "ok" if reason is None else "unusable",
            reason or "",
            resp.status,
            latency,
            resp.usage,
            price(self.config, cand.ref, resp.usage),
            max_tokens,
            len(resp.tool_calls),
        )

    @staticmethod
    def _judge(st: _State, req: ChatRequest, resp: ModelResponse) -> str | None:
        """Why an answer is unusable: its tool calls do not serve the request, or (an
        answer in text) it fails the task's validators or the JSON the caller asked for
        (its schema, even where the model was sent JSON mode only; a task's own JSON mode
        is judged by the task's validators)."""
        why = check_tool_calls(resp.tool_calls, req.tools, req.tool_choice)
        if why is not None or resp.tool_calls:
            return why  # a turn of tool calls: its text is not the answer yet
        return validate(resp.content, st.rules) or check_json(resp.content, req.response_format)

    def _remember_key(self, who: str, provider: str, key: str) -> None:
        """The run's (or caller's) next call of ``provider`` sends ``key`` again while it
        works."""
        self._sticky[(who, provider)] = key
        self._sticky.move_to_end((who, provider))
        while len(self._sticky) > STICKY_RUNS:
            self._sticky.popitem(last=False)

    async def _cancelled(
        self,
        st: _State,
        cand: Candidate,
        req: ChatRequest,
        t0: float,
        max_tokens: int,
        key: str | None = None,
    ) -> None:
        """The caller went away mid-call: free a half-open probe slot, and keep the row,
        since the upstream may bill for what it already generated."""
        self.health.abandon(cand.ref, key)
        latency = (time.perf_counter() - t0) * 1000
        # what it generated is unknown: count the worst case, so that budgets hold
        # and the ledger never shows a paid call as free
        usage = Usage(estimate_input_tokens(req.messages), max_tokens)
        gone = Attempt(
            cand.tier,
            cand.provider,
            cand.model,
            "cancelled",
            "the caller cancelled the request; cost counted at the worst case",
            None,
            latency,
            usage,
            price(self.config, cand.ref, usage),
            max_tokens,
        )
        with contextlib.suppress(Exception):
            await asyncio.shield(self._record(st, gone))

    @staticmethod
    def _started(st: _State, cand: Candidate) -> Started:
        calls = sum(1 for a in st.attempts if a.outcome not in ("skipped", "denied"))
        return Started(st.request_id, cand.tier, cand.ref, calls)

    @staticmethod
    def _streamed(req: ChatRequest, received_chars: int) -> Usage | None:
        """A stream that broke after it began generating is billed for what it generated
        (estimated: the prompt, and a token per 4 characters); one that broke before any
        token came is free, like a refused call."""
        if not received_chars:
            return None
        return Usage(estimate_input_tokens(req.messages), received_chars // 4 + 1)

    async def _failed(
        self,
        st: _State,
        cand: Candidate,
        e: ProviderError,
        t0: float,
        max_tokens: int,
        committed: bool,
        usage: Usage | None = None,
        key: str | None = None,
        drill: int | None = None,
    ) -> _End:
        latency = (time.perf_counter() - t0) * 1000
        drilled = drill is not None  # a drill's fault: of the model, never of its key
        if e.outcome in ("rejected", "skipped"):  # the model is fine; this request is not
            self.health.abandon(cand.ref, key)
            cooldown = 0.0
            log.warning("%s/%s refused a request: %s", cand.provider, cand.model, e)
        else:
            cooldown = self.health.failure(cand.ref, e, latency, self._clock(), key, drill=drilled)
        if cooldown and self.drills is not None:
            self.drills.breaker_opened(cand.ref, drill)
        if e.kind == "billing" and self.health.billing_alert_due(cand.ref, key, drilled):
            await self._alert_billing(cand, e, key, cooldown, drill)
        elif (
            cooldown and e.kind != "billing" and self.health.open_alert_due(cand.ref, self._clock())
        ):
            text = breaker_alert(cand.ref, e, cooldown)
            # a warning, not an error: an upstream that fails for a while is what failover
            # is for; the alert is the operator's notice of it
            await self._send_alert(cand, text, self.breaker_alert, drill, logging.WARNING)
        reason = f"{e.kind}" + (f" HTTP {e.status}" if e.status else "")
        if key is not None:  # which key, by its variable's name: the ledger keeps the reason
            reason += f" (key {key})"
        if e.detail:
            reason += f": {e.detail}"
        if cooldown:
            reason += f"; cooling down {cooldown:.0f}s"
        if e.outcome == "fatal":
            log.error("%s/%s failed fatally (check its config): %s", cand.provider, cand.model, e)
        attempt = Attempt(
            cand.tier,
            cand.provider,
            cand.model,
            e.outcome,
            reason,
            e.status,
            latency,
            usage or Usage(),
            price(self.config, cand.ref, usage) if usage and drill is None else 0.0,
            max_tokens,
        )
        await self._record(st, attempt)
        return _End(attempt, None, e, committed)

    async def _alert_billing(
        self,
        cand: Candidate,
        e: ProviderError,
        key: str | None,
        cooldown: float,
        drill: int | None = None,
    ) -> None:
        """Tell the admins, once per episode, that a key has no credit or quota left. The
        detail is the provider's message, already redacted of every key by the adapter."""
        text = billing_alert(cand.provider, cand.model, key, e.detail, cooldown)
        await self._send_alert(cand, text, self.alert, drill)

    async def _send_alert(
        self,
        cand: Candidate,
        text: str,
        via: Alert | None,
        drill: int | None = None,
        level: int = logging.ERROR,
    ) -> None:
        """Log an alert and queue it through ``via``; a drill of the model notes its
        outbox rows."""
        log.log(level, "%s", text)
        if via is None:
            return
        try:  # an alert that cannot be queued must not fail the request it is about
            ids = await via(text)
        except Exception:
            log.exception("an alert about %s could not be queued", cand.ref)
            return
        if ids and self.drills is not None:
            self.drills.alerted(cand.ref, ids, drill)

    async def _begin(
        self,
        st: _State,
        cand: Candidate,
        req: ChatRequest,
        max_tokens: int,
        drill: int | None = None,
    ) -> None:
        if self.ledger is not None:
            await self.ledger.begin(
                st.meta,
                Attempt(
                    cand.tier,
                    cand.provider,
                    cand.model,
                    "pending",
                    usage=Usage(estimate_input_tokens(req.messages), max_tokens),
                    max_tokens=max_tokens,
                ),
                drill,
            )

    async def _record(self, st: _State, attempt: Attempt) -> None:
        for observe in self.observers:
            observe(st.meta, attempt)
        if self.ledger is not None:
            await self.ledger.finish(st.meta, attempt)


def billing_alert(provider: str, model: str, key: str | None, detail: str, cooldown: float) -> str:
    """The one alert of a billing episode: which key (by variable name), what the provider
    said, how long the key is out, what to do."""
    what = f"{provider} key {key}" if key else f"{provider}/{model}"
    hours = f"{cooldown / 3600:.1f} h" if cooldown >= 3600 else f"{cooldown / 60:.0f} min"
    said = f": {detail}" if detail else ""
    return (
        f"💳 {what} has no credit or quota left (billing{said}). It is out of routing for"
        f" {hours} (doubling while it stays spent, up to 24 h); requests go to the next key"
        f" or model meanwhile. Fix: top up the {provider} account or raise its quota; the"
        " first answer after that ends this alert's episode."
    )


def breaker_alert(ref: str, e: ProviderError, cooldown: float) -> str:
    """The one alert of a breaker's episode: which model, what failed, for how long it is
    out, that requests fail over meanwhile."""
    what = f"{e.kind}" + (f" HTTP {e.status}" if e.status else "")
    said = f": {e.detail}" if e.detail else ""
    return (
        f"⚡ {ref} is failing ({what}{said}); its breaker opened for {cooldown:.3g}s and"
        " requests fail over to the next model meanwhile. It is probed again when the"
        " cooldown ends; the first answer after that ends this alert's episode."
    )


def _sticky_id(req: ChatRequest) -> str | None:
    """Whose key choice sticks: the run's (agent runs), else the gateway caller's; None
    for an anonymous request, which takes the first usable key."""
    if req.run_id:
        return f"run:{req.run_id}"
    return f"caller:{req.caller}" if req.caller else None


def _as_provider_error(cand: Candidate, e: Exception) -> ProviderError:
    """An adapter raises only ProviderError; anything else is its bug, logged and kept as
    a malformed answer so that the attempt's row is not lost."""
    if isinstance(e, ProviderError):
        return e
    log.exception("adapter %s raised unexpectedly", cand.provider)
    return ProviderError("malformed", cand.provider, cand.model, f"{type(e).__name__}: {e}")


def _raise_on(step: Step, end: _End, st: _State) -> None:
    """Fail the request where the policy says so: its own fault, or a broken stream."""
    if step.next is Next.REJECT and end.error is not None:
        raise RequestRejected(Engine._trace(st), end.error)
    if step.next is Next.RERAISE and end.error is not None:
        raise end.error


def _keeps_lower(req: ChatRequest, st: _State, stream: bool) -> bool:
    """Whether a lower tier's imperfect answer ends the request when a denial stopped the
    climb: the caller prefers it to none at all. Not a stream's: a streamed answer goes out
    as deltas before its Result, and this one was held back."""
    return not stream and req.keep_lower_on_deny and any(a.outcome == "denied" for a in st.attempts)
