"""The pure parts of failure drills: durations, the chat's arguments, what a stream is per
wire format, and the report's lines."""

from __future__ import annotations

from typing import Any

import pytest

from bot.routers.drills import parse_drill
from bot.routers.runs import UsageError
from core.config.models import RoutingConfig
from core.drills.board import parse_for
from core.drills.report import report_lines
from core.drills.wire import ANTHROPIC, GOOGLE, OLLAMA, OPENAI, Fault, answer, is_stream
from core.engine.health import BREAKER_ALERT_QUIET_S, HealthBoard
from core.errors import ProviderError


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("0.5", 0.5), ("15m", 900.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_for(text) == seconds


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "out of range"),
        ("16m", "out of range"),
        ("-5s", "out of range"),
        ("nan", "out of range"),
        ("1h", "invalid duration"),
        ("soon", "invalid duration"),
    ],
)
def test_bad_durations(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_for(text)


def test_chat_arguments() -> None:
    assert parse_drill("deep/x 500") == ("deep/x", "500", 60.0, None)
    assert parse_drill("deep/x timeout 90s") == ("deep/x", "timeout", 90.0, None)
    assert parse_drill("deep/x timeout 5") == ("deep/x", "timeout", 60.0, 5)
    for bad in (None, "", "deep/x", "a b c d", "deep/x 500 0", "deep/x 500 later"):
        with pytest.raises(UsageError):
            parse_drill(bad)


@pytest.mark.parametrize(
    ("api", "path", "body", "stream"),
    [
        (OPENAI, "/chat/completions", {"stream": True}, True),
        (OPENAI, "/chat/completions", {}, False),
        (ANTHROPIC, "/v1/messages", {"stream": True}, True),
        (GOOGLE, "/models/m:streamGenerateContent", {}, True),
        (GOOGLE, "/models/m:generateContent", {"stream": True}, False),
        (OLLAMA, "/api/chat", {}, True),  # Ollama streams unless told not to
        (OLLAMA, "/api/chat", {"stream": False}, False),
    ],
)
def test_what_a_stream_is(api: str, path: str, body: Any, stream: bool) -> None:
    assert is_stream(api, path, body) is stream


def test_the_429_asks_to_wait_and_refused_is_no_answer() -> None:
    out = answer(OPENAI, Fault.RATE_LIMITED, "m", stream=False)
    assert out.status == 429 and out.headers == {"Retry-After": "1"}
    with pytest.raises(ValueError, match="not answered"):
        answer(OPENAI, Fault.REFUSED, "m", stream=False)


def report(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 3,
        "model": "deep/deepseek-chat",
        "fault": "empty",
        "state": "ended",
        "started_at": "2026-12-03T10:00:00.000000Z",
        "ended_at": "2026-12-03T10:01:00.000000Z",
        "end_reason": "time",
        "for_s": 60.0,
        "max_requests": None,
        "faulted_requests": 4,
        "affected_requests": 4,
        "breaker_opened_after_s": None,
        "failover": [{"model": "opus/claude-opus", "requests": 4}],
        "unanswered": 0,
        "added_latency_ms": {"median": 2.0, "p95": 3.0},
        "failover_latency_ms": {"median": 900.0, "p95": 1200.0},
        "normal_latency_ms": 450.0,
        "alerts": [],
        "healthy_after_s": 0.5,
    }
    return base | over


def test_report_lines() -> None:
    lines = report_lines(report())
    assert lines[0] == "drill 3: deep/deepseek-chat fault empty for 60s; ended (time)"
    text = "\n".join(lines)
    assert "breaker opened   never (answers that are unusable count as the model working)" in text
    assert "failed over to   opus/claude-opus ×4" in text
    assert "fallback answer  median 900 ms, p95 1200 ms; deep/deepseek-chat normally 450 ms" in text
    assert "alert            none queued" in text
    assert "healthy again    +0.5s after the drill ended" in text
    running = "\n".join(
        report_lines(
            report(
                state="running",
                ended_at=None,
                fault="500",
                breaker_opened_after_s=1.25,
                alerts=[
                    {
                        "outbox_id": 9,
                        "target": "telegram:1",
                        "status": "pending",
                        "queued_after_s": 1.3,
                        "delivered_after_s": None,
                    }
                ],
                healthy_after_s=None,
                unanswered=2,
            )
        )
    )
    assert "breaker opened   +1.2s after the start" in running
    assert "alert            telegram:1: pending, not delivered (queued +1.3s)" in running
    assert "unanswered       2 requests no model answered" in running
    assert "healthy again    — (the drill is running)" in running


def test_a_breaker_alerts_once_per_episode_and_not_again_while_it_flaps() -> None:
    health = HealthBoard(RoutingConfig())
    err = ProviderError("server_error", "p", "m", "boom", status=500)
    assert not health.open_alert_due("p/m", 100.0)  # closed: nothing to say
    health.failure("p/m", err, 1.0, 100.0)  # threshold 1: it opens
    assert health.open_alert_due("p/m", 100.0)
    health.failure("p/m", err, 1.0, 140.0)  # the probe fails: open again, same episode
    assert not health.open_alert_due("p/m", 140.0)
    health.success("p/m", 1.0, 200.0)  # the episode ends
    health.failure("p/m", err, 1.0, 300.0)
    assert not health.open_alert_due("p/m", 300.0)  # a flap within the quiet period
    health.success("p/m", 1.0, 400.0)
    health.failure("p/m", err, 1.0, 100.0 + BREAKER_ALERT_QUIET_S)
    assert health.open_alert_due("p/m", 100.0 + BREAKER_ALERT_QUIET_S)
