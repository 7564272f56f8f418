"""Supervises embedded llama.cpp models: start, health-wait, restart with backoff, stop.

The child is ``python -m core.embedded.server``; its provider (an ordinary
openai-completions adapter) is pointed at whatever port the child reports. While
the child is down the port refuses connections, so requests fail over through the
normal breaker path instead of waiting on a dead model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from core.config.models import EmbeddedConfig
from core.embedded.models import gguf_path
from core.errors import OpenClawError
from core.providers.base import Provider
from core.waits import within

log = logging.getLogger("openclaw.embedded")
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0  # a child that lived this long resets the backoff
_LISTENING = re.compile(r"^listening (http://127\.0\.0\.1:(\d+))")


class EmbeddedStartError(OpenClawError):
    """The model process did not come up; says why."""


@dataclass
class EmbeddedStatus:
    state: str = "stopped"  # starting | running | restarting | stopped | failed
    pid: int | None = None
    port: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_error: str = ""


class EmbeddedModel:
    """One supervised child process serving one GGUF model for one provider."""

    def __init__(self, name: str, cfg: EmbeddedConfig, provider: Provider) -> None:
        self.name = name
        self.cfg = cfg
        self.provider = provider
        self.gguf = gguf_path(cfg)
        self.status = EmbeddedStatus()
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None
        provider.base_url = "http://127.0.0.1:9/v1"  # nothing listens until the child is up

    def describe(self) -> dict[str, Any]:
        """For doctor and /api/status: file, size, process state, port."""
        size = self.gguf.stat().st_size if self.gguf.is_file() else None
        return {
            "provider": self.name,
            "file": str(self.gguf),
            "size_bytes": size,
            "ctx": self.cfg.ctx,
            "threads": self._threads(),
            **vars(self.status),
        }

    def _threads(self) -> int:
        return self.cfg.threads or os.cpu_count() or 1

    async def start(self) -> None:
        """Start the child and wait until it is healthy; then watch it."""
        self._stopping = False
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise())

    async def _spawn(self) -> None:
        self.status.state = "starting"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core.embedded.server",
            "--gguf",
            str(self.gguf),
            "--ctx",
            str(self.cfg.ctx),
            "--threads",
            str(self._threads()),
            "--parallel",
            str(self.cfg.parallel),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._proc = proc
        self.status.pid = proc.pid
        try:
            url = await within(self._listening(proc), self.cfg.start_timeout_s)
            await within(self._healthy(url), self.cfg.start_timeout_s)
        except (TimeoutError, EmbeddedStartError) as e:
            await self._terminate(proc)
            self.status.state = "failed"
            self.status.last_error = str(e) or "timed out starting"
            raise EmbeddedStartError(
                f"embedded model {self.name}: {self.status.last_error}"
            ) from None
        self.provider.base_url = f"{url}/v1"
        self.status.port = int(url.rsplit(":", 1)[1])
        self.status.state = "running"
        log.info(
            "embedded model %s serving %s on %s (pid %s)", self.name, self.gguf.name, url, proc.pid
        )

    async def _listening(self, proc: asyncio.subprocess.Process) -> str:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise EmbeddedStartError(
                    f"the model process exited ({await proc.wait()}) before serving"
                )
            m = _LISTENING.match(line.decode(errors="replace"))
            if m:
                return m.group(1)

    async def _healthy(self, url: str) -> None:
        async with aiohttp.ClientSession(trust_env=False) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/health") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def _supervise(self) -> None:
        attempt = 0
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = await proc.wait()
            if self._stopping:
                return
            self.status.last_exit = code
            self.status.state = "restarting"
            self.provider.base_url = "http://127.0.0.1:9/v1"
            if time.monotonic() - started > STABLE_AFTER_S:
                attempt = 0
            delay = RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]
            log.warning("embedded model %s exited (%s); restarting in %gs", self.name, code, delay)
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._spawn()
                self.status.restarts += 1
            except EmbeddedStartError as e:
                log.error("%s", e)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await within(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()

    def kill_for_test(self) -> None:
        """Kill the child abruptly (tests and drills of the supervisor)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def stop(self) -> None:
        """Stop watching and end the child."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._proc is not None:
            await self._terminate(self._proc)
        self.status.state = "stopped"
        self.status.port = None


def embedded_models(providers: dict[str, Provider]) -> dict[str, EmbeddedModel]:
    """One supervisor per provider configured with ``embedded``."""
    return {
        name: EmbeddedModel(name, p.config.embedded, p)
        for name, p in providers.items()
        if p.config.embedded is not None
    }
