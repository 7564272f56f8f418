"""The `openclaw` CLI as a subprocess against the fake LLM server: ask, route, usage, doctor."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.store.path import DbLocation
from tests.fakes.llm import FakeLLM, Reply
from tests.procs import run_cli as openclaw
from tests.procs import start_serve
from tests.readonly import read_only
from tests.stores import location_env, run_sql, sqlite_only

CONFIG = """
[gateway]
port = 0

[routing]
default_task = "chat"

[providers.local]
api = "ollama"
base_url = "{ollama}"
timeout_s = 1

[providers.flash]
api = "google-generative-ai"
base_url = "{google}"
api_key_env = "OPENCLAW_TEST_FLASH_KEY"
timeout_s = 1

[providers.deep]
api = "openai-completions"
base_url = "{openai}"
api_key_env = "OPENCLAW_TEST_DEEP_KEY"
timeout_s = 1

[models."local/qwen3:14b"]
reasoning = true
max_tokens = 256

[models."flash/gemini-flash"]
cost = {{ input = 0.3, output = 2.5 }}

[models."deep/deepseek-chat"]
cost = {{ input = 0.28, output = 0.42 }}

[[tiers]]
level = 0
models = ["local/qwen3:14b"]

[[tiers]]
level = 1
models = ["flash/gemini-flash"]

[[tiers]]
level = 2
models = ["deep/deepseek-chat"]

