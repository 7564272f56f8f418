"""The bot's interactive path under Telegram's limits: replies, /run results, progress,
button presses. The fake Bot API enforces the limits (429 with retry_after, as Telegram);
nothing a user asked for may be lost to them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.callbacks import AgentCb, RunCb
from bot.limiter import SendLimiter
from bot.text import split_html
from bot.views import run_result
from tests.bot.conftest import ADMIN, VIEWER, BotRig, RigFactory
from tests.bot.test_bot import agent, buttons
from tests.fakes.llm import Reply, echo


@contextlib.asynccontextmanager
async def delivering(rig: BotRig) -> AsyncIterator[None]:
    """The outbox's worker, as serve runs it."""
    stop = asyncio.Event()
    task = asyncio.create_task(rig.app.delivery.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


def scaled(rig: BotRig, factor: float) -> None:
    """Telegram's limits ``factor`` times as fast, on both sides (keeps long tests short)."""
    rig.tg.enforce_rate_limits(per_chat_per_s=factor, global_per_s=30.0 * factor)
    rig.bot.send_path.use(SendLimiter(per_chat_interval_s=1.0 / factor, global_per_s=30.0 * factor))


def texts(rig: BotRig, chat_id: int) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in rig.tg.sent(chat_id)]


async def test_run_rerun_and_commands_at_once_all_arrive(make_rig: RigFactory) -> None:
    # the red team's burst: /run in the chat the agent also delivers to, Rerun, then
    # /usage, /status and /runs at once, against Telegram's real limits
    rig = await make_rig([agent("alpha", deliver=[f"telegram:{ADMIN}"])])
    rig.tg.enforce_rate_limits()
    rig.llm.default = echo
    async with delivering(rig):
        rig.tg.user_message(ADMIN, "/run alpha")
        first = await rig.said(ADMIN, "alpha</b> #1 ok", timeout_s=20)
        rig.tg.user_press(ADMIN, first, buttons(first)["🔁 Rerun"])
        for command in ("/usage", "/status", "/runs"):
            rig.tg.user_message(ADMIN, command)
        await rig.said(ADMIN, "alpha</b> #2 ok", timeout_s=30)
        await rig.said(ADMIN, "Usage, 7d", timeout_s=30)
        await rig.said(ADMIN, "<b>Tier 0</b>", timeout_s=30)
        await rig.said(ADMIN, "#1 alpha ok", timeout_s=30)  # /runs
        await rig.tg.wait_for(lambda tg: any(m.get("photo") for m in tg.sent(ADMIN)), 30)
        await rig.tg.wait_for(lambda tg: len(tg.answered_callbacks()) == 1)
        await rig.tg.wait_for(  # both digests, too
            lambda tg: sum(t.startswith("<b>alpha</b>") for t in texts(rig, ADMIN)) == 2, 30
        )
    results = [m for m in rig.tg.sent(ADMIN) if (m.get("text") or "").startswith("✅ <b>alpha")]
    assert len(results) == 2 and all(set(buttons(m)) == {"🔁 Rerun", "🧭 Details"} for m in results)
    statuses = await rig.app.store.fetchall("SELECT status FROM outbox")
    assert [s[0] for s in statuses] == ["delivered", "delivered"]
    assert rig.tg.rate_limited == 0  # paced, not merely retried


