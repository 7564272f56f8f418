"""`tune --apply`'s edit of the TOML file: each way a task can be written, its comments and
order kept; a change the loader refuses leaves the file as it was."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.config.edit import set_task_tier, write_validated
from core.errors import ConfigError
from tests.configs import pyramid

TEXT = """\
# tasks, by hand
[tasks]   # the map
chat = 0  # cheap first
plain = 1
inline = { tier = 1, trial = 0.1 }  # one line

[tasks.extract]   # json out
  tier = 1 # indented
json = true
trial = 0.2

[other]
x = 1
"""
NOTE = "openclaw tune 2026-12-03: raise\nthe evidence"


@pytest.mark.parametrize(
    ("task", "line"),
    [
        ("chat", "chat = 2  # cheap first"),
        ("plain", "plain = 2"),
        ("inline", "inline = { tier = 2  }  # one line"),
        ("extract", "  tier = 2  # indented"),
    ],
)
def test_each_form_changes_one_line_and_keeps_the_rest(task: str, line: str) -> None:
    out = set_task_tier(TEXT, task, 2, NOTE)
    lines = out.splitlines()
    i = lines.index(line)
    indent = line[: len(line) - len(line.lstrip())]
    assert lines[i - 2 : i] == [
        f"{indent}# openclaw tune 2026-12-03: raise",
        f"{indent}# the evidence",
    ]
    data = tomllib.loads(out)
    value = data["tasks"][task]
    assert (value if isinstance(value, int) else value["tier"]) == 2
    assert isinstance(value, int) or "trial" not in value
    # everything else as it was: the other lines, in their order
    rest = [x for x in lines if x != line and x not in lines[i - 2 : i]]
    old = [x for x in TEXT.splitlines() if not x.startswith(f"{task} =") and x != lines[i]]
    if task == "extract":
        old = [x for x in old if x not in ("  tier = 1 # indented", "trial = 0.2")]
    assert rest == old


def test_a_task_the_file_does_not_hold_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        set_task_tier(TEXT, "nope", 1, NOTE)
    with pytest.raises(KeyError):
        set_task_tier("[other]\nx = 1\n", "chat", 1, NOTE)


def _toml(tier: int) -> str:
    doc = pyramid()
    lines = ['# the config\n[routing]\ndefault_task = "chat"\n']
    for name, p in doc["providers"].items():
        lines.append(f'[providers.{name}]\napi = "{p["api"]}"\nbase_url = "{p["base_url"]}"\n')
    for t in doc["tiers"]:
        models = ", ".join(f'"{m}"' for m in t["models"])
        lines.append(f"[[tiers]]\nlevel = {t['level']}\nmodels = [{models}]\n")
    for ref in {m for t in doc["tiers"] for m in t["models"]}:
        lines.append(f'[models."{ref}"]\nmax_tokens = 512\n')
    lines.append(f"[tasks]\nchat = {tier}  # kept\n")
    return "\n".join(lines)


def test_write_validated_replaces_the_file_or_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.toml"
    path.write_text(_toml(0), encoding="utf-8")
    path.chmod(0o640)
    config = write_validated(path, set_task_tier(_toml(0), "chat", 1, NOTE))
    assert config.task_tier("chat") == 1
    assert "chat = 1  # kept" in path.read_text(encoding="utf-8")
    assert path.stat().st_mode & 0o777 == 0o640
    before = path.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tasks\.chat: tier 9 does not exist"):
        write_validated(path, set_task_tier(before, "chat", 9, NOTE))
    assert path.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["openclaw.toml"]  # no temp left
