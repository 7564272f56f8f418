"""``make run-cluster`` (bench/run_cluster.py) as a newcomer uses it: three instances on a
throwaway PostgreSQL it starts itself; ``kill -9`` of the leader leaves the other two
running and the script says who exited and who leads now; Ctrl-C stops them and the
PostgreSQL, and the logs stay where it said. Loopback ports only, bounded in time."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.pg import REQUIRE_ENV, find_bin_dir

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "run_cluster.py"
TOKEN = "oc-gw-run-cluster-test"
STEP_S = 60.0  # each expected line: generous on a loaded 2-core machine

CONFIG = """
[gateway]
port = 0

[serve]
shutdown_grace_s = 0.5

[cluster]
heartbeat_s = 0.2
leader_timeout_s = 2.0
recover_every_s = 0.5

[routing]
default_task = "chat"
probe_interval_s = 0

[providers.local]
api = "ollama"
base_url = "{ollama}"

[models."local/m"]

[[tiers]]
level = 0
models = ["local/m"]

[tasks]
chat = 0
"""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Output:
    """The script's stdout, line by line, read on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, pattern: str, after: int = 0) -> tuple[int, re.Match[str]]:
        """The first line from index ``after`` on matching ``pattern``, and its index."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + STEP_S
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    m = rx.search(self.lines[i])
                    if m:
                        return i, m
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))
                self.cond.wait(left)


@pytest.mark.timeout(240)
def test_kill_9_of_the_leader_leaves_the_others_and_a_new_leader_is_reported(
    closed_port: int, tmp_path: Path
) -> None:
    if find_bin_dir() is None and os.environ.get(REQUIRE_ENV) != "1":
        pytest.skip("no PostgreSQL binaries")
    cfg = tmp_path / "openclaw.toml"
    # no model answers (a refused port): the cluster part needs none
    cfg.write_text(CONFIG.format(ollama=f"http://127.0.0.1:{closed_port}"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    env |= {"OPENCLAW_CONFIG": str(cfg), "OPENCLAW_GATEWAY_TOKEN": TOKEN}
    ports = free_ports(3)
    argv = [sys.executable, str(SCRIPT), "--ports", ",".join(map(str, ports)), "--poll-s", "0.2"]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = Output(proc)
    logs: Path | None = None
    try:
        _, m = out.wait_for(r"^PostgreSQL: throwaway cluster in (\S+)")
        pg_root = Path(m[1])
        _, m = out.wait_for(r"^logs: (\S+)/serve\*\.out")
        logs = Path(m[1])
        i, m = out.wait_for(r"^leader: pid (\d+) port (\d+)$")
        leader = int(m[1])
        assert int(m[2]) in ports
        os.kill(leader, signal.SIGKILL)  # the script's child, started by this test
        i, _ = out.wait_for(rf"^instance pid {leader} port \d+ exited: killed by SIGKILL", i)
        _, m = out.wait_for(r"^leader: pid (\d+) port (\d+)$", i)
        assert int(m[1]) != leader
        assert proc.poll() is None, "the script stopped when one instance died"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(STEP_S) == 0
        out.thread.join(5)  # the last lines
        text = "\n".join(out.lines)
        assert "stopping" in text
        assert f"logs kept in {logs}" in text
        assert sorted(p.name for p in logs.glob("serve*.out")) == [
            "serve0.out",
            "serve1.out",
            "serve2.out",
        ]
        assert not pg_root.exists(), "the throwaway PostgreSQL was left behind"
        started = [int(pid) for pid in re.findall(r"^pid (\d+) port \d+: Cluster:", text, re.M)]
        assert len(started) == 3 and leader in started
        for pid in started:  # every instance it started is gone (and reaped)
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STEP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.thread.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        if logs is not None:
            shutil.rmtree(logs, ignore_errors=True)
