"""What the embedded SmolLM2-135M does when it is offered a tool, measured for real.

Each test offers the model ``http_get`` (the built-in's own spec) with five different
prompts, through the engine, with a loopback fake as tier 1 behind it. Only what is stable
is asserted: the engine judges every turn (a call whose arguments fit the schema, prose
that an auto turn may end with, or an unusable turn that climbs to tier 1) and never
crashes. The counts are printed (``pytest -s``) and written up in the README ("Agents that
act: the tool loop").

Measured with xllamacpp 2026.10.11549, on 2026-12-02: no tool call in 10 of 10 turns.
SmolLM2's chat template has no tools in it (llama.cpp's ``/props`` reports
``supports_tools: false``), so the tools are dropped before the prompt is rendered (48
prompt tokens with the tool offered and without it) and ``tool_choice = "required"``
constrains nothing: 5 of 5 auto turns are prose, accepted as final answers; 5 of 5
required turns are unusable ("no tool call, though tool_choice is required") and climb.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.agents.tools.http_get import SPEC
from core.app import App
from core.config.load import parse_config
from core.config.settings import Settings
from core.engine.structured import check_tool_calls
from core.types import Attempt, ChatRequest, Message, ToolChoice, ToolMode
from tests.fakes.llm import FakeLLM, FakeToolCall, Reply

# Five prompts, not one prompt five times: the server samples at temperature 0, so the
# same prompt gives the same turn every time.
PROMPTS = (
    "Fetch https://example.com/status and tell me whether the site is up.",
    "Use the http_get tool to read https://www.githubstatus.com/api/v2/status.json.",
    "What does https://example.org/ say? Fetch it with http_get.",
    "Check the status page at https://status.example.net/ for me.",
    "Get https://example.com/health and report its HTTP status.",
)
# room for one whole call ({"name": "http_get", "arguments": {"url": "…"}} is ~25 tokens)
MAX_TOKENS = 40
EMBEDDED = "embedded/smollm2"


@pytest.fixture
async def app(fake_llm: FakeLLM, tmp_path: Path) -> AsyncIterator[App]:
    """The real embedded model as tier 0, with ``tools`` left at its default (true, unlike
    the example config's false) so that it is offered the tool; the fake as tier 1."""
    fake_llm.default = Reply(
        text="", tool_calls=[FakeToolCall("http_get", {"url": "https://example.com/status"})]
    )
    doc: dict[str, Any] = {
        "routing": {"default_task": "chat", "cooldowns_s": [0.2]},
        "providers": {
            "embedded": {
                "api": "openai-completions",
                "timeout_s": 60,
                "embedded": {"model": "smollm2", "ctx": 1024, "threads": 2},
            },
            "fake": {
                "api": "openai-completions",
                "base_url": fake_llm.base_url("openai-completions"),
            },
        },
        "models": {EMBEDDED: {"max_tokens": MAX_TOKENS}, "fake/backup": {}},
        "tiers": [
            {"level": 0, "models": [EMBEDDED]},
            {"level": 1, "models": ["fake/backup"]},
        ],
        "tasks": {"chat": 0},
    }
    opened = await App.open(
        parse_config(doc, warnings=[]),
        Settings(_env_file=None),  # type: ignore[call-arg]
        tmp_path / "t.db",
        base_dir=tmp_path,
    )
    try:
        await opened.start_embedded()
        yield opened
    finally:
        await opened.close()


async def _template_caps(app: App) -> dict[str, Any]:
    """llama.cpp's own reading of the model's chat template (``/props``)."""
    base = app.embedded["embedded"].provider.base_url.removesuffix("/v1")
    async with aiohttp.ClientSession() as http, http.get(f"{base}/props") as r:
        props: dict[str, Any] = await r.json()
    return dict(props.get("chat_template_caps") or {})


def _kind(mode: ToolMode, tier0: Attempt, calls_fit: bool) -> str:
    if tier0.outcome == "ok" and tier0.tool_calls:
        assert calls_fit, "the engine passed a call that does not fit the schema"
        return "valid call"
    if tier0.outcome == "ok":
        assert mode == "auto", "prose passed although a tool call was required"
        return "prose"
    if tier0.outcome == "unusable":
        return f"unusable: {tier0.reason}"
    return f"{tier0.outcome}: {tier0.reason}"  # e.g. a timeout on a loaded machine: it climbs


# Five real model turns per test: longer than the default per-test timeout on a busy
# two-core machine (measured up to ~20 s a turn while other suites ran beside it).
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["auto", "required"])
async def test_smollm2_offered_a_tool(app: App, mode: ToolMode) -> None:
    tally: Counter[str] = Counter()
    prompt_tokens: list[int] = []
    prose: list[str] = []
    for prompt in PROMPTS:
        req = ChatRequest(
            (Message("user", prompt),),
            tools=(SPEC,),
            tool_choice=ToolChoice(mode),
            max_tokens=MAX_TOKENS,
        )
        result = await app.engine.complete(req)  # judged: never raises for a bad turn
        tier0 = next(a for a in result.attempts if a.ref == EMBEDDED)
        if tier0.outcome in ("ok", "unusable"):
            prompt_tokens.append(tier0.usage.input_tokens)
        fits = check_tool_calls(result.tool_calls, req.tools, req.tool_choice) is None
        kind = _kind(mode, tier0, fits)
        tally[kind] += 1
        if tier0.outcome == "ok":
            assert result.answered_by.ref == EMBEDDED
            if not result.tool_calls:
                prose.append(result.content[:60])
        else:  # an unusable (or failed) turn climbs, and tier 1's call is the answer
            assert result.answered_by.tier == 1, result.trace()
            assert [c.name for c in result.tool_calls] == ["http_get"], result.trace()
        for call in result.tool_calls:
            assert json.loads(call.arguments)["url"].startswith("http")
    # the same first prompt without the tool: equal counts mean the tool never reached it.
    # Past the 0.2 s cooldown first: a turn that timed out on a loaded machine opened the
    # model's breaker, and this call must reach the model, not skip it for tier 1
    await asyncio.sleep(0.3)
    bare = await app.engine.complete(ChatRequest((Message("user", PROMPTS[0]),), max_tokens=1))
    caps = await _template_caps(app)
    print(
        f"\nSmolLM2, tool_choice={mode}, {len(PROMPTS)} turns: {dict(tally)};"
        f" prompt tokens with the tool {prompt_tokens}, without it"
        f" {bare.answered_by.usage.input_tokens} (first prompt);"
        f" template supports_tools={caps.get('supports_tools')},"
        f" supports_tool_calls={caps.get('supports_tool_calls')}"
        + "".join(f"\n  prose: {text!r}" for text in prose)
    )
    assert sum(tally.values()) == len(PROMPTS)
