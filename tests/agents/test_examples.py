"""The example config's agents work: the RSS digest with subagents, and the reminder."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from core.app import App
from core.config.load import parse_config
from core.config.settings import Settings
from core.store.path import DbLocation
from tests.fakes.llm import FakeLLM, echo

ROOT = Path(__file__).resolve().parents[2]
RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>
<link>http://example.invalid/</link>
<item><title>{name} story one</title><link>http://x/1</link><description>first</description></item>
<item><title>{name} story two</title><link>http://x/2</link><description>second</description></item>
</channel></rss>"""


@pytest.fixture
async def feeds() -> AsyncIterator[str]:
    async def feed(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "down":
            return web.Response(status=503)
        return web.Response(text=RSS.format(name=name), content_type="application/rss+xml")

    app = web.Application()
    app.router.add_get("/feed/{name}", feed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_example_agents_run(
    fake_llm: FakeLLM, feeds: str, store_location: DbLocation
) -> None:
    fake_llm.default = echo
    doc = tomllib.loads((ROOT / "openclaw.example.toml").read_text(encoding="utf-8"))
    for p in doc["providers"].values():  # every provider → the loopback fake, no keys
        p.pop("embedded", None)  # (the real embedded model has tests of its own)
        p["base_url"] = fake_llm.base_url(p["api"])
        p.pop("api_key_env", None)
    digest = doc["agents"][0]
    digest["inputs"]["feeds"]["http"] = [
        f"{feeds}/feed/alpha",
        f"{feeds}/feed/down",
        f"{feeds}/feed/beta",
    ]
    digest["deliver"] = ["log"]
    config = parse_config(doc, warnings=[])
    app = await App.open(
        config,
        Settings(_env_file=None),  # type: ignore[call-arg]
        store_location,
        base_dir=ROOT,
    )
    try:
        run = await app.runner.run("morning-digest", "cli")
        assert run.status == "ok", run.error
        out = run.output or ""
        assert "## alpha" in out and "## beta" in out
        assert "alpha story one: first" in out  # a subagent's prompt, echoed back
        assert "could not be fetched" in out  # the dead feed is said, not hidden
        # three subagents on tier 0 (classify), the digest itself on tier 1 (summarize)
        assert sorted(r.api for r in fake_llm.requests) == [
            "google-generative-ai",
            "ollama",
            "ollama",
            "ollama",
        ]
        reminder = await app.runner.run("water-reminder", "schedule")
        assert reminder.status == "ok" and (reminder.output or "").startswith("💧 Time for")
        assert await app.delivery.drain() == 2
    finally:
        await app.close()
