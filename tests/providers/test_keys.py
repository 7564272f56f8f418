"""One adapter, several keys: with_key() twins send their own key over the one pool."""

from __future__ import annotations

import pytest

from core.config.models import ProviderConfig
from core.errors import ProviderError
from core.providers import build_provider
from core.types import Message, ModelCall
from tests.fakes.llm import OPENAI, FakeLLM, Reply

CALL = ModelCall((Message("user", "hi"),), max_tokens=16)
KEY_A, KEY_B = "sk-key-a-111111", "sk-key-b-222222"


async def test_twins_send_their_key_share_the_pool_and_hide_every_key(fake_llm: FakeLLM) -> None:
    cfg = ProviderConfig(api=OPENAI, base_url=fake_llm.base_url(OPENAI))
    pooled = build_provider("deep", cfg, KEY_A)
    a, b = pooled.with_key(KEY_A, (KEY_A, KEY_B)), pooled.with_key(KEY_B, (KEY_A, KEY_B))
    try:
        fake_llm.script("m", Reply(text="one"), Reply(text="two"))
        await a.complete("m", CALL)
        await b.complete("m", CALL)
        sent = [r.headers["authorization"] for r in fake_llm.requests]
        assert sent == [f"Bearer {KEY_A}", f"Bearer {KEY_B}"]
        assert a._client is b._client is pooled._client  # one connection pool per provider
        # an upstream that echoes the other key: still redacted
        fake_llm.script("m", Reply(status=402, error_message=f"no balance on {KEY_A}"))
        with pytest.raises(ProviderError) as info:
            await b.complete("m", CALL)
        assert info.value.kind == "billing" and KEY_A not in str(info.value)
        # an embedded model's supervisor moves the owner: the twins follow
        pooled.base_url = "http://127.0.0.1:9/v1"
        assert a.base_url == b.base_url == "http://127.0.0.1:9/v1"
    finally:
        await a.aclose()  # a twin closes the pool it shares
    assert pooled._session is not None and pooled._session.closed
