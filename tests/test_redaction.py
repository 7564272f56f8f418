"""Secrets and the pieces of them that errors quote never reach output or logs."""

from __future__ import annotations

import logging
import sys

import pytest

from core.config.models import ProviderConfig
from core.errors import ProviderError
from core.ops.logs import RedactFilter
from core.ops.redaction import REDACTED, redact
from core.providers import build_provider
from core.types import Message, ModelCall
from tests.conftest import ProviderFactory
from tests.fakes.llm import APIS, FakeLLM, Reply

KEY = "sk-proj-Abc123XYZ987qwertyuiopLMNOP4567"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"bad key {KEY}", "bad key ***"),
        # OpenAI's own masking keeps the prefix and the last four
        (
            "Incorrect API key provided: sk-proj-****************4567.",
            "Incorrect API key provided: ***.",
        ),
        ("key …LMNOP4567 refused", "key …*** refused"),
        # an error detail cut to a length cuts the key too
        ("invalid x-api-key: sk-proj-Abc123XYZ98", "invalid x-api-key: ***"),
        ("key=Abc123XYZ987qwe(cut)", "key=***(cut)"),
        # ordinary text is left alone, masks included
        ("model qwen3:14b answered... in 12 ms", "model qwen3:14b answered... in 12 ms"),
        (
            "see https://platform.example/account/api-keys...",
            "see https://platform.example/account/api-keys...",
        ),
    ],
)
def test_pieces_of_a_secret_are_redacted(text: str, expected: str) -> None:
    assert redact(text, [KEY]) == expected


def test_the_log_filter_redacts_pieces_in_messages_and_tracebacks() -> None:
    f = RedactFilter([KEY])
    try:
        raise RuntimeError(f"upstream said: key {KEY[:20]} is wrong")
    except RuntimeError:
        rec = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "got %s", (KEY[5:30],), sys.exc_info()
        )
    f.filter(rec)
    assert KEY[5:30] not in rec.getMessage() and REDACTED in rec.getMessage()
    assert rec.exc_text is not None and KEY[:20] not in rec.exc_text


@pytest.mark.parametrize("api", APIS)
async def test_a_provider_error_quoting_part_of_the_key_does_not_leak_it(
    make_provider: ProviderFactory, fake_llm: FakeLLM, api: str
) -> None:
    fake_llm.script(
        "m",
        Reply(status=401, error_message=f"Incorrect API key provided: {KEY[:12]}****{KEY[-4:]}"),
    )
    provider = make_provider(api, api_key=KEY)
    with pytest.raises(ProviderError) as info:
        await provider.complete("m", ModelCall((Message("user", "hi"),), 16))
    text = str(info.value)
    assert KEY[:12] not in text and KEY[-4:] not in text, text
    assert info.value.kind == "auth"


@pytest.mark.parametrize("api", APIS)
async def test_headers_env_values_are_sent_and_kept_out_of_errors(
    fake_llm: FakeLLM, api: str
) -> None:
    """A provider's ``headers_env`` header goes on every call; an error quoting it is
    redacted like the key."""
    token = "hdr-Secret-0123456789abcdef"
    cfg = ProviderConfig(
        api=api, base_url=fake_llm.base_url(api), headers_env={"X-Proxy-Auth": "PROXY_AUTH"}
    )
    provider = build_provider(f"fake-{api}", cfg, "sk-test-key", {"X-Proxy-Auth": token})
    try:
        fake_llm.script("m", Reply(text="fine"))
        await provider.complete("m", ModelCall((Message("user", "hi"),), 16))
        assert fake_llm.requests[-1].headers["x-proxy-auth"] == token
        fake_llm.script("m", Reply(status=403, error_message=f"proxy refused {token[:14]}"))
        with pytest.raises(ProviderError) as info:
            await provider.complete("m", ModelCall((Message("user", "hi"),), 16))
    finally:
        await provider.aclose()
    assert token[:14] not in str(info.value)


def test_a_database_password_in_the_url_or_pgpassword_is_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.cli import _secrets
    from core.config.settings import Settings

    monkeypatch.setenv("OPENCLAW_DB", "postgresql://claw:url-pass-123@db/claw")
    monkeypatch.setenv("PGPASSWORD", "env-pass-456")
    found = _secrets(Settings(_env_file=None))  # type: ignore[call-arg]
    assert "url-pass-123" in found and "env-pass-456" in found
    monkeypatch.delenv("PGPASSWORD")
    assert "env-pass-456" not in _secrets(Settings(_env_file=None))  # type: ignore[call-arg]
