"""Command tools against real subprocesses: argv only, a clean environment, bounded."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from core.agents.tools.base import ToolContext, ToolFailure
from core.agents.tools.command import CommandTool
from core.config.tools import CommandToolConfig

CTX = ToolContext(agent="tester", run_id=1)
PY = sys.executable
ECHO_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def tool(
    tmp_path: Path, command: list[str], parameters: dict[str, Any] | None = None, **config: Any
) -> CommandTool:
    cfg = CommandToolConfig(
        description="a test command", command=command, parameters=parameters or {}, **config
    )
    return CommandTool("probe", cfg, tmp_path)


@pytest.mark.parametrize("text", ["; rm -rf /", "$(id)", "`id`", "a b  c", "--flag=1 'q'", ""])
async def test_arguments_arrive_literally(tmp_path: Path, text: str) -> None:
    t = tool(tmp_path, [PY, "-c", ECHO_ARGV, "{text}", "{text}x"], {"text": {}})
    # "{text}x" is no whole-item placeholder: it stays as written (the config check refuses it)
    result = await t({"text": text}, CTX)
    assert result.content == "exit 0\n\n" + json.dumps([text, "{text}x"])


async def test_printf_gets_one_item(tmp_path: Path) -> None:
    t = tool(tmp_path, ["printf", "%s\n", "{text}"], {"text": {}})
    result = await t({"text": "; rm -rf / $(id)"}, CTX)
    assert result.content == "exit 0\n\n; rm -rf / $(id)"
    assert result.summary == "exit 0, 17 B"


async def test_scalar_arguments(tmp_path: Path) -> None:
    params = {"n": {"type": "integer"}, "x": {"type": "number"}, "b": {"type": "boolean"}}
    t = tool(tmp_path, [PY, "-c", ECHO_ARGV, "{n}", "{x}", "{b}"], params)
    result = await t({"n": 3, "x": 1.5, "b": False}, CTX)
    assert result.content.endswith(json.dumps(["3", "1.5", "false"]))


async def test_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENCLAW_GATEWAY_TOKEN", "TELEGRAM_BOT_TOKEN", "DEEPSEEK_API_KEY", "OTHER"):
        monkeypatch.setenv(var, "secret-value")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    result = await tool(tmp_path, [PY, "-c", code])({}, CTX)
    env = json.loads(result.content.split("\n\n", 1)[1])
    assert set(env) <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "LC_CTYPE"}
    assert env["TZ"] == "Europe/Berlin"
    assert "secret-value" not in result.content


async def test_cwd_and_stdin(tmp_path: Path) -> None:
    code = (
        "import os, sys; print(os.path.samefile(os.getcwd(), sys.argv[1]), repr(sys.stdin.read()))"
    )
    result = await tool(tmp_path, [PY, "-c", code, str(tmp_path)])({}, CTX)
    assert result.content == "exit 0\n\nTrue ''"


async def test_nonzero_exit_is_a_result(tmp_path: Path) -> None:
    code = (
        "import sys; print('out'); sys.stdout.flush()\n"
        "print('bad input', file=sys.stderr); sys.exit(3)"
    )
    result = await tool(tmp_path, [PY, "-c", code])({}, CTX)
    assert result.content == "exit 3\n\nout\nbad input"
    assert result.summary == "exit 3, 14 B"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie nobody has reaped yet (PID 1 of a container may not) is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] in "ZX"
    except (OSError, IndexError):
        return True


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(30)\n"
    )
    t = tool(tmp_path, [PY, "-c", code], timeout_s=0.8)
    with pytest.raises(ToolFailure, match=r"timed out after 0\.8s and was killed"):
        await t({}, CTX)
    child = int(pid_file.read_text())
    for _ in range(50):
        if _gone(child):
            break
        await asyncio.sleep(0.02)
    assert _gone(child), "the command's child outlived the timeout"


async def test_output_cap(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('z' * 5000); sys.exit(0)"
    result = await tool(tmp_path, [PY, "-c", code], max_output_bytes=256)({}, CTX)
    assert result.content == "exit 0\n\n" + "z" * 256 + "\n[output cut at 256 B of 5.0 KB]"
    assert result.summary == "exit 0, 5.0 KB"


async def test_not_found_and_not_executable(tmp_path: Path) -> None:
    with pytest.raises(ToolFailure, match="command not found: /nonexistent/prog"):
        await tool(tmp_path, ["/nonexistent/prog"])({}, CTX)
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ToolFailure, match="is not executable"):
        await tool(tmp_path, [str(script)])({}, CTX)


async def test_missing_working_directory(tmp_path: Path) -> None:
    cfg = CommandToolConfig(description="d", command=[PY, "-c", "pass"])
    with pytest.raises(ToolFailure, match=r"working directory .* does not exist"):
        await CommandTool("probe", cfg, tmp_path / "gone")({}, CTX)


def test_spec_target_and_approval(tmp_path: Path) -> None:
    params = {"query": {"type": "string", "description": "what to grep"}}
    t = tool(tmp_path, ["grep", "-r", "{query}", "logs"], params, approval=True)
    assert t.spec.name == "probe"
    assert t.spec.description == "a test command"
    assert t.spec.parameters["required"] == ["query"]
    assert t.approval is True
    assert t.timeout_s == 10.0
    assert t.target({"query": "error"}) == "grep -r error logs"
    long = t.target({"query": "q" * 100})
    assert len(long) == 60 and long.endswith("…")
