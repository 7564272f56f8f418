"""Where the database lives: checked before anything opens (or creates) it.

``OPENCLAW_DB`` names a SQLite file, or a PostgreSQL database as a
``postgresql://user[:password]@host[:port]/db`` URL (``postgres://`` too): a
:class:`PostgresURL`, whose ``str`` and ``repr`` are masked, so printing the location
never prints the password. Any other URL is refused: read as a path it would create a
directory named after its scheme. For a file, a missing directory is an error, never
created silently: a typo in the path would otherwise start on a new, empty database (the
default, ``./openclaw.db``, lives in the working directory, which always exists).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.config.common import mask_url
from core.errors import ConfigError, ConfigProblem

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# kernel filesystems: files there are not storage, and writing some of them changes the system
_KERNEL_FS = ("/proc", "/sys", "/dev")
FIX_PATH = (
    "set it to a file path such as /var/lib/openclaw/openclaw.db (or unset it: ./openclaw.db)"
)


def shown_location(raw: str) -> str:
    """``raw`` as it may be printed: a URL with its password and query values masked."""
    return mask_url(raw) if _URL.match(raw.strip()) else raw


_POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class PostgresURL:
    """A PostgreSQL database to use; ``url`` holds the password, ``str()`` masks it."""

    url: str = field(repr=False)

    def __str__(self) -> str:
        return mask_url(self.url)

    def __repr__(self) -> str:
        return f"PostgresURL({mask_url(self.url)!r})"


DbLocation = Path | PostgresURL


def db_url_password(raw: str) -> str | None:
    """The password written in a database URL (decoded), for log redaction; else None."""
    if not _URL.match(raw.strip()):
        return None
    try:
        password = urlsplit(raw.strip()).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _problem(key: str, message: str, fix: str = FIX_PATH) -> ConfigError:
    return ConfigError([ConfigProblem(key, message, fix)])


def check_db_location(raw: str, key: str = "OPENCLAW_DB") -> DbLocation:
    """The SQLite file or PostgreSQL database ``raw`` names, or a ConfigError naming
    ``key`` and the fix.

    Refused: empty, ``:memory:``, a URL not ``postgresql://`` (or one without a database
    name), anything under /proc, /sys or /dev, a directory or
    other non-file, a file whose directory does not exist (or is not a directory). Whether
    the file can be written is found by the store's write probe when it opens.
    """
    text = raw.strip()
    if not text:
        raise _problem(key, "is empty")
    if _URL.match(text):
        scheme = text.split(":", 1)[0].lower()
        if scheme not in _POSTGRES_SCHEMES:
            raise _problem(
                key,
                f"{shown_location(text)!r} is a {scheme} URL; a SQLite file path or a "
                "postgresql:// URL is supported",
                f"{FIX_PATH}, or postgresql://user@host:5432/openclaw for PostgreSQL",
            )
        if shown_location(text) == "***" or not urlsplit(text).path.strip("/"):
            raise _problem(
                key,
                f"{shown_location(text)!r} names no database (or does not parse)",
                "write it as postgresql://user[:password]@host[:port]/database",
            )
        return PostgresURL(text)
    if text == ":memory:":
        raise _problem(key, "':memory:' would lose every run, message and ledger row at exit")
    path = Path(text).expanduser()
    real = os.path.realpath(path)
    for root in _KERNEL_FS:
        if real == root or real.startswith(root + os.sep):
            raise _problem(key, f"{text!r} is under {root}, a kernel filesystem, not storage")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise _problem(key, f"cannot use {text!r}: {e.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise _problem(
            key, f"{text!r} is a directory", f"name a file in it, e.g. {path / 'openclaw.db'}"
        )
    if mode is not None and not stat.S_ISREG(mode):
        raise _problem(key, f"{text!r} is not a regular file")
    parent = path.parent
    if not parent.exists():
        raise _problem(
            key,
            f"the directory {str(parent)!r} does not exist",
            f"create it (mkdir -p {parent}) or point {key} at a file in an existing directory",
        )
    if not parent.is_dir():
        raise _problem(key, f"{str(parent)!r} is not a directory")
    return path


def unwritable(location: DbLocation, why: str, key: str = "OPENCLAW_DB") -> ConfigError:
    """The config error for a database that opened but cannot take writes (or not open)."""
    if isinstance(location, PostgresURL):
        return _problem(
            key,
            f"{why}",
            f"check that the server at {location} is running and reachable, that the user "
            "may log in (the password from the URL, PGPASSWORD or ~/.pgpass) and create "
            f"tables in that database, and that it is not read-only; or point {key} elsewhere",
        )
    path = location
    return _problem(
        key,
        f"{why}",
        f"make {path} and its directory writable by this user (SQLite also writes "
        f"{path.name}-wal and {path.name}-shm beside it; check the mount is not read-only and "
        f"the disk not full), or point {key} at another file",
    )
