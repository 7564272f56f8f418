"""Billing-aware failover and several keys per provider, end to end against the fake LLM
server on 127.0.0.1: key rotation before the next model, breakers per key, a run keeping
its key, the billing cooldown on a driven clock, one alert per episode without secrets,
and the status naming keys by variable.

The pyramid is tests/configs.py's; ``deep`` (openai-completions, tier 2) sends
DEEP_KEY_A and DEEP_KEY_B, ``deep2`` is the next model of the tier.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.app import App, missing_keys
from core.config.load import parse_config
from core.config.models import Config
from core.config.settings import Settings
from core.engine.engine import Engine, Result
from core.engine.health import HealthBoard
from core.errors import AllAttemptsFailed
from core.overview import key_line
from core.providers import build_provider
from core.providers.base import Provider
from core.types import ChatRequest, Message, StreamDelta
from tests.configs import pyramid, pyramid_urls
from tests.fakes.llm import FakeLLM, Reply
from tests.providers.test_billing import PER_DAY, PER_MINUTE, gemini_429
from tests.stores import NewLocation

KEY_A, KEY_B = "sk-deep-aaaa-1111", "sk-deep-bbbb-2222"
H = 3600.0
NO_BALANCE = {
    "error": {
        # a proxy echoing the key it was sent: the alert must still not carry it
        "message": f"Insufficient Balance (key {KEY_A[:3]}…{KEY_A[-4:]} / {KEY_A})",
        "type": "unknown_error",
        "param": None,
        "code": "invalid_request_error",
    }
}


def keyed_config(fake: FakeLLM, envs: list[str] | str, **routing: Any) -> Config:
    doc = pyramid(pyramid_urls(fake.base_url))
    doc["providers"]["deep"]["api_key_env"] = envs
    doc["routing"] |= routing
    return parse_config(doc, warnings=[])


def ask(**kw: Any) -> ChatRequest:
    return ChatRequest((Message("user", "hello"),), **({"task": "analysis"} | kw))


def keys_sent(fake: FakeLLM, model: str = "deepseek-chat") -> list[str]:
    """Which key each call of ``model`` carried, by the test's names for them."""
    names = {f"Bearer {KEY_A}": "A", f"Bearer {KEY_B}": "B"}
    return [
        names.get(r.headers.get("authorization", ""), "?")
        for r in fake.requests
        if r.model == model
    ]


def outcomes(result: Result | AllAttemptsFailed) -> list[tuple[str, str]]:
    return [(a.ref, a.outcome) for a in result.attempts]


@dataclass
class Rig:
    fake: FakeLLM
    engine: Engine
    alerts: list[str] = field(default_factory=list)
    now: list[float] = field(default_factory=lambda: [1000.0])


@pytest.fixture
async def rig(fake_llm: FakeLLM) -> AsyncIterator[Callable[..., Rig]]:
    """An engine on a driven clock with the keys of ``deep`` as App.open wires them."""
    built: list[Provider] = []

    def make(**routing: Any) -> Rig:
        cfg = keyed_config(fake_llm, ["DEEP_KEY_A", "DEEP_KEY_B"], **routing)
        providers = {n: build_provider(n, p) for n, p in cfg.providers.items()}
        pooled = build_provider("deep", cfg.providers["deep"], KEY_A)
        keys = (KEY_A, KEY_B)
        keyed = {"deep": {"DEEP_KEY_A": pooled.with_key(KEY_A, keys)}}
        keyed["deep"]["DEEP_KEY_B"] = pooled.with_key(KEY_B, keys)
        providers["deep"] = keyed["deep"]["DEEP_KEY_A"]
        built.extend(providers.values())
        r = Rig(fake_llm, None)  # type: ignore[arg-type]

        async def alert(text: str) -> None:
            r.alerts.append(text)

        r.engine = Engine(
            cfg,
            providers,
            health=HealthBoard(cfg.routing),
            clock=lambda: r.now[0],
            keyed=keyed,
            alert=alert,
        )
        return r

    yield make
    for p in built:
        await p.aclose()


