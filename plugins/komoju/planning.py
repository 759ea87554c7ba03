"""What to do with an eligible order before calling KOMOJU: pure functions, no I/O."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from komoju.money import is_known_currency
from komoju.outcomes import Job, idempotency_key
from komoju.store import EligibleOrder

# KOMOJU keeps idempotency keys 24 h; an open attempt older than this is settled by GET before any new POST.
KEY_REUSE_WINDOW = dt.timedelta(hours=23)
_PAYMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class Action(StrEnum):
    CALL = "call"  # POST with attempt_no's key (a new attempt, or the open one again)
    SETTLE_FIRST = "settle_first"  # an old or stale open attempt: GET the payment before anything else
    GIVE_UP = "give_up"  # attempts used up: a final failure, no call
    INVALID = "invalid"  # the row cannot be acted on: a final failure, no call


@dataclass(frozen=True)
class Plan:
    """The next step for one order."""

    order: EligibleOrder
    action: Action
    attempt_no: int
    idempotency_key: str | None = None
    new_attempt: bool = False
    reason: str | None = None


def plan(job: Job, site_id: str, order: EligibleOrder, *, max_attempts: int, now: dt.datetime) -> Plan:
    """The next step for ``order``: reuse an open attempt's key, settle it first, start one, or give up."""
    if order.open_attempt_no is not None:
        # Something may have been sent: never act on this order otherwise until that attempt is settled.
        fresh = order.open_started_at is not None and now - order.open_started_at < KEY_REUSE_WINDOW
        if fresh and order.open_payment_id == order.payment_id:
            return Plan(order, Action.CALL, order.open_attempt_no, order.open_idempotency_key)
        return Plan(order, Action.SETTLE_FIRST, order.open_attempt_no, order.open_idempotency_key)
    if problem := row_problem(job, order):
        return Plan(order, Action.INVALID, 0, reason=problem)
    if order.attempts >= max_attempts:
        reason = f"gave up after {order.attempts} attempt(s) (max_attempts is {max_attempts})"
        return Plan(order, Action.GIVE_UP, order.attempts, reason=reason)
    attempt_no = order.attempts + 1
    key = idempotency_key(job, site_id, order.order_no, order.payment_id, attempt_no)
    return Plan(order, Action.CALL, attempt_no, key, new_attempt=True)


def row_problem(job: Job, order: EligibleOrder) -> str | None:
    """Why the order's row cannot be acted on, as a sentence for the operator; None when it is fine.

    Cancelling protects the merchant (a cancelled order's payment must not stay payable), so only the payment id
    must be sound; a refund moves money back, so its amount and currency must make sense too.
    """
    if not _PAYMENT_ID.match(order.payment_id or ""):
        return (
            f"komoju_payment_id {order.payment_id!r} is not a KOMOJU payment id; correct the order or settle the "
            "payment by hand in the KOMOJU dashboard"
        )
    if job is Job.REFUND:
        if not is_known_currency(order.currency):
            return f"currency {order.currency!r} is not a known ISO 4217 code; correct the order or refund by hand"
        if order.amount is not None and Decimal(order.amount) < 0:
            return f"total_gross_price {order.amount} is negative; correct the order or refund by hand"
    return None
