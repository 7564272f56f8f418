"""What the CLI reads from its arguments: a careless value is a clear usage error (exit 2),
never a crash, a silent default or an empty prompt sent upstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.cli import main
from core.store.path import DbLocation
from tests.stores import location_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_location: DbLocation) -> list[str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    db = location_env(store_location)  # SQLite and PostgreSQL in turn
    return ["--config", str(ROOT / "openclaw.example.toml"), "--db", db]


def usage_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage: openclaw" in err
    return err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ask", ""], "the prompt is empty"),
        (["ask", "   "], "the prompt is empty"),
        (["ask", "--max-tokens", "0", "hi"], "--max-tokens must be a whole number from 1"),
        (["ask", "--max-tokens", "-5", "hi"], "--max-tokens must be a whole number from 1"),
        (["ask", "--max-tokens", "10" * 20, "hi"], "--max-tokens must be a whole number"),
        (["ask", "--tier", "²", "hi"], "tier must be a whole number from 0"),
        (["run-show", "99999999999999999999"], "run id must be a whole number from 1"),
        (["run-show", "0"], "run id must be a whole number from 1"),
        (["usage", "--since", "99999999999d"], "period '99999999999d' is too long"),
        (["usage", "--since", "soon"], "invalid period 'soon'"),
        (["runs", "--limit", "0"], "--limit must be a whole number from 1 to 500"),
        (["serve", "--port", "70000"], "--port must be a whole number from 0 to 65535"),
    ],
)
def test_bad_arguments_are_usage_errors(
    cli: list[str], capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert expected in usage_error([*cli, *args], capsys)


def test_runs_of_an_unknown_agent_says_so_with_did_you_mean(
    cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*cli, "runs", "nope"]) == 2
    assert "openclaw runs: no agent named 'nope'" in capsys.readouterr().err
    assert main([*cli, "runs", "morning-digets"]) == 2
    assert "did you mean morning-digest" in capsys.readouterr().err
    assert main([*cli, "runs", "morning-digest"]) == 0
    assert capsys.readouterr().out.strip() == "no runs of morning-digest yet"


def test_run_show_of_a_missing_run_in_range(
    cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*cli, "run-show", "9223372036854775807"]) == 2
    assert "no run 9223372036854775807" in capsys.readouterr().err
