"""A run's tool-loop steps in `openclaw run-show` and `GET /api/runs/{id}`, read from a
real store (SQLite and PostgreSQL in turn) where they were recorded through RunSteps (as
the loop records them)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from core.agents.runs import Status, Trigger
from core.agents.steps import Step, redact_arguments
from core.app import App
from core.cli import main
from core.config.settings import Settings
from core.gateway import Gateway
from core.ops.redaction import REDACTED
from core.store.path import DbLocation
from tests.configs import make_config, pyramid_urls
from tests.fakes.llm import FakeLLM
from tests.stores import location_env

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-gateway-token-0123456789"
LONG_BODY = "x" * 500


def recorded(run_id: int) -> list[Step]:
    """A model turn asking for two tools, then the two calls (one of them failed)."""
    return [
        Step(
            run_id,
            1,
            "model",
            "ok",
            tier=0,
            model="ollama/qwen3:14b",
            detail="2 tool calls",
            latency_ms=812.4,
            cost_usd=0.0,
        ),
        Step(
            run_id,
            1,
            "tool",
            "ok",
            tool="http_get",
            call_id="c1",
            # the loop stores them redacted: a secret-named argument never reaches a view
            arguments=redact_arguments(
                '{"url": "https://status.example.com/", "api_key": "sk-live-1"}', []
            ),
            detail="200, 1.2 KB",
            size=1229,
            excerpt="all systems go",
            latency_ms=120.0,
            cost_usd=0.0,
            target="status.example.com",
        ),
        Step(
            run_id,
            1,
            "tool",
            "error",
            tool="read_file",
            call_id="c2",
            arguments=f'{{"path": "notes.txt", "body": "{LONG_BODY}"}}',
            detail="no such file",
            latency_ms=3.0,
            cost_usd=0.00125,
            target="notes.txt",
        ),
    ]


async def seed(app: App, with_steps: bool = True) -> tuple[int, list[Step]]:
    """A finished run (and its steps) in the app's store."""
    async with app.store.transaction() as tx:
        rid = await app.runner.runs.create(tx, "digest", Trigger.API, status=Status.FAILED)
    steps = [await app.runner.steps.add(s) for s in recorded(rid)] if with_steps else []
    return rid, steps


def _settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


# -- openclaw run-show -----------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_location: DbLocation) -> list[str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    db = location_env(store_location)
    return ["--config", str(ROOT / "openclaw.example.toml"), "--db", db]


def _seed_db(db: DbLocation, with_steps: bool) -> int:
    async def go() -> int:
        app = await App.open(make_config(), _settings(), db)
        try:
            return (await seed(app, with_steps))[0]
        finally:
            await app.close()

    return asyncio.run(go())


def test_run_show_lists_the_steps_after_the_run(
    cli: list[str], store_location: DbLocation, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = _seed_db(store_location, with_steps=True)
    assert main([*cli, "run-show", str(rid)]) == 0
    out = capsys.readouterr().out
    head, steps = out.split("steps:\n")
    assert head.startswith(f"run {rid}: digest [api] failed")
    lines = steps.splitlines()
    assert lines[0] == "  🧠 step 1 · tier 0 ollama/qwen3:14b → 2 tool calls · 812 ms, $0.000000"
    assert lines[1] == (
        "  🔧 http_get status.example.com → 200, 1.2 KB · 120 ms, $0.000000"
        '  {"url": "https://status.example.com/", "api_key": "' + REDACTED + '"}'
    )
    assert "sk-live-1" not in out
    assert lines[2].startswith(
        '  🔧 read_file notes.txt → error: no such file · 3 ms, $0.001250  {"path": "notes.txt"'
    )
    assert lines[2].endswith("…") and LONG_BODY not in out  # shortened to one line
    assert len(lines) == 3


def test_run_show_without_steps_has_no_steps_section(
    cli: list[str], store_location: DbLocation, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = _seed_db(store_location, with_steps=False)
    assert main([*cli, "run-show", str(rid)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run {rid}: digest") and "steps:" not in out


# -- GET /api/runs/{id} ----------------------------------------------------------------


async def test_run_detail_has_every_field_of_every_step(
    fake_llm: FakeLLM, store_location: DbLocation
) -> None:
    app = await App.open(make_config(pyramid_urls(fake_llm.base_url)), _settings(), store_location)
    gw = Gateway(app.facade, TOKEN, "127.0.0.1", 0)
    try:
        await gw.start()
        rid, steps = await seed(app)
        bare, _ = await seed(app, with_steps=False)
        async with httpx.AsyncClient(
            base_url=gw.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ) as c:
            body = (await c.get(f"/api/runs/{rid}")).json()
            assert body["id"] == rid and body["status"] == "failed"
            assert body["steps"] == [asdict(s) for s in steps]
            assert set(body["steps"][1]) == set(Step.__dataclass_fields__)
            assert body["steps"][1]["arguments"].endswith(f'"api_key": "{REDACTED}"}}')
            assert [s["kind"] for s in body["steps"]] == ["model", "tool", "tool"]
            assert (await c.get(f"/api/runs/{bare}")).json()["steps"] == []
            assert (await c.get("/api/runs/999")).status_code == 404
    finally:
        await gw.stop()
        await app.close()
