"""The embedded model's child process: llama.cpp's HTTP server on a free loopback port.

    python -m core.embedded.server --gguf PATH [--ctx N] [--threads N] [--parallel N]

Prints ``listening http://127.0.0.1:PORT`` once serving, then runs until SIGTERM or
until its stdin closes — the parent holds the other end, so the child never outlives it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def main() -> int:
    """Serve until told to stop."""
    p = argparse.ArgumentParser(prog="openclaw-embedded")
    p.add_argument("--gguf", required=True)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--temperature", type=float, default=0.0)
    args = p.parse_args()

    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.gguf
    params.n_ctx = args.ctx * args.parallel  # llama.cpp splits the context among slots
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.sampling.temp = args.temperature
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # any free port; we report the one we got
    params.ui = False
    server = xlc.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    # nobody reads stdout after that line: a full pipe must never block the server
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent is gone
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
