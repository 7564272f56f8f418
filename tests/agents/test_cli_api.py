"""Agents through the CLI (a subprocess) and the gateway API, sharing one SQLite store."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.store.path import DbLocation
from tests.fakes.llm import FakeLLM, Reply, echo
from tests.fakes.wait import until
from tests.procs import run_cli as openclaw
from tests.procs import start_serve
from tests.stores import location_env

CONFIG = """
[gateway]
port = 0

[routing]
default_task = "chat"

[providers.local]
api = "ollama"
base_url = "{ollama}"
timeout_s = 2

[models."local/qwen3:14b"]

[[tiers]]
level = 0
models = ["local/qwen3:14b"]

[tasks]
chat = 0

[[agents]]
name = "hello"
message = "hello {{{{ message }}}}"
schedule = "0 7 * * *"
timezone = "Europe/Berlin"
deliver = ["log"]

[[agents]]
name = "manual"
message = "manual run"
"""


@pytest.fixture
def env(fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation) -> dict[str, str]:
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(CONFIG.format(ollama=fake_llm.base_url("ollama")), encoding="utf-8")
    out = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    return out | {
        "OPENCLAW_CONFIG": str(cfg),
        "OPENCLAW_DB": location_env(store_location),
        "OPENCLAW_GATEWAY_TOKEN": "tok-123",
    }


async def test_run_wait_runs_and_shows(fake_llm: FakeLLM, env: dict[str, str]) -> None:
    fake_llm.default = echo
    code, out, err = await openclaw(env, "run", "hello", "--wait", "-m", "world")
    assert code == 0, err
    assert "run 1: hello [cli] ok" in out and "hello world" in out
    assert "delivery to log: delivered" in out
    code, out, _ = await openclaw(env, "runs")
    assert "run 1: hello [cli] ok" in out
    code, out, _ = await openclaw(env, "run-show", "1")
    assert code == 0 and "session cron:hello:1" in out
    # the output, then the run's deliveries with their status (unknown ones too)
    assert out.strip().endswith("hello world\ndelivery #1 to log: delivered")
    code, out, _ = await openclaw(env, "agents")
    assert re.search(
        r"hello\s+0 7 \* \* \*\s+Europe/Berlin\s+\d{4}-\d\d-\d\dT07:00:00\+0[12]:00"
        r"\s+ok",
        out,
    ), out
    assert re.search(r"manual\s+on demand", out)


async def test_run_wait_exits_1_when_the_run_fails(fake_llm: FakeLLM, env: dict[str, str]) -> None:
    fake_llm.default = Reply(status=500)
    code, out, _ = await openclaw(env, "run", "manual", "--wait")
    assert code == 1
    assert "failed" in out and "no model could answer" in out


async def test_bad_names_and_ids(env: dict[str, str]) -> None:
    code, _, err = await openclaw(env, "run", "helo", "--wait")
    assert code == 2 and "did you mean hello" in err
    code, _, err = await openclaw(env, "run-show", "99")
    assert code == 2 and "no run 99" in err


async def poll_run(client: httpx.AsyncClient, run_id: int) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = (await client.get(f"/api/runs/{run_id}")).json()
        return run if run["status"] not in ("queued", "running") else None

    return await until(finished, 15, f"run {run_id} finishing")


async def test_serve_runs_agents_from_the_api_and_from_the_cli_queue(
    fake_llm: FakeLLM, env: dict[str, str]
) -> None:
    fake_llm.default = echo
    served = await start_serve(env)
    url = served.url
    try:
        async with httpx.AsyncClient(
            base_url=url, timeout=10, headers={"Authorization": "Bearer tok-123"}
        ) as c:
            agents = (await c.get("/api/agents")).json()["agents"]
            assert [a["name"] for a in agents] == ["hello", "manual"]
            assert agents[0]["next_fire"] and agents[1]["next_fire"] is None
            r = await c.post("/api/agents/hello/run", json={"message": "api"})
            assert r.status_code == 202
            run = await poll_run(c, r.json()["run_id"])
            assert (run["status"], run["trigger"], run["output"]) == ("ok", "api", "hello api")
            r = await c.post(f"/api/runs/{run['id']}/rerun")
            assert r.status_code == 202 and r.json()["parent_run"] == run["id"]
            again = await poll_run(c, r.json()["run_id"])
            assert (again["trigger"], again["parent_run"]) == ("rerun", run["id"])
            # `openclaw run` without --wait queues; the running serve adopts it
            code, out, _ = await openclaw(env, "run", "manual")
            assert code == 0 and "queued run" in out
            rid = int(re.search(r"queued run (\d+)", out).group(1))  # type: ignore[union-attr]
            adopted = await poll_run(c, rid)
            assert (adopted["status"], adopted["trigger"]) == ("ok", "cli")
            runs = (await c.get("/api/runs", params={"agent": "hello"})).json()["runs"]
            assert len(runs) == 2
            assert (await c.post("/api/agents/nope/run")).status_code == 404
            assert (await c.post("/api/runs/999/rerun")).status_code == 404
            assert (await c.get("/api/runs", params={"limit": "0"})).status_code == 400
            status = (await c.get("/api/status")).json()
            assert status["queues"]["agents_running"] == 0

            async def outbox_empty() -> bool:
                queues = (await c.get("/api/status")).json()["queues"]
                return bool(queues["outbox_pending"] == 0)

            # the delivery worker sends the log rows
            await until(outbox_empty, 5, "the outbox emptying")
    finally:
        assert await served.stop() == 0