[tasks]
chat = 0
summarize = 1
"""


@pytest.fixture
def cli_env(fake_llm: FakeLLM, tmp_path: Path, store_location: DbLocation) -> dict[str, str]:
    """The CLI's environment, its database on this test's engine (both, in turn)."""
    cfg = tmp_path / "openclaw.toml"
    cfg.write_text(
        CONFIG.format(
            ollama=fake_llm.base_url("ollama"),
            google=fake_llm.base_url("google-generative-ai"),
            openai=fake_llm.base_url("openai-completions"),
        ),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    env |= {
        "OPENCLAW_CONFIG": str(cfg),
        "OPENCLAW_DB": location_env(store_location),
        "OPENCLAW_TEST_FLASH_KEY": "flash-secret-key",
    }
    return env


async def test_ask_explain_and_usage(fake_llm: FakeLLM, cli_env: dict[str, str]) -> None:
    fake_llm.script("qwen3:14b", Reply(status=503))
    fake_llm.script("gemini-flash", Reply(text="Paris.", input_tokens=1000, output_tokens=200))
    code, out, err = await openclaw(cli_env, "ask", "--explain", "Capital of France?")
    assert code == 0, err
    assert out.strip() == "Paris."
    assert "route: tier=1; model=flash/gemini-flash; attempts=2" in err
    assert "tier 0 local/qwen3:14b: unavailable (server_error HTTP 503" in err
    assert "tier 2 deep/deepseek-chat: skipped (OPENCLAW_TEST_DEEP_KEY is not set" not in err
    assert "flash-secret-key" not in out + err
    # the flash key went out in its header, never in the URL
    (flash_call,) = [r for r in fake_llm.requests if r.model == "gemini-flash"]
    assert "flash-secret-key" not in flash_call.path

    code, out, err = await openclaw(cli_env, "usage", "--since", "1d")
    assert code == 0, err
    assert "tier 1: 100.0% (target 15–20%)" in out and "tier 0: 0.0% (target 60–70%)" in out
    cost = 1000 * 0.3e-6 + 200 * 2.5e-6
    assert f"Cost: ${cost:.4f}" in out
    code, out, _ = await openclaw(cli_env, "usage", "--group", "model")
    assert "flash/gemini-flash" in out and "local/qwen3:14b" in out


async def test_ask_stream(fake_llm: FakeLLM, cli_env: dict[str, str]) -> None:
    fake_llm.script("qwen3:14b", Reply(text="streamed words here", reasoning="mmm"))
    code, out, err = await openclaw(cli_env, "ask", "--stream", "go")
    assert code == 0, err
    assert out.strip() == "streamed words here"


async def test_ask_all_failed_exits_1_with_every_attempt(
    fake_llm: FakeLLM, cli_env: dict[str, str]
) -> None:
    fake_llm.script("qwen3:14b", Reply(status=500))
    fake_llm.script("gemini-flash", Reply(status=401))
    code, _, err = await openclaw(cli_env, "ask", "x")
    assert code == 1
    assert "no model could answer task 'chat'" in err
    assert "local/qwen3:14b: unavailable" in err
    assert "flash/gemini-flash: fatal" in err
    assert "deep/deepseek-chat: skipped (OPENCLAW_TEST_DEEP_KEY is not set" in err


async def test_route_explains_without_calling(fake_llm: FakeLLM, cli_env: dict[str, str]) -> None:
    code, out, err = await openclaw(cli_env, "route", "summarize")
    assert code == 0, err
    assert "task 'summarize' → minimum tier 1" in out
    assert "1. tier 1 flash/gemini-flash" in out
    assert "deep/deepseek-chat skipped: OPENCLAW_TEST_DEEP_KEY is not set" in out
    assert fake_llm.requests == []
    code, _, err = await openclaw(cli_env, "route", "nope")
    assert code == 2 and "unknown task 'nope'; configured tasks: chat, summarize" in err


async def test_doctor_probes_and_advises(fake_llm: FakeLLM, cli_env: dict[str, str]) -> None:
    fake_llm.models = ["qwen3:14b", "gemini-flash"]
    code, out, err = await openclaw(cli_env, "doctor")
    assert code == 1, out + err  # deep has no key
    assert "ok   local" in out and "ok   flash" in out
    assert "FAIL deep         OPENCLAW_TEST_DEEP_KEY is not set" in out
    fake_llm.models = ["llama3"]
    code, out, _ = await openclaw(cli_env, "doctor")
    assert "not offered: qwen3:14b (`ollama pull qwen3:14b`)" in out
    # a cloud model the provider no longer lists: retired (or a typo), not a pull away
    retired = "gemini-flash (model retired or misspelled: see the provider's deprecations page)"
    assert f"not offered: {retired}" in out


def copy_with(src: Path, dst: Path, old: str, new: str) -> None:
    """A copy of a config with one text replaced."""
    dst.write_text(src.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def rewrite(config: Path, pattern: str, replacement: str) -> None:
    """Edit the test config in place (first match only)."""
    text = re.sub(pattern, replacement, config.read_text(encoding="utf-8"), count=1)
    config.write_text(text, encoding="utf-8")


async def test_doctor_says_what_to_do_when_nothing_listens(cli_env: dict[str, str]) -> None:
    rewrite(
        Path(cli_env["OPENCLAW_CONFIG"]),
        r'base_url = "http://127\.0\.0\.1:\d+"\n',
        'base_url = "http://127.0.0.1:9"\n',
    )
    code, out, _ = await openclaw(cli_env, "doctor")
    assert code == 1
    assert (
        "FAIL local        refused: nothing answers at http://127.0.0.1:9: run `ollama serve`"
        in out
    )


async def test_serve_prints_route_table_and_stops_on_sigterm(cli_env: dict[str, str]) -> None:
    served = await start_serve(cli_env)
    assert await served.stop() == 0
    text = "".join(served.lines)
    assert "tier 0" in text and "local/qwen3:14b" in text
    assert "deep/deepseek-chat" in text
    assert "unavailable: set OPENCLAW_TEST_DEEP_KEY to enable it" in text
    assert "→ tier 2 is unavailable until one of these is fixed" in text
    assert re.search(r"gateway http://127\.0\.0\.1:\d+ \(token from token file .*generated", text)
    assert re.search(r"console http://127\.0\.0\.1:\d+/ui/ \(log in with the same token\)", text)
    assert "openclaw.gateway-token" in text
    assert "Telegram bot: off (TELEGRAM_BOT_TOKEN is not set)" in text


async def test_serve_refuses_a_public_host_without_token(cli_env: dict[str, str]) -> None:
    rewrite(Path(cli_env["OPENCLAW_CONFIG"]), "port = 0", 'host = "0.0.0.0"\nport = 0')
    code, _, err = await openclaw(cli_env, "serve")
    assert code == 78
    assert "OPENCLAW_GATEWAY_TOKEN: not set, and gateway.host = '0.0.0.0'" in err


async def test_usage_what_if(fake_llm: FakeLLM, cli_env: dict[str, str], tmp_path: Path) -> None:
    fake_llm.script("qwen3:14b", Reply(status=503))
    fake_llm.script("gemini-flash", Reply(text="x", input_tokens=1000, output_tokens=100))
    code, _, err = await openclaw(cli_env, "ask", "q")
    assert code == 0, err
    other = tmp_path / "other.toml"
    copy_with(
        Path(cli_env["OPENCLAW_CONFIG"]),
        other,
        "input = 0.3, output = 2.5",
        "input = 0.6, output = 5.0",
    )
    code, out, err = await openclaw(cli_env, "usage", "--what-if", str(other))
    assert code == 0, err
    assert "What if" in out and "1 answered requests, 1 priced" in out
    assert "difference +0.0006 USD" in out


# -- issue 13: OPENCLAW_DB is a SQLite file that can be written, or serve refuses (78) --


async def test_an_unreachable_database_url_exits_78_and_its_password_never_printed(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    nowhere = tmp_path / "no-server-here"  # a socket directory with no server: refused at once
    env = cli_env | {"OPENCLAW_DB": f"postgresql://claw:hunter2-pw@/claw?host={nowhere}"}
    for command in (("serve",), ("doctor",), ("runs",)):  # status asks the gateway
        code, out, err = await openclaw(env, *command)
        assert code == 78, (command, out, err)
        assert "OPENCLAW_DB: cannot connect to postgresql://claw:***@/claw?host=***" in err
        assert "hunter2-pw" not in out + err and "Traceback" not in err
    assert not (tmp_path / "postgresql:").exists()  # no directories named after the URL
    code, _, err = await openclaw(cli_env, "--db", "sqlite:///x.db", "runs")
    assert code == 78 and "--db: 'sqlite:///x.db' is a sqlite URL" in err


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("{tmp}", "is a directory — name a file in it"),
        ("", "OPENCLAW_DB: is empty"),
        ("/proc/openclaw.db", "is under /proc, a kernel filesystem"),
        ("{tmp}/missing/dir/x.db", "does not exist — create it (mkdir -p {tmp}/missing/dir)"),
    ],
)
@sqlite_only  # paths, not URLs
async def test_serve_refuses_an_unusable_database_path_with_exit_78(
    cli_env: dict[str, str], tmp_path: Path, db: str, expected: str
) -> None:
    env = cli_env | {"OPENCLAW_DB": db.format(tmp=tmp_path)}
    code, out, err = await openclaw(env, "serve")
    assert code == 78, out + err
    assert expected.format(tmp=tmp_path) in err and "Traceback" not in err
    assert not (tmp_path / "missing").exists()  # never created silently


@sqlite_only  # a read-only file; the PostgreSQL refusal: tests/gateway/test_store_down.py
async def test_serve_refuses_a_read_only_database(cli_env: dict[str, str]) -> None:
    code, _, err = await openclaw(cli_env, "runs")  # creates and migrates the database
    assert code == 0, err
    db = Path(cli_env["OPENCLAW_DB"])
    with read_only(db):
        code, out, err = await openclaw(cli_env, "serve")
    assert code == 78, out + err
    assert f"OPENCLAW_DB: cannot write {db}" in err and "Traceback" not in err
    assert f"make {db} and its directory writable" in err
    assert "serving" not in out


async def test_doctor_never_prints_the_credentials_of_a_base_url(cli_env: dict[str, str]) -> None:
    rewrite(
        Path(cli_env["OPENCLAW_CONFIG"]),
        r'base_url = "http://127\.0\.0\.1:\d+"\n',
        'base_url = "http://ops:hunter2-pw@127.0.0.1:9/?token=tok-secret-1"\n',
    )
    code, out, err = await openclaw(cli_env, "doctor")
    assert code == 1
    assert "nothing answers at http://ops:***@127.0.0.1:9/?token=***" in out
    assert "hunter2-pw" not in out + err and "tok-secret-1" not in out + err


AGENTS = """
[[agents]]
name = "morning"
task = "chat"
schedule = "0 7 * * *"
timezone = "Europe/Berlin"
message = "hi"

