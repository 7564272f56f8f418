"""Circuit breakers per (provider, model) and per API key, so an outage costs its timeout once.

A breaker opens after ``failure_threshold`` consecutive failures. Cooldowns grow
with each re-opening (30 s → 1 min → 5 min by default) and honour ``Retry-After``;
a fatal error (bad key, unknown model) opens it for ``fatal_cooldown_s``. When the
cooldown ends, one request is let through as a probe (half-open); its success
closes the breaker, its failure opens it again for longer.

A key has a breaker of its own (named by its variable, never its value): a billing
answer (no credit, no quota) opens it for ``billing_cooldown_s``, doubling with each
consecutive billing answer up to 24 h, for every model of the provider that sends the
key; so does a 429 when the provider has several keys (then the next key is tried,
not the next model). A model is out of routing when all its provider's keys are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.config.models import RoutingConfig
from core.engine.routing import HealthSnapshot
from core.errors import ProviderError

State = Literal["closed", "open", "half_open", "unavailable"]

# a model whose breaker opens again soon after a success (a flapping upstream) alerts at
# most this often: one alert per episode, and episodes closer than this are one
BREAKER_ALERT_QUIET_S = 600.0

# the longest a billing answer keeps a key out: a daily quota resets within it, and a key
# topped up meanwhile is found again by the probe that follows
BILLING_MAX_COOLDOWN_S = 86400.0


@dataclass(slots=True)
class Breaker:
    failures: int = 0  # consecutive
    level: int = 0  # how many times it opened in a row
    open_until: float = 0.0
    probing: bool = False
    unavailable: str = ""  # permanent reason (no key): not a cooldown
    last_error: str = ""
    last_outcome: str = ""
    last_latency_ms: float | None = None
    last_change: float = 0.0
    billing: int = 0  # consecutive billing answers: the cooldown doubles with each
    alerted: bool = False  # the admins heard of this billing episode already
    open_alerted: bool = False  # the admins heard that it opened (this episode)
    open_alert_at: float | None = None  # when they last did

    def state(self, now: float) -> State:
        if self.unavailable:
            return "unavailable"
        if self.open_until == 0.0:
            return "closed"
        return "open" if now < self.open_until else "half_open"


class HealthBoard:
    """The live health of every model; turns into a routing HealthSnapshot."""

    def __init__(self, routing: RoutingConfig) -> None:
        self._cfg = routing
        self._breakers: dict[str, Breaker] = {}
        self._keys: dict[str, tuple[str, ...]] = {}  # provider -> its set keys' variables
        self._key_breakers: dict[tuple[str, str], Breaker] = {}  # (provider, variable)
        self._seen: set[str] = set()  # model refs routing may ask about (see watch)
        self._unset: dict[str, tuple[str, ...]] = {}  # provider -> key variables not set

    def _get(self, ref: str) -> Breaker:
        return self._breakers.setdefault(ref, Breaker())

    # -- keys ------------------------------------------------------------------------

    def set_keys(self, provider: str, envs: tuple[str, ...]) -> None:
        """The keys ``provider`` may send, by variable name, in the order to try them."""
        self._keys[provider] = envs
        for env in envs:
            self._key_breakers.setdefault((provider, env), Breaker())

    def set_unset_keys(self, provider: str, envs: tuple[str, ...]) -> None:
        """Keys of ``provider`` whose variable is not set: never sent, listed in the status."""
        self._unset[provider] = envs

    def keys(self, provider: str) -> tuple[str, ...]:
        """The keys of ``provider`` (its variable names; empty when it sends none)."""
        return self._keys.get(provider, ())

    def pick_key(
        self, provider: str, now: float, *, prefer: str | None = None, tried: tuple[str, ...] = ()
    ) -> str | None:
        """The key the next call of ``provider`` sends: ``prefer`` (the one that last worked
        for this run: its prompt cache is warm) while it may be called, else the first in
        order not ``tried`` in this request that may be; failing those, the first one that
        is only cooling down (the plan tries a cooling model when nothing else is left).
        None when it has no key, or every key is out (billing) or tried."""
        envs = [e for e in self.keys(provider) if e not in tried]
        if prefer in envs:
            envs.remove(prefer)
            envs.insert(0, prefer)
        for env in envs:
            if _why_blocked(self._key_breakers[(provider, env)], now) is None:
                return env
        for env in envs:
            why = _why_blocked(self._key_breakers[(provider, env)], now)
            if why is not None and why[1]:
                return env
        return None

    def _key(self, ref: str, key: str | None) -> Breaker | None:
        provider = ref.split("/", 1)[0]
        if not key or (provider, key) not in self._key_breakers:
            return None
        return self._key_breakers[(provider, key)]

    def _keys_blocked(self, ref: str, now: float) -> tuple[str, bool] | None:
        """Why every key of ``ref``'s provider keeps it from being called, or None."""
        provider = ref.split("/", 1)[0]
        envs = self._keys.get(provider, ())
        if not envs:
            return None
        whys = [(env, _why_blocked(self._key_breakers[(provider, env)], now)) for env in envs]
        if any(why is None for _, why in whys):
            return None
        text = "; ".join(f"key {env} {why[0]}" for env, why in whys if why is not None)
        return text, any(why is not None and why[1] for _, why in whys)

    def billing_alert_due(self, ref: str, key: str | None, drill: bool = False) -> bool:
        """True once per billing episode of a key (of the model, for a provider without a
        key, or a drill's fault: see :meth:`failure`): the admins get one alert, not one per
        request that hits the spent key. A success ends the episode."""
        b = (None if drill else self._key(ref, key)) or self._get(ref)
        if b.alerted or not b.billing:
            return False
        b.alerted = True
        return True

    def open_alert_due(self, ref: str, now: float) -> bool:
        """True once per episode of ``ref``'s breaker opening: the admins get one alert,
        not one per re-opening while the model stays down. A success ends the episode;
        an episode within ``BREAKER_ALERT_QUIET_S`` of the last alert sends none (a
        flapping upstream would alert on every flap)."""
        b = self._get(ref)
        if b.open_alerted or b.open_until == 0.0:
            return False
        b.open_alerted = True
        if b.open_alert_at is not None and now - b.open_alert_at < BREAKER_ALERT_QUIET_S:
            return False
        b.open_alert_at = now
        return True

    def drill_over(self, ref: str, now: float) -> None:
        """A failure drill of ``ref`` ended: what its faults opened says nothing of the
        real model. An open breaker is half-open now (the next request probes the model),
        and a drilled billing answer's hours-long cooldown goes with it."""
        b = self._breakers.get(ref)
        if b is None:
            return
        b.billing = 0
        if b.open_until > now:
            b.open_until = now

    def state(self, ref: str, now: float) -> State:
        """The breaker state of one model (closed if never touched)."""
        b = self._breakers.get(ref)
        return b.state(now) if b else "closed"

    def last_outcome(self, ref: str) -> str:
        """The outcome of the last call or probe ("" if none)."""
        b = self._breakers.get(ref)
        return b.last_outcome if b else ""

    def mark_unavailable(self, ref: str, reason: str) -> None:
        """Take a model out of routing for good (e.g. its API key is not set)."""
        self._get(ref).unavailable = reason

    def snapshot(self, now: float) -> HealthSnapshot:
        """What the planner must skip at ``now``."""
        blocked: dict[str, str] = {}
        cooling: set[str] = set()
        refs = set(self._breakers)
        # a model no call touched yet is still out when every key of its provider is: the
        # planner asks about each candidate by ref, so those of keyed providers are listed
        keyed = {r for r in self._seen if r.split("/", 1)[0] in self._keys}
        for ref in sorted(refs | keyed):
            why = self._why(ref, now)
            if why is not None:
                blocked[ref], cools = why
                if cools:
                    cooling.add(ref)
        return HealthSnapshot(blocked, frozenset(cooling))

    def blocked(self, ref: str, now: float) -> str | None:
        """Why ``ref`` must not be called at ``now`` (as in :meth:`snapshot`), or None."""
        why = self._why(ref, now)
        return why[0] if why is not None else None

    def _why(self, ref: str, now: float) -> tuple[str, bool] | None:
        b = self._breakers.get(ref)
        why = _why_blocked(b, now) if b is not None else None
        return why if why is not None else self._keys_blocked(ref, now)

    def watch(self, refs: list[str]) -> None:
        """The models routing may ask about (those of keyed providers are in the snapshot
        when all their keys are out, touched by a call or not)."""
        self._seen.update(refs)

    def begin(self, ref: str, now: float, key: str | None = None) -> None:
        """Note that a call to ``ref`` (sending ``key``) starts; a half-open breaker lets
        only this one through."""
        for b in (self._get(ref), self._key(ref, key)):
            if b is not None and b.state(now) == "half_open":
                b.probing = True

    def abandon(self, ref: str, key: str | None = None) -> None:
        """A call ended without a verdict (cancelled): let another request probe."""
        self._get(ref).probing = False
        kb = self._key(ref, key)
        if kb is not None:
            kb.probing = False

    def success(self, ref: str, latency_ms: float, now: float, key: str | None = None) -> None:
        """The model answered (even if the answer was unusable: the provider works), and so
        did the key it was sent with: that ends the key's billing episode too."""
        for b in (self._get(ref), self._key(ref, key)):
            if b is None:
                continue
            b.failures = 0
            b.level = 0
            b.billing = 0
            b.alerted = False
            b.open_alerted = False
            b.open_until = 0.0
            b.probing = False
            b.last_outcome = "ok"
            b.last_latency_ms = latency_ms
            b.last_change = now

    def failure(
        self,
        ref: str,
        error: ProviderError,
        latency_ms: float,
        now: float,
        key: str | None = None,
        drill: bool = False,
    ) -> float:
        """Count a failure of a call to ``ref`` sending ``key``; returns the cooldown started
        (0 if the breaker stays closed). A billing answer counts against the key (every
        model sending it is out), and so does a 429 when the provider has other keys to
        try; everything else against the model. A failure drill's fault (``drill``) is of
        the model alone: the key was never sent, and its other models are not drilled."""
        kb = None if drill else self._key(ref, key)
        several = kb is not None and len(self._keys.get(ref.split("/", 1)[0], ())) > 1
        keyed = error.kind == "billing" or (error.kind == "rate_limited" and several)
        if kb is not None and keyed:
            return self._fail(kb, error, latency_ms, now)
        return self._fail(self._get(ref), error, latency_ms, now)

    def _fail(self, b: Breaker, error: ProviderError, latency_ms: float, now: float) -> float:
        was_probe = b.probing or b.state(now) == "half_open"
        b.probing = False
        b.failures += 1
        b.last_error = f"{error.kind}" + (f" HTTP {error.status}" if error.status else "")
        b.last_outcome = error.outcome
        b.last_latency_ms = latency_ms
        b.last_change = now
        retry_after = error.retry_after_s or 0.0
        if error.kind == "billing":
            # opens at once, whatever the threshold: the next call would only be refused too
            cooldown = self._cfg.billing_cooldown_s * 2.0 ** min(b.billing, 16)
            b.billing += 1
            b.open_until = now + min(max(cooldown, retry_after), BILLING_MAX_COOLDOWN_S)
            return b.open_until - now
        fatal = error.outcome == "fatal"
        if not (fatal or was_probe or retry_after or b.failures >= self._cfg.failure_threshold):
            return 0.0
        if fatal:
            cooldown = self._cfg.fatal_cooldown_s
        else:
            steps = self._cfg.cooldowns_s
            cooldown = steps[min(b.level, len(steps) - 1)]
            b.level += 1
        cooldown = max(cooldown, retry_after)
        b.open_until = now + cooldown
        return cooldown

    def status(self, now: float) -> list[dict[str, Any]]:
        """One row per known model, for `doctor`, `/api/status` and the bot. A model whose
        own breaker is closed but whose provider's keys are all out shows as open, with
        why, until the first key is back."""
        rows = []
        out = {r for r in self._seen if self._keys_blocked(r, now) is not None}
        for ref in sorted(set(self._breakers) | out):
            b = self._breakers.get(ref) or Breaker()
            row = {
                "model": ref,
                "state": b.state(now),
                "cooldown_left_s": round(max(0.0, b.open_until - now), 1),
                "consecutive_failures": b.failures,
                "last_outcome": b.last_outcome,
                "last_error": b.unavailable or b.last_error,
                "last_latency_ms": b.last_latency_ms,
            }
            keys = self._keys_blocked(ref, now) if row["state"] == "closed" else None
            if keys is not None:
                provider = ref.split("/", 1)[0]
                ends = [self._key_breakers[(provider, e)].open_until for e in self._keys[provider]]
                back = min(ends)
                row |= {"state": "open", "last_error": keys[0]}
                row["cooldown_left_s"] = round(max(0.0, back - now), 1)
            rows.append(row)
        return rows

    def key_status(self, now: float) -> list[dict[str, Any]]:
        """One row per key of each provider that sends one: its variable's NAME (never the
        value), its breaker, and the last error, for `/api/status` and `openclaw status`."""
        rows = []
        for (provider, env), b in self._key_breakers.items():
            rows.append(
                {
                    "provider": provider,
                    "key": env,
                    "state": b.state(now),
                    "cooldown_left_s": round(max(0.0, b.open_until - now), 1),
                    "consecutive_failures": b.failures,
                    "last_outcome": b.last_outcome,
                    "last_error": b.last_error,
                }
            )
        for provider, envs in self._unset.items():
            rows += [_unset_row(provider, env) for env in envs]
        return rows


def _unset_row(provider: str, env: str) -> dict[str, Any]:
    return {
        "provider": provider,
        "key": env,
        "state": "unavailable",
        "cooldown_left_s": 0.0,
        "consecutive_failures": 0,
        "last_outcome": "",
        "last_error": f"{env} is not set",
    }


def _why_blocked(b: Breaker, now: float) -> tuple[str, bool] | None:
    """Why a breaker keeps its model from being called now, and whether that is only a
    cooldown (which a plan with nothing else left may try anyway); None when it may be."""
    st = b.state(now)
    if st == "unavailable":
        return b.unavailable, False
    if st == "open" and b.last_outcome == "billing":
        # out for hours, not a cooldown a plan with nothing left may cut short: a request
        # to a spent key is refused, and hammering it is what this breaker is for
        left = b.open_until - now
        return f"no credit or quota ({b.last_error}); out for {duration_text(left)}", False
    if st == "open":
        return f"cooling down {b.open_until - now:.0f}s after {b.last_error}", True
    if st == "half_open" and b.probing:
        return "a probe request is already testing it", True
    return None


def duration_text(seconds: float) -> str:
    """``4h59m`` (or ``12m``): how long a key stays out, as an operator reads it."""
    minutes = max(1, round(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
