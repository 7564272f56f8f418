"""A SQLite file that cannot be written, also by root (tests and CI run as root, where
chmod 0444 stops nothing): a read-only bind mount of its folder where ``mount`` is
allowed, else the immutable attribute (``chattr +i``), else the test is skipped.
In-process tests can also open the real file read-only (:func:`open_read_only`)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest

from core.store.sqlite import SQLiteStore


def _run(*argv: str) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    return done.returncode == 0


@contextlib.contextmanager
def read_only(db: Path) -> Iterator[str]:
    """While inside, ``db`` (closed, its folder a test's own) cannot be written; yields how."""
    folder = str(db.parent)
    if _run("mount", "--bind", folder, folder):
        try:
            if _run("mount", "-o", "remount,bind,ro", folder):
                yield "read-only bind mount"
                return
        finally:
            if not _run("umount", folder):
                _run("umount", "-l", folder)  # a child still holds it: detach now
    if _run("chattr", "+i", str(db)):
        try:
            yield "chattr +i"
        finally:
            _run("chattr", "-i", str(db))
        return
    pytest.skip("no way to make a file read-only for root here (neither mount nor chattr)")


async def open_read_only(db: Path) -> SQLiteStore:
    """A Store on the real file opened through SQLite's ``mode=ro``: every write fails with
    SQLite's own "attempt to write a readonly database". Built directly, so no start-up
    probe refuses it: this is a store that became unwritable after it opened."""
    conn = await aiosqlite.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    return SQLiteStore(conn, db)
