"""Pieces shared by the config modules: the strict base model and constrained types."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from core.errors import ConfigProblem

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HTTP_SCHEMES = ("http", "https")


class StrictModel(BaseModel):
    """Unknown keys are errors; loaded config never changes.

    ``allow_inf_nan=False``: TOML has ``inf`` and ``nan``, and every float in the config is
    a duration, a price or a fraction, none of which may be infinite (``timeout_s = inf``
    would wait forever, and ``config check`` would print ``Infinity``, which is not JSON).
    Set on the base model, it covers every float field, in lists and tables too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _finite(value: float) -> float:
    if value != value or value in (float("inf"), float("-inf")):  # NaN is not equal to itself
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value


# a float that is finite even outside a StrictModel (lists of durations, budgets' fractions)
FiniteFloat = Annotated[float, AfterValidator(_finite)]
PositiveSeconds = Annotated[FiniteFloat, Field(gt=0)]
NonNegativeSeconds = Annotated[FiniteFloat, Field(ge=0)]


def mask_url(url: str) -> str:
    """``url`` safe to show: the password of its userinfo and every query value replaced
    by ``***`` (a URL's credentials sit there). Unparseable input is masked whole."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"***@{hostport}"
    query = "&".join(
        f"{pair.partition('=')[0]}=***" if "=" in pair else "***"
        for pair in parts.query.split("&")
        if pair
    )
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + ("#***" if parts.fragment else "")


def _http_url(value: str) -> str:
    """http(s) with a host: what aiohttp and the providers can call (not file:, not a path)."""
    try:
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme.lower() not in HTTP_SCHEMES or not host:
        raise PydanticCustomError(
            "http_url",
            "{shown} is not an http(s) URL with a host: write it like https://host[:port]/path",
            {"shown": repr(mask_url(value))},
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _env_names(value: dict[str, str]) -> dict[str, str]:
    for header, env in value.items():
        if not ENV_NAME.fullmatch(env):
            # never echo the value: it is most likely the secret itself, pasted in
            raise PydanticCustomError(
                "env_name",
                "the variable for header {header} is not an environment variable name (was "
                "the secret itself pasted in?): name the variable that holds its value, e.g. "
                'headers_env = { "Authorization" = "HOOK_AUTH" }, and set it in .env',
                {"header": repr(header)[:60]},
            )
    return value


# header name -> the environment variable holding its value (a secret header's *_env form)
HeadersEnv = Annotated[dict[str, str], AfterValidator(_env_names)]


def check_header_overlap(headers: dict[str, str], headers_env: dict[str, str]) -> None:
    """A header set both in ``headers`` and ``headers_env`` is ambiguous: refuse it."""
    both = {h.lower() for h in headers} & {h.lower() for h in headers_env}
    if both:
        raise ValueError(
            f"header {sorted(both)[0]!r} is in both headers and headers_env: keep one "
            "(headers_env for a secret)"
        )


class Validators(StrictModel):
    """What an answer must pass beyond being non-empty; a failure escalates."""

    min_chars: int | None = Field(default=None, ge=1)
    json_: bool = Field(default=False, alias="json")
    json_keys: list[str] = Field(default_factory=list)
    regex: str | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from e
        return v

    @property
    def strict(self) -> bool:
        """True when more than non-emptiness is checked (streams must then be held)."""
        return self.min_chars is not None or self.json_ or bool(self.json_keys) or bool(self.regex)


def zone_problem(key: str, name: str) -> ConfigProblem | None:
    """The problem with ``key``'s timezone ``name`` if it is not an IANA zone, else None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ConfigProblem(
            key, f"unknown timezone {name!r}", 'use an IANA name like "Europe/Berlin"'
        )
    return None
