"""The routing advisor on a seeded ledger with known answers: per-task climbs, the reasons
grouped, the waste, and the suggestions with their what-if effect per month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.config.load import parse_config
from core.config.models import Config
from core.engine.advisor import (
    MIN_REQUESTS,
    TRIAL_MIN_SUCCESS,
    Why,
    advise,
    parse_period,
    tune_lines,
    why,
    with_tier,
)
from core.engine.ledger import Ledger, RecordedAttempt, RequestMeta, price
from core.engine.tuning import tune_report
from core.store.base import Store
from core.store.times import utcnow_iso
from core.types import Attempt, Usage
from tests.configs import pyramid

DAY = timedelta(days=1)
REFS = {0: "local/qwen3:14b", 1: "flash/gemini-flash", 2: "deep/deepseek-chat"}


def config() -> Config:
    doc = pyramid()
    # tier 0 is priced here, so that skipping it shows in dollars as well as seconds
    doc["models"]["local/qwen3:14b"]["cost"] = {"input": 0.1, "output": 0.2}
    doc["tasks"]["summarize"] = {"tier": 1, "min_chars": 20, "trial": 0.25}
    return parse_config(doc, warnings=[])


CFG = config()
C0 = price(CFG, REFS[0], Usage(1000, 500))  # 0.0002
C1 = price(CFG, REFS[1], Usage(1000, 500))


class Seed:
    """Requests written as the engine writes them: one list of attempts each."""

    def __init__(self) -> None:
        self.requests: list[list[RecordedAttempt]] = []

    def add(
        self,
        task: str | None,
        start: int,
        *steps: tuple[int, str, str],
        trial: bool = False,
        latency_ms: float = 800.0,
    ) -> str:
        rid = f"req{len(self.requests)}"
        self.requests.append(
            [
                RecordedAttempt(
                    task,
                    start,
                    tier,
                    REFS[tier],
                    outcome,
                    1000,
                    500,
                    price(CFG, REFS[tier], Usage(1000, 500)),
                    rid,
                    reason,
                    latency_ms,
                    trial,
                )
                for tier, outcome, reason in steps
            ]
        )
        return rid


OK0 = (0, "ok", "")
OK1 = (1, "ok", "")
EMPTY0 = (0, "unusable", "empty answer")


def seeded() -> tuple[Seed, str]:
    s = Seed()
    # classify (tier 0): 20 of 25 empty at tier 0, answered by tier 1
    for _ in range(20):
        s.add("classify", 0, EMPTY0, OK1)
    for _ in range(5):
        s.add("classify", 0, OK0)
    # summarize (tier 1): 30 answered at tier 1 first time; its trial: 8 of 10 at tier 0
    for _ in range(30):
        s.add("summarize", 1, OK1)
    for _ in range(8):
        s.add("summarize", 0, OK0, trial=True)
    for _ in range(2):
        s.add("summarize", 0, (0, "unusable", "answer shorter than min_chars=20"), OK1, trial=True)
    # analysis (tier 2): too few for advice; a validator failure, a timeout, a denial
    s.add("analysis", 2, (2, "unavailable", "timeout"), (2, "ok", ""))
    denied = s.add("analysis", 2, (2, "unusable", "answer does not match regex 'x'"))
    s.add(None, 1, OK1)  # named a tier, not a task: says nothing about a mapping
    return s, denied


def test_reason_groups_follow_what_the_engine_records() -> None:
    def a(outcome: str, reason: str = "") -> RecordedAttempt:
        return RecordedAttempt("t", 0, 0, REFS[0], outcome, 0, 0, 0.0, "r", reason)

    assert why(a("unusable", "empty answer")) is Why.UNUSABLE
    assert why(a("unusable", "reasoning used the budget of 1024 tokens, no answer")) is Why.UNUSABLE
    assert why(a("unusable", "JSON answer lacks required keys: name")) is Why.VALIDATOR
    assert why(a("unusable", "called an unknown tool 'x'")) is Why.VALIDATOR
    for outcome in ("unavailable", "fatal", "billing", "interrupted"):
        assert why(a(outcome)) is Why.UNAVAILABLE
    for outcome in ("ok", "rejected", "cancelled"):
        assert why(a(outcome)) is None


def test_a_task_mostly_unusable_at_its_tier_is_raised_with_its_effect() -> None:
    s, denied = seeded()
    report = advise(s.requests, CFG, DAY, {denied: {3}})
    classify = next(t for t in report.tasks if t.task == "classify")
    assert (classify.requests, classify.answered, classify.escalated) == (25, 25, 20)
    assert classify.share_pct(0) == 20 and classify.share_pct(1) == 80
    assert classify.why == {Why.UNUSABLE: 20}
    assert classify.wasted_usd == pytest.approx(20 * C0)
    assert classify.wasted_latency_ms == pytest.approx(20 * 800)
    assert classify.cost_per_answer == pytest.approx((25 * C0 + 20 * C1) / 25)
    sug = classify.suggestion
    assert sug is not None and (sug.kind, sug.from_tier, sug.to_tier) == ("raise", 0, 1)
    assert "20 of 25 attempts at tier 0 (80%) were unusable" in sug.evidence
    # the what-if replay: the 20 escalated requests skip tier 0 (its cost saved), the 5
    # answered there never ran on tier 1 (not priced); a day's worth times 30
    p = sug.projection
    assert p.known == 20
    assert p.monthly_usd == pytest.approx(-20 * C0 * 30)
    assert p.unpriced_per_month == pytest.approx(5 * 30)
    assert p.monthly_latency_s == pytest.approx(20 * 0.8 * 30)


def test_a_task_always_answered_first_time_is_tried_lower_with_its_trial() -> None:
    s, denied = seeded()
    report = advise(s.requests, CFG, DAY, {denied: {3}})
    summ = next(t for t in report.tasks if t.task == "summarize")
    assert summ.requests == 40 and summ.escalated == 2
    trial = summ.trial
    assert trial is not None and (trial.tier, trial.requests, trial.answered_there) == (0, 10, 8)
    assert trial.success_pct == 80
    assert trial.cost_usd == pytest.approx(10 * C0 + 2 * C1)
    sug = summ.suggestion
    assert sug is not None and (sug.kind, sug.from_tier, sug.to_tier) == ("lower", 1, 0)
    assert sug.evidence == "all 30 requests were answered at tier 1 at the first attempt"
    # the 30 never ran on tier 0: not priced by the replay, measured by the trial instead
    assert sug.projection.unpriced_per_month == pytest.approx(30 * 30)
    assert sug.trial is not None and "10 requests started at tier 0, 80% answered" in sug.trial
    per_trial_request = (10 * C0 + 2 * C1) / 10
    assert sug.trial_monthly_usd == pytest.approx((per_trial_request - C1) * 30 * 30)


def test_too_few_requests_and_other_reasons_are_reported_without_advice() -> None:
    s, denied = seeded()
    report = advise(s.requests, CFG, DAY, {denied: {3}})
    assert [t.task for t in report.tasks] == ["analysis", "classify", "summarize"]
    analysis = report.tasks[0]
    assert analysis.suggestion is None
    # a timeout answered by the tier's next model is failover, not a climb: not a reason
    assert analysis.why == {Why.VALIDATOR: 1, Why.DENIED: 1}
    assert analysis.answered == 1 and analysis.escalated == 1
    assert analysis.wasted_usd == 0  # a failure within the answering tier is no climb
    lines = "\n".join(tune_lines(report, "1d"))
    assert "validator 1, denied 1" in lines
    assert "raise classify: tier 0 → 1" in lines and "try lower summarize: tier 1 → 0" in lines


def test_thresholds_hold_at_their_edges() -> None:
    s = Seed()
    for _ in range(MIN_REQUESTS - 1):
        s.add("classify", 0, EMPTY0, OK1)
    assert advise(s.requests, CFG, DAY).suggestion("classify") is None  # one short
    s.add("classify", 0, EMPTY0, OK1)
    assert advise(s.requests, CFG, DAY).suggestion("classify") is not None
    half = Seed()
    for i in range(MIN_REQUESTS):
        half.add("classify", 0, *((EMPTY0, OK1) if i % 2 else (OK0,)))
    assert advise(half.requests, CFG, DAY).suggestion("classify") is None  # 50% is not most
    retried = Seed()
    for i in range(MIN_REQUESTS):
        retried.add("summarize", 1, *(((1, "unavailable", "timeout"), OK1) if i == 0 else (OK1,)))
    assert advise(retried.requests, CFG, DAY).suggestion("summarize") is None


def test_a_trial_that_failed_below_withholds_the_try_lower() -> None:
    s = Seed()
    for _ in range(MIN_REQUESTS):
        s.add("summarize", 1, OK1)
    for i in range(MIN_REQUESTS):
        steps = (OK0,) if i < MIN_REQUESTS * TRIAL_MIN_SUCCESS else (EMPTY0, OK1)
        s.add("summarize", 0, *steps, trial=True)
    report = advise(s.requests, CFG, DAY)
    assert report.suggestion("summarize") is None  # half answered at tier 0: not enough
    assert "trial: 20 requests started at tier 0, 50% answered there" in "\n".join(
        tune_lines(report, "1d")
    )
    s.add("summarize", 0, OK0, trial=True)  # 11 of 21: more than half
    assert advise(s.requests, CFG, DAY).suggestion("summarize") is not None


def test_the_copy_changes_only_that_task() -> None:
    other = with_tier(CFG, "summarize", 0)
    assert other.task_tier("summarize") == 0 and CFG.task_tier("summarize") == 1
    summ = other.task("summarize")
    assert summ is not None and summ.trial is None and summ.min_chars == 20
    assert with_tier(CFG, "classify", 1).tasks["classify"] == 1
    assert other.tasks["analysis"] == CFG.tasks["analysis"]


def test_periods() -> None:
    assert parse_period("30d") == timedelta(days=30)
    for bad in ("0d", "400d", "soon"):
        with pytest.raises(ValueError):
            parse_period(bad)


async def test_tune_reads_the_ledger_and_its_trial_rows(store: Store) -> None:
    """Through the real ledger on both engines: the trial column round-trips, and a
    request outside the period is left out."""
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    ledger = Ledger(store, CFG, clock=lambda: now)

    def att(tier: int, outcome: str, reason: str = "") -> Attempt:
        provider, model = REFS[tier].split("/", 1)
        usage = Usage(1000, 500)
        return Attempt(
            tier,
            provider,
            model,
            outcome,  # type: ignore[arg-type]
            reason,
            latency_ms=250.0,
            usage=usage,
            cost_usd=price(CFG, REFS[tier], usage),
        )

    for i in range(MIN_REQUESTS):
        meta = RequestMeta(f"a{i}", 0, "classify")
        await ledger.record(meta, att(0, "unusable", "empty answer"), now - timedelta(hours=1))
        await ledger.record(meta, att(1, "ok"), now - timedelta(hours=1))
    trial = RequestMeta("t1", 0, "summarize", trial=True)
    await ledger.record(trial, att(0, "ok"), now - timedelta(hours=2))
    old = RequestMeta("old", 0, "summarize", trial=True)
    await ledger.record(old, att(0, "ok"), now - timedelta(days=3))
    # escalations an admin denied or let expire count as denied; an approved one and an
    # agent's tool call do not
    for rid, status, tool in (
        ("a0", "denied", None),
        ("a1", "expired", None),
        ("a2", "approved", None),
        ("a3", "denied", "deploy"),
    ):
        await store.insert(
            "INSERT INTO approvals (request_id, task, tier, model, reason, estimated_cost_usd,"
            " status, tool, created_at, expires_at) VALUES (?, ?, 3, 'opus/claude-opus', '',"
            " 0.1, ?, ?, ?, ?)",
            (rid, "classify", status, tool, utcnow_iso(now - timedelta(hours=1)), utcnow_iso(now)),
        )
    report = await tune_report(ledger, DAY)
    by = {t.task: t for t in report.tasks}
    assert by["classify"].why == {Why.UNUSABLE: MIN_REQUESTS, Why.DENIED: 2}
    assert by["classify"].suggestion is not None
    assert by["classify"].wasted_latency_ms == pytest.approx(MIN_REQUESTS * 250)
    assert by["summarize"].requests == 1
    assert by["summarize"].trial is not None and by["summarize"].trial.answered_there == 1
