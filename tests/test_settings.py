"""Secrets and machine settings from the environment and .env."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config.settings import Settings


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


def test_secret_reads_the_env_file_once_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLACK_WEBHOOK_OPS", raising=False)
    env = tmp_path / ".env"
    env.write_text("SLACK_WEBHOOK_OPS=first\n", encoding="utf-8")
    s = Settings()
    env.write_text("SLACK_WEBHOOK_OPS=second\n", encoding="utf-8")
    # a send on the event loop reads no file: what was read at construction stands
    assert s.secret("SLACK_WEBHOOK_OPS").get_secret_value() == "first"  # type: ignore[union-attr]
    env.unlink()
    assert s.secret("SLACK_WEBHOOK_OPS").get_secret_value() == "first"  # type: ignore[union-attr]
    assert Settings().secret("SLACK_WEBHOOK_OPS") is None  # a new Settings sees the file gone


def test_no_env_file_means_none_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.delenv("OPENCLAW_DB", raising=False)
    (tmp_path / ".env").write_text(
        "DEEPSEEK_API_KEY=developer-key\nOPENCLAW_DB=dev.db\n", encoding="utf-8"
    )
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.secret("DEEPSEEK_API_KEY") is None
    assert s.deepseek_api_key is None and s.openclaw_db == "openclaw.db"


def test_an_explicit_env_file_feeds_fields_and_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WEBHOOK_TOKEN", raising=False)
    monkeypatch.delenv("OPENCLAW_DB", raising=False)
    (tmp_path / ".env").write_text("WEBHOOK_TOKEN=from-cwd\n", encoding="utf-8")
    other = tmp_path / "prod.env"
    other.write_text("WEBHOOK_TOKEN=from-prod\nOPENCLAW_DB=prod.db\n", encoding="utf-8")
    s = Settings(_env_file=other)  # type: ignore[call-arg]
    assert s.secret("WEBHOOK_TOKEN").get_secret_value() == "from-prod"  # type: ignore[union-attr]
    assert s.openclaw_db == "prod.db"
