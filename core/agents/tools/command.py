"""Operator command tools: an argv from the config, ``{name}`` items filled from the call.

Never a shell: a placeholder item is replaced by the argument's value as one whole argv item
and nothing else is interpolated, so ``; rm -rf /`` arrives as one literal argument. The
process gets a clean environment (no provider keys, no bot token), runs in its own process
group from the config's folder, and is killed with its whole group at ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.agents.inputs.base import _CHUNK_BYTES
from core.agents.inputs.commands import _kill_group
from core.agents.tools.base import ToolContext, ToolFailure, ToolResult, human_size
from core.config.tools import PLACEHOLDER, CommandToolConfig
from core.types import ToolSpec

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# What a command may see of this process's environment. Reading os.environ outside the
# settings module is the accepted exception here: these four say where programs are and how
# to format text, hold no secret, and a command can't run sensibly without PATH and HOME.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_TARGET_CHARS = 60


class CommandTool:
    """One ``[tools.<name>]`` command tool."""

    def __init__(self, name: str, config: CommandToolConfig, base_dir: Path) -> None:
        self._name = name
        self._cfg = config
        self._base_dir = base_dir

    @property
    def spec(self) -> ToolSpec:
        """The operator's name, description and parameters (every one required)."""
        return ToolSpec(self._name, self._cfg.description, self._cfg.arguments_schema())

    @property
    def timeout_s(self) -> float:
        """The command's ``timeout_s``, after which its process group is killed."""
        return self._cfg.timeout_s

    @property
    def approval(self) -> bool:
        """The command's ``approval`` setting."""
        return self._cfg.approval

    def target(self, args: Mapping[str, Any]) -> str:
        """The filled argv joined with spaces, shortened for a progress line."""
        try:
            text = " ".join(self.argv(args))
        except ToolFailure:
            text = " ".join(self._cfg.command)
        return text if len(text) <= _TARGET_CHARS else text[: _TARGET_CHARS - 1] + "…"

    def argv(self, args: Mapping[str, Any]) -> list[str]:
        """The command with each whole-item ``{name}`` replaced by that argument's value."""
        filled = []
        for item in self._cfg.command:
            match = PLACEHOLDER.fullmatch(item)
            if match is None:
                filled.append(item)
                continue
            name = match.group(1)
            if name not in args:
                raise ToolFailure(f"{self._name} needs the argument {name!r}")
            filled.append(_as_arg(args[name]))
        return filled

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Run it; the exit code and output are the result, whatever the code."""
        argv = self.argv(args)
        cap = self._cfg.max_output_bytes
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                # one stream, in the order the command wrote it: what a terminal would show
                stderr=subprocess.STDOUT,
                cwd=self._base_dir,
                env=_clean_env(),
                # its own process group, so a timeout also kills whatever it spawned
                start_new_session=True,
            )
        except FileNotFoundError as e:
            if str(e.filename) == str(self._base_dir):
                raise ToolFailure(f"working directory {self._base_dir} does not exist") from None
            raise ToolFailure(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise ToolFailure(f"{argv[0]} is not executable") from None
        except OSError as e:
            raise ToolFailure(f"{argv[0]} could not start: {e.strerror or e}") from None
        assert proc.stdout is not None
        stdout = proc.stdout
        out = bytearray()
        total = 0

        async def read_all() -> None:
            nonlocal total
            # past the cap the rest is drained and dropped: the command runs to its end
            # (a full pipe would block it) and its exit code still means something
            while chunk := await stdout.read(_CHUNK_BYTES):
                total += len(chunk)
                if len(out) < cap:
                    out.extend(chunk[: cap - len(out)])

        finished = False
        try:
            async with asyncio.timeout(self._cfg.timeout_s):
                await read_all()
                code = await proc.wait()
            finished = True
        except TimeoutError:
            raise ToolFailure(
                f"{argv[0]} timed out after {self._cfg.timeout_s:g}s and was killed"
            ) from None
        finally:
            # timed out or cancelled: the whole group, even if the command itself has exited
            # and only a child it left holds the output open
            if not finished:
                _kill_group(proc)
                await proc.wait()
        return _result(code, bytes(out), total, cap)


def _as_arg(value: Any) -> str:
    if isinstance(value, bool):  # before int: True is an int
        return "true" if value else "false"
    return str(value)


def _clean_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSED_ENV if os.environ.get(k)}
    env.setdefault("PATH", DEFAULT_PATH)
    if "LANG" not in env and "LC_ALL" not in env:
        env["LANG"] = "C.UTF-8"  # so the output the model reads is UTF-8
    return env


def _result(code: int, out: bytes, total: int, cap: int) -> ToolResult:
    status = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    text = out.decode("utf-8", "replace")
    lines = [status]
    if text:
        lines += ["", text.rstrip("\n")]
    if total > cap:
        lines.append(f"[output cut at {human_size(cap)} of {human_size(total)}]")
    return ToolResult("\n".join(lines), summary=f"{status}, {human_size(total)}")
