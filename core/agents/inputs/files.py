"""File inputs: a path under the config's folder, read as JSON or text, bounded in size."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from core.agents.inputs.base import _Failure
from core.config.agents import InputConfig

# --- file ---------------------------------------------------------------------------------


async def _read_file(file: str, cfg: InputConfig, base_dir: Path) -> Any:
    path = _resolve(file, base_dir)
    try:
        # A FIFO or a hung network mount would block the thread forever; don't wait for it.
        async with asyncio.timeout(cfg.timeout_s):
            return await asyncio.to_thread(_load_file, path, cfg.max_bytes)
    except TimeoutError:
        raise _Failure(f"file {path} timed out after {cfg.timeout_s:g}s") from None


def _resolve(file: str, base_dir: Path) -> Path:
    path = Path(file).expanduser()
    return path if path.is_absolute() else base_dir / path


def _load_file(path: Path, max_bytes: int) -> Any:
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise _Failure(f"file {path} does not exist") from None
    except IsADirectoryError:
        raise _Failure(f"file {path} is a directory") from None
    except PermissionError:
        raise _Failure(f"file {path} is not readable (permission denied)") from None
    except OSError as e:
        raise _Failure(f"file {path} could not be read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise _Failure(f"file {path} is over max_bytes ({max_bytes})")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(data)
        except ValueError as e:
            raise _Failure(f"file {path} is not valid JSON: {e}") from None
    return data.decode("utf-8-sig", "replace")
