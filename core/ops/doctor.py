"""`openclaw doctor`: probe each provider and say what to do about each failure."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from core.config.common import mask_url
from core.config.models import Config, split_model_ref
from core.errors import ProviderError
from core.providers.base import Provider


@dataclass(frozen=True, slots=True)
class ProbeResult:
    provider: str
    ok: bool
    message: str
    latency_ms: float | None = None
    missing_models: tuple[str, ...] = ()


def advice(error: ProviderError, provider: Provider, key_envs: Sequence[str] = ()) -> str:
    """What the operator should do about a failed probe."""
    url = mask_url(provider.base_url)  # a base_url may carry credentials: never print them
    match error.kind:
        case "refused":
            hint = "run `ollama serve`" if provider.api == "ollama" else "start the server"
            return f"nothing answers at {url}: {hint}, or fix base_url"
        case "timeout":
            return (
                f"{url} did not answer within {provider.config.timeout_s:g}s: check the host"
                " or raise timeout_s"
            )
        case "auth":
            where = " or ".join(key_envs) or "api_key_env"
            return f"the API key was refused: put a valid key in {where}"
        case "not_found":
            return f"{url} has no such endpoint: check base_url (and its /v1 suffix)"
        case "rate_limited":
            return "rate limited right now: wait, or check the plan's quota"
        case "billing":
            return "the account has no credit or quota left: top it up (or wait for the quota)"
        case "malformed" | "stream_cut":
            return f"{url} does not speak {provider.api}: check api and base_url"
        case _:
            return f"the server failed ({error.kind}): check its logs"


RETIRED = "model retired or misspelled: see the provider's deprecations page"


def _pull_hint(provider: Provider, model: str) -> str:
    return f"`ollama pull {model}`" if provider.api == "ollama" else RETIRED


async def probe(
    config: Config, providers: dict[str, Provider], missing_keys: dict[str, str]
) -> list[ProbeResult]:
    """Probe every provider once (list its models) and check the configured models exist."""
    results = []
    for name, provider in providers.items():
        if name in missing_keys:
            results.append(ProbeResult(name, False, missing_keys[name]))
            continue
        wanted = [
            split_model_ref(ref)[1] for ref in config.models if split_model_ref(ref)[0] == name
        ]
        if provider.config.embedded is not None:
            wanted = []  # llama.cpp serves the one file it loaded, whatever it is called
        t0 = time.perf_counter()
        try:
            listed = await provider.list_models()
        except ProviderError as e:
            results.append(
                ProbeResult(
                    name,
                    False,
                    f"{e.kind}: {advice(e, provider, config.providers[name].key_envs)}",
                )
            )
            continue
        latency = (time.perf_counter() - t0) * 1000
        names = set(listed) | {m.removeprefix("models/") for m in listed}
        missing = tuple(m for m in wanted if m not in names)
        msg = f"ok, {len(listed)} models listed"
        if missing:
            msg += "; not offered: " + ", ".join(
                f"{m} ({_pull_hint(provider, m)})" for m in missing
            )
        results.append(ProbeResult(name, not missing, msg, latency, missing))
    return results
