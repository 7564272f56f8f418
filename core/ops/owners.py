"""Which process owns a claimed row: an id that names this process, and whether one is alive.

Runs, outbox claims and pending ledger rows carry their owner's id, so a restarted process
can tell its dead predecessor's rows from a live sibling's, even when a pid is reused.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable

# which of these owners are alive: this host's process table (SQLite), or the database's
# advisory locks (core.cluster.pg, valid across hosts)
Liveness = Callable[[Iterable[str]], Awaitable[set[str]]]

# an owner id records the time just after its process started, to the second
START_SLACK_S = 2.0


def owner_id() -> str:
    """This process's owner id for runs and claims: ``host:pid:start[:token]``.

    ``start`` is the Unix time, ``token`` (Linux) the boot id and the process's start in
    clock ticks after boot: unlike the wall clock, they do not move when NTP steps it.
    """
    token = start_token(os.getpid())
    base = f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"
    return f"{base}:{token}" if token else base


def _start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks after boot (Linux's /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # the command name in parentheses may hold spaces: count fields after it
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def start_token(pid: int) -> str | None:
    """``bootid-ticks`` for a process (Linux), None where /proc cannot tell."""
    ticks = _start_ticks(pid)
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
    except OSError:
        return None
    return None if ticks is None else f"{boot}-{ticks}"


def alive_here(owner: str) -> bool:
    """Is the owner a live process on this host? (Other hosts' cannot be checked: False.)

    A live pid is the owner's only if it is the same process: the same boot id and start
    ticks where the id has them (Linux), else a process started by the time the id
    recorded. After a reboot or a long uptime the pid may belong to another program.
    """
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    started_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if token:
        live = start_token(pid)
        if live is not None:
            return live == token
    if not started_text.isdigit():
        return True  # no start time to compare with: assume the owner
    started = process_started_at(pid)
    return started is None or started <= int(started_text) + START_SLACK_S


def owner_alive(owner: str, me: str) -> bool:
    """Is the process named by an owner id (``host:pid:start``) still running here?

    ``me`` is this process's own id: the same pid with another start time is an earlier
    process whose pid was reused. Another host's process cannot be checked: it counts
    as alive, so its runs are never taken from under it.
    """
    if owner == me:
        return True
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True
    if rest.partition(":")[0] == str(os.getpid()):
        return False
    return alive_here(owner)


def host_liveness(me: str) -> Liveness:
    """:func:`owner_alive` for many owners, off the event loop (on macOS it runs ps)."""

    async def alive(owners: Iterable[str]) -> set[str]:
        wanted = set(owners)
        return await asyncio.to_thread(lambda: {o for o in wanted if owner_alive(o, me)})

    return alive


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (Unix time), or None where that cannot be told."""
    ticks = _start_ticks(pid)
    if ticks is None:
        return ps_started_at(pid)
    try:  # Linux: ticks after boot, and the boot time
        with open("/proc/stat", "rb") as f:
            btime = next(int(ln.split()[1]) for ln in f if ln.startswith(b"btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return ps_started_at(pid)
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def ps_started_at(pid: int) -> float | None:
    """``process_started_at`` where there is no /proc (macOS): from ps's elapsed time."""
    try:  # [[dd-]hh:]mm:ss
        out = subprocess.run(
            ["ps", "-o", "etime=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return _elapsed_to_start(out, time.time())


def _elapsed_to_start(etime: str, now: float) -> float | None:
    days, _, clock = etime.rpartition("-")
    parts = clock.split(":")
    if not etime or not all(p.isdigit() for p in parts) or (days and not days.isdigit()):
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return now - seconds - int(days or 0) * 86400