async def test_a_viewer_sending_six_commands_gets_six_replies(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a")])
    rig.tg.enforce_rate_limits()
    commands = ["/help", "/agents", "/runs", "/status", "/budget", "/usage"]
    for command in commands:
        rig.tg.user_message(VIEWER, command)
    # five texts, the usage text and its chart
    await rig.tg.wait_for(lambda tg: len(tg.sent(VIEWER)) == len(commands) + 1, timeout_s=30)
    assert rig.tg.rate_limited == 0
    got = texts(rig, VIEWER)
    for needle in ("OpenClaw", "Agents", "No runs yet", "Tier 0", "spend caps", "Usage, 7d"):
        assert any(needle in t for t in got), (needle, got)


async def test_a_reply_goes_before_queued_digests_but_never_splits_one(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    scaled(rig, 4.0)
    long_digest = "\n\n".join(f"part one paragraph {i} " + "x" * 900 for i in range(6))
    assert len(split_html(long_digest)) == 2
    for text in (long_digest, "digest two", "digest three"):
        row = {"agent": "d", "run_id": None, "status": "ok", "text": text}
        await rig.app.outbox.enqueue(None, "result", [f"telegram:{ADMIN}"], row)
    async with delivering(rig):
        await rig.tg.wait_for(lambda tg: len(tg.sent(ADMIN)) >= 1)
        rig.tg.user_message(ADMIN, "/help")  # while the first digest's parts go out
        await rig.tg.wait_for(lambda tg: len(tg.sent(ADMIN)) == 5, timeout_s=20)
    got = texts(rig, ADMIN)
    # the digest's two parts stay together; the reply goes before the digests still queued
    assert "part one paragraph 0" in got[0] and "part one paragraph 5" in got[1]
    assert "OpenClaw" in got[2]
    assert got[3].endswith("digest two") and got[4].endswith("digest three")
    assert rig.tg.rate_limited == 0


async def test_a_long_run_result_arrives_whole_with_buttons_on_the_last_part(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig([agent("long")])
    scaled(rig, 5.0)
    text = "\n\n".join(f"Paragraph {i}: " + "a line of the result. " * 18 for i in range(110))
    assert 40_000 < len(text) < 46_000
    rig.llm.script("qwen3:14b", Reply(text=text))
    rig.tg.user_message(ADMIN, "/run long")
    await rig.said(ADMIN, "Running <b>long</b> #1")
    run = await rig.app.runner.wait(1)
    want = split_html(run_result(run))
    assert len(want) >= 11
    await rig.tg.wait_for(lambda tg: any(buttons(m) for m in tg.sent(ADMIN)), timeout_s=30)
    parts = [m for m in rig.tg.sent(ADMIN) if "Paragraph" in (m.get("text") or "")]
    assert [m["text"] for m in parts] == want  # all of them, once each, in order
    assert [bool(buttons(m)) for m in parts] == [False] * (len(want) - 1) + [True]
    assert rig.tg.rate_limited == 0


@pytest.mark.parametrize(
    "fault",
    [(429, "Too Many Requests: retry after 1", 1, 1), (502, "Bad Gateway", None, 2)],
    ids=["one-429", "two-502s"],
)
async def test_a_failed_status_message_does_not_stop_the_run(
    make_rig: RigFactory, fault: tuple[int, str, int | None, int]
) -> None:
    rig = await make_rig([agent("greet")])
    rig.llm.default = echo
    code, description, retry_after, times = fault
    rig.tg.fail_next("sendMessage", code, description, retry_after=retry_after, times=times)
    rig.tg.user_message(ADMIN, "/run greet")
    await rig.said(ADMIN, "greet</b> #1 ok", timeout_s=20)
    run = await rig.app.runner.runs.get(1)
    assert run is not None and run.status == "ok"


async def test_the_run_is_created_even_when_telegram_refuses_every_message(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig([agent("greet")])
    rig.llm.default = echo
    rig.tg.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", times=10)
    rig.tg.user_message(ADMIN, "/run greet")
    await rig.tg.wait_for(lambda tg: len(tg.calls_of("sendMessage")) >= 1)
    run = await rig.app.runner.wait(1)  # created, and carried out
    assert run.status == "ok"


async def test_rerun_and_run_now_start_even_when_the_answer_fails(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("greet")])
    rig.llm.default = echo
    await rig.app.runner.run("greet", "cli")
    rig.tg.user_message(ADMIN, "/runs")
    runs = await rig.said(ADMIN, "#1 greet ok")
    expired = "Bad Request: query is too old and response timeout expired or query ID is invalid"
    rig.tg.fail_next("answerCallbackQuery", 400, expired, times=2)
    rig.tg.user_press(ADMIN, runs, RunCb(action="rerun", run_id=1).pack())
    await rig.said(ADMIN, "greet</b> #2 ok", timeout_s=20)
    rig.tg.user_press(ADMIN, runs, AgentCb(action="run", idx=0).pack())
    await rig.said(ADMIN, "greet</b> #3 ok", timeout_s=20)
    second = await rig.app.runner.runs.get(2)
    assert second is not None and second.trigger == "rerun" and second.parent_run == 1


async def test_the_same_button_twice_is_answered_twice(make_rig: RigFactory) -> None:
    rig = await make_rig([agent(f"agent{i}") for i in range(3)], telegram={"page_size": 2})
    rig.tg.user_message(VIEWER, "/agents")
    page = await rig.said(VIEWER, "Agents</b> (page 1/2)")
    forward = buttons(page)["▶"]
    rig.tg.user_press(VIEWER, page, forward)
    await rig.said(VIEWER, "Agents</b> (page 2/2)")
    rig.tg.user_press(VIEWER, page, forward)  # the same edit again: "message is not modified"
    await rig.tg.wait_for(lambda tg: len(tg.answered_callbacks()) == 2)


@pytest.mark.parametrize(
    "data",
    [
        "rn:rerun:99999999999999999999",
        "rn:details:²",
        "ag:open:99999999999999999999:0",
        "ag:page:0:²",
        "ap:approve:99999999999999999999",
        "ap:deny:٣",
        "zz:what",
    ],
)
async def test_crafted_or_stale_buttons_are_answered_as_unknown(
    make_rig: RigFactory, data: str
) -> None:
    rig = await make_rig([agent("a")])
    rig.tg.user_message(ADMIN, "/help")
    msg = await rig.said(ADMIN, "OpenClaw")
    rig.tg.user_press(ADMIN, msg, data)
    await rig.tg.wait_for(lambda tg: bool(tg.answered_callbacks()))
    (answer,) = rig.tg.answered_callbacks()
    assert "unknown or has expired" in answer.get("text", "")
    assert await rig.app.runner.runs.recent() == []


async def test_a_huge_agent_name_gets_a_short_usage(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("echo")])
    rig.tg.user_message(ADMIN, "/run " + "n" * 5000)
    msg = await rig.said(ADMIN, "Usage: /run")
    assert "No agent named <code>nnnn" in msg["text"] and len(msg["text"]) < 200
    assert "<code>echo</code>" in msg["text"]


async def test_the_message_may_start_on_the_next_line(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("echo")])
    rig.llm.default = echo
    rig.tg.user_message(ADMIN, "/run echo\nsecond line\nthird")
    await rig.said(ADMIN, "echo</b> #1 ok", timeout_s=20)
    run = await rig.app.runner.runs.get(1)
    assert run is not None and run.agent == "echo" and run.message == "second line\nthird"


async def test_progress_is_coalesced_and_the_final_state_lands(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("slow")])
    rig.llm.script("qwen3:14b", Reply(text="done", delay_s=2.0))
    rig.tg.user_message(ADMIN, "/run slow")
    status = await rig.said(ADMIN, "Running <b>slow</b> #1")
    for n in range(30):  # thirty progress lines within a second
        rig.bot.reporter.note_run("1", f"step {n}")
        await asyncio.sleep(0.02)
    # every edit from now on hits a limit once (and the final one too)
    rig.tg.fail_next("editMessageText", 429, "Too Many Requests: retry after 1", 1, times=3)
    await rig.said(ADMIN, "slow</b> #1 ok", timeout_s=20)
    final = rig.tg.message(ADMIN, status["message_id"])
    assert final is not None and final["text"].startswith("Run #1 of slow: ok")
    assert "step 29" in final["text"]
    edits = rig.tg.edits(ADMIN, status["message_id"])
    assert len(edits) <= 4  # coalesced: not one edit per line


async def test_the_final_state_lands_through_502s(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("greet")])
    rig.llm.script("qwen3:14b", Reply(text="done", delay_s=0.5))
    rig.tg.user_message(ADMIN, "/run greet")
    status = await rig.said(ADMIN, "Running <b>greet</b> #1")
    rig.tg.fail_next("editMessageText", 502, "Bad Gateway", times=4)
    await rig.said(ADMIN, "greet</b> #1 ok", timeout_s=30)
    final: dict[str, Any] | None = rig.tg.message(ADMIN, status["message_id"])
    assert final is not None and final["text"].startswith("Run #1 of greet: ok")
