"""The shared plumbing: status table, Retry-After, error details, the factory."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from multidict import CIMultiDict

from core.config.models import ProviderConfig
from core.providers import PROVIDER_CLASSES, build_provider
from core.providers.base import (
    Accumulator,
    Chunk,
    ToolCallPart,
    error_detail,
    kind_for_status,
    parse_retry_after,
)
from core.types import StreamDelta, Usage

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
        (529, "server_error"),
        (429, "rate_limited"),
        (401, "auth"),
        (403, "auth"),
        (400, "bad_request"),
        (422, "bad_request"),
        (413, "bad_request"),
        (404, "not_found"),
        (408, "timeout"),
        (301, "malformed"),
    ],
)
def test_kind_for_status(status: int, kind: str) -> None:
    assert kind_for_status(status) == kind


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": "Wed, 01 Jan 2025 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Wed, 01 Jan 2025 11:00:00 GMT"}, 0.0),  # in the past
        ({"Retry-After": "soon"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "x", "Retry-After": "9"}, 9.0),
        ({"Retry-After": "-3"}, 0.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(CIMultiDict(headers), NOW) == expected


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"error": {"message": "bad key", "type": "invalid_request_error"}}',
         "invalid_request_error: bad key"),
        (b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
         "overloaded_error: Overloaded"),
        (b'{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}',
         "RESOURCE_EXHAUSTED: quota"),
        (b'[{"error": {"code": 400, "message": "x", "status": "INVALID_ARGUMENT"}}]',
         "INVALID_ARGUMENT: x"),
        (b'{"error": "model \'qwen\' not found"}', "model 'qwen' not found"),
        (b"<html>\n  <body>Bad   Gateway</body></html>", "<html> <body>Bad Gateway</body></html>"),
        (b"", ""),
    ],
)  # fmt: skip
def test_error_detail(body: bytes, detail: str) -> None:
    assert error_detail(body) == detail


def test_error_detail_is_short() -> None:
    assert len(error_detail(b"x" * 10_000)) <= 300


def test_accumulator_overwrites_counts_and_keeps_order() -> None:
    acc = Accumulator()
    assert acc.add(Chunk(input_tokens=5, output_tokens=1)) is None
    assert acc.add(Chunk(reasoning="r", text="<think>t")) == StreamDelta("", "rt")
    assert acc.add(Chunk(text="</think>a", output_tokens=9, finish_reason="stop")) == StreamDelta(
        "a", ""
    )
    assert acc.flush() is None
    resp = acc.response(200, "m")
    assert (resp.content, resp.reasoning, resp.usage) == ("a", "rt", Usage(5, 9, 0))
    assert resp.finish_reason == "stop"


def test_every_api_kind_has_an_adapter() -> None:
    assert set(PROVIDER_CLASSES) == {
        "openai-completions",
        "anthropic-messages",
        "google-generative-ai",
        "ollama",
    }
    assert all(cls.api == api for api, cls in PROVIDER_CLASSES.items())


async def test_build_provider_configures_one_client() -> None:
    cfg = ProviderConfig(
        api="openai-completions",
        base_url="http://127.0.0.1:9/v1/",
        timeout_s=12,
        connect_timeout_s=2,
        headers={"X-Team": "ops"},
    )
    provider = build_provider("deep", cfg, "sk-1")
    try:
        client = provider._client
        assert provider.config.resolved_base_url == "http://127.0.0.1:9/v1"
        assert client.timeout == aiohttp.ClientTimeout(
            total=None, connect=12, sock_connect=2, sock_read=12
        )
        assert client.headers["x-team"] == "ops"
        assert (provider.name, provider.config, provider.api) == ("deep", cfg, "openai-completions")
    finally:
        await provider.aclose()
    assert client.closed


async def test_default_base_url_is_used() -> None:
    provider = build_provider("anthropic", ProviderConfig(api="anthropic-messages"))
    try:
        assert provider.config.resolved_base_url == "https://api.anthropic.com"
    finally:
        await provider.aclose()


def test_whole_calls_streamed_under_one_index_stay_apart() -> None:
    # servers that stream whole calls without an index (each lands on position 0)
    acc = Accumulator()
    acc.add(Chunk(tool_calls=[ToolCallPart(0, "id1", "a", '{"x": 1}')]))
    acc.add(Chunk(tool_calls=[ToolCallPart(0, "id2", "b", '{"y": 2}')]))
    acc.add(Chunk(tool_calls=[ToolCallPart(0, "", "", "")]))  # a piece with no id joins
    calls = acc.response(200, "m").tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("id1", "a", '{"x": 1}'),
        ("id2", "b", '{"y": 2}'),
    ]
