"""Changing a task's tier in the operator's TOML file without losing its comments or order
(``openclaw tune --apply``): tomlkit edits the document, the normal loader validates the
result, and the file is replaced atomically."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import InlineTable, Item, Table

from core.config.load import load_config
from core.config.models import Config


def set_task_tier(text: str, task: str, tier: int, note: str) -> str:
    """``text`` with ``[tasks]``'s ``task`` at minimum tier ``tier``, its ``trial`` removed,
    and ``note`` as a comment line above the changed key. Everything else is kept as it
    was written, the changed line's own comment too. Raises KeyError for a task the file
    does not hold (one that came from elsewhere cannot be edited here)."""
    doc = tomlkit.parse(text)
    tasks: Any = doc.get("tasks")
    if tasks is None or task not in tasks:
        raise KeyError(task)
    marker = f"openclaw-tune-{uuid.uuid4().hex}"
    value = tasks[task]
    if isinstance(value, InlineTable):  # no comment can go inside { … }: it goes after it
        value["tier"] = tier
        if "trial" in value:
            del value["trial"]
        old = value.trivia.comment
        value.comment(marker)
    elif isinstance(value, Table):
        if "trial" in value:
            del value["trial"]
        old = _replace(value, "tier", tier, marker)
    else:
        old = _replace(tasks, task, tier, marker)
    lines = tomlkit.dumps(doc).splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if marker in line)
    line = lines[i]
    head, _, tail = line.partition(f"# {marker}")
    indent = line[: len(line) - len(line.lstrip())]
    kept = head.rstrip() + (f"  {old}" if old else "") + tail
    comment = "".join(f"{indent}# {part}\n" for part in note.splitlines())
    lines[i] = comment + kept
    return "".join(lines)


def _replace(table: Any, key: str, tier: int, marker: str) -> str:
    """Set ``table[key] = tier`` keeping the old value's indent; returns its old comment."""
    prev: Item = table[key]
    new = tomlkit.item(tier)
    new.trivia.indent = prev.trivia.indent
    table[key] = new
    table[key].comment(marker)
    return prev.trivia.comment


def write_validated(path: Path, text: str) -> Config:
    """Write ``text`` over ``path`` if the normal loader accepts it (raises ConfigError
    otherwise, and ``path`` is untouched): through a temporary file beside it, renamed
    over it, so a reader sees the old file or the new one, never half of one."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tune", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        config = load_config(tmp)  # prompts and templates resolve beside it, as for path
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return config
