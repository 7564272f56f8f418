"""The engine end to end against a real fake LLM server on 127.0.0.1.

The fake speaks all four wire formats; the test pyramid is local (ollama, tier 0,
thinking), flash (google, tier 1), deep + deep2 (openai, tier 2), opus (anthropic,
tier 3, approval).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from core.config.common import Validators
from core.config.models import Config
from core.engine.approvals import ApprovalRequest, Decision
from core.engine.engine import Engine, Result, Started
from core.engine.health import HealthBoard
from core.engine.ledger import INTERRUPTED, Ledger, RequestMeta
from core.errors import AllAttemptsFailed, ProviderError, RequestRejected, StoreUnavailable
from core.providers import build_provider
from core.store.base import Store
from core.store.open import open_store
from core.store.path import DbLocation
from core.types import Attempt, ChatRequest, Message, StreamDelta, Usage
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, Reply
from tests.fakes.wait import until
from tests.stores import NewLocation, set_read_only


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Rig:
    fake: FakeLLM
    engine: Engine
    store: Store
    config: Config
    location: DbLocation

    async def rows(self) -> list[dict[str, Any]]:
        rows = await self.store.fetchall("SELECT * FROM attempts ORDER BY id")
        return [dict(r) for r in rows]

    def calls(self, model: str) -> list[Any]:
        return [r for r in self.fake.requests if r.model == model]


class RecordingApprover:
    def __init__(self, approve: bool) -> None:
        self.approve = approve
        self.asked: list[ApprovalRequest] = []

    async def decide(self, request: ApprovalRequest) -> Decision:
        self.asked.append(request)
        return Decision(self.approve, "test-admin", "ok" if self.approve else "too dear")


RigFactory = Callable[..., Any]


@pytest.fixture
async def rig(fake_llm: FakeLLM, new_location: NewLocation) -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    async def make(
        urls: dict[str, str] | None = None, approver: Any = None, **overrides: Any
    ) -> Rig:
        base = pyramid_urls(fake_llm.base_url) | (urls or {})
        cfg = make_config(base, **overrides)
        location = new_location()
        store = await open_store(location)
        providers = {n: build_provider(n, p) for n, p in cfg.providers.items()}
        engine = Engine(
            cfg,
            providers,
            health=HealthBoard(cfg.routing),
            ledger=Ledger(store, cfg),
            approver=approver,
        )
        r = Rig(fake_llm, engine, store, cfg, location)
        made.append(r)
        return r

    yield make
    for r in made:
        for p in r.engine.providers.values():
            await p.aclose()
        await r.store.close()


def ask(text: str = "hello", **kw: Any) -> ChatRequest:
    return ChatRequest((Message("system", "be brief"), Message("user", text)), **kw)


def outcomes(result: Result | AllAttemptsFailed) -> list[tuple[str, str]]:
    return [(a.ref, a.outcome) for a in result.attempts]


async def test_cheapest_tier_answers_and_one_ledger_row(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script("qwen3:14b", Reply(text="hi there", input_tokens=12, output_tokens=3))
    res = await r.engine.complete(ask(task="chat", agent="digest", run_id="run-1"))
    assert res.content == "hi there"
    assert (res.answered_by.tier, res.answered_by.ref) == (0, "local/qwen3:14b")
    (row,) = await r.rows()
    assert row["outcome"] == "ok" and row["tier"] == 0 and row["min_tier"] == 0
    assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (12, 3, 0.0)
    assert (row["agent"], row["run_id"], row["task"]) == ("digest", "run-1", "chat")
    assert row["request_id"] == res.request_id
    assert res.route_header() == "tier=0; model=local/qwen3:14b; attempts=1"


FAULTS: list[tuple[str, Reply, str]] = [
    ("500", Reply(status=500), "unavailable"),
    ("502", Reply(status=502), "unavailable"),
    ("503", Reply(status=503), "unavailable"),
    ("429", Reply(status=429), "unavailable"),
    ("429 retry-after", Reply(status=429, retry_after=7), "unavailable"),
    ("malformed", Reply(malformed=True, text=""), "unavailable"),  # garbage before content
    ("wrong content-type", Reply(content_type="text/html"), "unavailable"),
    ("401", Reply(status=401), "fatal"),
    ("404", Reply(status=404), "fatal"),  # unknown model
    ("empty", Reply(text=""), "unusable"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("name", "fault", "outcome"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_fault_on_tier0_is_answered_by_tier1(
    rig: RigFactory, name: str, fault: Reply, outcome: str, stream: bool
) -> None:
    r = await rig()
    r.fake.script("qwen3:14b", fault)
    r.fake.script("gemini-flash", Reply(text="from flash", input_tokens=10, output_tokens=4))
    if stream:
        deltas, res = await collect(r.engine, ask(task="chat"))
        assert "".join(deltas) == "from flash"
    else:
        res = await r.engine.complete(ask(task="chat"))
    assert res.content == "from flash"
    assert outcomes(res) == [("local/qwen3:14b", outcome), ("flash/gemini-flash", "ok")]
    rows = await r.rows()
    assert [x["outcome"] for x in rows] == [outcome, "ok"]
    assert len(rows) == len(r.fake.requests)  # one row per call, no double charge
    assert rows[1]["cost_usd"] == pytest.approx(10 * 0.3e-6 + 4 * 2.5e-6)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_refused_connection_fails_over(rig: RigFactory, stream: bool) -> None:
    r = await rig(urls={"local": closed_port_url()})
    r.fake.script("gemini-flash", Reply(text="from flash"))
    res = (await collect(r.engine, ask()))[1] if stream else await r.engine.complete(ask())
    assert outcomes(res) == [("local/qwen3:14b", "unavailable"), ("flash/gemini-flash", "ok")]
    assert "refused" in res.attempts[0].reason


async def test_breaker_spares_the_second_request_the_timeout(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script("qwen3:14b", Reply(hang=True))
    first = await r.engine.complete(ask())
    assert outcomes(first)[0] == ("local/qwen3:14b", "unavailable")
    assert "timeout" in first.attempts[0].reason
    second = await r.engine.complete(ask())
    assert outcomes(second) == [("local/qwen3:14b", "skipped"), ("flash/gemini-flash", "ok")]
    assert "cooling down" in second.attempts[0].reason
    assert len(r.calls("qwen3:14b")) == 1  # the dead model was not called again
    assert second.attempts[1].latency_ms < 1000  # no 2 s timeout paid
    assert len(await r.rows()) == 3


async def test_same_tier_failover_before_climbing(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script("deepseek-chat", Reply(status=503))
    r.fake.script("deepseek-backup", Reply(text="backup answer"))
    res = await r.engine.complete(ask(task="analysis"))
    assert outcomes(res) == [("deep/deepseek-chat", "unavailable"), ("deep2/deepseek-backup", "ok")]


async def test_unusable_climbs_a_tier_skipping_the_rest_of_its_tier(rig: RigFactory) -> None:
    r = await rig(approver=RecordingApprover(True))
    r.fake.script("deepseek-chat", Reply(text=""))
    r.fake.script("claude-opus", Reply(text="opus answer"))
    res = await r.engine.complete(ask(task="analysis"))
    assert outcomes(res) == [("deep/deepseek-chat", "unusable"), ("opus/claude-opus", "ok")]
    assert r.calls("deepseek-backup") == []


async def test_reasoning_floor_and_double_budget_retry(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script(
        "qwen3:14b",
        Reply(text="", reasoning="thinking hard..."),
        Reply(text="answer", reasoning="short thought"),
    )
    res = await r.engine.complete(ask(max_tokens=100))
    assert res.content == "answer"
    assert outcomes(res) == [("local/qwen3:14b", "unusable"), ("local/qwen3:14b", "ok")]
    budgets = [c.body["options"]["num_predict"] for c in r.calls("qwen3:14b")]
    assert budgets == [1024, 2048]  # floor, then doubled
    assert "reasoning used the budget of 1024 tokens" in res.attempts[0].reason
    assert "thought" not in res.content


async def test_reasoning_only_twice_escalates(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script("qwen3:14b", Reply(text="", reasoning="hmm"), Reply(text="", reasoning="hmm"))
    r.fake.script("gemini-flash", Reply(text="flash"))
    res = await r.engine.complete(ask())
    assert outcomes(res) == [
        ("local/qwen3:14b", "unusable"),
        ("local/qwen3:14b", "unusable"),
        ("flash/gemini-flash", "ok"),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_think_tags_never_reach_the_answer(rig: RigFactory, stream: bool) -> None:
    r = await rig()
    r.fake.script(
        "qwen3:14b", Reply(text="the answer", reasoning="secret musing", think_inline=True)
    )
    if stream:
        deltas, res = await collect(r.engine, ask())
        assert "".join(deltas) == "the answer"
    else:
        res = await r.engine.complete(ask())
    assert res.content == "the answer"
    assert "musing" not in res.content and "<think>" not in res.content


async def test_validator_failure_escalates(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script("qwen3:14b", Reply(text="Sure! The name is Ada."))
    r.fake.script("gemini-flash", Reply(text='{"name": "Ada"}'))
    res = await r.engine.complete(ask(task="extract"))
    assert res.content == '{"name": "Ada"}'
    assert outcomes(res) == [("local/qwen3:14b", "unusable"), ("flash/gemini-flash", "ok")]
    assert "not valid JSON" in res.attempts[0].reason


async def test_validated_stream_is_held_until_it_passes(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script("qwen3:14b", Reply(text="no json here"))
    r.fake.script("gemini-flash", Reply(text='{"name": "Ada"}'))
    deltas, res = await collect(r.engine, ask(task="extract"))
    assert "".join(deltas) == '{"name": "Ada"}'  # the bad answer was never streamed
    assert res.answered_by.ref == "flash/gemini-flash"


async def test_approval_denied_skips_the_tier(rig: RigFactory) -> None:
    approver = RecordingApprover(False)
    r = await rig(approver=approver)
    with pytest.raises(AllAttemptsFailed) as info:
        await r.engine.complete(ask(task="strategy"))
    assert outcomes(info.value) == [("opus/claude-opus", "denied")]
    assert "denied by test-admin" in str(info.value)
    assert r.calls("claude-opus") == []
    assert await r.rows() == []


async def test_approval_request_carries_reason_and_estimate(rig: RigFactory) -> None:
    approver = RecordingApprover(True)
    r = await rig(approver=approver)
    r.fake.script("deepseek-chat", Reply(status=500))
    r.fake.script("deepseek-backup", Reply(status=500))
    r.fake.script("claude-opus", Reply(text="opus"))
    res = await r.engine.complete(ask(task="analysis"))
    assert res.answered_by.ref == "opus/claude-opus"
    (req,) = approver.asked
    assert req.tier == 3 and req.model == "opus/claude-opus" and req.task == "analysis"
    assert "deep/deepseek-chat unavailable" in req.reason
    assert req.estimated_cost_usd == pytest.approx(
        512 * 25e-6 + (len("be brief") + len("hello")) // 4 * 5e-6, rel=0.1
    )


async def test_default_policy_denies(rig: RigFactory) -> None:
    r = await rig(approvals={"default": "deny"})
    with pytest.raises(AllAttemptsFailed, match="denied by policy"):
        await r.engine.complete(ask(tier=3))


async def test_all_failed_lists_every_attempt(rig: RigFactory) -> None:
    r = await rig(urls={"local": closed_port_url()}, approver=RecordingApprover(True))
    for model in ("gemini-flash", "deepseek-chat", "deepseek-backup", "claude-opus"):
        r.fake.script(model, Reply(status=503))
    with pytest.raises(AllAttemptsFailed) as info:
        await r.engine.complete(ask())
    msg = str(info.value)
    assert "no model could answer task 'chat'" in msg
    for ref in (
        "local/qwen3:14b",
        "flash/gemini-flash",
        "deep/deepseek-chat",
        "deep2/deepseek-backup",
        "opus/claude-opus",
    ):
        assert ref in msg
    assert len(info.value.attempts) == 5 == len(await r.rows())


async def test_stream_and_json_cost_the_same(rig: RigFactory) -> None:
    r = await rig()
    reply = Reply(text="a b c d", input_tokens=30, output_tokens=9)
    r.fake.script("gemini-flash", reply, reply)
    plain = await r.engine.complete(ask(tier=1))
    _, streamed = await collect(r.engine, ask(tier=1))
    assert plain.usage == streamed.usage
    assert plain.cost_usd == pytest.approx(streamed.cost_usd) and plain.cost_usd > 0
    rows = await r.rows()
    assert [x["streamed"] for x in rows] == [0, 1]
    assert rows[0]["cost_usd"] == rows[1]["cost_usd"]


async def test_stream_cut_after_first_byte_raises_and_is_recorded(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script("qwen3:14b", Reply(text="partial answer here", cut_stream=True))
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for item in r.engine.stream(ask()):
            if isinstance(item, StreamDelta):
                got.append(item.content)
    assert info.value.kind == "stream_cut"
    assert got  # content had gone out, so no failover
    (row,) = await r.rows()
    assert row["outcome"] == "unavailable"


async def test_request_with_unknown_task_is_a_routing_error(rig: RigFactory) -> None:
    from core.errors import RoutingError

    r = await rig()
    with pytest.raises(RoutingError, match="unknown task 'nope'"):
        await r.engine.complete(ask(task="nope"))


async def collect(
    engine: Engine, req: ChatRequest, rules: Validators | None = None
) -> tuple[list[str], Result]:
    """Consume a stream; checks Started comes once, right before the first delta."""
    deltas: list[str] = []
    result: Result | None = None
    started: list[Started] = []
    async for item in engine.stream(req, rules):
        if isinstance(item, Started):
            assert not deltas and not started
            started.append(item)
        elif isinstance(item, StreamDelta):
            assert started, "a delta before Started"
            deltas.append(item.content)
        else:
            result = item
    assert result is not None
    assert started[0].ref == result.answered_by.ref
    assert started[0].route_header() == result.route_header()
    return deltas, result


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_cancelled_call_keeps_its_row_and_frees_the_probe(
    rig: RigFactory, stream: bool
) -> None:
    import asyncio

    r = await rig()
    r.fake.script("qwen3:14b", Reply(hang=True))
    # a half-open breaker: this call is its probe
    r.engine.health.failure(
        "local/qwen3:14b", ProviderError("timeout", "local", "qwen3:14b"), 1.0, now=-1000.0
    )
    task = asyncio.create_task(collect(r.engine, ask()) if stream else r.engine.complete(ask()))
    await r.fake.wait_for_requests(1, where=lambda q: q.model == "qwen3:14b")
    assert "probe" in r.engine.health.snapshot(0).blocked["local/qwen3:14b"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (row,) = await r.rows()
    assert row["outcome"] == "cancelled" and row["model"] == "qwen3:14b"
    assert "local/qwen3:14b" not in r.engine.health.snapshot(0).blocked


async def test_a_denial_can_keep_the_best_lower_answer(rig: RigFactory) -> None:
    r = await rig(approver=RecordingApprover(False))
    r.fake.script("deepseek-chat", Reply(text="a short answer"))
    req = ask(task="analysis")
    rules = {"min_chars": 100}
    from core.config.common import Validators

    with pytest.raises(AllAttemptsFailed, match="denied by test-admin"):
        await r.engine.complete(req, rules=Validators(**rules))
    r.fake.script("deepseek-chat", Reply(text="a short answer"))
    kept = await r.engine.complete(
        ChatRequest(req.messages, task="analysis", keep_lower_on_deny=True),
        rules=Validators(**rules),
    )
    assert kept.content == "a short answer" and kept.answered_by.outcome == "unusable"
    assert [a.outcome for a in kept.attempts][-1] == "denied"


@pytest.mark.parametrize("model", ["gemini-flash", "deepseek-chat", "claude-opus"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_cached_input_is_priced_at_its_own_rate(
    rig: RigFactory, model: str, stream: bool
) -> None:
    from tests.configs import pyramid

    models = pyramid()["models"]
    for m in models.values():
        m["cost"] = {"input": 2.0, "output": 10.0, "cached_input": 0.5}
    r = await rig(models=models, approver=RecordingApprover(True))
    r.fake.script(model, Reply(text="x", input_tokens=1000, output_tokens=100, cached_tokens=800))
    tier = {"gemini-flash": 1, "deepseek-chat": 2, "claude-opus": 3}[model]
    req = ask(tier=tier)
    res = (await collect(r.engine, req))[1] if stream else await r.engine.complete(req)
    assert res.usage.input_tokens == 1000 and res.usage.cached_input_tokens == 800
    assert res.cost_usd == pytest.approx((200 * 2.0 + 800 * 0.5 + 100 * 10.0) / 1e6)
    (row,) = await r.rows()
    assert row["cached_tokens"] == 800


async def test_a_cancelled_paid_call_counts_its_worst_case(rig: RigFactory) -> None:
    import asyncio

    r = await rig()
    r.fake.script("gemini-flash", Reply(hang=True))
    task = asyncio.create_task(r.engine.complete(ask(tier=1)))
    await r.fake.wait_for_requests(1, where=lambda q: q.model == "gemini-flash")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (row,) = await r.rows()
    worst = ((len("be brief") + len("hello")) // 4 + 1) * 0.3e-6 + 512 * 2.5e-6
    assert row["outcome"] == "cancelled" and row["cost_usd"] == pytest.approx(worst)


async def test_an_approval_whose_run_goes_away_expires(store: Store) -> None:
    import asyncio

    from core.config.models import ApprovalsConfig
    from core.engine.approvals import ApprovalBroker, ApprovalRequest

    broker = ApprovalBroker(store, ApprovalsConfig(timeout_s=60))

    async def notify(record: Any, shown: Any) -> list[str]:
        await shown(1, 1)  # one admin has the request: the run waits for a person
        return []

    broker.notifiers.append(notify)
    req = ApprovalRequest("r", "strategy", 3, "opus/claude-opus", "why", 0.1)
    task = asyncio.create_task(broker.decide(req))
    await until(broker.pending, what="the approval stored as pending")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = await broker.get(1)
    assert record is not None and record.status == "expired"
    assert await broker.resolve(1, True, "@late") == (False, "this approval has expired")


async def test_a_run_cancelled_while_its_approval_is_committed_leaves_no_pending_row(
    store: Store,
) -> None:
    """The cancel lands after the row's COMMIT went out but before decide() knew its id:
    the row must still be expired, not left pending with nobody waiting for it."""
    import contextlib

    from core.config.models import ApprovalsConfig
    from core.engine.approvals import ApprovalBroker, ApprovalRequest

    committed, go_on = asyncio.Event(), asyncio.Event()
    real = store.transaction

    @contextlib.asynccontextmanager
    async def slow_to_return(serialized: bool = True) -> AsyncIterator[Any]:
        async with real(serialized) as tx:
            yield tx
        if not committed.is_set():  # the first transaction is the insert
            committed.set()
            await go_on.wait()

    broker = ApprovalBroker(store, ApprovalsConfig(timeout_s=60))

    async def notify(record: Any, shown: Any) -> list[str]:
        await shown(1, 1)
        return []

    broker.notifiers.append(notify)
    store.transaction = slow_to_return  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(broker.decide(ApprovalRequest("r", "s", 3, "m", "why", 0.1)))
        await committed.wait()
        task.cancel()
        await asyncio.sleep(0)
        go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        store.transaction = real  # type: ignore[method-assign]
    record = await broker.get(1)
    assert record is not None and record.status == "expired"
    assert record.decided_by == "abandoned"


# -- a request's own 400 is not an outage (issue 13) ------------------------------------


@pytest.mark.parametrize("status", [400, 413, 422])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_requests_own_400_fails_it_without_opening_a_breaker(
    rig: RigFactory, status: int, stream: bool
) -> None:
    """A 300 KB prompt over the context, say: before, the model's breaker opened for 900 s
    for everyone and every request went to pricier tiers."""
    r = await rig()
    r.fake.script("qwen3:14b", Reply(status=status, error_message="prompt is too long"))
    with pytest.raises(RequestRejected) as info:
        if stream:
            await collect(r.engine, ask(task="chat"))
        else:
            await r.engine.complete(ask(task="chat"))
    assert outcomes(info.value) == [("local/qwen3:14b", "rejected")]
    assert "prompt is too long" in str(info.value.error)
    assert not r.calls("gemini-flash")  # no pricier tier paid for a request that can't work
    assert r.engine.health.snapshot(0).blocked == {}
    r.fake.script("qwen3:14b", Reply(text="fine"))
    res = await r.engine.complete(ask(task="chat"))  # the next caller is not affected
    assert outcomes(res) == [("local/qwen3:14b", "ok")]
    assert [x["outcome"] for x in await r.rows()] == ["rejected", "ok"]


@pytest.mark.parametrize(
    ("model", "task", "message", "fallback"),
    [
        # DeepSeek answers an unknown model with 400 "Model Not Exist"
        ("deepseek-chat", "analysis", "Model Not Exist", "deepseek-backup"),
        # Gemini answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID
        ("gemini-flash", "summarize", "API key not valid. Please pass a valid API key.", None),
    ],
)
async def test_a_400_that_names_a_config_fault_is_fatal_and_fails_over(
    rig: RigFactory, model: str, task: str, message: str, fallback: str | None
) -> None:
    r = await rig()
    r.fake.script(model, Reply(status=400, error_message=message))
    for name in ("deepseek-backup", "deepseek-chat"):
        if name != model:
            r.fake.script(name, Reply(text="an answer long enough to pass"))
    res = await r.engine.complete(ask(task=task))
    assert res.attempts[0].outcome == "fatal"
    assert res.answered_by.outcome == "ok"
    if fallback:
        assert res.answered_by.model == fallback
    blocked = r.engine.health.snapshot(0).blocked
    assert any(ref.endswith(model) for ref in blocked)  # the long breaker opened


def _capped_models(limit: int) -> dict[str, Any]:
    return {
        "local/qwen3:14b": {"reasoning": True, "max_tokens": 1024, "max_output_tokens": limit},
        "flash/gemini-flash": {"max_tokens": 512, "max_output_tokens": limit},
        "deep/deepseek-chat": {"max_tokens": 512, "max_output_tokens": limit},
        "deep2/deepseek-backup": {"max_tokens": 512},
        "opus/claude-opus": {"max_tokens": 512},
    }


async def test_max_tokens_is_capped_at_the_models_output_limit(rig: RigFactory) -> None:
    r = await rig(models=_capped_models(4096))
    r.fake.script("deepseek-chat", Reply(text="an answer"))
    res = await r.engine.complete(ask(task="analysis", max_tokens=10**30))
    assert res.answered_by.max_tokens == 4096
    (call,) = r.calls("deepseek-chat")
    assert call.body["max_tokens"] == 4096
    assert r.engine.plan("analysis", max_tokens=10**30).candidates[0].max_tokens == 4096


async def test_the_double_budget_retry_stays_under_the_output_limit(rig: RigFactory) -> None:
    """A thinking model at its limit already: no retry that would ask for more, climb."""
    r = await rig(models=_capped_models(1024))
    r.fake.script("qwen3:14b", Reply(text="", reasoning="long thoughts", reasoning_tokens=1024))
    r.fake.script("gemini-flash", Reply(text="from flash"))
    res = await r.engine.complete(ask(task="chat"))
    assert outcomes(res) == [("local/qwen3:14b", "unusable"), ("flash/gemini-flash", "ok")]
    (call,) = r.calls("qwen3:14b")
    assert call.body["options"]["num_predict"] == 1024


# -- nothing billed goes unrecorded (issue 13) ------------------------------------------


async def test_a_call_is_in_the_ledger_before_it_leaves(rig: RigFactory) -> None:
    r = await rig()
    r.fake.script("qwen3:14b", Reply(hang=True))
    task = asyncio.create_task(r.engine.complete(ask(task="chat", max_tokens=2000)))
    await r.fake.wait_for_requests(1)
    (row,) = await r.rows()  # the upstream has the call: the ledger has its row
    assert row["outcome"] == "pending"
    assert row["owner"] == r.engine.ledger.owner  # type: ignore[union-attr]
    assert row["output_tokens"] == 2000 and row["input_tokens"] > 0  # the worst case
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (row,) = await r.rows()
    assert row["outcome"] == "cancelled" and row["owner"] is None


def dead_owner() -> str:
    """An owner id of this host whose process has exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"{socket.gethostname()}:{int(proc.stdout)}:{int(time.time()) - 5}"


