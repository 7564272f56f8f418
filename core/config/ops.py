"""Config models for the operator's safety net: the top-of-hour stagger, the scheduler's
watch over its own fires, the daily report and the dead-man's switch."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from core.config.common import ENV_NAME, StrictModel, zone_problem
from core.config.delivery import ChannelsConfig, check_target
from core.errors import ConfigProblem

HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class SchedulerConfig(StrictModel):
    # agents whose cron fires on the hour get a stable offset (from the agent's name)
    # within this many seconds, so two dozen of them do not hit one Ollama in one second;
    # 0 = off. An agent opts out with ``spread = false``.
    spread_s: int = Field(default=0, ge=0, le=3600)
    # a fire with no run this long after its time is an alert (the scheduler watching
    # itself, apart from APScheduler's bookkeeping); 0 = never alert
    alert_after_s: float = Field(default=300.0, ge=0, le=86400)
    watch_every_s: float = Field(default=60.0, gt=0, le=3600)  # how often it looks


class ReportsConfig(StrictModel):
    # "HH:MM": every day at that time (in ``timezone``) the admins get one line per
    # problem of the last 24 hours' schedule and a summary; None = no report
    daily: str | None = None
    timezone: str = "UTC"
    deliver: list[str] | None = None  # None: [alerts] deliver

    @field_validator("daily")
    @classmethod
    def _hh_mm(cls, value: str | None) -> str | None:
        if value is not None and not HH_MM.fullmatch(value):
            raise PydanticCustomError(
                "time_of_day",
                '{shown} is not a time of day: write it as HH:MM, e.g. daily = "08:00"',
                {"shown": repr(value)[:40]},
            )
        return value


class HeartbeatConfig(StrictModel):
    # the variable holding the push URL of an external monitor (healthchecks.io, Uptime
    # Kuma): a URL is a secret (whoever has it can fake the pings), so never in the file
    url_env: str | None = None
    every_s: float = Field(default=60.0, ge=1, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    # the delivery worker counts as hung when a due row has waited this long
    stall_after_s: float = Field(default=300.0, gt=0)
    # a SQLite store on a disk with less free space than this is unhealthy: a full disk
    # fails every write, records first
    min_free_mb: int = Field(default=100, ge=0)

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            # never echo the value: it is most likely the push URL itself, pasted in
            raise PydanticCustomError(
                "env_name",
                "is not an environment variable name (was the URL itself pasted in?): name"
                ' the variable that holds it, e.g. url_env = "HEARTBEAT_URL", and set it in .env',
            )
        return value


def check_reports(reports: ReportsConfig, channels: ChannelsConfig) -> list[ConfigProblem]:
    """What the file's ``[reports]`` names that does not exist (a zone, a target)."""
    zone = zone_problem("reports.timezone", reports.timezone)
    problems = [zone] if zone else []
    for target in reports.deliver or []:
        why = check_target(target, channels)
        if why:
            problems.append(ConfigProblem("reports.deliver", f"{target!r}: {why}"))
    return problems
