"""Every command against the fake Bot API, driven by the real aiogram Dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.methods import SendMessage

from bot.callbacks import AgentCb, ApprovalCb, RunCb
from bot.channel import TelegramChannel
from bot.limiter import SendLimiter
from core.store.path import DbLocation
from tests.bot.conftest import ADMIN, STRANGER, VIEWER, BotRig, RigFactory
from tests.fakes.llm import Reply, echo
from tests.stores import NewLocation, run_sql


def agent(name: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "message": f"hello from {name} {{{{ message }}}}",
        "task": "chat",
        "deliver": ["log"],
        **kw,
    }


def buttons(message: dict[str, Any]) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
    return {b["text"]: b["callback_data"] for row in rows for b in row}


async def test_start_help_and_commands(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a")])
    rig.tg.user_message(ADMIN, "/start")
    msg = await rig.said(ADMIN, "OpenClaw")
    assert "/run" in msg["text"] and "/approvals" in msg["text"]
    rig.tg.user_message(VIEWER, "/help")
    msg = await rig.said(VIEWER, "OpenClaw")
    assert "/run —" not in msg["text"] and "for admins" in msg["text"]
    assert {c["command"] for c in rig.tg.commands("default")} == {
        "agents",
        "runs",
        "memory",
        "usage",
        "schedule",
        "tune",
        "drills",
        "status",
        "budget",
        "ask",
        "new",
        "help",
    }
    admin = {c["command"] for c in rig.tg.commands(f"chat:{ADMIN}")}
    assert "approvals" in admin and "drill" in admin


async def test_strangers_get_nothing(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a")])
    rig.tg.user_message(STRANGER, "/start")
    rig.tg.user_message(STRANGER, "/run a")
    rig.tg.user_message(ADMIN, "/help")  # a marker: the bot has handled what came before
    await rig.said(ADMIN, "OpenClaw")
    assert rig.tg.sent(STRANGER) == []
    assert await rig.app.runner.runs.recent() == []


async def test_run_progress_result_rerun_and_details(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("greet")])
    rig.llm.script("qwen3:14b", Reply(status=503))
    rig.llm.default = echo
    rig.tg.user_message(ADMIN, "/run greet with feeling")
    result = await rig.said(ADMIN, "hello from greet with feeling")
    assert "✅" in result["text"] and "#1" in result["text"]
    status_edits = [e["text"] for e in rig.tg.edits(ADMIN) if "Run #1" in (e.get("text") or "")]
    assert status_edits and "tier 0 local/qwen3:14b: unavailable" in status_edits[-1]
    assert any(c.method == "sendChatAction" for c in rig.tg.calls)
    keys = buttons(result)
    assert set(keys) == {"🔁 Rerun", "🧭 Details"}
    rig.tg.user_press(ADMIN, result, keys["🧭 Details"])
    trace = await rig.said(ADMIN, "Route of #1")
    assert "qwen3:14b: <b>unavailable</b>" in trace["text"]
    rig.tg.user_press(ADMIN, result, keys["🔁 Rerun"])
    await rig.said(ADMIN, "greet</b> #2")
    second = await rig.app.runner.runs.get(2)
    assert second is not None and second.parent_run == 1 and second.trigger == "rerun"
    assert second.message == "with feeling"


async def test_run_usage_and_closest_names(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("morning-digest"), agent("evening-digest")])
    rig.tg.user_message(VIEWER, "/run morning-digest")
    await rig.said(VIEWER, "Only admins can run agents.")
    rig.tg.user_message(ADMIN, "/run morning-digset")
    msg = await rig.said(ADMIN, "Usage: /run")
    assert "No agent named <code>morning-digset</code>" in msg["text"]
    assert "<code>morning-digest</code>" in msg["text"]
    rig.tg.user_message(ADMIN, "/run")
    await rig.tg.wait_for(lambda tg: len(tg.sent(ADMIN)) == 2)
    assert "Usage: /run" in rig.texts(ADMIN)[-1]
    # neither a typo nor the viewer (two round trips ago, time for a run row) ran one
    assert await rig.app.runner.runs.recent() == []


async def test_agents_pages_detail_and_admin_buttons(make_rig: RigFactory) -> None:
    rig = await make_rig(
        [agent(f"agent{i}", schedule="0 7 * * *") for i in range(3)], telegram={"page_size": 2}
    )
    rig.llm.default = echo
    rig.tg.user_message(VIEWER, "/agents")
    page = await rig.said(VIEWER, "Agents</b> (page 1/2)")
    keys = buttons(page)
    assert {"agent0", "agent1", "▶"} <= set(keys)
    rig.tg.user_press(VIEWER, page, keys["▶"])
    await rig.said(VIEWER, "Agents</b> (page 2/2)")
    rig.tg.user_press(VIEWER, page, AgentCb(action="open", idx=0).pack())
    detail = await rig.said(VIEWER, "Schedule: 0 7 * * * (UTC)")
    assert "▶️ Run now" not in buttons(detail)  # read-only users see no admin buttons
    rig.tg.user_press(VIEWER, detail, AgentCb(action="run", idx=0).pack())  # crafted anyway
    await rig.tg.wait_for(
        lambda tg: any("Only admins" in (c.get("text") or "") for c in tg.answered_callbacks())
    )
    assert await rig.app.runner.runs.recent() == []
    rig.tg.user_message(ADMIN, "/agents")
    page = await rig.said(ADMIN, "Agents</b> (page 1/2)")
    rig.tg.user_press(ADMIN, page, AgentCb(action="open", idx=1).pack())
    detail = await rig.said(ADMIN, "State: enabled")
    assert {"▶️ Run now", "⏸ Disable"} <= set(buttons(detail))
    rig.tg.user_press(ADMIN, detail, AgentCb(action="disable", idx=1).pack())
    await rig.said(ADMIN, "State: disabled (disabled from Telegram by @op)")
    assert (await rig.app.runner.states.get("agent1")).disabled
    rig.tg.user_press(ADMIN, detail, AgentCb(action="run", idx=1).pack())
    await rig.said(ADMIN, "hello from agent1")


async def test_runs_status_usage(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a")])
    rig.llm.script("qwen3:14b", Reply(text="done", input_tokens=100, output_tokens=10))
    await rig.app.runner.run("a", "cli")
    rig.tg.user_message(VIEWER, "/runs")
    runs = await rig.said(VIEWER, "#1 a ok")
    assert "🔁 #1" in buttons(runs)
    rig.tg.user_message(VIEWER, "/runs nope")
    await rig.said(VIEWER, "Usage: /runs [agent]")
    rig.tg.user_message(VIEWER, "/status")
    status = await rig.said(VIEWER, "<b>Tier 0</b>")
    assert "local/qwen3:14b: closed" in status["text"] and "Telegram: polling, ok" in status["text"]
    rig.tg.user_message(VIEWER, "/usage 7d")
    usage = await rig.said(VIEWER, "Usage, 7d")
    assert "Requests 1, answered 1" in usage["text"] and "cloud-only" in usage["text"]
    await rig.tg.wait_for(lambda tg: any(m.get("photo") for m in tg.sent(VIEWER)))
    photo = next(m for m in rig.tg.sent(VIEWER) if m.get("photo"))
    assert photo["size"] > 1000
    rig.tg.user_message(VIEWER, "/usage forever")
    await rig.said(VIEWER, "Usage: /usage [today|7d|30d]")


async def approval_rig(make_rig: RigFactory, timeout_s: float = 30) -> BotRig:
    rig = await make_rig(
        [agent("deep", task="strategy")], approvals={"default": "deny", "timeout_s": timeout_s}
    )
    rig.llm.script("claude-opus", Reply(text="the opus answer"))
    return rig


async def test_approval_approved_first_decision_wins(make_rig: RigFactory) -> None:
    rig = await approval_rig(make_rig)
    rig.tg.user_message(ADMIN, "/run deep")
    ask = await rig.said(ADMIN, "Approval needed")
    assert "Task: strategy → tier 3 opus/claude-opus" in ask["text"]
    assert "Estimated cost: $" in ask["text"] and "hello from deep" in ask["text"]
    await rig.said(ADMIN, "waiting for an admin to approve")
    rig.tg.user_press(VIEWER, ask, ApprovalCb(action="approve", approval_id=1).pack())
    rig.tg.user_press(ADMIN, ask, buttons(ask)["✅ Approve"])
    await rig.said(ADMIN, "the opus answer")
    edited = await rig.said(ADMIN, "✅ Approved by @op")
    assert buttons(edited) == {}
    rig.tg.user_press(ADMIN, ask, buttons(ask)["❌ Deny"])  # too late
    await rig.tg.wait_for(
        lambda tg: any(
            "already approved by @op" in (c.get("text") or "") for c in tg.answered_callbacks()
        )
    )
    texts = [c.get("text") or "" for c in rig.tg.answered_callbacks()]
    assert any("Only admins" in t for t in texts)  # the viewer's press did nothing
    (row,) = await rig.app.store.fetchall("SELECT status, decided_by FROM approvals")
    assert tuple(row) == ("approved", "@op")


async def test_approval_denied(make_rig: RigFactory) -> None:
    rig = await approval_rig(make_rig)
    rig.tg.user_message(ADMIN, "/run deep")
    ask = await rig.said(ADMIN, "Approval needed")
    rig.tg.user_press(ADMIN, ask, buttons(ask)["❌ Deny"])
    result = await rig.said(ADMIN, "deep</b> #1 failed")
    assert "denied by @op" in result["text"]
    assert not [r for r in rig.llm.requests if r.model == "claude-opus"]


async def test_approval_expires(make_rig: RigFactory) -> None:
    rig = await approval_rig(make_rig, timeout_s=0.5)
    rig.tg.user_message(ADMIN, "/run deep")
    ask = await rig.said(ADMIN, "Approval needed")
    expired = await rig.said(ADMIN, "⌛ Expired")
    assert buttons(expired) == {}  # nothing left to press on the copy
    result = await rig.said(ADMIN, "deep</b> #1 failed")
    assert "expired after 0.5s without a decision" in result["text"]
    rig.tg.user_press(ADMIN, ask, buttons(ask)["✅ Approve"])  # a press on the old buttons
    await rig.tg.wait_for(
        lambda tg: any("expired" in (c.get("text") or "") for c in tg.answered_callbacks())
    )
    rig.tg.user_message(ADMIN, "/approvals")
    await rig.said(ADMIN, "No approvals are pending.")
    # the late press approved nothing and called nothing: the default (deny) stands
    (row,) = await rig.app.store.fetchall("SELECT status FROM approvals")
    assert row[0] == "expired"
    run = await rig.app.runner.runs.get(1)
    assert run is not None and run.status == "failed"
    assert not [r for r in rig.llm.requests if r.model == "claude-opus"]
    assert await rig.app.runner.runs.recent() == [run]


async def test_a_long_digest_is_split_into_valid_messages(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("long", deliver=[f"telegram:{ADMIN}"])])
    paragraph = "A line of the digest with <angle brackets> & ampersands. " * 12
    rig.llm.script("qwen3:14b", Reply(text="\n\n".join([paragraph] * 15)))
    await rig.app.runner.run("long", "cli")
    assert await rig.app.delivery.drain() == 1
    parts = [m["text"] for m in rig.tg.sent(ADMIN)]
    assert len(parts) >= 3  # accepted by the fake: ≤ 4096 units and valid HTML each
    assert parts[0].startswith("<b>long</b>")
    (row,) = await rig.app.store.fetchall("SELECT status, external_id FROM outbox")
    assert row[0] == "delivered" and len(row[1].split(",")) == len(parts)


async def test_429_is_waited_out_and_403_fails_for_good(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a", deliver=[f"telegram:{ADMIN}", f"telegram:{VIEWER}"])])
    rig.llm.default = echo
    rig.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    await rig.app.runner.run("a", "cli")
    await rig.app.delivery.drain()
    rows = {
        r[0]: (r[1], r[2])
        for r in await rig.app.store.fetchall("SELECT target, status, last_error FROM outbox")
    }
    assert rows[f"telegram:{ADMIN}"][0] == "delivered"
    assert rows[f"telegram:{VIEWER}"][0] == "delivered"
    # the 429 really came and its message went again (delivered without a 429 proves nothing)
    codes = [c.error_code for c in rig.tg.calls_of("sendMessage")]
    assert codes == [429, None, None]
    rig.tg.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", times=5)
    await rig.app.runner.run("a", "cli")
    await rig.app.delivery.drain()
    failed = await rig.app.store.fetchall(
        "SELECT last_error, attempts FROM outbox WHERE status = 'failed'"
    )
    assert len(failed) == 2 and "blocked by the user" in failed[0][0]
    assert all(r[1] == 1 for r in failed)  # no retry storm


def numbered(n: int) -> dict[str, Any]:
    return {"agent": "a", "run_id": None, "status": "ok", "text": f"message #{n}"}


async def test_a_send_that_arrives_late_earns_no_429(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.tg.enforce_rate_limits(per_chat_per_s=2.0, global_per_s=1.0)
    limiter = SendLimiter(per_chat_interval_s=0.5, global_per_s=1.0)
    rig.app.delivery.channels["telegram"] = TelegramChannel(rig.bot.bot, limiter)
    held: list[int] = []

    async def hold_the_first(make_request: Any, bot: Any, method: Any) -> Any:
        if isinstance(method, SendMessage) and not held:
            held.append(1)
            await asyncio.sleep(0.3)  # held up on the way: Telegram counts it late
        return await make_request(bot, method)

    rig.bot.bot.session.middleware(hold_the_first)
    for n, chat in enumerate([ADMIN, VIEWER, ADMIN], 1):
        await rig.app.outbox.enqueue(None, "result", [f"telegram:{chat}"], numbered(n))
    assert await rig.app.delivery.drain() == 3
    # slots booked before the late arrival would have crowded its window: spaced from answers
    assert rig.tg.rate_limited == 0
    assert [t.rsplit(" ", 1)[-1] for t in rig.texts(ADMIN)] == ["#1", "#3"]


async def test_rows_to_one_chat_keep_their_order_across_a_429(make_rig: RigFactory) -> None:
    rig = await make_rig()
    rig.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    for n in (1, 2, 3):
        await rig.app.outbox.enqueue(None, "result", [f"telegram:{ADMIN}"], numbered(n))
    assert await rig.app.delivery.drain() == 3
    # the first waits out its 429 and still goes first: one send at a time per chat
    assert [t.rsplit(" ", 1)[-1] for t in rig.texts(ADMIN)] == ["#1", "#2", "#3"]


async def test_delivery_resumes_after_an_outage(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a", deliver=[f"telegram:{ADMIN}"])])
    rig.llm.default = echo
    rig.tg.set_down(True)
    await rig.app.runner.run("a", "cli")
    await rig.app.delivery.drain()
    (row,) = await rig.app.store.fetchall("SELECT status, attempts, last_error FROM outbox")
    assert row[0] == "pending" and row[1] == 1 and "unavailable" in row[2]
    rig.tg.set_down(False)
    assert await rig.app.delivery.drain() == 0  # its backoff has not passed yet
    later = datetime.now(UTC) + timedelta(days=1)  # past the row's backoff, on the outbox's clock
    rig.app.outbox.clock = lambda: later
    assert await rig.app.delivery.drain() == 1
    (row,) = await rig.app.store.fetchall("SELECT status FROM outbox")
    assert row[0] == "delivered"
    assert "hello from a" in rig.texts(ADMIN)[-1]


async def test_the_watchdog_reconnects_a_stalled_poll(make_rig: RigFactory) -> None:
    rig = await make_rig(telegram={"polling_timeout_s": 1, "watchdog_margin_s": 0.5})
    rig.tg.hang_get_updates = True
    # the watchdog looks every ~0.4 s
    await rig.tg.wait_for(lambda tg: rig.bot.reconnects >= 1, timeout_s=10)
    assert rig.app.overview.status_hooks["telegram"]()["reconnects"] >= 1
    rig.tg.hang_get_updates = False
    rig.tg.user_message(ADMIN, "/help")  # polling works again
    await rig.said(ADMIN, "OpenClaw")


def rename_agent_of_run(location: DbLocation, run_id: int, agent: str) -> None:
    """As if the run's agent was renamed in the config since (a connection of its own)."""
    run_sql(location, "UPDATE runs SET agent = ? WHERE id = ?", (agent, run_id))


