"""A demo, not a benchmark: three ``openclaw serve`` instances on one PostgreSQL database
(``make run-cluster``), on gateway ports 18789, 18790 and 18791, with the example config.

Uses ``OPENCLAW_DB`` when it is a ``postgresql://`` URL, else starts a throwaway local
PostgreSQL (``tests/pg.py``). Prints the PIDs and which instance leads, and runs while any
instance lives: ``kill -9`` the leader and it prints that instance's exit and, once a
follower took over, the new leader (read from each one's ``/api/status``). Ctrl-C stops
the instances by PID and the throwaway PostgreSQL it started (if it started one); the
instances' logs stay, in the folder printed at start and at exit.

    .venv/bin/python bench/run_cluster.py [--ports 18789,18790,18791] [--poll-s 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    HOST,
    REPO_ROOT,
    child_env,
    exit_on_sigterm,
    gateway_command,
    stop,
    wait_for_line,
)

from tests.pg import Cluster, start_cluster, stop_cluster

PORTS = (18789, 18790, 18791)
START_TIMEOUT_S = 120.0
POLL_S = 0.5
STATUS_TIMEOUT_S = 2.0


@dataclass
class Instance:
    """One ``serve`` process this script started, on its gateway port."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def name(self) -> str:
        return f"pid {self.proc.pid} port {self.port}"


def exit_reason(returncode: int) -> str:
    """``exit code N``, or the signal that ended the process (``killed by SIGKILL``)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def gateway_token() -> str | None:
    """The token the instances use: ``OPENCLAW_GATEWAY_TOKEN``, else the token file serve
    generates on a PostgreSQL URL (``OPENCLAW_TOKEN_FILE``, else ./openclaw.gateway-token
    in the working directory, the repository here)."""
    token = os.environ.get("OPENCLAW_GATEWAY_TOKEN", "").strip()
    if token:
        return token
    path = Path(os.environ.get("OPENCLAW_TOKEN_FILE") or REPO_ROOT / "openclaw.gateway-token")
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def cluster_role(port: int, token: str | None) -> dict[str, object] | None:
    """The ``cluster`` part of ``GET /api/status`` on ``port``; None when it does not
    answer (dead, starting, the database unreachable for too long)."""
    req = urllib.request.Request(f"http://{HOST}:{port}/api/status")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with opener.open(req, timeout=STATUS_TIMEOUT_S) as resp:
            part = json.loads(resp.read()).get("cluster")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return part if isinstance(part, dict) else None


def leader_line(instances: Sequence[Instance], token: str | None) -> str:
    """Who leads, as the live instances' ``/api/status`` say."""
    live = [i for i in instances if i.proc.poll() is None]
    leading = [i.name for i in live if (cluster_role(i.port, token) or {}).get("role") == "leader"]
    if len(leading) == 1:
        return f"leader: {leading[0]}"
    if leading:
        return f"leaders (for the moment): {', '.join(leading)}"
    return f"no leader yet ({len(live)} instance(s) alive)"


def supervise(
    instances: Sequence[Instance],
    token: str | None,
    poll_s: float = POLL_S,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    """Until every instance exited: say when one exits (PID, exit code or signal) and,
    whenever it changes, who leads. Ctrl-C (KeyboardInterrupt) ends it too."""
    exited: set[int] = set()
    last = ""
    while True:
        for inst in instances:
            rc = inst.proc.poll()
            if rc is not None and inst.proc.pid not in exited:
                exited.add(inst.proc.pid)
                say(f"instance {inst.name} exited: {exit_reason(rc)} (log {inst.log})")
        if len(exited) == len(instances):
            say("every instance exited")
            return
        line = leader_line(instances, token)
        if line != last:
            say(line)
            last = line
        time.sleep(poll_s)


def parse_ports(raw: str) -> tuple[int, ...]:
    ports = tuple(int(p) for p in raw.split(",") if p.strip())
    if not ports:
        raise argparse.ArgumentTypeError("at least one port")
    return ports


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ports", type=parse_ports, default=PORTS, help="comma-separated")
    p.add_argument("--poll-s", type=float, default=POLL_S, help="how often to ask who leads")
    args = p.parse_args()
    exit_on_sigterm()
    config = os.environ.get("OPENCLAW_CONFIG") or str(REPO_ROOT / "openclaw.example.toml")
    db = os.environ.get("OPENCLAW_DB", "")
    root = Path(tempfile.mkdtemp(prefix="openclaw-run-cluster-"))
    pg: Cluster | None = None
    instances: list[Instance] = []
    try:
        if not db.startswith("postgresql://"):
            pg = start_cluster()
            db = pg.url(pg.new_database())
            print(f"PostgreSQL: throwaway cluster in {pg.root}", flush=True)
        print(f"logs: {root}/serve*.out", flush=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        for i, port in enumerate(args.ports):
            out = root / f"serve{i}.out"
            with out.open("wb") as fh:
                proc = subprocess.Popen(
                    [*gateway_command()[:2], "--port", str(port)],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    cwd=REPO_ROOT,
                    env=child_env(
                        {"OPENCLAW_CONFIG": str(Path(config).resolve()), "OPENCLAW_DB": db}
                    ),
                )
            instances.append(Instance(proc, port, out))
            line = wait_for_line(proc, out, "Cluster:", deadline)
            print(f"pid {proc.pid} port {port}: {line}", flush=True)
        print("kill -9 <pid of leader> in another terminal to watch failover; Ctrl-C stops all")
        supervise(instances, gateway_token(), args.poll_s)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        for inst in instances:
            stop(inst.proc)
        if pg is not None:
            stop_cluster(pg)
            print(f"PostgreSQL: throwaway cluster stopped, {pg.root} removed", flush=True)
        print(f"logs kept in {root}", flush=True)


if __name__ == "__main__":
    main()
