"""The engine's call gate on a real SQLite budget: each attempt reserves its own worst
case, so the doubled-budget retry can be refused where its first call was not."""

from __future__ import annotations

import time

from core.engine.budget import BudgetGuard
from core.engine.engine import Engine
from core.engine.health import HealthBoard
from core.errors import ProviderError
from core.providers.testing import Answer, Fault, TestProvider
from core.store.open import open_store
from core.store.path import DbLocation
from core.types import ChatRequest, Message, ModelCall, ModelResponse
from tests.configs import make_config, pyramid


async def test_a_retry_whose_doubled_worst_case_passes_a_cap_is_skipped(
    store_location: DbLocation,
) -> None:
    models = pyramid()["models"]
    models["local/qwen3:14b"]["cost"] = {"input": 0.0, "output": 1.0}  # $1 per 1M out
    # 1024 tokens ($0.001024) fit under the cap; the doubled 2048 ($0.002048) do not
    cfg = make_config(models=models, budgets={"tier": {"0": {"day": 0.0015}}})
    store = await open_store(store_location)
    try:
        providers = {name: TestProvider(name) for name in cfg.providers}
        providers["local"].script("qwen3:14b", Answer("", reasoning="thinking"))
        providers["flash"].script("gemini-flash", Answer("from flash"))
        engine = Engine(
            cfg, providers, health=HealthBoard(cfg.routing), budget=BudgetGuard(store, cfg)
        )
        res = await engine.complete(ChatRequest((Message("user", "hi"),)))
        assert res.content == "from flash"
        assert [(a.ref, a.outcome) for a in res.attempts] == [
            ("local/qwen3:14b", "unusable"),
            ("local/qwen3:14b", "skipped"),
            ("flash/gemini-flash", "ok"),
        ]
        assert "over budget: tier 0 day cap" in res.attempts[1].reason
        assert providers["local"].budgets("qwen3:14b") == [1024]  # the retry never left
        # each reservation was settled: none outlives its call
        assert await store.fetchall("SELECT * FROM reservations") == []
    finally:
        await store.close()


class _OpensABreaker(TestProvider):
    """Tier 0's provider: while its call is in flight, another request's failure opens
    Tier 1's breaker (as a burst of concurrent failures would)."""

    def __init__(self, name: str, health: HealthBoard, ref: str) -> None:
        super().__init__(name)
        self.health, self.ref = health, ref

    async def complete(self, model: str, call: ModelCall) -> ModelResponse:
        provider, other = self.ref.split("/", 1)
        self.health.failure(
            self.ref, ProviderError("unavailable", provider, other), 1.0, time.monotonic()
        )
        return await super().complete(model, call)


async def test_a_breaker_that_opened_after_planning_stops_the_call() -> None:
    cfg = make_config()
    health = HealthBoard(cfg.routing)
    providers: dict[str, TestProvider] = {name: TestProvider(name) for name in cfg.providers}
    providers["local"] = _OpensABreaker("local", health, "flash/gemini-flash")
    providers["local"].script("qwen3:14b", Fault("unavailable"))
    providers["deep"].script("deepseek-chat", Answer("from deepseek"))
    engine = Engine(cfg, providers, health=health)
    res = await engine.complete(ChatRequest((Message("user", "hi"),)))
    assert res.content == "from deepseek"
    assert [(a.ref, a.outcome) for a in res.attempts] == [
        ("local/qwen3:14b", "unavailable"),
        ("flash/gemini-flash", "skipped"),  # planned while closed, open by its turn
        ("deep/deepseek-chat", "ok"),
    ]
    assert res.attempts[1].reason.startswith("cooling down")
    assert providers["flash"].calls == []  # the gate asked the breaker again: no call left


async def test_a_model_planned_as_the_last_resort_is_still_called() -> None:
    # every model cooling down when the request began: the plan tries them anyway, and the
    # gate must not refuse them for the cooldown the plan already knew about
    cfg = make_config()
    health = HealthBoard(cfg.routing)
    now = time.monotonic()
    for ref in cfg.models:
        provider, model = ref.split("/", 1)
        health.failure(ref, ProviderError("unavailable", provider, model), 1.0, now)
    providers = {name: TestProvider(name) for name in cfg.providers}
    providers["local"].script("qwen3:14b", Answer("from local"))
    res = await Engine(cfg, providers, health=health).complete(
        ChatRequest((Message("user", "hi"),))
    )
    assert res.content == "from local"
    assert [(a.ref, a.outcome) for a in res.attempts] == [("local/qwen3:14b", "ok")]


async def test_a_prompt_over_a_models_context_goes_to_the_next_model() -> None:
    doc = pyramid()
    doc["models"]["local/qwen3:14b"]["context"] = 100  # tokens
    doc["models"]["flash/gemini-flash"]["context"] = 100_000
    cfg = make_config(models=doc["models"])
    providers = {name: TestProvider(name) for name in cfg.providers}
    providers["local"].script("qwen3:14b", Answer("short one"))
    providers["flash"].script("gemini-flash", Answer("from flash"))
    engine = Engine(cfg, providers, health=HealthBoard(cfg.routing))
    res = await engine.complete(ChatRequest((Message("user", "hi " * 400),)))  # ~300 tokens
    assert res.content == "from flash"
    assert [(a.ref, a.outcome) for a in res.attempts] == [
        ("local/qwen3:14b", "skipped"),
        ("flash/gemini-flash", "ok"),
    ]
    assert res.attempts[0].reason == "the prompt (~301 tokens) is over the model's context of 100"
    assert providers["local"].calls == []
    assert [c.call.context for c in providers["flash"].calls] == [100_000]
    # a prompt that fits is sent, with the context for the adapter to pass on
    res = await engine.complete(ChatRequest((Message("user", "hi"),)))
    assert res.content == "short one" and providers["local"].calls[0].call.context == 100


async def test_a_no_think_task_reaches_the_adapter() -> None:
    cfg = make_config(tasks={"chat": 0, "routine": {"tier": 0, "think": False}})
    providers = {name: TestProvider(name) for name in cfg.providers}
    providers["local"].script("qwen3:14b", Answer("done"))
    engine = Engine(cfg, providers, health=HealthBoard(cfg.routing))
    await engine.complete(ChatRequest((Message("user", "hi"),), task="routine"))
    (call,) = providers["local"].calls
    assert (call.call.reasoning, call.call.no_think) == (False, True)