async def test_rerun_button_for_a_deleted_run_and_non_admin(
    make_rig: RigFactory, new_location: NewLocation
) -> None:
    rig = await make_rig([agent("a")])
    rig.llm.default = echo
    ok = await rig.app.runner.run("a", "cli")
    other = await rig.app.runner.run("a", "cli")
    await asyncio.to_thread(rename_agent_of_run, new_location.made[0], other.id, "renamed")

    def answered(needle: str) -> Callable[[Any], bool]:
        return lambda tg: any(needle in (c.get("text") or "") for c in tg.answered_callbacks())

    rig.tg.user_message(VIEWER, "/help")
    msg = await rig.said(VIEWER, "OpenClaw")
    rig.tg.user_press(VIEWER, msg, RunCb(action="rerun", run_id=ok.id).pack())
    await rig.tg.wait_for(answered("Only admins can rerun"))
    rig.tg.user_message(ADMIN, "/help")
    msg = await rig.said(ADMIN, "OpenClaw")
    for missing in (other.id, 999):  # its agent left the config; no such run at all
        rig.tg.user_press(ADMIN, msg, RunCb(action="rerun", run_id=missing).pack())
    await rig.tg.wait_for(
        lambda tg: (
            sum("agent is gone" in (c.get("text") or "") for c in tg.answered_callbacks()) == 2
        )
    )
    assert [r.id for r in await rig.app.runner.runs.recent()] == [other.id, ok.id]  # no rerun
    rig.tg.user_press(ADMIN, msg, RunCb(action="rerun", run_id=ok.id).pack())  # the control
    await rig.tg.wait_for(answered(f"Rerunning #{ok.id} as #3"))


