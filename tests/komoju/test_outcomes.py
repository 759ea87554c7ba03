"""The outcome decision over every answer KOMOJU_API.md lists, for both jobs."""

from __future__ import annotations

import re

import pytest

from komoju.outcomes import FAILED, REJECTED, CallResult, Decision, Job, decide, idempotency_key

CANCEL, REFUND = Job.CANCEL, Job.REFUND


def error(status: int | None, code: str | None, message: str = "msg", *, transient: bool = False) -> CallResult:
    return CallResult(ok=False, http_status=status, code=code, message=message, transient=transient)


def payment(status: str) -> CallResult:
    return CallResult(ok=True, http_status=200, payment_status=status)


@pytest.mark.parametrize(("job", "reached"), [(CANCEL, "cancelled"), (REFUND, "refunded")])
def test_success_reaches_the_goal(job, reached):
    decision = decide(job, payment(reached), attempt_no=1, max_attempts=3)
    assert decision == Decision(job.done_status, f"payment {reached} at KOMOJU")
    assert decision.succeeded
    assert not decision.final


@pytest.mark.parametrize("job", [CANCEL, REFUND])
def test_refusal_asks_to_check_the_payment_first(job):
    decision = decide(job, error(422, job.refusal_code), attempt_no=1, max_attempts=3)
    assert decision == Decision(None, None, check_payment=True)


@pytest.mark.parametrize(("job", "reached"), [(CANCEL, "cancelled"), (REFUND, "refunded")])
def test_refusal_of_a_payment_already_there_is_success(job, reached):
    decision = decide(job, error(422, job.refusal_code), attempt_no=3, max_attempts=3, check=payment(reached))
    assert decision.status == job.done_status
    assert decision.response == f"payment already {reached} at KOMOJU"
    assert not decision.final


@pytest.mark.parametrize(
    ("job", "payment_status"),
    [(CANCEL, "captured"), (CANCEL, "expired"), (CANCEL, "refunded"), (REFUND, "pending"), (REFUND, "cancelled")],
)
def test_refusal_of_a_payment_elsewhere_is_rejected_for_good(job, payment_status):
    refusal = error(422, job.refusal_code, "Payment cannot be changed")
    decision = decide(job, refusal, attempt_no=1, max_attempts=3, check=payment(payment_status))
    assert decision.status == REJECTED
    assert decision.final
    assert decision.response == f"HTTP 422 {job.refusal_code}: Payment cannot be changed (payment is {payment_status})"


def test_refusal_when_the_check_fails_is_failed_and_retried():
    refusal = error(422, "not_refundable", "nope")
    check = error(503, "service_unavailable", "maintenance", transient=True)
    decision = decide(REFUND, refusal, attempt_no=1, max_attempts=3, check=check)
    assert (decision.status, decision.final, decision.transient) == (FAILED, False, True)
    assert "checking the payment failed: HTTP 503 service_unavailable: maintenance" in decision.response
    last = decide(REFUND, refusal, attempt_no=3, max_attempts=3, check=check)
    assert last.final


def test_the_other_jobs_refusal_code_is_an_ordinary_error():
    # not_refundable answered to a cancel is not the cancel's refusal: no payment check, an attempt used.
    decision = decide(CANCEL, error(422, "not_refundable"), attempt_no=1, max_attempts=3)
    assert decision.status == FAILED
    assert decision.final  # 422: retrying the same request cannot fix it


@pytest.mark.parametrize(("status", "code"), [(401, "unauthorized"), (403, "forbidden")])
@pytest.mark.parametrize("job", [CANCEL, REFUND])
def test_auth_failures_abort_the_site(job, status, code):
    assert decide(job, error(status, code), attempt_no=1, max_attempts=3) == Decision(None, None, abort_site=True)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "internal_server_error"),
        (502, "bad_gateway"),
        (503, "service_unavailable"),
        (504, "gateway_timeout"),
        (429, None),
        (409, "conflict"),
        (None, None),  # timeout or connection error: no answer at all
        (502, None),  # an HTML page from a proxy
    ],
)
@pytest.mark.parametrize("job", [CANCEL, REFUND])
def test_transient_errors_fail_the_attempt_until_attempts_run_out(job, status, code):
    result = error(status, code, transient=True)
    first = decide(job, result, attempt_no=1, max_attempts=3)
    assert (first.status, first.final, first.transient) == (FAILED, False, True)
    assert decide(job, result, attempt_no=2, max_attempts=3).final is False
    assert decide(job, result, attempt_no=3, max_attempts=3).final is True


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad_request"),
        (404, "not_found"),
        (422, "unprocessable_entity"),
        (422, "invalid_parameter"),
        (400, "missing_parameter"),
        (422, "invalid_payment_type"),
        (422, "invalid_currency"),
    ],
)
@pytest.mark.parametrize("job", [CANCEL, REFUND])
def test_errors_retrying_cannot_fix_are_final_at_once(job, status, code):
    decision = decide(job, error(status, code, "bad"), attempt_no=1, max_attempts=3)
    assert (decision.status, decision.final, decision.transient) == (FAILED, True, False)
    assert decision.response == f"HTTP {status} {code}: bad"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (402, "request_failed"),
        (402, "insufficient_funds"),
        (402, "card_declined"),
        (402, "fraudulent"),
        (402, "other_error"),
        (405, None),
    ],
)
def test_other_errors_use_an_attempt_and_are_final_at_the_limit(status, code):
    result = error(status, code)
    assert decide(REFUND, result, attempt_no=1, max_attempts=3) == Decision(FAILED, result.describe())
    assert decide(REFUND, result, attempt_no=3, max_attempts=3).final
    assert decide(REFUND, result, attempt_no=1, max_attempts=1).final


def test_idempotency_keys_are_stable_short_ascii_and_distinct():
    key = idempotency_key(REFUND, "site-ja", "注文/0001", "pay_1", 1)
    assert key == idempotency_key(REFUND, "site-ja", "注文/0001", "pay_1", 1)
    assert re.fullmatch(r"[!-~]{1,100}", key)
    assert len(key) <= 100
    huge = idempotency_key(REFUND, "s" * 500, "o" * 5000, "p" * 500, 99999)
    assert len(huge) <= 100
    others = {
        idempotency_key(CANCEL, "site-ja", "注文/0001", "pay_1", 1),
        idempotency_key(REFUND, "site-ja", "注文/0001", "pay_1", 2),
        idempotency_key(REFUND, "site-en", "注文/0001", "pay_1", 1),
        idempotency_key(REFUND, "site-ja", "注文/0002", "pay_1", 1),
        idempotency_key(REFUND, "site-ja", "注文/0001", "pay_2", 1),
        # the separator keeps ("ab", "c") and ("a", "bc") apart
        idempotency_key(REFUND, "site-ja注文", "/0001", "pay_1", 1),
    }
    assert key not in others
    assert len(others) == 6
    with pytest.raises(ValueError, match="attempt_no"):
        idempotency_key(REFUND, "s", "o", "p", 0)


def test_reasons_are_one_clean_line_of_bounded_length():
    message = "line one\nline two\x00\x1b[31m sk_live_abcdef123 " + "x" * 5000
    decision = decide(REFUND, error(402, "other_error", message), attempt_no=1, max_attempts=3)
    assert decision.response.startswith("HTTP 402 other_error: line one line two [31m sk_*** xxx")
    assert len(decision.response) == 1000
    assert decision.response.endswith("…")
