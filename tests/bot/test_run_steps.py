"""A run's tool-loop steps in Telegram: under *Details*, and live in the /run progress
message as the runner's step observers hear of them. Markup in a step is shown as text,
and many or long steps never make a message Telegram would refuse."""

from __future__ import annotations

import asyncio

from bot.text import TELEGRAM_LIMIT, utf16_len
from bot.views import progress_text
from core.agents.steps import Step
from tests.bot.conftest import ADMIN, BotRig, RigFactory
from tests.bot.test_bot import agent, buttons
from tests.fakes.llm import Reply, echo


def tool_step(run_id: int, n: int = 1, target: str = "status.example.com") -> Step:
    return Step(
        run_id,
        n,
        "tool",
        "ok",
        tool="http_get",
        call_id=f"c{n}",
        arguments='{"url": "https://status.example.com/<b>bold</b>"}',
        detail="200, 1.2 KB",
        size=1229,
        latency_ms=120.0,
        target=target,
    )


def model_step(run_id: int) -> Step:
    return Step(run_id, 1, "model", "ok", tier=0, model="ollama/qwen3:14b", detail="1 tool call")


def seen(rig: BotRig) -> list[str]:
    return [m.get("text") or "" for m in rig.tg.sent(ADMIN) + rig.tg.edits(ADMIN)]


async def test_details_shows_the_steps_after_the_attempts_escaped(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("greet")])
    rig.llm.default = echo
    rig.tg.user_message(ADMIN, "/run greet")
    result = await rig.said(ADMIN, "hello from greet")
    await rig.app.facade.steps.add(model_step(1))
    await rig.app.facade.steps.add(tool_step(1, target="<b>x</b>.example"))
    rig.tg.user_press(ADMIN, result, buttons(result)["🧭 Details"])
    trace = (await rig.said(ADMIN, "Route of #1"))["text"]
    route, steps = trace.split("\n\n<b>Steps</b>\n")
    assert "qwen3:14b: <b>ok</b>" in route
    first, second = steps.splitlines()
    assert first.startswith("🧠 step 1 · tier 0 ollama/qwen3:14b → 1 tool call · ")
    assert second == (
        "🔧 http_get &lt;b&gt;x&lt;/b&gt;.example → 200, 1.2 KB · 120 ms, $0.00000 "
        '<code>{"url": "https://status.example.com/&lt;b&gt;bold&lt;/b&gt;"}</code>'
    )


async def test_details_with_many_steps_arrives_in_parts(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("greet")])
    rig.llm.default = echo
    rig.tg.user_message(ADMIN, "/run greet")
    result = await rig.said(ADMIN, "hello from greet")
    for n in range(1, 31):  # about 11,000 units of HTML: three parts
        await rig.app.facade.steps.add(tool_step(1, n, target=f"host{n}." + "&" * 40))
    rig.tg.user_press(ADMIN, result, buttons(result)["🧭 Details"])
    await rig.said(ADMIN, "host30.", timeout_s=30)
    parts = [t for t in seen(rig) if "host" in t]
    assert len(parts) > 1 and all(utf16_len(t) <= TELEGRAM_LIMIT for t in parts)
    assert sum(t.count("🔧 http_get host") for t in parts) == 30


async def test_a_tool_step_of_a_tracked_run_shows_in_its_progress(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("slow")])
    answer = asyncio.Event()  # the model answers once the step showed
    rig.llm.script("qwen3:14b", Reply(text="done", hold=answer))
    rig.tg.user_message(ADMIN, "/run slow")
    status = await rig.said(ADMIN, "Running <b>slow</b> #1")
    # as the loop does: every observer the runner has hears of each step it records
    for observe in rig.app.runner.step_observers:
        observe(model_step(1))
        observe(tool_step(1, target="<b>x</b>.example"))
        observe(tool_step(2))  # another run: not tracked here
    line = "🔧 http_get &lt;b&gt;x&lt;/b&gt;.example → 200, 1.2 KB"
    await rig.said(ADMIN, line)
    answer.set()
    await rig.said(ADMIN, "slow</b> #1 ok", timeout_s=20)
    final = rig.tg.message(ADMIN, status["message_id"])
    assert final is not None and final["text"].startswith("Run #1 of slow: ok")
    # Telegram parsed the HTML: the markup of the step reads as text, not bold
    assert "🔧 http_get <b>x</b>.example → 200, 1.2 KB" in final["text"]
    texts = [e.get("text") or "" for e in rig.tg.edits(ADMIN, status["message_id"])]
    assert not any("🧠" in t for t in texts)  # model turns: their attempts show already
    assert texts[-1].count("🔧") == 1  # the step of run 2 is not this run's


async def test_many_long_steps_keep_the_progress_within_one_message(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig([agent("slow")])
    answer = asyncio.Event()  # the model answers once every step was seen
    rig.llm.script("qwen3:14b", Reply(text="done", hold=answer))
    rig.tg.user_message(ADMIN, "/run slow")
    status = await rig.said(ADMIN, "Running <b>slow</b> #1")
    for n in range(40):  # each line escapes to far more than a message's share
        for observe in rig.app.runner.step_observers:
            observe(tool_step(1, n, target=f"t{n}" + "&" * 2000))
        await asyncio.sleep(0.02)
    answer.set()
    await rig.said(ADMIN, "slow</b> #1 ok", timeout_s=20)
    final = rig.tg.message(ADMIN, status["message_id"])
    assert final is not None and "t39&&" in final["text"]
    edits = [e.get("text") or "" for e in rig.tg.edits(ADMIN, status["message_id"])]
    assert edits and all(utf16_len(t) <= TELEGRAM_LIMIT for t in edits)


def test_progress_text_is_bounded_whatever_its_lines() -> None:
    worst = ["&" * 10_000, "<" * 3000 + "🧠" * 3000] * 10
    text = progress_text("a" * 64, 9_223_372_036_854_775_807, worst)
    assert utf16_len(text) <= TELEGRAM_LIMIT
    assert text.count("\n") == 8 and text.endswith("…")
    assert "&amp;&amp;" in text and "&am…" not in text  # an entity is never cut