async def test_webhook_mode_on_the_gateway(make_rig: RigFactory, monkeypatch: Any) -> None:
    import httpx

    from core.gateway import Gateway

    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "hook-secret-1")
    rig = await make_rig(telegram={"webhook_url": "https://bot.example.invalid/telegram/webhook"})
    assert rig.tg.webhook is not None and rig.tg.webhook["secret_token"] == "hook-secret-1"
    assert not [c for c in rig.tg.calls if c.method == "getUpdates"]
    gateway = Gateway(rig.app.facade, "gateway-token", "127.0.0.1", 0, rig.bot.routes())
    await gateway.start()
    try:
        update = {
            "update_id": 5,
            "message": {
                "message_id": 1,
                "date": 0,
                "text": "/help",
                "chat": {"id": ADMIN, "type": "private"},
                "from": {"id": ADMIN, "is_bot": False, "first_name": "Op", "username": "op"},
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        async with httpx.AsyncClient(base_url=gateway.url) as c:
            bad = await c.post(
                "/telegram/webhook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
            )
            assert bad.status_code == 401
            ok = await c.post(
                "/telegram/webhook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": "hook-secret-1"},
            )
            assert ok.status_code == 200
        await rig.said(ADMIN, "OpenClaw")
    finally:
        await gateway.stop()


async def test_budget_command(make_rig: RigFactory) -> None:
    rig = await make_rig(budgets={"total": {"month": 40.0}, "tier": {"3": {"day": 2.0}}})
    rig.tg.user_message(VIEWER, "/budget")
    msg = await rig.said(VIEWER, "Budgets</b> (UTC)")
    assert "total month cap $40.00: $0.00 spent" in msg["text"] and "forecast $0.00" in msg["text"]
    assert "tier 3 day cap $2.00" in msg["text"]


async def test_telegram_down_at_boot_does_not_stop_the_bot(make_rig: RigFactory, tg: Any) -> None:
    tg.set_down(True)
    rig = await make_rig([agent("a")], telegram={"polling_timeout_s": 1, "watchdog_margin_s": 0.5})
    refused = [c for c in tg.calls if c.error_code == 502]
    tg.set_down(False)
    assert refused  # the bot started while every call it made was refused
    rig.tg.user_message(ADMIN, "/help")
    await rig.said(ADMIN, "OpenClaw", timeout_s=30)


async def test_a_split_message_resumes_where_it_broke(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("long", deliver=[f"telegram:{ADMIN}"])])
    text = "\n\n".join(f"Paragraph {i}: " + "a line of the digest. " * 40 for i in range(12))
    rig.llm.script("qwen3:14b", Reply(text=text))
    await rig.app.runner.run("long", "cli")
    sends: list[int] = []

    async def second_part_fails(make_request: Any, bot: Any, method: Any) -> Any:
        result = await make_request(bot, method)
        if isinstance(method, SendMessage):
            sends.append(1)
            if len(sends) == 1:  # the next part meets 502 Bad Gateway on each of its tries
                rig.tg.fail_next("sendMessage", 502, "Bad Gateway", times=3)
        return result

    rig.bot.bot.session.middleware(second_part_fails)
    assert await rig.app.delivery.drain() == 1
    (row,) = await rig.app.store.fetchall("SELECT status, external_id FROM outbox")
    assert row[0] == "pending" and len(row[1].split(",")) == 1  # part one went out
    # the sender retried the part twice (server_backoff_s) before giving it up for now
    assert [c.error_code for c in rig.tg.calls_of("sendMessage")] == [None, 502, 502, 502]
    assert await rig.app.delivery.drain() == 0  # its backoff has not passed yet
    later = datetime.now(UTC) + timedelta(days=1)  # past the row's backoff, on the outbox's clock
    rig.app.outbox.clock = lambda: later
    assert await rig.app.delivery.drain() == 1
    (row,) = await rig.app.store.fetchall("SELECT status, external_id FROM outbox")
    parts = [m["text"] for m in rig.tg.sent(ADMIN)]
    assert len(parts) >= 3 and row[0] == "delivered"
    assert len(row[1].split(",")) == len(parts) == len(set(parts))  # none sent twice
