"""Inline-button payloads (≤ 64 bytes: agents go by index, runs and approvals by id).

Numbers are bounded, so stale or crafted data (``rn:rerun:99999999999999999999``, "²")
matches no filter instead of reaching SQLite as an overflow; the press is then answered
as an unknown button (bot/answering.py).
"""

from __future__ import annotations

from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

from core.parsing import MAX_ID

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Index = Annotated[int, Field(ge=0, le=1_000_000)]


class AgentCb(CallbackData, prefix="ag"):
    action: str  # open | run | enable | disable | page
    idx: Index = 0  # position in [[agents]]
    page: Index = 0


class RunCb(CallbackData, prefix="rn"):
    action: str  # rerun | details
    run_id: Id


class ApprovalCb(CallbackData, prefix="ap"):
    action: str  # approve | deny
    approval_id: Id


class DeliveryCb(CallbackData, prefix="dl"):
    action: str  # resend | delivered | show
    row_id: Id  # the outbox row
    at: Index = 0  # 0: an unknown card; n: page n of /deliveries (redrawn after a press)


class DeliveriesPageCb(CallbackData, prefix="dp"):
    page: Index = 1  # /deliveries' ◀ ▶
