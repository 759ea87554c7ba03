"""What a KOMOJU answer means for an order: the one decision the cancel and refund jobs share.

Pure functions, no I/O: the operators feed them what KOMOJU answered and write what they return.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from komoju.text import sanitise


class Job(StrEnum):
    """A job that moves money at KOMOJU, and the words it uses."""

    CANCEL = "cancel"
    REFUND = "refund"

    @property
    def done_status(self) -> str:
        """The order's status once KOMOJU did it (``Cancelled`` / ``Refunded``)."""
        return "Cancelled" if self is Job.CANCEL else "Refunded"

    @property
    def payment_status_reached(self) -> str:
        """The KOMOJU payment status that means the goal is reached."""
        return "cancelled" if self is Job.CANCEL else "refunded"

    @property
    def refusal_code(self) -> str:
        """KOMOJU's error code for "this payment cannot be cancelled/refunded"."""
        return "not_cancellable" if self is Job.CANCEL else "not_refundable"

    def reached(self, seen: CallResult) -> bool:
        """Whether the payment KOMOJU returned shows this job's goal reached: cancelled; or refunded (also when
        ``amount_refunded`` covers the payment's total, the amount a full refund refunds)."""
        if not seen.ok:
            return False
        if self is Job.CANCEL:
            return seen.payment_status == "cancelled"
        covered = seen.total is not None and seen.total > 0 and (seen.amount_refunded or 0) >= seen.total
        return seen.payment_status == "refunded" or covered


# Order statuses the jobs write (the status table of the README).
PENDING = "Pending"  # KOMOJU accepted the request; the payment does not show it done yet
REJECTED = "Rejected"
FAILED = "Failed"

# 4xx answers that retrying the same request cannot change.
_UNFIXABLE_STATUSES = frozenset({400, 404, 422})
RESPONSE_MAX_CHARS = 1000  # of KOMOJU's reason kept in the order's response column


@dataclass(frozen=True)
class CallResult:
    """What KOMOJU answered to one call, after the hook's own retries.

    ``ok``: a 2xx carrying a Payment, with what matters of it (status, amounts, the newest refund). Otherwise
    the error's HTTP status (None when no answer came at all), KOMOJU's code and message, whether the hook judged
    it transient, and whether it was KOMOJU's own JSON error (not a proxy's page).
    """

    ok: bool
    http_status: int | None = None
    code: str | None = None
    message: str = ""
    transient: bool = False
    json_error: bool = False
    payment_status: str | None = None
    total: int | None = None
    amount_refunded: int | None = None
    newest_refund_at: dt.datetime | None = None  # when the payment's newest refund was created
    redirect_url: str | None = None  # the newest refund's link for the customer (cash payments)

    @classmethod
    def from_payment(cls, http_status: int, payment: Mapping[str, Any]) -> CallResult:
        """The result of a 2xx answer carrying ``payment`` (KOMOJU's Payment object)."""
        refunds = [r for r in payment.get("refunds") or () if isinstance(r, Mapping)]
        newest = max(refunds, key=lambda r: _when(r.get("created_at")) or _EPOCH, default=None)
        redirect = newest.get("redirect_url") if newest is not None else None
        return cls(
            ok=True,
            http_status=http_status,
            payment_status=payment.get("status") if isinstance(payment.get("status"), str) else None,
            total=_whole(payment.get("total")),
            amount_refunded=_whole(payment.get("amount_refunded")),
            newest_refund_at=_when(newest.get("created_at")) if newest is not None else None,
            redirect_url=redirect
            if isinstance(redirect, str) and redirect.startswith(("https://", "http://"))
            else None,
        )

    def describe(self) -> str:
        """KOMOJU's reason as one line for the order's response column and the e-mail."""
        if self.ok:
            return f"payment {self.payment_status or 'updated'} at KOMOJU"
        parts = [f"HTTP {self.http_status}" if self.http_status else "no answer from KOMOJU"]
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        return _reason(f"{head}: {self.message}" if self.message else head)


@dataclass(frozen=True)
class Decision:
    """What to do with the order after a call.

    ``check_payment``: ask ``GET /payments/{id}`` and decide again with its answer before writing anything.
    ``abort_site``: the key is refused; stop the site and touch no order. ``pending``: KOMOJU accepted the request
    but the payment does not show it done: the attempt stays open and is only checked by GET from now on
    (``redirect_url``: the link its customer must visit). ``forbidden``: KOMOJU's 403 for this payment (a final
    failure of the order, unless every call of the site's first batch got one: then the key is refused).
    Otherwise ``status`` and ``response`` go to the order; ``final`` means it is given up on (e-mailed).
    """

    status: str | None
    response: str | None
    final: bool = False
    transient: bool = False
    check_payment: bool = False
    abort_site: bool = False
    pending: bool = False
    forbidden: bool = False
    redirect_url: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in ("Cancelled", "Refunded")


