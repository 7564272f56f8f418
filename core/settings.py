"""Secrets and machine settings from the environment and ``.env``.

The only module that reads the environment. Provider keys are looked up by the
variable name each provider's ``api_key_env`` gives.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values
from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EXAMPLE_CONFIG = "openclaw.example.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    openclaw_config: Path = Path("openclaw.toml")
    # kept as written: a Path would turn "postgresql://u:p@h/db" into "postgresql:/u:p@h/db",
    # and the check (core.dbpath) must see a URL to refuse it without echoing its password
    openclaw_db: str = "openclaw.db"
    openclaw_gateway_token: SecretStr | None = None
    openclaw_token_file: Path | None = None  # where serve keeps a generated gateway token
    telegram_bot_token: SecretStr | None = None
    telegram_api_base: str | None = None
    gemini_api_key: SecretStr | None = None
    deepseek_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None

    @field_validator("openclaw_db", mode="before")
    @classmethod
    def _db_as_text(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def db_path(self) -> Path:
        """The SQLite file OPENCLAW_DB names, checked (a URL, a directory, a missing folder
        are ConfigErrors naming OPENCLAW_DB and the fix)."""
        from core.dbpath import check_db_location

        return check_db_location(self.openclaw_db)

    def config_path(self) -> Path:
        """The TOML file to load: OPENCLAW_CONFIG, else ./openclaw.toml, else the example."""
        if "OPENCLAW_CONFIG" in os.environ or self.openclaw_config.exists():
            return self.openclaw_config
        example = Path(EXAMPLE_CONFIG)
        return example if example.exists() else self.openclaw_config

    def token_file(self) -> Path:
        """The generated-token file: OPENCLAW_TOKEN_FILE, else beside the database."""
        if self.openclaw_token_file is not None:
            return self.openclaw_token_file
        return Path(self.openclaw_db).parent / "openclaw.gateway-token"

    def secret(self, env_name: str) -> SecretStr | None:
        """The value of the variable ``env_name`` from the environment or ``.env``; None if unset
        or empty."""
        value = os.environ.get(env_name)
        if value is None:
            env_file = self.model_config.get("env_file")
            if isinstance(env_file, str) and Path(env_file).is_file():
                value = dotenv_values(env_file).get(env_name)
        return SecretStr(value) if value else None
