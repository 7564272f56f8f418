"""Security of the Telegram bot (issue 9): strangers are ignored, approvals can't be
forged or replayed, and the webhook checks Telegram's secret in constant time.

The real aiogram Dispatcher polls the fake Bot API; the bot token and the webhook secret
are the ones in ``secrets.py``, so the suite's log scan looks for them.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.callbacks import AgentCb, ApprovalCb, RunCb
from bot.service import TelegramBot
from core.app import App
from core.config.settings import Settings
from core.gateway import Gateway
from tests.bot.conftest import ADMIN, STRANGER, VIEWER, BotRig
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM, Reply, echo
from tests.fakes.telegram import FakeTelegram
from tests.reliability import secrets
from tests.reliability.conftest import find_leaks
from tests.stores import NewLocation
from tests.tracing import traced

RigFactory = Callable[..., Awaitable[BotRig]]


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=secrets.TELEGRAM_TOKEN) as fake:
        yield fake


@pytest.fixture
async def make_rig(
    tg: FakeTelegram, fake_llm: FakeLLM, tmp_path: Path, new_location: NewLocation
) -> AsyncIterator[RigFactory]:
    made: list[BotRig] = []

    async def make(agents: list[dict[str, Any]], **overrides: Any) -> BotRig:
        telegram = {
            "admins": [ADMIN],
            "allowed_users": [VIEWER],
            "polling_timeout_s": 1,
            **overrides.pop("telegram", {}),
        }
        base = pyramid_urls(fake_llm.base_url)
        cfg = make_config(base, agents=agents, telegram=telegram, **overrides)
        app = await App.open(
            cfg,
            Settings(_env_file=None),  # type: ignore[call-arg]
            new_location(),
            base_dir=tmp_path,
        )
        bot = TelegramBot(app.facade, tg.token, tg.url)
        made.append(BotRig(app, bot, tg, fake_llm))
        await bot.start()
        await bot.lead()  # alone: it polls
        return made[-1]

    yield make
    for rig in made:
        await rig.bot.stop()
        await rig.app.runner.shutdown(5)
        await rig.app.close()
    for m in tg.sent() + tg.edits():  # nothing the bot said holds a secret
        assert find_leaks(str(m), "a Telegram message") == []


def agent(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "message": f"hello from {name}", "task": "chat", **kw}


def answers_to(tg: FakeTelegram, user_id: int) -> list[str]:
    return [c.get("text") or "" for c in tg.answered_callbacks() if c["user_id"] == user_id]


async def settled(rig: BotRig, marker: str = "/help") -> None:
    """Wait until the bot has taken every queued update and answered a marker from the
    admin (sent last), so what came before it has been handled or dropped."""
    before = len(rig.tg.sent(ADMIN))
    rig.tg.user_message(ADMIN, marker)
    await rig.tg.wait_for(lambda t: not t.pending_updates and len(t.sent(ADMIN)) > before)


async def approval_row(rig: BotRig) -> tuple[Any, ...]:
    (row,) = await rig.app.store.fetchall("SELECT status, decided_by, decided_at FROM approvals")
    return tuple(row)


async def test_a_stranger_gets_no_answer_and_changes_nothing(make_rig: RigFactory) -> None:
    rig = await make_rig([agent("a", schedule="0 7 * * *")])
    rig.llm.default = echo
    rig.tg.user_message(ADMIN, "/agents")
    page = await rig.said(ADMIN, "Agents</b>")
    for command in ("/start", "/help", "/run a", "/agents", "/runs", "/status", "/usage"):
        rig.tg.user_message(STRANGER, command)
    rig.tg.user_message(STRANGER, "/approvals")
    rig.tg.user_message(STRANGER, "/budget")
    presses = [
        AgentCb(action="run", idx=0).pack(),
        AgentCb(action="disable", idx=0).pack(),
        AgentCb(action="open", idx=0).pack(),
        RunCb(action="rerun", run_id=1).pack(),
        ApprovalCb(action="approve", approval_id=1).pack(),
        "ap:approve:1:extra",
        "garbage",
    ]
    queries = [rig.tg.user_press(STRANGER, page, data, chat_id=ADMIN) for data in presses]
    await settled(rig)
    assert rig.tg.sent(STRANGER) == [] and rig.tg.edits(STRANGER) == []
    assert answers_to(rig.tg, STRANGER) == []  # not even a "not allowed"
    answered = {c["callback_query_id"] for c in rig.tg.answered_callbacks()}
    assert not answered & set(queries)
    assert await rig.app.runner.runs.recent() == []
    assert not (await rig.app.runner.states.get("a")).disabled
    assert rig.llm.requests == []


async def approval_rig(make_rig: RigFactory) -> tuple[BotRig, dict[str, Any]]:
    rig = await make_rig(
        [agent("deep", task="strategy")], approvals={"default": "deny", "timeout_s": 60}
    )
    rig.llm.script("claude-opus", Reply(text="the opus answer"))
    rig.tg.user_message(ADMIN, "/run deep")
    ask = await rig.said(ADMIN, "Approval needed")
    return rig, ask


async def test_forged_and_replayed_approvals_change_nothing(make_rig: RigFactory) -> None:
    rig, ask = await approval_rig(make_rig)
    approve = ApprovalCb(action="approve", approval_id=1).pack()
    # forged by a stranger (crafted data on the admin's message) and by a read-only user
    rig.tg.user_press(STRANGER, ask, approve, chat_id=ADMIN)
    rig.tg.user_press(VIEWER, ask, approve)
    rig.tg.user_press(VIEWER, ask, ApprovalCb(action="deny", approval_id=1).pack())
    await rig.tg.wait_for(lambda t: len(answers_to(t, VIEWER)) == 2)
    assert all("Only admins" in a for a in answers_to(rig.tg, VIEWER))
    # an admin's crafted payloads: an unknown action, another id, a malformed one
    rig.tg.user_press(ADMIN, ask, "ap:launch:1")
    rig.tg.user_press(ADMIN, ask, ApprovalCb(action="approve", approval_id=99).pack())
    rig.tg.user_press(ADMIN, ask, "ap:approve:one")
    await rig.tg.wait_for(lambda t: len(answers_to(t, ADMIN)) >= 2)
    await settled(rig)
    assert answers_to(rig.tg, STRANGER) == []
    assert (await approval_row(rig))[0] == "pending"
    assert "no such approval" in " ".join(answers_to(rig.tg, ADMIN))
    # the admin's real decision: the first one wins
    rig.tg.user_press(ADMIN, ask, ApprovalCb(action="deny", approval_id=1).pack())
    await rig.said(ADMIN, "deep</b> #1 failed")
    first = await approval_row(rig)
    assert first[:2] == ("denied", "@op")
    # replays: the admin presses Approve on the old message, the others try again
    rig.tg.user_press(ADMIN, ask, approve)
    rig.tg.user_press(VIEWER, ask, approve)
    rig.tg.user_press(STRANGER, ask, approve, chat_id=ADMIN)
    await rig.tg.wait_for(
        lambda t: (
            any("already denied by @op" in a for a in answers_to(t, ADMIN))
            and len(answers_to(t, VIEWER)) == 3
        )
    )
    await settled(rig)
    assert await approval_row(rig) == first  # status, who and when: all the first decision
    assert answers_to(rig.tg, STRANGER) == []
    assert not [r for r in rig.llm.requests if r.model == "claude-opus"]
    run = await rig.app.runner.runs.get(1)
    assert run is not None and run.status == "failed"


async def test_an_approved_request_is_not_approved_twice(make_rig: RigFactory) -> None:
    rig, ask = await approval_rig(make_rig)
    approve = ApprovalCb(action="approve", approval_id=1).pack()
    rig.tg.user_press(ADMIN, ask, approve)
    await rig.said(ADMIN, "the opus answer")
    first = await approval_row(rig)
    for _ in range(3):
        rig.tg.user_press(ADMIN, ask, approve)
    rig.tg.user_press(ADMIN, ask, ApprovalCb(action="deny", approval_id=1).pack())
    await rig.tg.wait_for(lambda t: sum("already approved" in a for a in answers_to(t, ADMIN)) == 4)
    assert await approval_row(rig) == first and first[0] == "approved"
    assert len([r for r in rig.llm.requests if r.model == "claude-opus"]) == 1
    assert len(await rig.app.runner.runs.recent()) == 1


async def test_the_webhook_checks_the_secret_in_constant_time(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", secrets.WEBHOOK_SECRET)
    rig = await make_rig(
        [agent("a")], telegram={"webhook_url": "https://x.invalid/telegram/webhook"}
    )
    gateway = Gateway(rig.app.facade, secrets.GATEWAY_TOKEN, "127.0.0.1", 0, rig.bot.routes())
    await gateway.start()

    def update(user: int, n: int) -> dict[str, Any]:
        return {
            "update_id": n,
            "message": {
                "message_id": n,
                "date": 0,
                "text": "/help",
                "chat": {"id": user, "type": "private"},
                "from": {"id": user, "is_bot": False, "first_name": "U", "username": "u"},
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }

    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as c:
            assert (await c.get("/api/status")).status_code == 401  # only the hook is open
            header = "X-Telegram-Bot-Api-Secret-Token"
            for bad in (
                {},
                {header: ""},
                {header: "wrong"},
                {header: secrets.WEBHOOK_SECRET[:-1]},
                {header: b"\xffnot-utf-8\xfe"},  # refused like any wrong secret, not a 500
                {"Authorization": f"Bearer {secrets.GATEWAY_TOKEN}"},  # the gateway's token
            ):
                # observed, not replaced: the real compare_digest decides, once a request
                with traced() as trace:
                    r = await c.post("/telegram/webhook", json=update(ADMIN, 1), headers=bad)
                assert r.status_code == 401, bad
                assert trace.count(hmac.compare_digest) == 1, bad
                assert find_leaks(r.text, "webhook answer") == []
            assert rig.tg.sent() == []
            good = {header: secrets.WEBHOOK_SECRET}
            with traced() as trace:
                r = await c.post("/telegram/webhook", json=update(STRANGER, 2), headers=good)
            assert r.status_code == 200
            assert trace.count(hmac.compare_digest) == 1
            r = await c.post("/telegram/webhook", content=b"{oops", headers=good)
            assert r.status_code == 400 and "Traceback" not in r.text
            r = await c.post("/telegram/webhook", json=update(ADMIN, 3), headers=good)
            assert r.status_code == 200
        await rig.said(ADMIN, "OpenClaw")
        assert rig.tg.sent(STRANGER) == []
    finally:
        await gateway.stop()
