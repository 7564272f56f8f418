"""A demo, not a benchmark: three ``openclaw serve`` instances on one PostgreSQL database
(``make run-cluster``), on gateway ports 18789, 18790 and 18791, with the example config.

Uses ``OPENCLAW_DB`` when it is a ``postgresql://`` URL, else starts a throwaway local
PostgreSQL (``tests/pg.py``). Prints which instance leads, then runs until Ctrl-C, when it
stops the three by PID and the PostgreSQL it started, and removes its temp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import REPO_ROOT, child_env, exit_on_sigterm, gateway_command, stop, wait_for_line

from tests.pg import Cluster, start_cluster, stop_cluster

PORTS = (18789, 18790, 18791)
START_TIMEOUT_S = 120.0


def main() -> None:
    exit_on_sigterm()
    config = os.environ.get("OPENCLAW_CONFIG") or str(REPO_ROOT / "openclaw.example.toml")
    db = os.environ.get("OPENCLAW_DB", "")
    root = Path(tempfile.mkdtemp(prefix="openclaw-run-cluster-"))
    pg: Cluster | None = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if not db.startswith("postgresql://"):
            pg = start_cluster()
            db = pg.url(pg.new_database())
            print(f"PostgreSQL: throwaway cluster in {pg.root}", flush=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        for i, port in enumerate(PORTS):
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
            procs.append(proc)
            line = wait_for_line(proc, out, "Cluster:", deadline)
            print(f"pid {proc.pid} port {port}: {line}", flush=True)
        print("kill -9 <pid of leader> in another terminal to watch failover; Ctrl-C stops all")
        print(f"logs: {root}/serve*.out", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("an instance exited; stopping", flush=True)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        for proc in procs:
            stop(proc)
        if pg is not None:
            stop_cluster(pg)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
