"""Structured logs with redaction; provider probes; `openclaw status`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest

from core.config.load import parse_config
from core.engine.health import HealthBoard
from core.ops.logs import RUN_ID, JsonFormatter, RedactFilter, RunIdFilter, TextFormatter
from core.ops.probes import Prober
from core.providers import build_provider
from core.store.path import DbLocation
from tests.configs import pyramid
from tests.fakes.llm import FakeLLM
from tests.stores import location_env


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("openclaw.engine", logging.WARNING, __file__, 1, msg, args, None)


def test_text_and_json_lines_carry_component_and_run_id() -> None:
    token = RUN_ID.set("42")
    try:
        rec = record("provider %s failed", "deep")
        RunIdFilter().filter(rec)
    finally:
        RUN_ID.reset(token)
    text = TextFormatter().format(rec)
    assert text.endswith("WARNING openclaw.engine [run 42] provider deep failed")
    assert text[:4].isdigit() and "T" in text[:20] and text[23] == "Z"
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["component"] == "openclaw.engine" and doc["run_id"] == "42"
    assert doc["message"] == "provider deep failed" and doc["level"] == "WARNING"


def test_secrets_are_redacted_from_messages_and_tracebacks() -> None:
    f = RedactFilter(["sk-live-secret-123", "short"])
    rec = record("calling with key %s", "sk-live-secret-123")
    try:
        raise RuntimeError("boom sk-live-secret-123")
    except RuntimeError:
        rec.exc_info = sys.exc_info()
    f.filter(rec)
    line = TextFormatter().format(rec)
    assert "sk-live-secret-123" not in line and "calling with key ***" in line
    assert "boom ***" in line
    assert f.secrets == ["sk-live-secret-123"]  # too-short values would redact words


async def test_probes_open_and_close_breakers(fake_llm: FakeLLM, closed_port: int) -> None:
    doc = pyramid(
        {
            "local": f"http://127.0.0.1:{closed_port}",
            "flash": fake_llm.base_url("google-generative-ai"),
            "deep": fake_llm.base_url("openai-completions"),
            "deep2": fake_llm.base_url("openai-completions"),
            "opus": fake_llm.base_url("anthropic-messages"),
        }
    )
    cfg = parse_config(doc, warnings=[])
    providers = {n: build_provider(n, p) for n, p in cfg.providers.items()}
    health = HealthBoard(cfg.routing)
    prober = Prober(cfg, providers, health, {"opus": "ANTHROPIC_API_KEY is not set (…)"})
    try:
        verdicts = await prober.probe_all()
        assert verdicts["flash"] == "ok" and verdicts["deep"] == "ok"
        assert verdicts["opus"] == "set ANTHROPIC_API_KEY to enable it"
        assert "run `ollama serve`" in verdicts["local"]
        assert "`ollama pull qwen3:14b`" in verdicts["local"]
        assert health.state("local/qwen3:14b", time.monotonic()) == "open"
        # the outage ends: the next probe closes the breaker it opened
        providers["local"].base_url = fake_llm.base_url("ollama")
        assert await prober.probe("local") == "ok"
        assert health.state("local/qwen3:14b", time.monotonic()) == "closed"
    finally:
        for p in providers.values():
            await p.aclose()


async def test_status_cli_when_the_gateway_is_down(
    tmp_path: Path, store_location: DbLocation
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[gateway]\nport = 9\n[providers.x]\napi = "ollama"\n'
        '[models."x/m"]\n[[tiers]]\nlevel = 0\nmodels = ["x/m"]\n',
        encoding="utf-8",
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "OPENCLAW_CONFIG": str(cfg),
        "OPENCLAW_DB": location_env(store_location),
        "OPENCLAW_GATEWAY_TOKEN": "t0ken-xyz",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.cli",
        "status",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "is down" in err.decode() and "openclaw serve" in err.decode()


@pytest.mark.parametrize("json_flag", [False, True])
async def test_status_cli_reads_the_running_gateway(
    json_flag: bool, tmp_path: Path, fake_llm: FakeLLM, store_location: DbLocation
) -> None:
    from tests.agents.test_cli_api import CONFIG
    from tests.procs import start_serve

    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(CONFIG.format(ollama=fake_llm.base_url("ollama")), encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")} | {
        "OPENCLAW_CONFIG": str(cfg),
        "OPENCLAW_DB": location_env(store_location),
        "OPENCLAW_GATEWAY_TOKEN": "tok-123",
    }
    served = await start_serve(env)
    url = served.url
    try:
        port = url.rsplit(":", 1)[1]
        cfg.write_text(
            cfg.read_text(encoding="utf-8").replace("port = 0", f"port = {port}"), encoding="utf-8"
        )
        args = ["status", "--json"] if json_flag else ["status"]
        p = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core.cli",
            *args,
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(p.communicate(), 30)
        assert p.returncode == 0, err
        text = out.decode()
        if json_flag:
            assert json.loads(text)["tiers"][0]["level"] == 0
        else:
            assert "tier 0:" in text and "local/qwen3:14b" in text and "telegram: off" in text
    finally:
        await served.stop()
