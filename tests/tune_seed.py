"""A ledger seeded with known answers for the routing advisor, as the engine writes it:
``chat`` (tier 0) is unusable there 20 times of 25 (raise it); ``summarize`` (tier 1) is
answered there at the first attempt 20 times of 20 (try lower), and its trial answered 4
of 5 at tier 0; ``analysis`` has one request (too few for advice)."""

from __future__ import annotations

from datetime import datetime

from core.config.models import Config
from core.engine.ledger import Ledger, RequestMeta, price
from core.types import Attempt, Usage


async def seed(ledger: Ledger, config: Config, when: datetime) -> None:
    """Write the requests (1000 tokens in, 500 out, 900 ms each attempt) at ``when``."""
    n = 0
    refs = {t.level: t.models[0] for t in config.tiers}

    async def request(task: str, start: int, *steps: tuple[int, str], trial: bool = False) -> None:
        nonlocal n
        n += 1
        meta = RequestMeta(f"seed{n}", start, task, trial=trial)
        for tier, outcome in steps:
            provider, model = refs[tier].split("/", 1)
            usage = Usage(1000, 500)
            attempt = Attempt(
                tier,
                provider,
                model,
                outcome,  # type: ignore[arg-type]
                "empty answer" if outcome == "unusable" else "",
                latency_ms=900.0,
                usage=usage,
                cost_usd=price(config, refs[tier], usage),
            )
            await ledger.record(meta, attempt, when)

    for _ in range(20):
        await request("chat", 0, (0, "unusable"), (1, "ok"))
    for _ in range(5):
        await request("chat", 0, (0, "ok"))
    for _ in range(20):
        await request("summarize", 1, (1, "ok"))
    for _ in range(4):
        await request("summarize", 0, (0, "ok"), trial=True)
    await request("summarize", 0, (0, "unusable"), (1, "ok"), trial=True)
    await request("analysis", 1, (1, "ok"))
