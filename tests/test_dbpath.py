"""OPENCLAW_DB: a SQLite file path, checked before anything opens or creates it."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config.settings import Settings
from core.errors import ConfigError
from core.store.path import PostgresURL, check_db_location


def refused(raw: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_db_location(raw)
    (problem,) = info.value.problems
    assert problem.key == "OPENCLAW_DB" and problem.fix
    return str(problem)


def test_a_postgresql_url_is_taken_and_never_shows_its_password() -> None:
    raw = "postgresql://openclaw:s3cret-pw@db.internal:5432/claw?sslpassword=k3y"
    location = check_db_location(raw)
    assert isinstance(location, PostgresURL) and location.url == raw
    shown = "postgresql://openclaw:***@db.internal:5432/claw?sslpassword=***"
    assert str(location) == shown and f"{location}" == shown
    assert "s3cret-pw" not in repr(location) and "k3y" not in repr(location)
    assert isinstance(check_db_location("postgres://u@h/claw"), PostgresURL)


def test_other_urls_are_refused_without_their_password() -> None:
    line = refused("mysql://openclaw:s3cret-pw@db.internal:3306/claw?sslpassword=k3y")
    assert "s3cret-pw" not in line and "k3y" not in line
    assert "'mysql://openclaw:***@db.internal:3306/claw?sslpassword=***' is a mysql URL" in line
    assert "names no database" in refused("postgresql://u:s3cret-pw@h:5432")
    assert "s3cret-pw" not in refused("postgresql://u:s3cret-pw@h:5432/")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "OPENCLAW_DB: is empty"),
        ("   ", "OPENCLAW_DB: is empty"),
        (":memory:", "':memory:' would lose every run"),
        ("/proc/self/openclaw.db", "is under /proc, a kernel filesystem"),
        ("/dev/null", "is under /dev"),
        ("/sys/x.db", "is under /sys"),
    ],
)
def test_unusable_locations_are_refused(raw: str, expected: str) -> None:
    assert expected in refused(raw)


def test_a_directory_and_a_missing_directory(tmp_path: Path) -> None:
    assert f"'{tmp_path}' is a directory — name a file in it, e.g. {tmp_path}/openclaw.db" in (
        refused(str(tmp_path))
    )
    missing = tmp_path / "not" / "here" / "x.db"
    line = refused(str(missing))
    assert f"the directory '{missing.parent}' does not exist" in line
    assert f"mkdir -p {missing.parent}" in line
    assert not (tmp_path / "not").exists()
    (tmp_path / "file").write_text("", encoding="utf-8")
    assert "not a directory" in refused(str(tmp_path / "file" / "x.db")).lower()


def test_a_good_path_and_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_db_location(str(tmp_path / "x.db")) == tmp_path / "x.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENCLAW_DB", raising=False)
    assert Settings(_env_file=None).db_path() == Path("openclaw.db")  # type: ignore[call-arg]
    monkeypatch.setenv("OPENCLAW_DB", "postgresql://u:pw@h/db")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.openclaw_db == "postgresql://u:pw@h/db"  # kept as written, not a Path
    assert settings.db_path() == PostgresURL("postgresql://u:pw@h/db")
    assert settings.token_file() == Path("openclaw.gateway-token")  # not beside a URL