[[agents]]
name = "ondemand"
task = "chat"
message = "hi"

[[agents]]
name = "off"
task = "chat"
schedule = "0 8 * * *"
enabled = false
message = "hi"

[[agents]]
name = "paused"
task = "chat"
message = "hi"
"""


def _add_agents(config: Path) -> None:
    config.write_text(config.read_text(encoding="utf-8") + AGENTS, encoding="utf-8")


def _add_runs(location: DbLocation) -> None:
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    for agent, status, cost in [("morning", "failed", 0.625), ("paused", "late", 0.25)]:
        run_sql(
            location,
            "INSERT INTO runs (agent, trigger, status, created_at, cost_usd)"
            " VALUES (?, 'cli', ?, ?, ?)",
            (agent, status, now, cost),
        )
    run_sql(
        location,
        "INSERT INTO agent_state (agent, disabled, disabled_reason) VALUES ('paused', 1, 'by @x')",
    )


async def test_agents_table(cli_env: dict[str, str], store_location: DbLocation) -> None:
    """`openclaw agents`, byte for byte (but the next fire, which is the clock's)."""
    await asyncio.to_thread(_add_agents, Path(cli_env["OPENCLAW_CONFIG"]))
    code, out, err = await openclaw(cli_env, "runs")  # creates the database
    assert code == 0, err
    await asyncio.to_thread(_add_runs, store_location)
    code, out, err = await openclaw(cli_env, "agents")
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(
        r"morning {18}0 7 \* \* \* {8}Europe/Berlin {4}"
        r"\d{4}-\d\d-\d\dT07:00:00\+0[12]:00  failed {10}0\.6250",
        lines[1],
    ), lines[1]
    assert [lines[0], *lines[2:]] == [
        "agent                    schedule         timezone         next fire                  last"
        "           today $",
        "ondemand                 on demand        UTC              -                          -   "
        "            0.0000",
        "off                      0 8 * * *        UTC              disabled                   -   "
        "            0.0000",
        "  disabled: enabled = false in the config",
        "paused                   on demand        UTC              disabled                   late"
        "            0.2500",
        "  disabled: by @x",
    ]
