"""What to do with an eligible order before calling KOMOJU: pure functions, no I/O."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from komoju.money import is_known_currency
from komoju.outcomes import Job, idempotency_key
from komoju.store import EligibleOrder

# KOMOJU keeps idempotency keys "up to" 24 h: an open key older than this is never resent (a new attempt starts,
# after a GET showed the payment not done); a younger one is resent only after that GET, see after_settling.
KEY_REUSE_WINDOW = dt.timedelta(hours=23)
_PAYMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class Action(StrEnum):
    CALL = "call"  # POST with the plan's key: a new attempt, or the open one resent within its DAG run
    SETTLE_FIRST = "settle_first"  # an open attempt of an earlier run: GET the payment before anything is resent
    CHECK_PENDING = "check_pending"  # KOMOJU accepted it, the payment does not show it done: GET only, never POST
    GIVE_UP = "give_up"  # tries used up: a final failure, no call
    INVALID = "invalid"  # the row cannot be acted on: a final failure, no call
    NEXT_RUN = "next_run"  # KOMOJU answered this order earlier in this DAG run: its next try is the next run's


@dataclass(frozen=True)
class Plan:
    """The next step for one order.

    ``attempt_no`` is the attempt (the key) the step is about; ``try_no`` counts this try among the order's
    tries for its current payment, which ``max_attempts`` limits. A DAG run counts one try per order however
    often Airflow retries its task: ``counts_try`` is False for a resend within the run that already counted.
    """

    order: EligibleOrder
    action: Action
    attempt_no: int
    try_no: int = 0
    idempotency_key: str | None = None
    new_attempt: bool = False
    counts_try: bool = True
    reason: str | None = None


def plan(job: Job, site_id: str, order: EligibleOrder, *, max_attempts: int, now: dt.datetime) -> Plan:
    """The next step for ``order``: resend an open attempt's key, settle it first, start one, or give up."""
    try:
        return _plan(job, site_id, order, max_attempts=max_attempts, now=now)
    except Exception as exc:  # one odd row must never stop the site's other orders
        return Plan(order, Action.INVALID, 0, reason=f"the order could not be planned ({type(exc).__name__}: {exc})")


def _plan(job: Job, site_id: str, order: EligibleOrder, *, max_attempts: int, now: dt.datetime) -> Plan:
    if order.open_attempt_no is not None:
        # Something may have been sent under this key: nothing else happens to the order until it is settled.
        if order.open_accepted_at is not None:
            return Plan(
                order, Action.CHECK_PENDING, order.open_attempt_no, order.tries, order.open_idempotency_key,
                counts_try=False,
            )  # fmt: skip
        resendable = key_still_kept(order.open_started_at, now) and order.open_payment_id == order.payment_id
        if resendable and order.tried_this_run:  # a task retry in the same run: resend, the run's try is counted
            return Plan(
                order, Action.CALL, order.open_attempt_no, order.tries, order.open_idempotency_key, counts_try=False
            )
        # A later run: KOMOJU may have done it meanwhile, or would only replay an error stored under the key.
        return Plan(order, Action.SETTLE_FIRST, order.open_attempt_no, order.tries, order.open_idempotency_key)
    if problem := row_problem(job, order):
        return Plan(order, Action.INVALID, 0, reason=problem)
    if order.tried_this_run:
        return Plan(order, Action.NEXT_RUN, order.last_attempt_no, order.tries)
    if order.tries >= max_attempts:
        reason = f"gave up after {order.tries} tries (max_attempts is {max_attempts})"
        return Plan(order, Action.GIVE_UP, order.last_attempt_no, order.tries, reason=reason)
    attempt_no = order.last_attempt_no + 1
    key = idempotency_key(job, site_id, order.order_no, order.payment_id, attempt_no)
    return Plan(order, Action.CALL, attempt_no, order.tries + 1, key, new_attempt=True)


def after_settling(job: Job, site_id: str, order: EligibleOrder, *, max_attempts: int, now: dt.datetime) -> Plan:
    """The next step for an order whose open attempt of an earlier run was checked by GET and is not done.

    Its key is resent only when no answer to it ever arrived (a lost connection or a crash: KOMOJU did it once,
    or will now), while KOMOJU still keeps it and tries are left. If KOMOJU answered with an error, resending the
    key would only replay that answer (KOMOJU may store errors under a key): the attempt is closed and a new one
    starts with a new key (``new_attempt``), as it does when the key is too old or the payment id changed."""
    resendable = (
        order.open_http_status is None
        and key_still_kept(order.open_started_at, now)
        and order.open_payment_id == order.payment_id
    )
    if resendable and order.tries < max_attempts:
        return Plan(order, Action.CALL, order.open_attempt_no or 0, order.tries + 1, order.open_idempotency_key)
    closed = replace(
        order, open_attempt_no=None, open_idempotency_key=None, open_payment_id=None, open_started_at=None,
        open_accepted_at=None, open_http_status=None,
    )  # fmt: skip
    return plan(job, site_id, closed, max_attempts=max_attempts, now=now)


def key_still_kept(started_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether an idempotency key first used at ``started_at`` may still be resent (KOMOJU keeps it 24 h)."""
    return started_at is not None and now - started_at < KEY_REUSE_WINDOW


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
        if order.amount is not None:
            amount = Decimal(order.amount)
            if not amount.is_finite() or amount < 0:
                return f"total_gross_price {order.amount} is not a valid amount; correct the order or refund by hand"
    return None
