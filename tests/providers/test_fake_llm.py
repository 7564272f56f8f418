"""The fake server itself: it must close fast even with a request hanging."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.fakes.llm import FakeLLM, Reply


async def test_close_is_quick_with_a_hanging_request() -> None:
    fake = await FakeLLM().start()
    fake.script("m", Reply(hang=True))
    async with httpx.AsyncClient(base_url=fake.url) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": False}
        pending = asyncio.create_task(client.post("/api/chat", json=body))
        for _ in range(200):  # until the server holds the request
            if fake.requests:
                break
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        await fake.close()
        assert time.perf_counter() - started < 1.0
        response = await pending
        assert response.status_code == 503


async def test_requests_are_recorded_and_queues_fall_back_to_default(fake_llm: FakeLLM) -> None:
    fake_llm.script("m", Reply(text="first"))
    fake_llm.default = Reply(text="later")
    async with httpx.AsyncClient(base_url=fake_llm.url) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": False}
        first = (await client.post("/api/chat", json=body)).json()
        second = (await client.post("/api/chat", json=body)).json()
    assert (first["message"]["content"], second["message"]["content"]) == ("first", "later")
    assert [r.path for r in fake_llm.requests] == ["/api/chat", "/api/chat"]
    assert fake_llm.requests[0].body == body and fake_llm.requests[0].stream is False
