"""The reliability suite: every test here is marked ``reliability``.

A session-wide log capture collects every record the suite's in-process code logs, and
tests that run `serve` as a subprocess save its output under ``LOG_DIR``; at the end both
are scanned for the configured secret values (see ``secrets.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import secrets

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a broken record must not break the suite
            self.handleError(record)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests save subprocess output (serve's stderr, CLI output) for the secret scan."""
    return tmp_path_factory.mktemp("reliability-logs")


@pytest.fixture(scope="session", autouse=True)
def _scan_logs_for_secrets(log_dir: Path) -> Iterator[None]:
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    leaks = [
        f"in-process log: {line[:200]}" for line in handler.lines for s in secrets.ALL if s in line
    ]
    for path in sorted(log_dir.rglob("*")):
        if path.is_file():
            text = path.read_text(errors="replace")
            leaks += [f"{path.name}: contains {s[:6]}…" for s in secrets.ALL if s in text]
    assert not leaks, "secret values reached the logs:\n" + "\n".join(leaks[:20])
