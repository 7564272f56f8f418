"""A key without credit or quota is ``billing``, in each wire format's own shape; a rate stays
``rate_limited``. The bodies are the ones the providers send (see each adapter's is_billing
for where each shape comes from)."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ProviderError
from core.types import Message, ModelCall, ModelResponse, StreamDelta
from tests.conftest import ProviderFactory
from tests.fakes.llm import ANTHROPIC, GOOGLE, OLLAMA, OPENAI, FakeLLM, Reply

CALL = ModelCall((Message("user", "hi"),), max_tokens=64)
KEY = "sk-billing-secret-456"

DEEPSEEK_402 = {
    "error": {
        "message": "Insufficient Balance",
        "type": "unknown_error",
        "param": None,
        "code": "invalid_request_error",
    }
}
OPENAI_QUOTA = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}
ANTHROPIC_402 = {
    "type": "error",
    "error": {"type": "billing_error", "message": "Your credit balance is too low."},
    "request_id": "req_011",
}
ANTHROPIC_OLD_400 = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API. Please go to"
        " Plans & Billing to upgrade or purchase credits.",
    },
}


def anthropic_error(kind: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error, "request_id": "req_012"}


# a spend limit an admin set (platform.claude.com/docs/en/api/errors: 400, its message says
# when access resumes), and the tier's monthly cap (a 429 rate_limit_error, no retry-after)
ANTHROPIC_SPEND_LIMIT_400 = anthropic_error(
    "invalid_request_error",
    "You have reached your specified API usage limits. You will regain access on"
    " 2026-12-01 at 00:00 UTC.",
)
ANTHROPIC_WORKSPACE_LIMIT_400 = anthropic_error(
    "invalid_request_error",
    "You have reached your specified workspace API usage limits. You will regain access on"
    " 2026-12-01 at 00:00 UTC.",
)
ANTHROPIC_TIER_CAP_429 = anthropic_error(
    "rate_limit_error",
    "Your organization has reached its monthly usage limit.",
    "enforced_spend_limit_reached",
)
ANTHROPIC_CONTRACT_CAP_429 = anthropic_error(
    "rate_limit_error", "Contract spend limit reached.", "contract_spend_limit_reached"
)
ANTHROPIC_RATE_429 = anthropic_error(
    "rate_limit_error",
    "This request would exceed the rate limit for your organization of 50,000 input tokens"
    " per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
)
ANTHROPIC_BILLING_ERROR_400 = anthropic_error("billing_error", "Your credit balance is too low.")


def openai_code(code: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"fake {code}: see your plan and billing details",
            # the code alone tells: the type may be the broader insufficient_quota, or not
            "type": "requests" if code.startswith("rate") else "invalid_request_error",
            "param": None,
            "code": code,
        }
    }


def gemini_429(*quota_ids: str) -> dict[str, Any]:
    return {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing"
            " details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": quota_id,
                            "quotaDimensions": {"location": "global", "model": "m"},
                            "quotaValue": "250",
                        }
                        for quota_id in quota_ids
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22s"},
            ],
        }
    }


PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
TOKENS_PER_MINUTE = "GenerateContentInputTokensPerModelPerMinute-FreeTier"

CASES = {
    "deepseek-402": (OPENAI, Reply(status=402, error_json=DEEPSEEK_402), "billing", 402),
    "openai-insufficient-quota-429": (
        OPENAI,
        Reply(status=429, error_json=OPENAI_QUOTA),
        "billing",
        429,
    ),
    "openai-plain-429": (OPENAI, Reply(status=429, retry_after=3), "rate_limited", 429),
    "openai-credit-balance-exhausted-429": (
        OPENAI,
        Reply(status=429, error_json=openai_code("credit_balance_exhausted")),
        "billing",
        429,
    ),
    "openai-organization-usage-limit-exceeded-429": (
        OPENAI,
        Reply(status=429, error_json=openai_code("organization_usage_limit_exceeded")),
        "billing",
        429,
    ),
    "openai-organization-spend-limit-exceeded-429": (
        OPENAI,
        Reply(status=429, error_json=openai_code("organization_spend_limit_exceeded")),
        "billing",
        429,
    ),
    "openai-project-spend-limit-exceeded-429": (
        OPENAI,
        Reply(status=429, error_json=openai_code("project_spend_limit_exceeded")),
        "billing",
        429,
    ),
    "openai-rate-limit-exceeded-429": (
        OPENAI,
        Reply(status=429, error_json=openai_code("rate_limit_exceeded")),
        "rate_limited",
        429,
    ),
    "anthropic-402-billing-error": (
        ANTHROPIC,
        Reply(status=402, error_json=ANTHROPIC_402),
        "billing",
        402,
    ),
    "anthropic-old-400-credit-too-low": (
        ANTHROPIC,
        Reply(status=400, error_json=ANTHROPIC_OLD_400),
        "billing",
        400,
    ),
    "anthropic-rate-limit-429": (ANTHROPIC, Reply(status=429), "rate_limited", 429),
    "anthropic-rate-limit-429-in-words": (
        ANTHROPIC,
        Reply(status=429, error_json=ANTHROPIC_RATE_429, retry_after=20),
        "rate_limited",
        429,
    ),
    "anthropic-billing-error-on-a-400": (
        ANTHROPIC,
        Reply(status=400, error_json=ANTHROPIC_BILLING_ERROR_400),
        "billing",
        400,
    ),
    "anthropic-spend-limit-400": (
        ANTHROPIC,
        Reply(status=400, error_json=ANTHROPIC_SPEND_LIMIT_400),
        "billing",
        400,
    ),
    "anthropic-workspace-spend-limit-400": (
        ANTHROPIC,
        Reply(status=400, error_json=ANTHROPIC_WORKSPACE_LIMIT_400),
        "billing",
        400,
    ),
    "anthropic-tier-monthly-cap-429": (
        ANTHROPIC,
        Reply(status=429, error_json=ANTHROPIC_TIER_CAP_429),
        "billing",
        429,
    ),
    "anthropic-contract-cap-429": (
        ANTHROPIC,
        Reply(status=429, error_json=ANTHROPIC_CONTRACT_CAP_429),
        "billing",
        429,
    ),
    "gemini-per-day-quota": (
        GOOGLE,
        Reply(status=429, error_json=gemini_429(PER_DAY)),
        "billing",
        429,
    ),
    "gemini-per-day-and-per-minute": (
        GOOGLE,
        Reply(status=429, error_json=gemini_429(PER_DAY, PER_MINUTE)),
        "billing",
        429,
    ),
    "gemini-per-minute-stays-rate-limited": (
        GOOGLE,
        Reply(status=429, error_json=gemini_429(PER_MINUTE, TOKENS_PER_MINUTE)),
        "rate_limited",
        429,
    ),
    "gemini-429-without-details": (GOOGLE, Reply(status=429), "rate_limited", 429),
    "ollama-402": (OLLAMA, Reply(status=402), "billing", 402),
}


async def call(provider: Any, stream: bool) -> list[StreamDelta | ModelResponse]:
    if not stream:
        return [await provider.complete("m", CALL)]
    return [item async for item in provider.stream("m", CALL)]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("name", CASES)
async def test_billing_shapes(
    fake_llm: FakeLLM, make_provider: ProviderFactory, name: str, stream: bool
) -> None:
    api, reply, kind, status = CASES[name]
    fake_llm.script("m", reply)
    provider = make_provider(api, api_key=KEY)
    with pytest.raises(ProviderError) as info:
        await call(provider, stream)
    err = info.value
    assert (err.kind, err.status) == (kind, status)
    assert err.outcome == ("billing" if kind == "billing" else "unavailable")


async def test_anthropic_billing_error_inside_a_stream(
    fake_llm: FakeLLM, make_provider: ProviderFactory
) -> None:
    fake_llm.script("m", Reply(stream_error="billing_error"))
    provider = make_provider(ANTHROPIC, api_key=KEY)
    with pytest.raises(ProviderError) as info:
        await call(provider, True)
    assert info.value.kind == "billing"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_billing_detail_keeps_the_message_not_the_key(
    fake_llm: FakeLLM, make_provider: ProviderFactory, stream: bool
) -> None:
    body = {"error": {"message": f"Insufficient Balance for key {KEY}", "type": "x", "code": None}}
    fake_llm.script("m", Reply(status=402, error_json=body))
    provider = make_provider(OPENAI, api_key=KEY)
    with pytest.raises(ProviderError) as info:
        await call(provider, stream)
    err = info.value
    assert "Insufficient Balance" in err.detail
    assert KEY not in str(err) and KEY not in err.detail
