"""``[concurrency] agents`` on several instances of one PostgreSQL database: cluster-wide by
default (the slots are in the database, so "1 agent" protects one shared Ollama from every
instance together), per process with ``per_instance = true``. Two real Apps on one real
database, in front of the fake LLM whose replies wait for the test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.agents.runs import Trigger
from core.app import App
from core.config.load import parse_config
from core.config.settings import Settings
from core.store.path import check_db_location
from tests.configs import pyramid, pyramid_urls
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.fakes.wait import until

QUIET_S = 0.5  # a second run that could start would have sent its request by then


@pytest.mark.parametrize(("per_instance", "peak"), [(False, 1), (True, 2)])
async def test_the_agents_limit_is_cluster_wide_unless_per_instance(
    per_instance: bool,
    peak: int,
    fake_llm: FakeLLM,
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # two instances in one test process: each its own owner id, as two processes have
    owners: Iterator[str] = iter(["host-a:101:1", "host-b:102:1"])
    monkeypatch.setattr("core.app.owner_id", lambda: next(owners))
    release = asyncio.Event()

    def held(req: RecordedRequest) -> Reply:
        return Reply(text="done", hold=release)

    fake_llm.default = held
    doc = pyramid(
        pyramid_urls(fake_llm.base_url),
        agents=[{"name": "a", "message": "go {{ message }}"}],
        concurrency={"agents": 1, "per_instance": per_instance},
        cluster={"heartbeat_s": 0.2, "leader_timeout_s": 2.0, "recover_every_s": 0.5},
    )
    for provider in doc["providers"].values():
        provider["timeout_s"] = 30  # the held reply is no timeout
    cfg = parse_config(doc, warnings=[])
    apps: list[App] = []
    try:
        for _ in range(2):
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
            apps.append(await App.open(cfg, settings, check_db_location(pg_url), base_dir=tmp_path))
        assert all(app.cluster.shared for app in apps)
        ids = [await app.runner.start("a", Trigger.API, message="hi") for app in apps]
        await fake_llm.wait_for_requests(peak, timeout_s=20)
        if peak == 1:  # the other run is at the cluster's slot, not at the model
            await until(
                lambda: sum(app.runner.waiting["agents"] for app in apps) == 1,
                10,
                "the second run waiting for the cluster's slot",
            )
        await asyncio.sleep(QUIET_S)
        assert len(fake_llm.requests) == peak  # the cluster-wide peak of running runs
        release.set()
        for app, rid in zip(apps, ids, strict=True):
            run = await app.runner.wait(rid)
            assert run.status == "ok", run
        assert len(fake_llm.requests) == 2
        assert [app.runner.peak["agents"] for app in apps] == [1, 1]
    finally:
        release.set()
        for app in apps:
            await app.runner.shutdown(5)
            app.scheduler.stop()
            await app.close()
