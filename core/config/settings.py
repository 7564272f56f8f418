"""Secrets and machine settings from the environment and ``.env``.

The only module that reads the environment. Provider keys are looked up by the
variable name each provider's ``api_key_env`` gives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.sources import ENV_FILE_SENTINEL, DotEnvSettingsSource, DotenvType

if TYPE_CHECKING:
    from core.store.path import DbLocation

EXAMPLE_CONFIG = "openclaw.example.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    openclaw_config: Path = Path("openclaw.toml")
    # kept as written: a Path would turn "postgresql://u:p@h/db" into "postgresql:/u:p@h/db",
    # and the check (core.store.path) must see a URL to take it without echoing its password
    openclaw_db: str = "openclaw.db"
    openclaw_gateway_token: SecretStr | None = None
    openclaw_token_file: Path | None = None  # where serve keeps a generated gateway token
    telegram_bot_token: SecretStr | None = None
    telegram_api_base: str | None = None
    gemini_api_key: SecretStr | None = None
    deepseek_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    # every variable of the .env file(s), read once here: secret() runs on the event loop for
    # each Slack or webhook send, where a file read would block it
    _dotenv: Mapping[str, str | None] = PrivateAttr(default_factory=dict)

    def __init__(
        self,
        _env_file: DotenvType | None = ENV_FILE_SENTINEL,
        _env_file_encoding: str | None = None,
        **values: Any,
    ) -> None:
        super().__init__(_env_file=_env_file, _env_file_encoding=_env_file_encoding, **values)
        # pydantic-settings' own reader, so the same files (``_env_file``, None for none, the
        # model_config default) and encoding feed the fields and secret(); case-sensitive
        # because provider key names are looked up as written
        source = DotEnvSettingsSource(
            type(self),
            env_file=_env_file,
            env_file_encoding=_env_file_encoding,
            case_sensitive=True,
        )
        self._dotenv = source.env_vars

    @field_validator("openclaw_db", mode="before")
    @classmethod
    def _db_as_text(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def db_path(self) -> DbLocation:
        """The SQLite file or PostgreSQL URL OPENCLAW_DB names, checked (another URL, a
        directory, a missing folder are ConfigErrors naming OPENCLAW_DB and the fix)."""
        from core.store.path import check_db_location

        return check_db_location(self.openclaw_db)

    def config_path(self) -> Path:
        """The TOML file to load: OPENCLAW_CONFIG, else ./openclaw.toml, else the example."""
        if "OPENCLAW_CONFIG" in os.environ or self.openclaw_config.exists():
            return self.openclaw_config
        example = Path(EXAMPLE_CONFIG)
        return example if example.exists() else self.openclaw_config

    def token_file(self) -> Path:
        """The generated-token file: OPENCLAW_TOKEN_FILE, else beside the database (for a
        PostgreSQL URL: in the working directory)."""
        if self.openclaw_token_file is not None:
            return self.openclaw_token_file
        if "://" in self.openclaw_db:
            return Path("openclaw.gateway-token")
        return Path(self.openclaw_db).parent / "openclaw.gateway-token"

    def secret(self, env_name: str) -> SecretStr | None:
        """The value of the variable ``env_name`` from the environment or the ``.env`` read at
        construction (none with ``Settings(_env_file=None)``); None if unset or empty."""
        value = os.environ.get(env_name)
        if value is None:
            value = self._dotenv.get(env_name)
        return SecretStr(value) if value else None
