"""Running `openclaw` as a real subprocess in tests: one-shot commands and `serve`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def clean_env(config: Path, db: Path | str, **extra: str) -> dict[str, str]:
    """The environment minus any OPENCLAW_* of the developer's, plus the test's own;
    ``db`` a SQLite path or a PostgreSQL URL (a str: a Path would fold its ``//``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    return env | {"OPENCLAW_CONFIG": str(config), "OPENCLAW_DB": str(db)} | extra


async def run_cli(env: dict[str, str], *args: str, timeout_s: float = 90) -> tuple[int, str, str]:
    """`openclaw ARGS` in the config's folder (so no stray .env leaks in)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.cli",
        *args,
        env=env,
        cwd=Path(env["OPENCLAW_CONFIG"]).parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:  # a command that hangs (a serve that should have refused) must
        proc.kill()  # not outlive the test
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Served:
    """A running `openclaw serve`: its process, gateway URL and start-up lines."""

    proc: asyncio.subprocess.Process
    url: str
    lines: list[str] = field(default_factory=list)
    _drain: asyncio.Task[None] | None = None

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal it and wait (killing it if it hangs); returns the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        assert self.proc.returncode is not None
        return self.proc.returncode


async def start_serve(
    env: dict[str, str], until: str = "Telegram bot:", stderr_path: Path | None = None
) -> Served:
    """Start serve and read its summary up to the line starting with ``until``.

    Its log lines (stderr) go to ``stderr_path`` (appended) when given, else nowhere.
    """
    err = stderr_path.open("ab") if stderr_path is not None else None
    try:
        proc = await _spawn_serve(env, err)
    finally:
        if err is not None:
            err.close()  # the child holds its own copy of the descriptor
    assert proc.stdout is not None
    served = Served(proc, "")
    for _ in range(300):
        line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
        if not line:
            await served.stop()
            raise AssertionError(f"serve exited early: {''.join(served.lines)}")
        served.lines.append(line)
        m = re.search(r"gateway (http://127\.0\.0\.1:\d+)", line)
        served.url = m.group(1) if m else served.url
        if line.startswith(until):
            break
    assert served.url, "no gateway line"
    served._drain = asyncio.create_task(_drain(proc))
    return served


async def _spawn_serve(env: dict[str, str], err: IO[bytes] | None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.cli",
        "serve",
        env=env,
        cwd=Path(env["OPENCLAW_CONFIG"]).parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=err if err is not None else asyncio.subprocess.DEVNULL,
    )


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while await proc.stdout.readline():  # keep the pipe from filling up
        pass