async def test_recovery_prices_calls_a_dead_process_left_in_flight(rig: RigFactory) -> None:
    r = await rig()
    meta = RequestMeta("req-dead", 1, "summarize")
    dead = Ledger(r.store, r.config, owner=dead_owner())
    await dead.begin(meta, Attempt(1, "flash", "gemini-flash", "pending", usage=Usage(1000, 512)))
    live = Ledger(r.store, r.config)
    await live.begin(
        RequestMeta("req-live", 1),
        Attempt(1, "flash", "gemini-flash", "pending", usage=Usage(9, 9)),
    )
    assert await live.recover() == 1
    rows = {x["request_id"]: x for x in await r.rows()}
    gone = rows["req-dead"]
    assert (gone["outcome"], gone["reason"]) == ("interrupted", INTERRUPTED)
    assert gone["cost_usd"] == pytest.approx(1000 * 0.3e-6 + 512 * 2.5e-6)  # the worst case
    assert rows["req-live"]["outcome"] == "pending"  # a live owner's call is its own
    report = await live.report(timedelta(days=1), "model")
    assert report.cost_usd == pytest.approx(gone["cost_usd"])
    assert await live.recover() == 0  # once


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_unwritable_store_stops_a_request_before_any_upstream_call(
    rig: RigFactory, stream: bool
) -> None:
    """The row comes first: a store that cannot take it means nothing is sent or paid."""
    r = await rig()
    await set_read_only(r.store, r.location, True)  # the store refuses every write
    try:
        with pytest.raises(StoreUnavailable):
            if stream:
                await collect(r.engine, ask(task="chat"))
            else:
                await r.engine.complete(ask(task="chat"))
    finally:
        await set_read_only(r.store, r.location, False)
    assert r.fake.requests == []
