"""Validators: a failed one makes the answer unusable."""

from __future__ import annotations

import pytest

from core.config.models import TaskConfig
from core.engine.validators import validate


@pytest.mark.parametrize(
    ("content", "rules", "verdict"),
    [
        ("hello", {}, None),
        ("", {}, "empty answer"),
        ("  \n ", {}, "empty answer"),
        ("short", {"min_chars": 10}, "shorter than min_chars=10"),
        ("long enough text", {"min_chars": 10}, None),
        ('{"a": 1}', {"json": True}, None),
        ('```json\n{"a": 1}\n```', {"json": True}, None),
        ("not json", {"json": True}, "not valid JSON"),
        ('{"a": 1}', {"json": True, "json_keys": ["a", "b"]}, "lacks required keys: b"),
        ("[1, 2]", {"json_keys": ["a"]}, "lacks required keys: a"),
        ("Total: 42", {"regex": r"Total: \d+"}, None),
        ("Total: n/a", {"regex": r"Total: \d+"}, "does not match regex"),
    ],
)
def test_validate(content: str, rules: dict[str, object], verdict: str | None) -> None:
    result = validate(content, TaskConfig.model_validate({"tier": 0, **rules}))
    if verdict is None:
        assert result is None
    else:
        assert result is not None and verdict in result
