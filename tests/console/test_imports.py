"""Each console module imports on its own, first thing in a fresh interpreter: the gateway
imports the console, so the console must not import the gateway back at run time."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module", ["core.console.routes", "core.console.web", "core.console.pages", "core.console.live"]
)
def test_a_console_module_imports_first(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
