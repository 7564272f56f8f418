"""The reliability suite: every test here is marked ``reliability``.

A session-wide log capture collects every record the suite's in-process code logs, and
tests that run `serve` (or any CLI command) as a subprocess save its output under
``log_dir``; at the end both are scanned for the configured secret values (see
``secrets.py``) with :func:`find_leaks`, and any hit fails the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.reliability import secrets

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


# -- the scan ---------------------------------------------------------------------------


def _forms(secret: str) -> set[str]:
    """The ways a secret can appear in a log: as is, or URL-encoded (a token in a path)."""
    return {secret, quote(secret, safe=""), quote(secret)}


def find_leaks(text: str, where: str, values: Iterable[str] = secrets.ALL) -> list[str]:
    """One line per secret value found in ``text`` (``where`` names the source); [] if
    none. Only the first six characters of a found secret are repeated in the report."""
    return [
        f"{where}: contains {s[:6]}…" for s in values if any(form in text for form in _forms(s))
    ]


def mask(text: str, values: Iterable[str] = secrets.ALL) -> str:
    """``text`` with every secret cut to its first six characters, for reports."""
    for s in values:
        for form in _forms(s):
            text = text.replace(form, f"{s[:6]}…")
    return text


def scan_log_dir(root: Path, values: Iterable[str] = secrets.ALL) -> list[str]:
    """:func:`find_leaks` over every file under ``root`` (read as text, bad bytes replaced)."""
    values = tuple(values)
    leaks: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            leaks += find_leaks(text, str(path.relative_to(root)), values)
    return leaks


class LogCollector(logging.Handler):
    """Scans every record as it is emitted (message, exception and stack text included)
    and keeps the lines that hold a secret; ``seen`` counts the records it looked at."""

    def __init__(self, values: Iterable[str] = secrets.ALL) -> None:
        super().__init__(logging.DEBUG)
        self.values = tuple(values)
        self.seen = 0
        self.hits: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a broken record must not break the suite
            self.handleError(record)
            return
        self.seen += 1
        for hit in find_leaks(line, "in-process log", self.values):
            self.hits.append(f"{hit} ({mask(line, self.values)[:200]!r})")


# -- fixtures ---------------------------------------------------------------------------

_COLLECTOR = LogCollector()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests save subprocess output (serve's stderr, CLI output) for the secret scan."""
    return tmp_path_factory.mktemp("reliability-logs")


@pytest.fixture(scope="session")
def log_collector() -> LogCollector:
    """The session's in-process log capture (its ``hits`` fail the run at the end)."""
    return _COLLECTOR


def _attach(root: logging.Logger) -> None:
    if _COLLECTOR not in root.handlers:
        root.addHandler(_COLLECTOR)
    root.setLevel(logging.DEBUG)


@pytest.fixture(autouse=True)
def _keep_collecting() -> Iterator[None]:
    """Code under test may reconfigure logging (``setup_logging`` drops every root
    handler): put the collector back before and after each test, so no record escapes."""
    _attach(logging.getLogger())
    yield
    _attach(logging.getLogger())


@pytest.fixture(scope="session", autouse=True)
def _scan_logs_for_secrets(log_dir: Path) -> Iterator[None]:
    root = logging.getLogger()
    old_level = root.level
    _attach(root)
    try:
        yield
    finally:
        root.removeHandler(_COLLECTOR)
        root.setLevel(old_level)
    leaks = _COLLECTOR.hits + scan_log_dir(log_dir)
    assert not leaks, "secret values reached the logs:\n" + "\n".join(leaks[:20])
