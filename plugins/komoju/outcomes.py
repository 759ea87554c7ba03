"""What a KOMOJU answer means for an order: the one decision the cancel and refund jobs share.

Pure functions, no I/O: the operators feed them what KOMOJU answered and write what they return.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

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


# Order statuses the jobs write (SPEC §6).
REJECTED = "Rejected"
FAILED = "Failed"

# 4xx answers that retrying the same request cannot change (SPEC §4.4).
_UNFIXABLE_STATUSES = frozenset({400, 404, 422})
_AUTH_STATUSES = frozenset({401, 403})
RESPONSE_MAX_CHARS = 1000  # of KOMOJU's reason kept in the order's response column


@dataclass(frozen=True)
class CallResult:
    """What KOMOJU answered to one call, after the hook's own retries.

    ``ok`` with ``payment_status`` for a 200 carrying a Payment; otherwise the error's HTTP status (None when
    no answer came at all), KOMOJU's code and message, and whether the hook judged it transient.
    """

    ok: bool
    http_status: int | None = None
    code: str | None = None
    message: str = ""
    transient: bool = False
    payment_status: str | None = None

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
    ``abort_site``: the key is wrong or lacks rights; stop the site and touch no order.
    Otherwise ``status`` and ``response`` go to the order; ``final`` means it is given up on (e-mailed).
    """

    status: str | None
    response: str | None
    final: bool = False
    transient: bool = False
    check_payment: bool = False
    abort_site: bool = False

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
) -> Decision:
    """The order's new state after ``result``, its ``attempt_no``-th attempt (1-based) of ``max_attempts``.

    ``check`` is the answer to ``GET /payments/{id}`` when a previous call to ``decide`` asked for it.
    """
    if result.ok:
        return Decision(job.done_status, result.describe())
    if result.http_status in _AUTH_STATUSES:
        return Decision(None, None, abort_site=True)
    out_of_attempts = attempt_no >= max_attempts
    if result.code == job.refusal_code:
        if check is None:
            return Decision(None, None, check_payment=True)
        if check.ok and check.payment_status == job.payment_status_reached:
            return Decision(job.done_status, f"payment already {check.payment_status} at KOMOJU")
        if check.ok:
            reason = _reason(f"{result.describe()} (payment is {check.payment_status})")
            return Decision(REJECTED, reason, final=True)
        # KOMOJU refused, but we could not see the payment to tell whether the goal was reached already.
        return Decision(
            FAILED,
            _reason(f"{result.describe()}; checking the payment failed: {check.describe()}"),
            final=out_of_attempts,
            transient=check.transient,
        )
    if result.transient:
        return Decision(FAILED, result.describe(), final=out_of_attempts, transient=True)
    if result.http_status in _UNFIXABLE_STATUSES:
        return Decision(FAILED, result.describe(), final=True)
    return Decision(FAILED, result.describe(), final=out_of_attempts)


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
