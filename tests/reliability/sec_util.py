"""Helpers of the security tests: config files for subprocesses, a free port, and what a
traceback looks like in an answer."""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path
from typing import Any

from tests.configs import pyramid

TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', '.py", line ')


def write_config(folder: Path, **overrides: Any) -> Path:
    """``folder/openclaw.toml``: the test pyramid with ``overrides``."""
    path = folder / "openclaw.toml"
    path.write_text(toml_text(pyramid(**overrides)), encoding="utf-8")
    return path


def toml_text(doc: dict[str, Any]) -> str:
    """A small TOML writer for test configs (tables, arrays of tables, plain values)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    def table(prefix: str, d: dict[str, Any]) -> None:
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in d.items() if not _is_table(v))
        for k, v in d.items():
            name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
            if isinstance(v, dict) and _is_table(v):
                table(name, v)
            elif _is_table(v):
                for item in v:
                    lines.append(f"[[{name}]]")
                    lines.extend(f"{json.dumps(ik)} = {value(iv)}" for ik, iv in item.items())

    table("", doc)
    text = "\n".join(lines) + "\n"
    assert tomllib.loads(text) == doc, text
    return text


def _is_table(v: Any) -> bool:
    if isinstance(v, dict):
        return any(isinstance(x, dict) for x in v.values())
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
