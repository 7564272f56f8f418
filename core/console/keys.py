"""The console's login cookie and CSRF tokens, derived from the gateway token.

The cookie never carries the token itself: it is ``expiry.nonce.mac`` with a MAC under
a key derived from the token, so a leaked cookie ends at its expiry (or at logout) and
never opens the API. The CSRF token is a second MAC over the same nonce: a page gets it
in its forms, a cross-site form cannot know it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

COOKIE = "openclaw_console"
SESSION_S = 12 * 3600  # a login lasts a working day
MAX_REVOKED = 10_000  # logouts remembered until their cookie would have expired anyway


class ConsoleKeys:
    """Issues and checks console sessions; pure apart from the nonce: callers pass ``now``."""

    def __init__(self, token: str) -> None:
        self._key = hashlib.sha256(b"openclaw-console-v1:" + token.encode()).digest()
        self._revoked: OrderedDict[str, int] = OrderedDict()  # nonce -> expiry

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float) -> str:
        """A new session cookie value, valid for ``SESSION_S`` from ``now``."""
        value = f"{int(now) + SESSION_S}.{secrets.token_urlsafe(16)}"
        return f"{value}.{self._mac(value)}"

    def check(self, cookie: str | None, now: float) -> str | None:
        """The session's nonce when ``cookie`` is valid, unexpired and not logged out."""
        expiry_text, _, rest = (cookie or "").partition(".")
        nonce, _, mac = rest.partition(".")
        if not expiry_text.isdigit() or not nonce or not mac:
            return None
        if not hmac.compare_digest(mac, self._mac(f"{expiry_text}.{nonce}")):
            return None
        if int(expiry_text) <= now or nonce in self._revoked:
            return None
        return nonce

    def csrf(self, nonce: str) -> str:
        """The CSRF token of the session ``nonce``."""
        return self._mac("csrf:" + nonce)

    def csrf_matches(self, nonce: str, given: str | None) -> bool:
        """True when ``given`` is this session's CSRF token (constant time)."""
        return hmac.compare_digest((given or "").encode(), self.csrf(nonce).encode())

    def revoke(self, cookie: str | None, now: float) -> None:
        """Log a session out: its cookie is refused from now on, even if replayed."""
        nonce = self.check(cookie, now)
        if nonce is None:
            return
        for old, expiry in list(self._revoked.items()):
            if expiry > now:
                break
            del self._revoked[old]
        if len(self._revoked) >= MAX_REVOKED:
            self._revoked.popitem(last=False)
        self._revoked[nonce] = int((cookie or "0").partition(".")[0])
