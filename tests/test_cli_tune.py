"""`openclaw tune` as a subprocess on a seeded ledger (both engines): the report, the
trial's measured success, `--apply` keeping the file's comments and order, refusals."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.config.load import load_config
from core.engine.ledger import Ledger
from core.engine.routing import trial_point
from core.store.open import open_store
from core.store.path import DbLocation
from tests.procs import run_cli as openclaw
from tests.stores import location_env
from tests.tune_seed import seed

CONFIG = """\
# the test pyramid: nothing here is reachable
[routing]
default_task = "chat"

[providers.local]   # tier 0
api = "ollama"
base_url = "http://127.0.0.1:9"

[providers.flash]
api = "google-generative-ai"
base_url = "http://127.0.0.1:9/v1beta"

[models."local/qwen3:14b"]
cost = { input = 0.1, output = 0.2 }

[models."flash/gemini-flash"]
cost = { input = 0.3, output = 2.5 }

[[tiers]]
level = 0
models = ["local/qwen3:14b"]

[[tiers]]
level = 1
models = ["flash/gemini-flash"]

[tasks]
# chat is most of the traffic
chat = 0  # cheap first
analysis = 1

[tasks.summarize]  # the digests
tier = 1  # flash writes them well
min_chars = 20
trial = 0.2  # measuring tier 0
"""


@pytest.fixture
async def env(tmp_path: Path, store_location: DbLocation) -> dict[str, str]:
    cfg_path = tmp_path / "openclaw.toml"
    cfg_path.write_text(CONFIG, encoding="utf-8")
    config = load_config(cfg_path)
    store = await open_store(store_location)
    try:
        await seed(Ledger(store, config), config, datetime.now(UTC) - timedelta(hours=1))
    finally:
        await store.close()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    return base | {"OPENCLAW_CONFIG": str(cfg_path), "OPENCLAW_DB": location_env(store_location)}


async def test_tune_reports_suggests_and_applies(env: dict[str, str]) -> None:
    code, out, err = await openclaw(env, "tune", "--since", "7d")
    assert code == 0, err
    assert re.search(r"chat\s+0\s+25\s+20%\s+80%\s+80%", out), out
    assert "unusable 20" in out
    assert "raise chat: tier 0 → 1: 20 of 25 attempts at tier 0 (80%) were unusable" in out
    assert "try lower summarize: tier 1 → 0: all 20 requests were answered at tier 1" in out
    assert "trial: 5 requests started at tier 0, 80% answered there" in out
    assert "Traceback" not in err

    code, _, err = await openclaw(env, "tune", "--apply", "analysis")
    assert code == 1 and "no suggestion for 'analysis' over the last 30d" in err
    code, _, err = await openclaw(env, "tune", "--apply", "nope")
    assert code == 2 and "no task 'nope' in [tasks]" in err
    code, _, err = await openclaw(env, "tune", "--since", "forever")
    assert code == 2 and "invalid period" in err

    path = Path(env["OPENCLAW_CONFIG"])
    code, out, err = await openclaw(env, "tune", "--apply", "summarize")
    assert code == 0, err
    assert "tasks.summarize tier 1 → 0" in out
    text = _read(path)
    today = datetime.now(UTC).date().isoformat()
    assert f"# openclaw tune {today}: try lower summarize: tier 1 → 0" in text
    assert "# all 20 requests were answered at tier 1 at the first attempt" in text
    assert "# trial: 5 requests started at tier 0, 80% answered there" in text
    # every other line of the file is still there, comments included, in its order
    assert _in_order(CONFIG.splitlines(), text.splitlines())
    assert all(c in text for c in ("# the test pyramid", "# tier 0", "# chat is most", "# cheap"))
    assert "tier = 0  # flash writes them well" in text and "trial = 0.2" not in text
    assert load_config(path).task_tier("summarize") == 0
    code, out, err = await openclaw(env, "route", "summarize")
    assert code == 0 and "minimum tier 0" in out and "trial" not in out


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _in_order(old: list[str], new: list[str]) -> bool:
    """Every unchanged line of ``old`` appears in ``new``, in the same order."""
    changed = ("tier = 1  # flash", "trial = 0.2")
    it = iter(new)
    return all(any(line == n for n in it) for line in old if not line.startswith(changed))


async def test_route_explains_a_request_ids_trial(env: dict[str, str]) -> None:
    inside = next(f"req_{i}" for i in range(1000) if trial_point(f"req_{i}") < 0.2)
    code, out, err = await openclaw(env, "route", "summarize", "--request-id", inside)
    assert code == 0, err
    assert "trial: this request starts at tier 0 (share 20%)" in out
    assert "1. tier 0 local/qwen3:14b" in out


async def test_apply_never_edits_the_example_it_fell_back_to(
    env: dict[str, str], tmp_path: Path
) -> None:
    """With no openclaw.toml and no OPENCLAW_CONFIG, commands load the example: --apply
    refuses to write into it."""
    here = tmp_path / "elsewhere"
    here.mkdir()
    example = here / "openclaw.example.toml"
    example.write_text(CONFIG, encoding="utf-8")
    bare = {k: v for k, v in env.items() if k != "OPENCLAW_CONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.cli",
        "tune",
        "--apply",
        "chat",
        env=bare,
        cwd=here,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
    assert b"no openclaw.toml here (openclaw.example.toml was loaded instead)" in err
    assert _read(example) == CONFIG


async def test_a_bad_trial_exits_78_naming_the_key_and_the_fix(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace("trial = 0.2", "trial = 0.7"), encoding="utf-8")
    code, _, err = await openclaw(env | {"OPENCLAW_CONFIG": str(bad)}, "tune")
    assert code == 78
    assert "tasks.summarize.trial: must be a share above 0 and at most 0.5, got 0.7" in err
    assert "give e.g. trial = 0.1" in err
