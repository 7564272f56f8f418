"""Pieces shared by the config modules."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictModel(BaseModel):
    """Unknown keys are errors; loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Validators(StrictModel):
    """What an answer must pass beyond being non-empty; a failure escalates."""

    min_chars: int | None = Field(default=None, ge=1)
    json_: bool = Field(default=False, alias="json")
    json_keys: list[str] = Field(default_factory=list)
    regex: str | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from e
        return v

    @property
    def strict(self) -> bool:
        """True when more than non-emptiness is checked (streams must then be held)."""
        return self.min_chars is not None or self.json_ or bool(self.json_keys) or bool(self.regex)
