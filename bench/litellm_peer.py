"""A LiteLLM proxy to compare OpenClaw's gateway with, in its own venv, offline.

``ensure_venv()`` creates ``bench/.litellm-venv`` (git-ignored) and installs the pinned
``litellm[proxy]`` from PyPI into it once; ``start_proxy()`` runs ``litellm --config`` from a
YAML text on a free loopback port with a fresh master key and waits until it answers.

Settings, chosen to be fair to LiteLLM and to keep it off the network:

- one uvicorn worker (``--num_workers 1``), to match OpenClaw's single process; uvloop, as
  LiteLLM picks it itself;
- no database (no ``DATABASE_URL``), so no per-request spend logs; ``disable_spend_logs``
  and ``disable_error_logs`` anyway, as LiteLLM's production guide recommends;
- ``LITELLM_LOG=ERROR`` and ``set_verbose: false`` (the guide's logging advice);
- ``LITELLM_LOCAL_MODEL_COST_MAP=True``: the cost map comes from the package, not GitHub;
  no callbacks, no telemetry (the flag is a no-op in this version), proxies stripped.

Run it alone to install and smoke-test: ``.venv/bin/python bench/litellm_peer.py``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from _common import BENCH_DIR, HOST, UPSTREAM_MODEL, child_env, start_upstream, stop

# 1.107.0 is a compromised release; 1.108+ need litellm-proxy-extras versions that the
# package index here does not carry. 1.106.12 installs and runs offline.
PINNED_VERSION = "1.106.12"
VENV_DIR = BENCH_DIR / ".litellm-venv"
INSTALL_TIMEOUT_S = 900.0
READY_PATH = "/health/liveliness"
# loopback only: never through an HTTP proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Environment for the proxy: offline, quiet, no DB. Keys we set win over the parent's.
PROXY_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_MODE": "PRODUCTION",
    "DISABLE_ADMIN_UI": "True",
    "NO_DOCS": "True",
    "NO_REDOC": "True",
    "DATABASE_URL": "",
    "STORE_MODEL_IN_DB": "False",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class LiteLLMUnavailable(RuntimeError):
    """LiteLLM could not be installed or started; the message says why."""


def python() -> Path:
    """The venv's interpreter."""
    return VENV_DIR / "bin" / "python"


def installed_version() -> str | None:
    """The litellm version installed in the venv, or None."""
    if not python().exists():
        return None
    out = subprocess.run(
        [str(python()), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env({}),
    )
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def ensure_venv() -> Path:
    """Create the venv and install ``litellm[proxy]==PINNED_VERSION`` unless it is there.

    Idempotent; prints what it does. Raises LiteLLMUnavailable when it cannot.
    """
    if installed_version() == PINNED_VERSION:
        return VENV_DIR
    try:
        if not python().exists():
            print(f"litellm: creating venv {VENV_DIR}", flush=True)
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(VENV_DIR)], check=True, timeout=120)
        spec = f"litellm[proxy]=={PINNED_VERSION}"
        print(f"litellm: pip install {spec} into {VENV_DIR} (from PyPI)", flush=True)
        done = subprocess.run(
            [str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            env=child_env({}),
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise LiteLLMUnavailable(f"could not set up {VENV_DIR}: {e}") from None
    if done.returncode != 0:
        tail = [ln[:300] for ln in done.stderr.splitlines() if "is ignored" not in ln][-3:]
        raise LiteLLMUnavailable(f"pip install {spec} failed: " + " | ".join(tail))
    got = installed_version()
    if got != PINNED_VERSION:
        raise LiteLLMUnavailable(f"installed litellm is {got}, not {PINNED_VERSION}")
    return VENV_DIR


def openai_upstream_yaml(upstream_port: int, model: str = UPSTREAM_MODEL) -> str:
    """A config routing ``model`` to an OpenAI-compatible server on the loopback port."""
    return f"""\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: http://{HOST}:{upstream_port}/v1
      api_key: unused
      timeout: 30
litellm_settings:
  set_verbose: false
  json_logs: false
  request_timeout: 30
  telemetry: false
general_settings:
  disable_spend_logs: true
  disable_error_logs: true
"""


def free_port() -> int:
    """A port that was free on the loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with _OPENER.open(f"http://{HOST}:{port}{READY_PATH}", timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def proxy_command(config: Path, port: int) -> list[str]:
    """The ``litellm`` command line: one worker on the loopback port."""
    return [
        str(VENV_DIR / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


def start_proxy(
    config_yaml: str, workdir: Path, deadline: float, *, master_key: str | None = None
) -> tuple[subprocess.Popen[bytes], int, str]:
    """Start a LiteLLM proxy on ``config_yaml``; the process, its port and its master key.

    The config and the proxy's log (``litellm.log``) go to ``workdir``. Waits until
    ``/health/liveliness`` answers or ``deadline`` (monotonic) passes. Stop it with
    ``_common.stop``. Raises LiteLLMUnavailable (with the log's tail) when it won't start.
    """
    ensure_venv()
    key = master_key or "sk-" + secrets.token_urlsafe(24)
    config = workdir / "litellm.yaml"
    config.write_text(config_yaml)
    log = workdir / "litellm.log"
    port = free_port()
    env = child_env({**PROXY_ENV, "LITELLM_MASTER_KEY": key})
    env.pop("DATABASE_URL")  # an empty value is not the same as none
    with log.open("wb") as out:
        proc = subprocess.Popen(
            proxy_command(config, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
        )
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _answers(port):
            return proc, port, key
        time.sleep(0.2)
    code = stop(proc)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    why = f"exited with {code}" if proc.returncode is not None else "did not answer in time"
    raise LiteLLMUnavailable(f"litellm proxy {why}; log tail:\n{tail}")


def _smoke() -> int:
    """Install, start against the loopback upstream, send one request, stop."""
    import json

    deadline = time.monotonic() + 300
    tmp = Path(tempfile.mkdtemp(prefix="openclaw-litellm-"))
    upstream = proxy = None
    try:
        upstream, up_port = start_upstream(tmp, deadline)
        t0 = time.monotonic()
        proxy, port, key = start_proxy(openai_upstream_yaml(up_port), tmp, deadline)
        print(f"litellm {PINNED_VERSION} ready on :{port} in {time.monotonic() - t0:.1f}s")
        body = json.dumps(
            {"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": "ping"}]}
        ).encode()
        req = urllib.request.Request(
            f"http://{HOST}:{port}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        with _OPENER.open(req, timeout=30) as r:
            print(r.status, r.read()[:300].decode())
    finally:
        stop(proxy)
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.pop("DATABASE_URL", None)
    sys.exit(_smoke())
