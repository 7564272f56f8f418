"""The engine's what-next policy as a table, and the failover and escalation table run
through the real engine against the in-process TestProvider (no sockets, no store).

The pyramid (tests/configs.py): local (tier 0, thinking, 1024 tokens), flash (tier 1),
deep then deep2 (tier 2), opus (tier 3, needs approval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.config.common import Validators
from core.engine.engine import Engine, Result
from core.engine.health import HealthBoard
from core.engine.policy import Ended, Next, Step, next_step
from core.engine.routing import Candidate
from core.errors import AllAttemptsFailed, ProviderError, RequestRejected
from core.providers.testing import Answer, Fault, TestProvider
from core.types import ChatRequest, Message, StreamDelta
from tests.configs import make_config
from tests.test_engine import RecordingApprover, collect

# -- the policy, pure ---------------------------------------------------------------

THINKER = Candidate(0, "local", "qwen3:14b", 1024, reasoning=True, requires_approval=False)
CAPPED = Candidate(0, "local", "qwen3:14b", 1024, True, False, output_limit=1500)
AT_LIMIT = Candidate(0, "local", "qwen3:14b", 1024, True, False, output_limit=1024)

POLICY: list[tuple[str, Ended, Candidate, bool, Step]] = [
    ("ok answers", Ended("ok"), THINKER, False, Step(Next.ANSWER)),
    ("ok after the retry answers", Ended("ok", content=True), THINKER, True, Step(Next.ANSWER)),
    ("ok streamed answers", Ended("ok", committed=True), THINKER, False, Step(Next.ANSWER)),
    (
        "unavailable tries the next model",
        Ended("unavailable"),
        THINKER,
        False,
        Step(Next.NEXT_MODEL),
    ),
    ("fatal tries the next model", Ended("fatal"), THINKER, False, Step(Next.NEXT_MODEL)),
    ("over budget tries the next model", Ended("skipped"), THINKER, False, Step(Next.NEXT_MODEL)),
    ("over budget on the retry too", Ended("skipped"), THINKER, True, Step(Next.NEXT_MODEL)),
    ("a denial climbs past the tier", Ended("denied"), THINKER, False, Step(Next.NEXT_TIER)),
    ("rejected fails the request", Ended("rejected"), THINKER, False, Step(Next.REJECT)),
    (
        "a committed stream error re-raises",
        Ended("unavailable", committed=True),
        THINKER,
        False,
        Step(Next.RERAISE),
    ),
    (
        "a committed rejection re-raises too",
        Ended("rejected", committed=True),
        THINKER,
        False,
        Step(Next.RERAISE),
    ),
    (
        "reasoning spent the budget: retry doubled",
        Ended("unusable", reasoned=True),
        THINKER,
        False,
        Step(Next.RETRY, max_tokens=2048),
    ),
    (
        "the doubled budget is capped at the output limit",
        Ended("unusable", reasoned=True),
        CAPPED,
        False,
        Step(Next.RETRY, max_tokens=1500),
    ),
    (
        "at the output limit already: no retry, climb",
        Ended("unusable", reasoned=True),
        AT_LIMIT,
        False,
        Step(Next.NEXT_TIER),
    ),
    (
        "reasoning spent the doubled budget too: climb",
        Ended("unusable", reasoned=True),
        THINKER,
        True,
        Step(Next.NEXT_TIER),
    ),
    ("empty without reasoning: climb", Ended("unusable"), THINKER, False, Step(Next.NEXT_TIER)),
    (
        "validator failed: climb, keeping the answer",
        Ended("unusable", content=True),
        THINKER,
        False,
        Step(Next.NEXT_TIER, keep=True),
    ),
    (
        "content with reasoning is no budget problem: climb, keeping it",
        Ended("unusable", content=True, reasoned=True),
        THINKER,
        False,
        Step(Next.NEXT_TIER, keep=True),
    ),
]


@pytest.mark.parametrize(
    ("name", "ended", "cand", "retried", "step"), POLICY, ids=[p[0] for p in POLICY]
)
def test_next_step(name: str, ended: Ended, cand: Candidate, retried: bool, step: Step) -> None:
    assert next_step(ended, cand, cand.max_tokens, retried) == step


def test_the_retry_doubles_the_budget_it_was_called_with() -> None:
    # a request's own max_tokens (over the floor) is what doubles, not the model's default
    assert next_step(Ended("unusable", reasoned=True), THINKER, 1500, False) == Step(
        Next.RETRY, max_tokens=3000
    )


# -- the engine's failover and escalation table, in process ---------------------------


Approver = RecordingApprover  # the loopback engine tests' approver, in process here


@dataclass
class Rig:
    engine: Engine
    providers: dict[str, TestProvider]
    approver: Approver

    def script(self, ref: str, *items: Answer | Fault) -> None:
        provider, model = ref.split("/", 1)
        self.providers[provider].script(model, *items)

    def called(self) -> list[str]:
        return [f"{n}/{c.model}" for n, p in self.providers.items() for c in p.calls]


def make_rig(approve: bool = True) -> Rig:
    cfg = make_config()
    providers = {name: TestProvider(name) for name in cfg.providers}
    approver = Approver(approve)
    engine = Engine(cfg, providers, health=HealthBoard(cfg.routing), approver=approver)
    return Rig(engine, providers, approver)


def ask(**kw: Any) -> ChatRequest:
    return ChatRequest((Message("system", "be brief"), Message("user", "hello")), **kw)


async def run(
    engine: Engine, req: ChatRequest, stream: bool, rules: Validators | None = None
) -> Result:
    """Answer ``req`` either way; a stream must send Started once, before its deltas,
    and the deltas must add up to the answer."""
    if not stream:
        return await engine.complete(req, rules)
    deltas, result = await collect(engine, req, rules)
    assert "".join(deltas) == result.content
    return result


@dataclass(frozen=True)
class Case:
    name: str
    script: Mapping[str, Sequence[Answer | Fault]]
    request: Mapping[str, Any]
    trace: Sequence[tuple[str, str]]  # (ref, outcome) per attempt, in tier order
    answer: str | None = None  # None: the request fails
    raises: type[Exception] = AllAttemptsFailed
    approve: bool = True
    budgets: Mapping[str, Sequence[int]] = field(default_factory=dict)


LOCAL, FLASH, DEEP, DEEP2, OPUS = (
    "local/qwen3:14b",
    "flash/gemini-flash",
    "deep/deepseek-chat",
    "deep2/deepseek-backup",
    "opus/claude-opus",
)

REFUSED = ("denied", "skipped")

TABLE = [
    Case("the cheapest tier answers", {LOCAL: [Answer("hi")]}, {}, [(LOCAL, "ok")], "hi"),
    Case(
        "a 503 climbs to the next tier",
        {LOCAL: [Fault("server_error", 503)], FLASH: [Answer("from flash")]},
        {},
        [(LOCAL, "unavailable"), (FLASH, "ok")],
        "from flash",
    ),
    Case(
        "a 401 is fatal and fails over",
        {LOCAL: [Fault("auth", 401)], FLASH: [Answer("from flash")]},
        {},
        [(LOCAL, "fatal"), (FLASH, "ok")],
        "from flash",
    ),
    Case(
        "the same tier is tried before climbing",
        {DEEP: [Fault("rate_limited", 429, retry_after_s=7)], DEEP2: [Answer("backup")]},
        {"task": "analysis"},
        [(DEEP, "unavailable"), (DEEP2, "ok")],
        "backup",
    ),
    Case(
        "an unusable answer climbs past the rest of its tier",
        {DEEP: [Answer("")], OPUS: [Answer("opus")]},
        {"task": "analysis"},
        [(DEEP, "unusable"), (OPUS, "ok")],
        "opus",
    ),
    Case(
        "reasoning that ate the budget is retried doubled",
        {LOCAL: [Answer("", reasoning="hmm"), Answer("answer", reasoning="short")]},
        {"max_tokens": 100},
        [(LOCAL, "unusable"), (LOCAL, "ok")],
        "answer",
        budgets={LOCAL: [1024, 2048]},  # the reasoning floor, then doubled
    ),
    Case(
        "reasoning twice climbs",
        {LOCAL: [Answer("", reasoning="hmm")] * 2, FLASH: [Answer("flash")]},
        {},
        [(LOCAL, "unusable"), (LOCAL, "unusable"), (FLASH, "ok")],
        "flash",
    ),
    Case(
        "counted reasoning tokens alone also mean a spent budget",
        {LOCAL: [Answer("", reasoning_tokens=1024), Answer("answer")]},
        {},
        [(LOCAL, "unusable"), (LOCAL, "ok")],
        "answer",
    ),
    Case(
        "a validator failure climbs",
        {LOCAL: [Answer("Sure! The name is Ada.")], FLASH: [Answer('{"name": "Ada"}')]},
        {"task": "extract"},
        [(LOCAL, "unusable"), (FLASH, "ok")],
        '{"name": "Ada"}',
    ),
    Case(
        "the request's own 400 fails it, no pricier tier tried",
        {LOCAL: [Fault("bad_request", 400, "prompt too long")], FLASH: [Answer("never")]},
        {},
        [(LOCAL, "rejected")],
        raises=RequestRejected,
    ),
    Case(
        "a denial skips the tier",
        {OPUS: [Answer("never")]},
        {"tier": 3},
        [(OPUS, "denied")],
        approve=False,
    ),
    Case(
        "escalation to an approved tier",
        {DEEP: [Fault("server_error", 500)], DEEP2: [Fault("timeout")], OPUS: [Answer("opus")]},
        {"task": "analysis"},
        [(DEEP, "unavailable"), (DEEP2, "unavailable"), (OPUS, "ok")],
        "opus",
    ),
    Case(
        "every model failing lists every attempt",
        {
            LOCAL: [Fault("refused")],
            FLASH: [Fault("server_error", 503)],
            DEEP: [Fault("malformed")],
            DEEP2: [Fault("not_found", 404)],
            OPUS: [Fault("server_error", 502)],
        },
        {},
        [
            (LOCAL, "unavailable"),
            (FLASH, "unavailable"),
            (DEEP, "unavailable"),
            (DEEP2, "fatal"),
            (OPUS, "unavailable"),
        ],
    ),
    Case(
        "a model with nothing queued acts unreachable",
        {FLASH: [Answer("flash")]},
        {},
        [(LOCAL, "unavailable"), (FLASH, "ok")],
        "flash",
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
async def test_failover_and_escalation(case: Case, stream: bool) -> None:
    r = make_rig(case.approve)
    for ref, items in case.script.items():
        r.script(ref, *items)
    req = ask(**case.request)
    if case.answer is None:
        with pytest.raises(case.raises) as info:
            await run(r.engine, req, stream)
        assert isinstance(info.value, AllAttemptsFailed)
        attempts = info.value.attempts
    else:
        res = await run(r.engine, req, stream)
        assert res.content == case.answer
        assert res.answered_by.ref == case.trace[-1][0]
        attempts = list(res.attempts)
    assert [(a.ref, a.outcome) for a in attempts] == list(case.trace)
    # one call per attempt not refused at the gate, and none besides (the providers are
    # in the pyramid's order, so their calls list in the trace's order)
    assert r.called() == [ref for ref, outcome in case.trace if outcome not in REFUSED]
    assert all(c.stream is stream for p in r.providers.values() for c in p.calls)
    for ref, budgets in case.budgets.items():
        provider, model = ref.split("/", 1)
        assert r.providers[provider].budgets(model) == list(budgets)


async def test_a_denial_keeps_the_best_lower_answer_when_asked_to() -> None:
    rules = Validators(min_chars=100)
    r = make_rig(approve=False)
    r.script(DEEP, Answer("a short answer"))
    with pytest.raises(AllAttemptsFailed, match="denied by test-admin"):
        await r.engine.complete(ask(task="analysis"), rules)
    r.script(DEEP, Answer("a short answer"))
    kept = await r.engine.complete(ask(task="analysis", keep_lower_on_deny=True), rules)
    assert kept.content == "a short answer" and kept.answered_by.outcome == "unusable"
    assert [(a.ref, a.outcome) for a in kept.attempts] == [(DEEP, "unusable"), (OPUS, "denied")]
    # a stream cannot take the lower answer back once the denial comes: it fails
    r.script(DEEP, Answer("a short answer"))
    with pytest.raises(AllAttemptsFailed):
        await run(r.engine, ask(task="analysis", keep_lower_on_deny=True), True, rules)


async def test_a_stream_that_breaks_after_its_first_byte_raises_without_failover() -> None:
    r = make_rig()
    r.script(LOCAL, Fault("stream_cut", detail="cut", after="partial answer"))
    r.script(FLASH, Answer("never"))
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for item in r.engine.stream(ask()):
            if isinstance(item, StreamDelta):
                got.append(item.content)
    assert info.value.kind == "stream_cut" and got == ["partial answer"]
    assert r.called() == [LOCAL]


async def test_an_admin_is_asked_once_per_tier_with_the_reason() -> None:
    r = make_rig()
    r.script(DEEP, Fault("server_error", 500))
    r.script(DEEP2, Answer(""))
    r.script(OPUS, Answer("opus"))
    res = await r.engine.complete(ask(task="analysis"))
    assert res.content == "opus"
    (asked,) = r.approver.asked
    assert asked.tier == 3 and asked.model == OPUS and asked.task == "analysis"
    assert "deep/deepseek-chat unavailable" in asked.reason
    assert "deep2/deepseek-backup unusable" in asked.reason


async def test_the_breaker_spares_the_second_request_a_dead_model() -> None:
    r = make_rig()
    r.script(LOCAL, Fault("timeout"))
    r.script(FLASH, Answer("one"), Answer("two"))
    await r.engine.complete(ask())
    second = await r.engine.complete(ask())
    assert [(a.ref, a.outcome) for a in second.attempts] == [(LOCAL, "skipped"), (FLASH, "ok")]
    assert "cooling down" in second.attempts[0].reason
    assert r.called().count(LOCAL) == 1
