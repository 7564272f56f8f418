"""The gateway and the bot get the facade, never the App (nor the store behind it)."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from core.facade import Facade

ROOT = Path(__file__).resolve().parent.parent
INTERFACES = sorted([*(ROOT / "core" / "gateway").glob("*.py"), *(ROOT / "bot").rglob("*.py")])


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("path", INTERFACES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_interface_imports_the_composition_root_or_the_store(path: Path) -> None:
    modules = imported(path)
    assert "core.app" not in modules
    assert not {m for m in modules if m.startswith("core.store")}


def test_the_facade_holds_no_store_outbox_or_providers() -> None:
    names = {f.name for f in fields(Facade)}
    assert not names & {"store", "outbox", "delivery", "providers", "health", "scheduler"}
