"""Owner ids (``host:pid:start``): a live pid counts only if it is the owner's process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from core.ops.owners import (
    _elapsed_to_start,
    alive_here,
    owner_alive,
    owner_id,
    process_started_at,
    ps_started_at,
    start_token,
)

HOST = socket.gethostname()


@pytest.fixture
def child() -> Iterator[tuple[subprocess.Popen[bytes], float, float]]:
    """A sleeping child process and the wall-clock window it was started in."""
    before = time.time()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    after = time.time()
    try:
        yield proc, before, after
    finally:
        proc.kill()
        proc.wait()


def test_a_process_start_time_is_read(
    child: tuple[subprocess.Popen[bytes], float, float],
) -> None:
    proc, before, after = child
    started = process_started_at(proc.pid)
    assert started is not None
    assert before - 1.5 <= started <= after + 1.5


@pytest.mark.skipif(shutil.which("ps") is None, reason="no ps on this machine")
def test_ps_gives_the_start_time_where_there_is_no_proc(
    child: tuple[subprocess.Popen[bytes], float, float],
) -> None:
    proc, before, after = child
    started = ps_started_at(proc.pid)
    assert started is not None
    assert before - 2.5 <= started <= after + 2.5  # ps counts whole seconds


def test_a_reused_pid_is_not_the_owner(
    child: tuple[subprocess.Popen[bytes], float, float],
) -> None:
    proc, before, _ = child
    recorded_then = int(before)
    assert alive_here(f"{HOST}:{proc.pid}:{recorded_then}")
    # the id was recorded an hour before this process existed: its pid was reused
    stale = f"{HOST}:{proc.pid}:{recorded_then - 3600}"
    assert not alive_here(stale)
    assert not owner_alive(stale, me=f"{HOST}:{os.getpid()}:{recorded_then}")
    # an id without a start time (older rows) falls back to the pid alone
    assert alive_here(f"{HOST}:{proc.pid}")


def test_dead_and_foreign_owners(child: tuple[subprocess.Popen[bytes], float, float]) -> None:
    proc, before, _ = child
    proc.kill()
    proc.wait()
    dead = f"{HOST}:{proc.pid}:{int(before)}"
    me = f"{HOST}:{os.getpid()}:{int(before)}"
    assert not alive_here(dead) and not owner_alive(dead, me)
    assert owner_alive("another-host:1:1", me)  # cannot be checked: never taken over
    assert not alive_here("another-host:1:1")
    assert owner_alive(me, me)
    assert not owner_alive(f"{HOST}:{os.getpid()}:1", me)  # our pid, an earlier process


@pytest.mark.parametrize(
    ("etime", "expected_age_s"),
    [("00:05", 5), ("01:02:03", 3723), ("2-00:00:10", 172810), ("", None), ("x:10", None)],
)
def test_elapsed_time_parsing(etime: str, expected_age_s: int | None) -> None:
    start = _elapsed_to_start(etime, 1_000_000.0)
    assert start == (None if expected_age_s is None else 1_000_000.0 - expected_age_s)


LINUX_PROC = os.path.exists("/proc/self/stat") and os.path.exists("/proc/sys/kernel/random/boot_id")


@pytest.mark.skipif(not LINUX_PROC, reason="the start token needs Linux's /proc")
def test_the_start_token_decides_even_when_the_wall_clock_was_stepped(
    child: tuple[subprocess.Popen[bytes], float, float],
) -> None:
    proc, before, _ = child
    token = start_token(proc.pid)
    assert token is not None
    # an NTP step forward after start makes the recorded time look early: the token,
    # counted in ticks after boot, still names the process
    assert alive_here(f"{HOST}:{proc.pid}:{int(before) - 3600}:{token}")
    # the same pid with another start (reused): not the owner, whatever the times say
    boot, ticks = token.rsplit("-", 1)
    assert not alive_here(f"{HOST}:{proc.pid}:{int(before)}:{boot}-{int(ticks) - 1}")


def test_this_process_id_names_itself() -> None:
    me = owner_id()
    host, pid, started, *token = me.split(":")
    assert (host, pid) == (HOST, str(os.getpid()))
    assert started.isdigit() and int(started) <= time.time()
    assert token == ([start_token(os.getpid())] if LINUX_PROC else [])
    assert alive_here(me) and owner_alive(me, me)