def decide(
    job: Job,
    result: CallResult,
    *,
    attempt_no: int,
    max_attempts: int,
    check: CallResult | None = None,
    payment_id: str = "",
) -> Decision:
    """The order's new state after ``result``, its ``attempt_no``-th attempt (1-based) of ``max_attempts``.

    ``check`` is the answer to ``GET /payments/{id}`` when a previous call to ``decide`` asked for it: KOMOJU's
    refusals are looked at before an order is given up on, in case the goal is reached already.
    """
    if result.ok:
        if job.reached(result):
            return Decision(job.done_status, result.describe())
        return Decision(PENDING, pending_reason(job, result), pending=True, redirect_url=result.redirect_url)
    if result.http_status == 401:
        return Decision(None, None, abort_site=True)
    if result.http_status == 403 and result.json_error:
        reason = _reason(f"this key may not access payment {payment_id} ({result.describe()})")
        return Decision(FAILED, reason, final=True, forbidden=True)
    out_of_attempts = attempt_no >= max_attempts
    if result.transient:
        return Decision(FAILED, result.describe(), final=out_of_attempts, transient=True)
    if check is None:
        return Decision(None, None, check_payment=True)
    if job.reached(check):
        return Decision(job.done_status, f"payment already {check.payment_status} at KOMOJU")
    unfixable = result.http_status in _UNFIXABLE_STATUSES
    if not check.ok:
        # KOMOJU refused, and the payment could not be seen to tell whether the goal was reached already.
        reason = _reason(f"{result.describe()}; checking the payment failed: {check.describe()}")
        final = out_of_attempts or (unfixable and not check.transient)
        return Decision(FAILED, reason, final=final, transient=check.transient and not final)
    reason = _reason(f"{result.describe()} (payment is {check.payment_status})")
    if result.code == job.refusal_code:
        return Decision(REJECTED, reason, final=True)
    # 400/404/422 cannot change; a 402 or a processor's refusal (JSON 5xx) may, in a later run (an unsettled
    # balance is refunded once new sales come in): tried again until max_attempts.
    return Decision(FAILED, reason, final=unfixable or out_of_attempts)


def decide_pending(
    job: Job, check: CallResult, *, accepted_at: dt.datetime, now: dt.datetime, limit: dt.timedelta
) -> Decision | None:
    """A Pending order after ``GET /payments/{id}``: done once the payment shows it; a final failure once it has
    been pending longer than ``limit``; otherwise still Pending (None: nothing new to write, the check failed)."""
    if job.reached(check):
        return Decision(job.done_status, check.describe())
    if check.http_status == 401:
        return Decision(None, None, abort_site=True)
    if now - accepted_at >= limit:
        seen = f"payment is {check.payment_status}" if check.ok else f"checking it failed: {check.describe()}"
        days = limit / dt.timedelta(days=1)
        reason = (
            f"KOMOJU accepted the {job.value} on {accepted_at:%Y-%m-%d %H:%M} UTC; it has not completed within "
            f"{days:g} day(s) ({seen})"
        )
        return Decision(FAILED, _reason(reason), final=True)
    if not check.ok:
        return None
    return Decision(PENDING, pending_reason(job, check, accepted_at), pending=True, redirect_url=check.redirect_url)


def pending_reason(job: Job, seen: CallResult, accepted_at: dt.datetime | None = None) -> str:
    """The order's response while Pending: what KOMOJU accepted and what the payment shows."""
    when = f" on {accepted_at:%Y-%m-%d %H:%M} UTC" if accepted_at else f" (HTTP {seen.http_status})"
    text = f"KOMOJU accepted the {job.value}{when}; not completed yet: payment is {seen.payment_status}"
    if job is Job.REFUND and seen.amount_refunded is not None and seen.total is not None:
        text += f", {seen.amount_refunded} of {seen.total} refunded"
    if seen.redirect_url:
        text += f"; the customer must give a bank account at {seen.redirect_url}"
    return _reason(text)


def accepted_since(job: Job, seen: CallResult, started_at: dt.datetime | None) -> bool:
    """Whether the payment shows KOMOJU accepted a refund at or after ``started_at`` (an attempt's first send)
    without having done it: a refund created since then while the payment is not refunded. A refund created
    before is someone else's (a partial refund in the dashboard). Cancels leave no such trace."""
    if job is not Job.REFUND or not seen.ok or job.reached(seen) or started_at is None:
        return False
    return seen.newest_refund_at is not None and seen.newest_refund_at >= started_at - CLOCK_SKEW


# KOMOJU's clock and the database's may differ: a refund this much older than the attempt still counts as its own.
CLOCK_SKEW = dt.timedelta(minutes=5)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _when(value: Any) -> dt.datetime | None:
    """An ISO 8601 time of KOMOJU's, timezone-aware; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def idempotency_key(job: Job, site_id: str, order_no: str, payment_id: str, attempt_no: int) -> str:
    """The ``X-KOMOJU-IDEMPOTENCY`` key of one attempt: stable, printable ASCII, at most 100 characters.

    Site, order and payment ids may hold any text, so they enter through a digest; the same attempt always
    gets the same key, any other attempt a different one.
    """
    if attempt_no < 1:
        raise ValueError(f"attempt_no must be 1 or more, not {attempt_no}")
    digest = hashlib.sha256("\x1f".join((site_id, order_no, payment_id)).encode()).hexdigest()[:40]
    return f"komoju-airflow-{job.value}-{digest}-{attempt_no}"


def _reason(text: str) -> str:
    """KOMOJU's reason as stored and e-mailed: one clean line of at most RESPONSE_MAX_CHARS."""
    return sanitise(text, limit=RESPONSE_MAX_CHARS)
