"""The gateway, the console and the bot get the facade, never the App (nor the store
behind it)."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from core.facade import Facade
from core.store.path import DbLocation

ROOT = Path(__file__).resolve().parent.parent
INTERFACES = sorted(
    [
        *(ROOT / "core" / "gateway").glob("*.py"),
        *(ROOT / "core" / "console").glob("*.py"),
        *(ROOT / "bot").rglob("*.py"),
    ]
)


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


async def test_the_facades_registrations_lead_back_to_no_app(
    store_location: DbLocation,
) -> None:
    # a bound App method (or a closure over the App) would hand the whole app to the bot
    from core.app import App
    from core.config.load import parse_config
    from core.config.settings import Settings
    from tests.configs import pyramid

    app = await App.open(
        parse_config(pyramid(), warnings=[]),
        Settings(_env_file=None),  # type: ignore[call-arg]
        store_location,
    )
    try:
        facade = app.facade
        for f in fields(Facade):
            value = getattr(facade, f.name)
            assert getattr(value, "__self__", None) is not app, f.name
            cells = getattr(value, "__closure__", None) or ()
            assert all(c.cell_contents is not app for c in cells), f.name
        assert not isinstance(facade, App) and app not in vars(facade).values()
    finally:
        await app.close()
