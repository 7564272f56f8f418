"""Inline-button payloads (≤ 64 bytes: agents go by index, runs and approvals by id)."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class AgentCb(CallbackData, prefix="ag"):
    action: str  # open | run | enable | disable | page
    idx: int = 0  # position in [[agents]]
    page: int = 0


class RunCb(CallbackData, prefix="rn"):
    action: str  # rerun | details
    run_id: int


class ApprovalCb(CallbackData, prefix="ap"):
    action: str  # approve | deny
    approval_id: int
