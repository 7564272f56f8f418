"""Command inputs: run an argv (no shell) in its own process group, bounded in time and size."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from core.agents.inputs.base import _CHUNK_BYTES, _all_or_first_error, _Failure
from core.config.agents import InputConfig

STDERR_LINE_CHARS = 200
_STDERR_TAIL_BYTES = 16 * 1024  # enough for the last line; a chatty command can't fill memory


# --- command ------------------------------------------------------------------------------


async def _run_command(argv: list[str], cfg: InputConfig, base_dir: Path) -> str:
    label = f"command {argv!r}"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=base_dir,
            # Its own process group, so a timeout also kills whatever it spawned.
            start_new_session=True,
        )
    except FileNotFoundError as e:
        if str(e.filename) == str(base_dir):
            raise _Failure(f"{label}: working directory {base_dir} does not exist") from None
        raise _Failure(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise _Failure(f"{label}: {argv[0]} is not executable") from None
    except OSError as e:
        raise _Failure(f"{label} could not start: {e.strerror or e}") from None
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    async def read_stdout() -> bytes:
        out = bytearray()
        while chunk := await stdout.read(_CHUNK_BYTES):
            out += chunk
            if len(out) > cfg.max_bytes:
                raise _Failure(f"{label} output over max_bytes ({cfg.max_bytes})")
        return bytes(out)

    async def read_stderr_tail() -> bytes:
        tail = b""
        while chunk := await stderr.read(_CHUNK_BYTES):
            tail = (tail + chunk)[-_STDERR_TAIL_BYTES:]
        return tail

    try:
        async with asyncio.timeout(cfg.timeout_s):
            out, err = await _all_or_first_error([read_stdout(), read_stderr_tail()])
            code = await proc.wait()
    except TimeoutError:
        raise _Failure(f"{label} timed out after {cfg.timeout_s:g}s") from None
    finally:
        if proc.returncode is None:  # timed out, too much output, or cancelled
            _kill_group(proc)
            await proc.wait()
    if code < 0:
        raise _Failure(f"{label} was killed by signal {-code}")
    if code != 0:
        last = _last_line(err)
        raise _Failure(f"{label} exited {code}" + (f": {last}" if last else ""))
    return out.decode("utf-8", "replace").rstrip()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        if sys.platform == "win32":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= STDERR_LINE_CHARS else last[: STDERR_LINE_CHARS - 1] + "…"
