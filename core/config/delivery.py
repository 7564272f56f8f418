"""Config models for delivery: channels, the outbox's retry policy, alerts and targets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

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


OnUnknown = Literal["ask", "resend"]
ON_UNKNOWN_VALUES = ("ask", "resend")
# Telegram and Slack have no idempotency key: a second send is a second message
ON_UNKNOWN_DEFAULTS: dict[str, OnUnknown] = {
    "telegram": "ask",
    "slack": "ask",
    "webhook": "resend",
}


class DeliveryConfig(StrictModel):
    max_attempts: int = Field(default=8, ge=1)
    backoff_s: list[NonNegativeSeconds] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0], min_length=1
    )
    poll_interval_s: float = Field(default=1.0, gt=0)
    claim_timeout_s: float = Field(default=120.0, gt=0)  # a claim older than this is retried
    # a claim that expired while ``sending`` may or may not have reached its target: per
    # channel kind, ask the admins (Telegram and Slack would show a second copy) or send it
    # again (webhooks carry an Idempotency-Key, so the receiver can drop the second one)
    on_unknown: dict[str, OnUnknown] = Field(default_factory=dict)

    @field_validator("on_unknown", mode="before")
    @classmethod
    def _on_unknown(cls, value: object) -> object:
        """Unknown kinds and values are refused here, with the key and the fix in the
        message (pydantic's own would quote a dict-key location nobody wrote)."""
        if not isinstance(value, dict):
            return value
        for kind, policy in value.items():
            if kind not in ON_UNKNOWN_DEFAULTS:
                raise ValueError(
                    f"{kind!r} is not a channel kind: use one of {', '.join(ON_UNKNOWN_DEFAULTS)}"
                )
            if policy not in ON_UNKNOWN_VALUES:
                raise ValueError(
                    f'{kind} = {policy!r} is not a choice: use "ask" (the admins decide:'
                    ' Resend or Mark delivered) or "resend" (sent again at once)'
                )
        return value

    def unknown_policy(self, kind: str) -> OnUnknown:
        """What a row of channel ``kind`` whose outcome is unknown gets: ``[delivery]
        on_unknown`` for that kind, else its default (``log`` is always sent again)."""
        return self.on_unknown.get(kind) or ON_UNKNOWN_DEFAULTS.get(kind, "resend")


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