async def test_a_429_tries_key_b_before_the_next_model_and_a_stays_out(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    r.fake.script("deepseek-chat", Reply(status=429, retry_after=20), Reply(text="from B"))
    res = await r.engine.complete(ask())
    assert res.content == "from B" and res.answered_by.ref == "deep/deepseek-chat"
    assert keys_sent(r.fake) == ["A", "B"]
    assert outcomes(res) == [("deep/deepseek-chat", "unavailable"), ("deep/deepseek-chat", "ok")]
    assert "(key DEEP_KEY_A)" in res.attempts[0].reason
    assert r.engine.health.state("deep/deepseek-chat", r.now[0]) == "closed"  # the model is fine
    # breakers per key: the next request goes straight to B while A cools down
    r.fake.script("deepseek-chat", Reply(text="B again"))
    assert (await r.engine.complete(ask())).content == "B again"
    assert keys_sent(r.fake) == ["A", "B", "B"]
    assert r.alerts == []  # a rate is no billing episode


async def test_billing_on_both_keys_fails_over_to_the_next_model_with_one_alert_per_key(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    spent = Reply(status=402, error_json=NO_BALANCE)
    r.fake.script("deepseek-chat", spent, spent)
    r.fake.script("deepseek-backup", Reply(text="from deep2"), Reply(text="deep2 again"))
    res = await r.engine.complete(ask())
    assert res.content == "from deep2"
    assert keys_sent(r.fake) == ["A", "B"]
    assert outcomes(res) == [
        ("deep/deepseek-chat", "billing"),
        ("deep/deepseek-chat", "billing"),
        ("deep2/deepseek-backup", "ok"),
    ]
    assert len(r.alerts) == 2
    assert "deep key DEEP_KEY_A has no credit or quota left" in r.alerts[0]
    assert "deep key DEEP_KEY_B" in r.alerts[1]
    for text in r.alerts:
        assert "Insufficient Balance" in text and "5.0 h" in text
        assert KEY_A not in text and KEY_B not in text
    # the next request does not hammer the spent keys, and nobody is alerted again
    res = await r.engine.complete(ask())
    assert res.content == "deep2 again"
    assert keys_sent(r.fake) == ["A", "B"]
    assert outcomes(res)[0][1] == "skipped"
    assert "no credit or quota" in res.attempts[0].reason
    assert len(r.alerts) == 2


async def test_billing_cooldown_doubles_to_a_day_with_one_alert_and_a_success_ends_it(
    rig: Callable[..., Rig],
) -> None:
    r = rig()
    spent = Reply(status=402, error_json=NO_BALANCE)
    health = r.engine.health

    def cooldown_left(key: str) -> float:
        row = next(k for k in health.key_status(r.now[0]) if k["key"] == key)
        return float(row["cooldown_left_s"])

    r.fake.script("deepseek-chat", spent, Reply(text="B"))
    await r.engine.complete(ask())
    assert cooldown_left("DEEP_KEY_A") == 5 * H
    for expected in (10 * H, 20 * H, 24 * H, 24 * H):
        r.now[0] += cooldown_left("DEEP_KEY_A") + 1
        # A is half-open again: the run-less request probes it first (A before B)
        r.fake.script("deepseek-chat", spent, Reply(text="B"))
        assert (await r.engine.complete(ask())).content == "B"
        assert cooldown_left("DEEP_KEY_A") == expected
    assert len([a for a in r.alerts if "DEEP_KEY_A" in a]) == 1  # one episode, one alert
    r.now[0] += cooldown_left("DEEP_KEY_A") + 1
    r.fake.script("deepseek-chat", Reply(text="topped up"))
    assert (await r.engine.complete(ask())).content == "topped up"
    assert keys_sent(r.fake)[-1] == "A"
    r.fake.script("deepseek-chat", spent, Reply(text="B"))
    await r.engine.complete(ask())
    assert cooldown_left("DEEP_KEY_A") == 5 * H  # a new episode starts at 5 h again
    assert len([a for a in r.alerts if "DEEP_KEY_A" in a]) == 2


async def test_a_run_keeps_the_key_that_last_worked_for_it(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.fake.script("deepseek-chat", Reply(status=429, retry_after=20), Reply(text="B"))
    await r.engine.complete(ask(run_id="run-1"))
    assert keys_sent(r.fake) == ["A", "B"]
    r.now[0] += 60  # A's cooldown is over
    r.fake.script("deepseek-chat", Reply(text="run-1 on B"), Reply(text="run-2 on A"))
    assert (await r.engine.complete(ask(run_id="run-1"))).content == "run-1 on B"
    assert (await r.engine.complete(ask(run_id="run-2"))).content == "run-2 on A"
    assert keys_sent(r.fake) == ["A", "B", "B", "A"]
    # the run's key rate-limited: the run moves to the next key and stays there
    r.fake.script("deepseek-chat", Reply(status=429, retry_after=20), Reply(text="A"))
    await r.engine.complete(ask(run_id="run-1"))
    r.fake.script("deepseek-chat", Reply(text="still A"))
    await r.engine.complete(ask(run_id="run-1"))
    assert keys_sent(r.fake)[4:] == ["B", "A", "A"]


async def test_a_gateway_caller_keeps_its_key_too(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.fake.script("deepseek-chat", Reply(status=429, retry_after=20), Reply(text="B"))
    await r.engine.complete(ask(caller="alice"))
    r.now[0] += 60
    r.fake.script("deepseek-chat", Reply(text="alice on B"), Reply(text="anonymous on A"))
    assert (await r.engine.complete(ask(caller="alice"))).content == "alice on B"
    assert (await r.engine.complete(ask())).content == "anonymous on A"
    assert keys_sent(r.fake) == ["A", "B", "B", "A"]


async def test_a_spent_gemini_daily_quota_fails_over_and_alerts_a_per_minute_one_does_not(
    rig: Callable[..., Rig],
) -> None:
    """flash has no key in the test pyramid: the billing breaker is the model's."""
    r = rig()
    minute = Reply(status=429, error_json=gemini_429(PER_MINUTE))
    r.fake.script("gemini-flash", minute)
    r.fake.script(
        "deepseek-chat", Reply(text="tier 2 answers this one"), Reply(text="tier 2 answers again")
    )
    res = await r.engine.complete(ask(task="summarize"))
    assert outcomes(res)[0] == ("flash/gemini-flash", "unavailable")
    assert r.alerts == []
    r.now[0] += 400  # the per-minute cooldown is long over
    r.fake.script("gemini-flash", Reply(status=429, error_json=gemini_429(PER_DAY)))
    res = await r.engine.complete(ask(task="summarize"))
    assert outcomes(res)[0] == ("flash/gemini-flash", "billing")
    assert res.content == "tier 2 answers again"
    (text,) = r.alerts
    assert text.startswith("💳 flash/gemini-flash has no credit or quota left")
    assert "RESOURCE_EXHAUSTED: You exceeded your current quota" in text
    r.fake.script("deepseek-chat", Reply(text="flash is skipped this time"))
    res = await r.engine.complete(ask(task="summarize"))
    assert outcomes(res)[0][1] == "skipped" and len(r.alerts) == 1


async def test_streaming_rotates_keys_before_the_first_byte(rig: Callable[..., Rig]) -> None:
    r = rig()
    spent = Reply(status=402, error_json=NO_BALANCE)
    r.fake.script("deepseek-chat", spent, Reply(text="streamed from B"))
    items = [item async for item in r.engine.stream(ask())]
    text = "".join(i.content for i in items if isinstance(i, StreamDelta))
    (result,) = [i for i in items if isinstance(i, Result)]
    assert text == "streamed from B"
    assert keys_sent(r.fake) == ["A", "B"]
    assert outcomes(result) == [("deep/deepseek-chat", "billing"), ("deep/deepseek-chat", "ok")]
    assert len(r.alerts) == 1


async def test_a_429_on_the_last_key_goes_to_the_next_model(rig: Callable[..., Rig]) -> None:
    r = rig()
    limited = Reply(status=429, retry_after=20)
    r.fake.script("deepseek-chat", limited, limited)
    r.fake.script("deepseek-backup", Reply(text="deep2"))
    res = await r.engine.complete(ask())
    assert res.content == "deep2"
    assert keys_sent(r.fake) == ["A", "B"]
    assert r.alerts == []


# -- wired by App.open: keys from the environment, the alert path, the status ----------


@pytest.fixture
async def open_app(
    new_location: NewLocation, fake_llm: FakeLLM
) -> AsyncIterator[Callable[..., Any]]:
    opened: list[App] = []

    async def open_(envs: list[str] | str) -> App:
        app = await App.open(
            keyed_config(fake_llm, envs),
            Settings(_env_file=None),  # type: ignore[call-arg]
            new_location(),
        )
        opened.append(app)
        return app

    yield open_
    for app in opened:
        await app.close()


async def test_the_app_alerts_the_admins_once_and_status_names_keys_not_values(
    open_app: Callable[..., Any], fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEP_KEY_A", KEY_A)
    monkeypatch.setenv("DEEP_KEY_B", KEY_B)
    app: App = await open_app(["DEEP_KEY_A", "DEEP_KEY_B"])
    spent = Reply(status=402, error_json=NO_BALANCE)
    fake_llm.script("deepseek-chat", spent, Reply(text="from B"), Reply(text="B again"))
    assert (await app.engine.complete(ask())).content == "from B"
    assert (await app.engine.complete(ask())).content == "B again"
    assert keys_sent(fake_llm) == ["A", "B", "B"]
    rows = await app.store.fetchall("SELECT target, body FROM outbox WHERE kind = 'alert'")
    assert [r["target"] for r in rows] == app.config.alerts.deliver  # one alert, each target
    body = rows[0]["body"]
    assert "DEEP_KEY_A" in body and "Insufficient Balance" in body
    assert KEY_A not in body and KEY_B not in body
    ledger = await app.store.fetchall("SELECT outcome, reason FROM attempts ORDER BY id")
    assert ledger[0]["outcome"] == "billing" and "(key DEEP_KEY_A)" in ledger[0]["reason"]
    assert all(KEY_A not in (r["reason"] or "") for r in ledger)

    status = (await app.overview.status(1.0)).as_dict()
    keys = {(k["provider"], k["key"]): k for k in status["keys"]}
    assert set(keys) == {("deep", "DEEP_KEY_A"), ("deep", "DEEP_KEY_B")}
    assert keys[("deep", "DEEP_KEY_A")]["state"] == "open"
    assert keys[("deep", "DEEP_KEY_A")]["last_outcome"] == "billing"
    assert keys[("deep", "DEEP_KEY_B")]["state"] == "closed"
    dumped = json.dumps(status)
    assert KEY_A not in dumped and KEY_B not in dumped


async def test_a_provider_uses_the_keys_that_are_set_and_is_out_with_none(
    open_app: Callable[..., Any], fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEP_KEY_B", KEY_B)  # A is not set
    app: App = await open_app(["DEEP_KEY_A", "DEEP_KEY_B"])
    assert "deep" not in missing_keys(app.config, app.settings)
    fake_llm.script("deepseek-chat", Reply(text="on B"))
    assert (await app.engine.complete(ask())).content == "on B"
    assert keys_sent(fake_llm) == ["B"]
    rows = (await app.overview.status(1.0)).as_dict()["keys"]
    assert [(k["key"], k["state"], k["last_error"]) for k in rows] == [
        ("DEEP_KEY_B", "closed", ""),
        ("DEEP_KEY_A", "unavailable", "DEEP_KEY_A is not set"),
    ]

    monkeypatch.delenv("DEEP_KEY_B")
    none_set: App = await open_app(["DEEP_KEY_A", "DEEP_KEY_B"])
    reason = missing_keys(none_set.config, none_set.settings)["deep"]
    assert reason == "DEEP_KEY_A / DEEP_KEY_B are not set (add one to .env or the environment)"
    blocked = none_set.engine.plan(task="analysis").skipped
    assert [(s.ref, s.reason) for s in blocked if s.ref.startswith("deep/")] == [
        ("deep/deepseek-chat", reason)
    ]


def test_key_line_as_openclaw_status_prints_it() -> None:
    row = {
        "provider": "deep",
        "key": "DEEP_KEY_A",
        "state": "open",
        "cooldown_left_s": 5 * H,
        "last_error": "billing HTTP 402",
    }
    assert key_line(row) == "deep DEEP_KEY_A: open (billing HTTP 402, 5h00m left)"
    assert key_line(row | {"state": "closed"}) == "deep DEEP_KEY_A: closed"
    unset = row | {"state": "unavailable", "cooldown_left_s": 0.0, "last_error": "X is not set"}
    assert key_line(unset) == "deep DEEP_KEY_A: unavailable (X is not set)"
