"""How long a 429 asks to wait, in each wire format's own place: a ``Retry-After`` (or
``retry-after-ms``) header for OpenAI-compatible upstreams and Anthropic, a RetryInfo in
the error body for Gemini (which sends no header), on the JSON and the stream paths. The
health board then keeps the model out exactly that long, and `openclaw status` says so."""

from __future__ import annotations

from typing import Any

import pytest

from core.config.models import RoutingConfig
from core.engine.health import HealthBoard
from core.errors import ProviderError
from core.overview import model_line
from core.providers.google_generative_ai import _retry_delay
from core.types import Message, ModelCall, ModelResponse, StreamDelta
from tests.conftest import ProviderFactory
from tests.fakes.llm import ANTHROPIC, GOOGLE, OPENAI, FakeLLM, Reply
from tests.providers.test_billing import PER_DAY, PER_MINUTE, gemini_429

CALL = ModelCall((Message("user", "hi"),), max_tokens=64)
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def gemini_rate(delay: Any) -> dict[str, Any]:
    """A per-minute 429 as Gemini sends it, its RetryInfo's ``retryDelay`` set to ``delay``."""
    body = gemini_429(PER_MINUTE)
    for detail in body["error"]["details"]:
        if detail["@type"] == RETRY_INFO:
            detail["retryDelay"] = delay
    return body


async def call(provider: Any, stream: bool) -> list[StreamDelta | ModelResponse]:
    if not stream:
        return [await provider.complete("m", CALL)]
    return [item async for item in provider.stream("m", CALL)]


async def failure(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str, reply: Reply, stream: bool
) -> ProviderError:
    fake_llm.script("m", reply)
    with pytest.raises(ProviderError) as info:
        await call(make_provider(api, api_key="sk-wait"), stream)
    return info.value


CASES = {
    # Gemini: the body's RetryInfo, no header
    "gemini-retry-info": (GOOGLE, Reply(status=429, error_json=gemini_429(PER_MINUTE)), 22.0),
    "gemini-fractional": (GOOGLE, Reply(status=429, error_json=gemini_rate("1.5s")), 1.5),
    "gemini-proto-fields": (
        GOOGLE,
        Reply(status=429, error_json=gemini_rate({"seconds": 3, "nanos": 500_000_000})),
        3.5,
    ),
    "gemini-no-details": (GOOGLE, Reply(status=429), None),
    "gemini-header-wins": (
        GOOGLE,
        Reply(status=429, error_json=gemini_429(PER_MINUTE), retry_after=7),
        7.0,
    ),
    # OpenAI-compatible (OpenAI, DeepSeek): retry-after-ms first, then Retry-After
    "openai-retry-after": (OPENAI, Reply(status=429, retry_after=3), 3.0),
    "openai-retry-after-ms": (OPENAI, Reply(status=429, retry_after_ms=1500), 1.5),
    "openai-none": (OPENAI, Reply(status=429), None),
    # Anthropic: retry-after
    "anthropic-retry-after": (ANTHROPIC, Reply(status=429, retry_after=12), 12.0),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("name", CASES)
async def test_a_429_carries_the_wait_it_asks_for(
    fake_llm: FakeLLM, make_provider: ProviderFactory, name: str, stream: bool
) -> None:
    api, reply, wait = CASES[name]
    err = await failure(fake_llm, make_provider, api, reply, stream)
    assert (err.kind, err.status) == ("rate_limited", 429)
    assert err.retry_after_s == wait


async def test_gemini_retry_info_inside_a_stream_is_read(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    """An error event after the stream started (HTTP 200): the same RetryInfo is read."""
    reply = Reply(stream_error="RESOURCE_EXHAUSTED", error_json=gemini_429(PER_MINUTE))
    err = await failure(fake_llm, make_provider, GOOGLE, reply, True)
    assert (err.kind, err.retry_after_s) == ("rate_limited", 22.0)


async def test_a_spent_gemini_quota_stays_billing_whatever_its_retry_info_says(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    """A per-day quota's RetryInfo (22 s) does not shorten the key's billing cooldown."""
    err = await failure(
        fake_llm, make_provider, GOOGLE, Reply(status=429, error_json=gemini_429(PER_DAY)), False
    )
    assert (err.kind, err.retry_after_s) == ("billing", 22.0)
    hb = HealthBoard(RoutingConfig())
    assert hb.failure("gem/m", err, 1, now=0) == RoutingConfig().billing_cooldown_s


@pytest.mark.parametrize(
    "delay", ["", "22", "s", "-3s", "1m", None, 22, {"seconds": "x"}, {"nanos": []}]
)
def test_a_retry_delay_gemini_never_sends_is_no_wait(delay: Any) -> None:
    details = [{"@type": RETRY_INFO, "retryDelay": delay}]
    assert _retry_delay(details) is None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_gemini_s_wait_opens_the_model_for_it_and_status_shows_the_seconds_left(
    fake_llm: FakeLLM, make_provider: ProviderFactory, stream: bool
) -> None:
    err = await failure(
        fake_llm,
        make_provider,
        GOOGLE,
        Reply(status=429, error_json=gemini_429(PER_MINUTE)),
        stream,
    )
    hb = HealthBoard(RoutingConfig(failure_threshold=5, cooldowns_s=[5.0]))
    # the first 429 opens at once, under the threshold, for the 22 s Gemini asked
    assert hb.failure("gem/m", err, 1, now=0) == 22.0
    assert "gem/m" in hb.snapshot(21.0).cooling
    assert "gem/m" not in hb.snapshot(22.5).cooling
    (row,) = hb.status(2.0)
    assert (row["state"], row["cooldown_left_s"]) == ("open", 20.0)
    line = model_line(row | {"last_latency_ms": None})
    assert line.split() == ["gem/m", "open", "20s", "left", "(rate_limited", "HTTP", "429)"]


def test_status_lines_of_a_closed_model_and_a_long_cooldown() -> None:
    row = {
        "model": "deep/deepseek-chat",
        "state": "closed",
        "cooldown_left_s": 0.0,
        "last_latency_ms": 812.4,
        "last_error": "",
    }
    assert model_line(row).split() == ["deep/deepseek-chat", "closed,", "last", "812", "ms"]
    long = row | {"state": "open", "cooldown_left_s": 900.0, "last_error": "auth HTTP 401"}
    assert "open 15m left, last 812 ms (auth HTTP 401)" in model_line(long)
