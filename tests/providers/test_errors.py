"""Every adapter maps every failure the same way, streaming or not."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core.config.models import ProviderConfig
from core.errors import ProviderError
from core.providers import build_provider
from core.providers.base import Provider
from core.types import Message, ModelCall, ModelResponse, StreamDelta
from tests.conftest import ProviderFactory
from tests.fakes.llm import APIS, FakeLLM, Reply

CALL = ModelCall((Message("user", "hi"),), max_tokens=64)
KEY = "sk-secret-key-123"


async def call(provider: Provider, stream: bool) -> list[StreamDelta | ModelResponse]:
    if not stream:
        return [await provider.complete("m", CALL)]
    return [item async for item in provider.stream("m", CALL)]


@dataclass(frozen=True)
class Case:
    reply: Reply
    kind: str
    status: int | None = None
    retry_after_s: float | None = None
    stream_only: bool = False


CASES: dict[str, Case] = {
    "500": Case(Reply(status=500), "server_error", 500),
    "502": Case(Reply(status=502), "server_error", 502),
    "503": Case(Reply(status=503), "server_error", 503),
    "529-overloaded": Case(Reply(status=529), "server_error", 529),
    "429-retry-after": Case(Reply(status=429, retry_after=7), "rate_limited", 429, 7.0),
    "429-bare": Case(Reply(status=429), "rate_limited", 429, None),
    "401": Case(Reply(status=401), "auth", 401),
    "403": Case(Reply(status=403), "auth", 403),
    "400": Case(Reply(status=400), "bad_request", 400),
    "422": Case(Reply(status=422), "bad_request", 422),
    "404": Case(Reply(status=404), "not_found", 404),
    "malformed-json": Case(Reply(malformed=True), "malformed"),
    "wrong-content-type": Case(Reply(content_type="text/html"), "malformed", 200),
    "cut-stream": Case(Reply(cut_stream=True), "stream_cut", stream_only=True),
    "dropped-connection": Case(Reply(abort_stream=True), "stream_cut", stream_only=True),
    "stream-error-event": Case(
        Reply(stream_error="overloaded_error"), "server_error", stream_only=True
    ),
}


TABLE = [
    pytest.param(name, stream, id=f"{name}-{'stream' if stream else 'json'}")
    for name, case in CASES.items()
    for stream in (False, True)
    if stream or not case.stream_only
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(("name", "stream"), TABLE)
async def test_error_table(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str, name: str, stream: bool
) -> None:
    case = CASES[name]
    fake_llm.script("m", case.reply)
    provider = make_provider(api, api_key=KEY)
    with pytest.raises(ProviderError) as info:
        await call(provider, stream)
    err = info.value
    assert (err.kind, err.status, err.provider, err.model) == (
        case.kind,
        case.status,
        f"fake-{api}",
        "m",
    )
    assert err.retry_after_s == case.retry_after_s


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", APIS)
async def test_refused(
    make_provider: ProviderFactory, closed_port: int, api: str, stream: bool
) -> None:
    provider = make_provider(api, base_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(ProviderError) as info:
        await call(provider, stream)
    assert info.value.kind == "refused"
    assert info.value.status is None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", APIS)
async def test_hang_times_out(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str, stream: bool
) -> None:
    fake_llm.script("m", Reply(hang=True))
    provider = make_provider(api, timeout_s=0.2)
    with pytest.raises(ProviderError) as info:
        await call(provider, stream)
    assert info.value.kind == "timeout"


@pytest.mark.parametrize("api", APIS)
async def test_slow_but_in_time_is_fine(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str
) -> None:
    fake_llm.script("m", Reply(text="late", delay_s=0.05))
    provider = make_provider(api, timeout_s=2)
    assert (await provider.complete("m", CALL)).content == "late"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", APIS)
async def test_detail_has_upstream_message_but_never_the_key(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str, stream: bool
) -> None:
    fake_llm.script("m", Reply(status=401, error_message=f"Incorrect API key provided: {KEY}"))
    provider = make_provider(api, api_key=KEY)
    with pytest.raises(ProviderError) as info:
        await call(provider, stream)
    err = info.value
    assert "Incorrect API key provided: ***" in err.detail
    assert KEY not in str(err) and KEY not in err.detail


@pytest.mark.parametrize(
    ("stream_error", "kind"),
    [
        ("overloaded_error", "server_error"),
        ("api_error", "server_error"),
        ("rate_limit_error", "rate_limited"),
        ("authentication_error", "auth"),
        ("invalid_request_error", "bad_request"),
    ],
)
async def test_anthropic_stream_error_events_map_like_http(
    fake_llm: FakeLLM, make_provider: ProviderFactory, stream_error: str, kind: str
) -> None:
    fake_llm.script("m", Reply(text="some words here", stream_error=stream_error))
    provider = make_provider("anthropic-messages")
    with pytest.raises(ProviderError) as info:
        await call(provider, stream=True)
    assert info.value.kind == kind
    assert stream_error in info.value.detail


@pytest.mark.parametrize("api", APIS)
async def test_not_found_on_wrong_base_url(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str
) -> None:
    provider = make_provider(api, base_url=fake_llm.url + "/nowhere")
    with pytest.raises(ProviderError) as info:
        await provider.complete("m", CALL)
    assert (info.value.kind, info.value.status) == ("not_found", 404)


@pytest.mark.parametrize("api", APIS)
async def test_list_models_errors_are_mapped(
    make_provider: ProviderFactory, closed_port: int, api: str
) -> None:
    provider = make_provider(api, base_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(ProviderError) as info:
        await provider.list_models()
    assert (info.value.kind, info.value.model) == ("refused", "")


@pytest.mark.parametrize("api", APIS)
async def test_base_url_without_scheme_is_a_config_error(api: str) -> None:
    """Config refuses such a URL at load; the adapter still says so if one gets through."""
    cfg = ProviderConfig.model_construct(api=api, base_url="localhost:11434")
    provider = build_provider(f"fake-{api}", cfg, "sk-test-key")
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete("m", CALL)
    finally:
        await provider.aclose()
    assert info.value.kind == "misconfigured"
    assert info.value.outcome == "fatal"
    assert "base_url" in info.value.detail


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", APIS)
async def test_a_400_naming_a_sampling_parameter_says_the_fix(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str, stream: bool
) -> None:
    # Opus 4.7+: "temperature is deprecated for this model" (a fatal 400)
    fake_llm.script(
        "m", Reply(status=400, error_message="temperature is deprecated for this model")
    )
    provider = make_provider(api)
    with pytest.raises(ProviderError) as info:
        await call(provider, stream)
    assert info.value.detail.endswith(
        f' (fix: [models."fake-{api}/m"] drop_params = ["temperature"])'
    )
    fake_llm.script("m", Reply(status=400, error_message="messages: field required"))
    with pytest.raises(ProviderError) as info:
        await call(provider, stream)
    assert "drop_params" not in info.value.detail


@pytest.mark.parametrize("api", APIS)
async def test_a_404_for_the_model_says_it_may_be_retired(
    fake_llm: FakeLLM, make_provider: ProviderFactory, api: str
) -> None:
    fake_llm.script("m", Reply(status=404, error_message="model: claude-opus-4-0 not found"))
    provider = make_provider(api)
    with pytest.raises(ProviderError) as info:
        await call(provider, False)
    assert info.value.kind == "not_found"
    assert info.value.detail.endswith(
        "(model retired or misspelled: see the provider's deprecations page)"
    )
