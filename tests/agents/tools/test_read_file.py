"""read_file against real files and symlinks under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.agents.tools.base import ToolContext, ToolFailure
from core.agents.tools.read_file import ReadFile
from core.config.tools import ReadFileConfig

CTX = ToolContext(agent="tester", run_id=1)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A config folder with a root ``reports`` and a secret beside it."""
    (tmp_path / "reports" / "daily").mkdir(parents=True)
    (tmp_path / "reports" / "daily" / "today.txt").write_text("all green\n")
    (tmp_path / "secret.env").write_text("TOKEN=hunter2\n")
    return tmp_path


def tool(base: Path, roots: list[str] | None = None, max_bytes: int = 1024) -> ReadFile:
    return ReadFile(ReadFileConfig(roots=roots or ["reports"], max_bytes=max_bytes), base)


async def refused(t: ReadFile, path: str) -> str:
    with pytest.raises(ToolFailure) as e:
        await t({"path": path}, CTX)
    return str(e.value)


async def test_inside_root(base: Path) -> None:
    t = tool(base)
    for path in (
        "daily/today.txt",
        "reports/daily/today.txt",
        str(base / "reports/daily/today.txt"),
    ):
        result = await t({"path": path}, CTX)
        assert result.content == "all green\n"
        assert result.summary == "10 B"


async def test_dotdot_escape_refused(base: Path) -> None:
    message = await refused(tool(base), "../secret.env")
    assert message == "refused: ../secret.env is outside the folders read_file may read (reports)"
    assert "outside" in await refused(tool(base), "daily/../../secret.env")


async def test_absolute_path_outside_refused(base: Path) -> None:
    assert "outside" in await refused(tool(base), str(base / "secret.env"))
    assert "outside" in await refused(tool(base), "/etc/hostname")


async def test_symlink_escape_refused(base: Path) -> None:
    (base / "reports" / "leak.txt").symlink_to(base / "secret.env")
    (base / "reports" / "up").symlink_to(base)
    assert "outside" in await refused(tool(base), "leak.txt")
    assert "outside" in await refused(tool(base), "up/secret.env")


async def test_symlink_inside_root_followed(base: Path) -> None:
    (base / "reports" / "latest.txt").symlink_to(base / "reports" / "daily" / "today.txt")
    result = await tool(base)({"path": "latest.txt"}, CTX)
    assert result.content == "all green\n"


async def test_absent_file_refused(base: Path) -> None:
    message = await refused(tool(base), "daily/tomorrow.txt")
    assert message == "daily/tomorrow.txt does not exist under reports"


async def test_folder_and_fifo_refused(base: Path) -> None:
    assert "is a folder" in await refused(tool(base), "daily")
    os.mkfifo(base / "reports" / "pipe")
    assert "not a regular file" in await refused(tool(base), "pipe")


async def test_symlink_loop_refused(base: Path) -> None:
    (base / "reports" / "loop").symlink_to(base / "reports" / "loop")
    assert "does not exist" in await refused(tool(base), "loop")


async def test_no_existing_root(base: Path) -> None:
    message = await refused(tool(base, roots=["nowhere"]), "today.txt")
    assert "no folder may be read" in message


async def test_cap(base: Path) -> None:
    (base / "reports" / "big.log").write_bytes(b"y" * 3000)
    result = await tool(base, max_bytes=1024)({"path": "big.log"}, CTX)
    assert result.content == "y" * 1024 + "\n[cut at 1.0 KB of 3.0 KB]"
    assert result.summary == "1.0 KB of 3.0 KB (cut)"


async def test_invalid_utf8_replaced(base: Path) -> None:
    (base / "reports" / "bin.dat").write_bytes(b"ok \xff\xfe end")
    result = await tool(base)({"path": "bin.dat"}, CTX)
    assert result.content == "ok \ufffd\ufffd end"


async def test_absolute_root(base: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "note.md").write_text("# note")
    result = await tool(base, roots=[str(elsewhere)])({"path": "note.md"}, CTX)
    assert result.content == "# note"


def test_spec_and_target(base: Path) -> None:
    t = tool(base, roots=["reports", "logs"])
    assert "reports, logs" in t.spec.description
    assert t.spec.parameters["required"] == ["path"]
    assert t.target({"path": "daily/today.txt"}) == "daily/today.txt"
    assert len(t.target({"path": "x/" * 100})) == 60
