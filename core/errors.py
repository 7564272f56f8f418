"""One error taxonomy for all of OpenClaw."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from core.types import Attempt

EX_CONFIG = 78  # sysexits.h: launchd does not restart-loop on it

ErrorKind = Literal[
    "refused",  # connection refused / DNS / other connect error
    "timeout",  # connect or read timeout
    "server_error",  # 5xx
    "rate_limited",  # 429
    "auth",  # 401 / 403
    "bad_request",  # 400 / 413 / 422: this request is refused (too long, over a limit)
    "not_found",  # 404 (or a 400 naming an unknown model): unknown model or wrong base_url
    "misconfigured",  # the provider's config cannot work (e.g. base_url is not a URL)
    "malformed",  # the body could not be parsed, or had the wrong content-type
    "stream_cut",  # the stream ended before its final event
    "unavailable",  # no key configured, or otherwise not usable
    # a 400 saying the model cannot do what this request asks (Ollama's "does not support
    # tools"): the next model may, and the model is fine for other requests
    "unsupported",
    # no money or quota left on this key (HTTP 402, insufficient_quota, a spent daily
    # quota): it stays spent for hours, so the key is out for hours, not seconds
    "billing",
]

# configuration faults: the model cannot answer anyone until the operator fixes it
FATAL_KINDS: frozenset[str] = frozenset({"auth", "not_found", "misconfigured"})


class OpenClawError(Exception):
    """Root of every error OpenClaw raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    key: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" + (f" — {self.fix}" if self.fix else "")


class ConfigError(OpenClawError):
    """The configuration is invalid. Each problem names the key and the fix."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ProviderError(OpenClawError):
    """A provider call failed. Adapters raise only this, from one place each."""

    def __init__(
        self,
        kind: ErrorKind,
        provider: str,
        model: str,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.kind: ErrorKind = kind
        self.provider = provider
        self.model = model
        self.detail = detail
        self.status = status
        self.retry_after_s = retry_after_s
        where = f"{provider}/{model}" if model else provider
        code = f" HTTP {status}" if status is not None else ""
        super().__init__(f"{where}: {kind}{code}" + (f": {detail}" if detail else ""))

    @property
    def outcome(self) -> Literal["unavailable", "fatal", "rejected", "skipped", "billing"]:
        """fatal = a config problem (next model, long cooldown); rejected = this request's
        own fault (no breaker; the request fails); skipped = the model cannot serve this
        request (no breaker; the next model gets it); billing = the key has no credit or
        quota (next key, then next model; the key is out for hours, admins alerted); else
        just unavailable."""
        if self.kind == "billing":
            return "billing"
        if self.kind in FATAL_KINDS:
            return "fatal"
        if self.kind == "unsupported":
            return "skipped"
        return "rejected" if self.kind == "bad_request" else "unavailable"


class RoutingError(OpenClawError):
    """The request names a task or tier the config does not have."""


class AllAttemptsFailed(OpenClawError):
    """Every candidate of the plan failed; carries each attempt."""

    def __init__(self, attempts: Sequence[Attempt], message: str = "all models failed") -> None:
        self.attempts = list(attempts)
        lines = [message + ":"] + [
            f"  tier {a.tier} {a.ref}: {a.outcome}" + (f" ({a.reason})" if a.reason else "")
            for a in self.attempts
        ]
        if not self.attempts:
            lines.append("  (no model could be tried)")
        super().__init__("\n".join(lines))


class RequestRejected(AllAttemptsFailed):
    """An upstream refused the request itself (HTTP 400/413/422: a prompt over the model's
    context, a parameter out of range). Nothing is wrong with the model, so no breaker
    opens and no pricier tier is tried: the caller must change the request."""

    def __init__(self, attempts: Sequence[Attempt], error: ProviderError) -> None:
        self.error = error
        super().__init__(attempts, f"{error.provider}/{error.model} refused the request")


class CannotServe(AllAttemptsFailed):
    """No model of the plan can serve what the request asks for (tools to a model with
    ``tools = false``, JSON output to one with ``json = "none"``, a prompt over every
    context window): the caller must change the request or the config, so the gateway
    answers 400. ``str()`` names each model and why."""

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        super().__init__(attempts, "no configured model can serve this request")


class StoreUnavailable(OpenClawError):
    """The store cannot take writes (read-only file, disk full, I/O error).

    Interfaces answer 503 and workers back off; nothing is sent upstream or to a
    channel while the record of it cannot be kept."""
