"""Config models for delivery: channels, the outbox's retry policy, alerts and targets."""

from __future__ import annotations

from pydantic import Field, model_validator

from core.config.common import (
    HeadersEnv,
    HttpUrl,
    NonNegativeSeconds,
    StrictModel,
    check_header_overlap,
)


class SlackChannelConfig(StrictModel):
    webhook_url_env: str  # the incoming-webhook URL is a secret: it lives in the environment
    headers_env: HeadersEnv = Field(default_factory=dict)  # header name -> variable name


class WebhookChannelConfig(StrictModel):
    url: HttpUrl | None = None
    url_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # header name -> the variable holding its value: a secret header stays out of the file
    headers_env: HeadersEnv = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannelConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("a webhook needs exactly one of url or url_env")
        check_header_overlap(self.headers, self.headers_env)
        return self


class ChannelsConfig(StrictModel):
    slack: dict[str, SlackChannelConfig] = Field(default_factory=dict)
    webhook: dict[str, WebhookChannelConfig] = Field(default_factory=dict)


class DeliveryConfig(StrictModel):
    max_attempts: int = Field(default=8, ge=1)
    backoff_s: list[NonNegativeSeconds] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0], min_length=1
    )
    poll_interval_s: float = Field(default=1.0, gt=0)
    claim_timeout_s: float = Field(default=120.0, gt=0)  # a claim older than this is retried


class AlertsConfig(StrictModel):
    deliver: list[str] = Field(default_factory=lambda: ["log"])  # the admin target(s)
    failures_before_alert: int = Field(default=2, ge=1)
    failures_before_disable: int = Field(default=10, ge=1)


TARGET_KINDS = ("telegram", "slack", "webhook", "log")


def check_target(target: str, channels: ChannelsConfig) -> str | None:
    """Why a delivery target is invalid, or None."""
    kind, _, name = target.partition(":")
    if target == "log":
        return None
    if kind == "telegram":
        return None if name.lstrip("-").isdigit() else "telegram targets are telegram:<chat id>"
    if kind == "slack":
        return None if name in channels.slack else f"no [channels.slack.{name}] is configured"
    if kind == "webhook":
        return None if name in channels.webhook else f"no [channels.webhook.{name}] is configured"
    return f"unknown target kind {kind!r}: use one of {', '.join(TARGET_KINDS)}"
