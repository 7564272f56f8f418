"""``read_file``: a file under the operator's ``roots``, as text, bounded in size.

A path is judged by where it really is: it is resolved with every symlink followed, and the
result must lie inside one of the (resolved) roots, so neither ``..`` nor a symlink pointing
out of a root reaches anything else.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.agents.inputs.base import _CHUNK_BYTES
from core.agents.tools.base import ToolContext, ToolFailure, ToolResult, human_size
from core.config.tools import ReadFileConfig
from core.types import ToolSpec

# The config has no timeout of its own: a local read of at most max_bytes takes
# milliseconds, and this bounds a hung network mount.
TIMEOUT_S = 10.0
_TARGET_CHARS = 60


class ReadFile:
    """The ``read_file`` tool."""

    def __init__(self, config: ReadFileConfig, base_dir: Path) -> None:
        self._cfg = config
        self._base_dir = base_dir
        # as the operator wrote them (relative to the config's folder), for messages
        self._shown_roots = ", ".join(config.roots) or "(none)"

    @property
    def spec(self) -> ToolSpec:
        """Name, description (naming the roots) and the one ``path`` argument."""
        return ToolSpec(
            name="read_file",
            description=(
                "Read a text file (long files are cut). Only files under these folders can "
                f"be read: {self._shown_roots}. Give the path relative to one of them."
            ),
            parameters={
                "type": "object",
                "properties": {"path": {"type": "string", "description": "the file's path"}},
                "required": ["path"],
                "additionalProperties": False,
            },
        )

    @property
    def timeout_s(self) -> float:
        """A bound for a hung mount; a normal read takes milliseconds."""
        return TIMEOUT_S

    @property
    def approval(self) -> bool:
        """The roots are the operator's approval."""
        return False

    def target(self, args: Mapping[str, Any]) -> str:
        """The path, as the model gave it."""
        path = str(args.get("path", ""))
        return path if len(path) <= _TARGET_CHARS else path[: _TARGET_CHARS - 1] + "…"

    async def __call__(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """The file's text, cut at ``max_bytes``; ToolFailure outside the roots."""
        path = str(args.get("path", ""))
        if not path.strip():
            raise ToolFailure(f"give a file's path under {self._shown_roots}")
        # resolving touches the disk too (symlinks, a slow mount): all of it in the thread
        return await asyncio.to_thread(self._read, path)

    def _read(self, path: str) -> ToolResult:
        roots = self._roots()
        if not roots:
            raise ToolFailure("no folder may be read (read_file has no roots)")
        given = Path(path)  # taken literally: no ~ expansion of what the model wrote
        candidates = (
            [given]
            if given.is_absolute()
            else [*(root / given for root in roots), self._base_dir / given]
        )
        outside: Path | None = None
        for candidate in candidates:
            try:
                real = candidate.resolve(strict=True)
            except (OSError, RuntimeError, ValueError):  # absent, a symlink loop, a NUL byte
                continue
            if any(real.is_relative_to(root) for root in roots):
                return self._load(path, real)
            outside = outside or real
        if outside is not None:
            raise ToolFailure(
                f"refused: {path} is outside the folders read_file may read ({self._shown_roots})"
            )
        raise ToolFailure(f"{path} does not exist under {self._shown_roots}")

    def _roots(self) -> list[Path]:
        roots = []
        for root in self._cfg.roots:
            try:
                roots.append((self._base_dir / Path(root).expanduser()).resolve(strict=True))
            except (OSError, RuntimeError):
                continue  # a root that doesn't exist (yet) holds nothing to read
        return roots

    def _load(self, path: str, real: Path) -> ToolResult:
        cap = self._cfg.max_bytes
        try:
            # O_NOFOLLOW: the checked path can't be swapped for a symlink before the open;
            # O_NONBLOCK: a FIFO under a root must not hang the thread (refused below).
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except PermissionError:
            raise ToolFailure(f"{path} is not readable (permission denied)") from None
        except OSError as e:
            raise ToolFailure(f"{path} could not be read: {e.strerror or e}") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise ToolFailure(f"{path} is a folder; give a file in it")
            if not stat.S_ISREG(info.st_mode):
                raise ToolFailure(f"{path} is not a regular file")
            data = _read_up_to(fd, cap + 1)
        except OSError as e:  # EIO from a failing disk or a dropped mount
            raise ToolFailure(f"{path} could not be read: {e.strerror or e}") from None
        finally:
            os.close(fd)
        cut = len(data) > cap
        text = data[:cap].decode("utf-8", "replace")
        if not cut:
            return ToolResult(text, summary=human_size(len(data)))
        note = f"\n[cut at {human_size(cap)} of {human_size(info.st_size)}]"
        return ToolResult(
            text + note, summary=f"{human_size(cap)} of {human_size(info.st_size)} (cut)"
        )


def _read_up_to(fd: int, n: int) -> bytes:
    data = bytearray()
    while len(data) < n and (chunk := os.read(fd, min(_CHUNK_BYTES, n - len(data)))):
        data += chunk
    return bytes(data)
