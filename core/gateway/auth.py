"""Gateway authentication: the token, its constant-time check, and a failure limiter."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections import deque
from pathlib import Path

from core.config.settings import Settings
from core.errors import ConfigError, ConfigProblem

MAX_TRACKED_ADDRESSES = 10_000  # bound the limiter's memory under a scan


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; wildcard binds are not loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(header: str | None, token: str) -> bool:
    """Check an ``Authorization: Bearer …`` header in constant time (the scheme name is
    case-insensitive, as HTTP has it). Any bytes are a credential, matching or not."""
    scheme, _, given_text = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # aiohttp hands over bytes that are not UTF-8 as surrogates, which .encode() refuses
    given = given_text.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, token.encode())


def resolve_token(settings: Settings, host: str) -> tuple[str, str]:
    """The gateway token and where it came from.

    OPENCLAW_GATEWAY_TOKEN wins. Without it, a loopback gateway reads (or on first
    start generates) a token file readable only by its owner; a non-loopback one
    refuses to start. Blocking file I/O: call it from a thread.
    """
    if settings.openclaw_gateway_token is not None:
        value = settings.openclaw_gateway_token.get_secret_value().strip()
        if value:
            return value, "OPENCLAW_GATEWAY_TOKEN"
    if not is_loopback(host):
        raise ConfigError(
            [
                ConfigProblem(
                    "OPENCLAW_GATEWAY_TOKEN",
                    f"not set, and gateway.host = {host!r} is reachable from other machines",
                    "set OPENCLAW_GATEWAY_TOKEN (e.g. `openssl rand -hex 32`) or bind host = "
                    '"127.0.0.1"',
                )
            ]
        )
    path = settings.token_file()
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value, f"token file {path}"
    return _generate(path), f"token file {path} (generated now)"


def _generate(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


class FailureLimiter:
    """Counts failed logins per address; too many in the window → blocked for a while."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, addr: str, now: float) -> deque[float] | None:
        q = self._failures.get(addr)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[addr]
            return None
        return q

    def blocked_for(self, addr: str, now: float) -> float:
        """Seconds until ``addr`` may try again; 0 when it may now."""
        q = self._recent(addr, now)
        if q is None or len(q) < self.max_failures:
            return 0.0
        return max(0.0, q[-self.max_failures] + self.window_s - now)

    def fail(self, addr: str, now: float) -> None:
        """Record one failed attempt from ``addr``."""
        if addr not in self._failures and len(self._failures) >= MAX_TRACKED_ADDRESSES:
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(addr, deque(maxlen=self.max_failures)).append(now)
