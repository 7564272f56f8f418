"""The engine's call gate on a real SQLite budget: each attempt reserves its own worst
case, so the doubled-budget retry can be refused where its first call was not."""

from __future__ import annotations

from pathlib import Path

from core.engine.budget import BudgetGuard
from core.engine.engine import Engine
from core.engine.health import HealthBoard
from core.providers.testing import Answer, TestProvider
from core.store.sqlite import SQLiteStore
from core.types import ChatRequest, Message
from tests.configs import make_config, pyramid


async def test_a_retry_whose_doubled_worst_case_passes_a_cap_is_skipped(
    tmp_path: Path,
) -> None:
    models = pyramid()["models"]
    models["local/qwen3:14b"]["cost"] = {"input": 0.0, "output": 1.0}  # $1 per 1M out
    # 1024 tokens ($0.001024) fit under the cap; the doubled 2048 ($0.002048) do not
    cfg = make_config(models=models, budgets={"tier": {"0": {"day": 0.0015}}})
    store = await SQLiteStore.open(tmp_path / "gate.db")
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
