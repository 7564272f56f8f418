"""[tasks.NAME] trial: a share of a task's requests starts one tier lower, picked from the
request id; the plan says so; the engine escalates as usual and marks the rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.config.load import parse_config
from core.engine.engine import Engine
from core.engine.health import HealthBoard
from core.engine.ledger import Ledger
from core.engine.routing import plan, trial_point
from core.errors import ConfigError
from core.providers import build_provider
from core.store.open import open_store
from core.types import ChatRequest, Message
from tests.configs import pyramid, pyramid_urls
from tests.fakes.llm import FakeLLM, Reply
from tests.stores import NewLocation

LONG = "a summary that is long enough to pass"


def doc(trial: Any, tier: int = 1) -> dict[str, Any]:
    d = pyramid()
    d["tasks"]["summarize"] = {"tier": tier, "min_chars": 20, "trial": trial}
    return d


def ids_where(inside: bool, share: float, n: int = 1) -> list[str]:
    ids = (f"req_{i}" for i in range(1000))
    return [rid for rid in ids if (trial_point(rid) < share) == inside][:n]


def test_the_split_is_deterministic_and_near_its_share() -> None:
    ids = [f"req_{i:024x}" for i in range(10_000)]
    points = [trial_point(rid) for rid in ids]
    assert points == [trial_point(rid) for rid in ids]  # the same id, the same way
    assert all(0 <= p < 1 for p in points)
    for share in (0.1, 0.25, 0.5):
        inside = sum(p < share for p in points) / len(points)
        assert abs(inside - share) <= 0.015, (share, inside)


def test_the_plan_says_which_way_a_request_goes() -> None:
    cfg = parse_config(doc(0.1), warnings=[])
    (inside,) = ids_where(True, 0.1)
    (outside,) = ids_where(False, 0.1)
    p = plan(cfg, task="summarize", request_id=inside)
    assert p.trial and p.min_tier == 0 and p.candidates[0].tier == 0
    assert "trial: this request starts at tier 0 (share 10%)" in p.explain()
    p = plan(cfg, task="summarize", request_id=outside)
    assert not p.trial and p.min_tier == 1 and p.candidates[0].tier == 1
    assert "is not in the 10% that start at tier 0" in p.explain()
    p = plan(cfg, task="summarize")  # `openclaw route`: no request yet
    assert not p.trial and "trial: 10% of requests start at tier 0" in p.explain()
    p = plan(cfg, task="summarize", tier=2, request_id=inside)  # a named tier is kept
    assert not p.trial and p.min_tier == 2


@pytest.mark.parametrize(
    ("trial", "tier", "message"),
    [
        (0, 1, "tasks.summarize.trial: must be a share above 0 and at most 0.5, got 0"),
        (0.6, 1, "tasks.summarize.trial: must be a share above 0 and at most 0.5, got 0.6"),
        (-0.1, 1, "give e.g. trial = 0.1"),
        (0.1, 0, "tier 0 is the lowest configured tier: there is no tier below to try"),
        ("lots", 1, "tasks.summarize.trial: Input should be a valid number"),
    ],
)
def test_a_bad_trial_is_a_config_error_naming_the_key(trial: Any, tier: int, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(doc(trial, tier), warnings=[])
    assert message in str(e.value)


@pytest.fixture
async def engine(fake_llm: FakeLLM, new_location: NewLocation) -> AsyncIterator[Engine]:
    d = doc(0.5)
    for name, url in pyramid_urls(fake_llm.base_url).items():
        d["providers"][name]["base_url"] = url
    cfg = parse_config(d, warnings=[])
    store = await open_store(new_location())
    providers = {n: build_provider(n, p) for n, p in cfg.providers.items()}
    eng = Engine(cfg, providers, health=HealthBoard(cfg.routing), ledger=Ledger(store, cfg))
    yield eng
    for p in providers.values():
        await p.aclose()
    await store.close()


async def test_a_trial_request_starts_lower_and_escalates_when_that_tier_fails(
    engine: Engine, fake_llm: FakeLLM
) -> None:
    answered, failed = ids_where(True, 0.5, 2)
    (regular,) = ids_where(False, 0.5)

    def ask(rid: str) -> ChatRequest:
        return ChatRequest((Message("user", "summarize this"),), task="summarize", request_id=rid)

    fake_llm.script("qwen3:14b", Reply(text=LONG), Reply(text=""))
    fake_llm.script("gemini-flash", Reply(text=LONG), Reply(text=LONG))
    res = await engine.complete(ask(answered))
    assert res.answered_by.tier == 0 and res.plan.trial
    res = await engine.complete(ask(failed))
    assert [(a.tier, a.outcome) for a in res.attempts] == [(0, "unusable"), (1, "ok")]
    res = await engine.complete(ask(regular))
    assert [(a.tier, a.outcome) for a in res.attempts] == [(1, "ok")]
    assert engine.ledger is not None
    rows = await engine.ledger.store.fetchall(
        "SELECT request_id, min_tier, tier, outcome, trial FROM attempts ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        (answered, 0, 0, "ok", 1),
        (failed, 0, 0, "unusable", 1),
        (failed, 0, 1, "ok", 1),
        (regular, 1, 1, "ok", 0),
    ]
