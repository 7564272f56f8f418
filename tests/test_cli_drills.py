"""`openclaw drill` and `openclaw drills` as subprocesses against a real `openclaw serve`:
the drill starts through the gateway, real traffic fails over, the report is printed;
Ctrl-C ends a drill early; a bad model is a usage error; a serve killed mid-drill marks
it ended by restart when it starts again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.store.path import DbLocation
from tests.fakes.llm import FakeLLM
from tests.procs import Served, start_serve
from tests.procs import run_cli as openclaw
from tests.stores import location_env

TOKEN = "drill-token-0123456789"
CONFIG = """
[gateway]
port = {port}

[cluster]  # PostgreSQL: a killed instance is found dead within a second or two
heartbeat_s = 0.2
leader_timeout_s = 1
recover_every_s = 0.3

[routing]
default_task = "chat"

[providers.local]
api = "ollama"
base_url = "{ollama}"
timeout_s = 1

[providers.deep]
api = "openai-completions"
base_url = "{openai}"
timeout_s = 1

[models."local/qwen3:14b"]
max_tokens = 256

[models."deep/deepseek-chat"]
max_tokens = 256

[[tiers]]
level = 0
models = ["local/qwen3:14b"]

[[tiers]]
level = 1
models = ["deep/deepseek-chat"]

[tasks]
chat = 0
"""


class Rig:
    def __init__(self, fake: FakeLLM, tmp_path: Path, location: DbLocation) -> None:
        self.fake = fake
        self.cfg = tmp_path / "openclaw.toml"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")} | {
            "OPENCLAW_CONFIG": str(self.cfg),
            "OPENCLAW_DB": location_env(location),
            "OPENCLAW_GATEWAY_TOKEN": TOKEN,
        }
        self.served: Served | None = None

    def write(self, port: int | str) -> None:
        text = CONFIG.format(
            port=port,
            ollama=self.fake.base_url("ollama"),
            openai=self.fake.base_url("openai-completions"),
        )
        self.cfg.write_text(text, encoding="utf-8")

    async def serve(self) -> Served:
        self.write(0)
        self.served = await start_serve(self.env)
        self.write(self.served.url.rsplit(":", 1)[1])  # the CLI asks this port
        return self.served

    def http(self) -> httpx.AsyncClient:
        assert self.served is not None
        auth = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.AsyncClient(base_url=self.served.url, headers=auth, timeout=10)

    async def running(self) -> dict[str, Any]:
        """Wait for a running drill on the serve."""
        async with self.http() as c:
            for _ in range(300):
                drills = (await c.get("/api/drills")).json()["drills"]
                if drills and drills[0]["state"] == "running":
                    return dict(drills[0])
                await asyncio.sleep(0.05)
        raise AssertionError("no drill started")

    async def chat(self) -> httpx.Response:
        async with self.http() as c:
            body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            return await c.post("/v1/chat/completions", json=body)

    def drill(self, *args: str) -> Any:
        return asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core.cli",
            "drill",
            *args,
            env=self.env,
            cwd=self.cfg.parent,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )


@pytest.fixture
async def rig(fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation) -> AsyncIterator[Rig]:
    r = Rig(fake_llm, tmp_path, store_location)
    yield r
    if r.served is not None:
        await r.served.stop()


async def test_drill_runs_on_the_serve_and_prints_the_report(rig: Rig) -> None:
    await rig.serve()
    proc = await rig.drill("local/qwen3:14b", "500", "--requests", "1", "--for", "2m")
    await rig.running()
    r = await rig.chat()
    assert r.status_code == 200 and "deep/deepseek-chat" in r.headers["x-openclaw-route"]
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "drill 1: local/qwen3:14b fault 500 for 120s or 1 requests; ended (requests)" in text
    assert "1 requests hit the fault" in text
    assert "failed over to   deep/deepseek-chat ×1" in text
    assert "breaker opened   +" in text
    assert not any(q.model == "qwen3:14b" for q in rig.fake.requests)
    code, listed, _ = await openclaw(rig.env, "drills")
    assert code == 0 and "local/qwen3:14b" in listed and "ended (requests)" in listed
    code, one, _ = await openclaw(rig.env, "drills", "1")
    assert code == 0 and "failed over to   deep/deepseek-chat ×1" in one
    code, _, err_text = await openclaw(rig.env, "drills", "7")
    assert code == 1 and "no drill 7" in err_text


async def test_ctrl_c_ends_the_drill_and_bad_input_is_a_usage_error(rig: Rig) -> None:
    await rig.serve()
    code, _, err = await openclaw(rig.env, "drill", "deep/nope", "timeout")
    assert code == 2 and "unknown model 'deep/nope': use one of deep/deepseek-chat" in err
    code, _, err = await openclaw(rig.env, "drill", "deep/deepseek-chat", "500", "--for", "1h")
    assert code == 2 and "--for" in err
    proc = await rig.drill("deep/deepseek-chat", "timeout", "--for", "5m")
    await rig.running()
    proc.send_signal(signal.SIGINT)
    out, err_b = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, err_b.decode()
    assert "fault timeout for 300s; ended (stopped)" in out.decode()


async def test_a_serve_killed_mid_drill_ends_it_by_restart(rig: Rig) -> None:
    served = await rig.serve()
    async with rig.http() as c:
        r = await c.post("/api/drills", json={"model": "deep/deepseek-chat", "fault": "500"})
        assert r.status_code == 201
    await served.stop(signal.SIGKILL)
    await rig.serve()
    async with rig.http() as c:  # at start (SQLite), or the leader's next sweep (PostgreSQL)
        for _ in range(200):
            if (await c.get("/api/drills/1")).json()["state"] == "ended":
                break
            await asyncio.sleep(0.05)
    code, listed, err = await openclaw(rig.env, "drills")
    assert code == 0, err
    assert "deep/deepseek-chat" in listed and "ended (restart)" in listed
