"""Secrets and machine settings from the environment and .env."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings


def test_secret_from_env_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "DEEPSEEK_API_KEY=from-dotenv\nOPENCLAW_DB=x.db\nEMPTY_KEY=\n", encoding="utf-8"
    )
    s = Settings()
    key = s.secret("DEEPSEEK_API_KEY")
    assert key is not None and key.get_secret_value() == "from-dotenv"
    assert "from-dotenv" not in repr(s.secret("DEEPSEEK_API_KEY"))
    assert s.db_path() == Path("x.db")
    assert s.secret("EMPTY_KEY") is None  # empty means unset
    monkeypatch.setenv("DEEPSEEK_API_KEY", "from-env")
    assert s.secret("DEEPSEEK_API_KEY").get_secret_value() == "from-env"  # type: ignore[union-attr]
    assert s.secret("NOT_THERE_AT_ALL") is None


def test_config_path_falls_back_to_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENCLAW_CONFIG", raising=False)
    assert Settings().config_path() == Path("openclaw.toml")  # neither exists: the default
    (tmp_path / "openclaw.example.toml").write_text("", encoding="utf-8")
    assert Settings().config_path() == Path("openclaw.example.toml")
    (tmp_path / "openclaw.toml").write_text("", encoding="utf-8")
    assert Settings().config_path() == Path("openclaw.toml")
    monkeypatch.setenv("OPENCLAW_CONFIG", "/etc/elsewhere.toml")
    assert Settings().config_path() == Path("/etc/elsewhere.toml")
