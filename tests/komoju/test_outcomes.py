"""The outcome decision over every answer KOMOJU_API.md lists, for both jobs."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from komoju.outcomes import (
    FAILED,
    PENDING,
    REJECTED,
    CallResult,
    Decision,
    Job,
    accepted_since,
    decide,
    decide_pending,
    idempotency_key,
)

CANCEL, REFUND = Job.CANCEL, Job.REFUND


def error(
    status: int | None, code: str | None, message: str = "msg", *, transient: bool = False, json_error: bool = True
) -> CallResult:
    return CallResult(
        ok=False, http_status=status, code=code, message=message, transient=transient, json_error=json_error
    )


def payment(status: str, *, total: int = 1000, refunded: int | None = None, http_status: int = 200) -> CallResult:
    if refunded is None:
        refunded = total if status == "refunded" else 0
    return CallResult(ok=True, http_status=http_status, payment_status=status, total=total, amount_refunded=refunded)


def check_first(job, result, **kwargs):
    """decide() twice, as the runner does: the refusal asks for the payment, then decides with it."""
    asked = decide(job, result, attempt_no=kwargs.pop("attempt_no", 1), max_attempts=3)
    assert asked == Decision(None, None, check_payment=True), "a refusal is looked at before it is final"
    return asked


@pytest.mark.parametrize(("job", "reached"), [(CANCEL, "cancelled"), (REFUND, "refunded")])
def test_success_reaches_the_goal(job, reached):
    decision = decide(job, payment(reached), attempt_no=1, max_attempts=3)
    assert decision == Decision(job.done_status, f"payment {reached} at KOMOJU")
    assert decision.succeeded
    assert not decision.final


# ------------------------------------------------------------------------------ a 2xx is done only when KOMOJU says


@pytest.mark.parametrize(
    ("job", "seen", "http_status"),
    [
        (CANCEL, "authorized", 202),  # accepted, processing not finished
        (CANCEL, "pending", 200),
        (REFUND, "captured", 202),
        (REFUND, "captured", 200),  # a refund still processing: nothing refunded yet
    ],
)
def test_an_accepted_request_the_payment_does_not_show_is_pending(job, seen, http_status):
    decision = decide(job, payment(seen, http_status=http_status), attempt_no=1, max_attempts=3)
    assert decision.status == PENDING
    assert decision.pending
    assert not decision.final
    assert not decision.succeeded
    assert f"KOMOJU accepted the {job.value} (HTTP {http_status}); not completed yet: payment is {seen}" in (
        decision.response
    )


def test_a_partial_refund_is_pending_and_a_covered_total_is_done():
    partial = decide(REFUND, payment("captured", total=1000, refunded=400), attempt_no=1, max_attempts=3)
    assert partial.pending
    assert "400 of 1000 refunded" in partial.response
    covered = decide(REFUND, payment("captured", total=1000, refunded=1000), attempt_no=1, max_attempts=3)
    assert covered.status == "Refunded"


def test_a_cash_refund_with_a_redirect_url_is_pending_with_the_link():
    seen = CallResult.from_payment(
        200,
        {
            "status": "captured",
            "total": 1500,
            "amount_refunded": 0,
            "refunds": [
                {"id": "r1", "created_at": "2026-12-01T10:00:00Z", "amount": 100},
                {"id": "r2", "created_at": "2026-12-02T10:00:00+09:00", "redirect_url": "https://k.example/r/2"},
            ],
        },
    )
    assert seen.redirect_url == "https://k.example/r/2"
    assert seen.newest_refund_at == dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)
    decision = decide(REFUND, seen, attempt_no=1, max_attempts=3)
    assert (decision.status, decision.redirect_url) == (PENDING, "https://k.example/r/2")
    assert "the customer must give a bank account at https://k.example/r/2" in decision.response


def test_payment_fields_of_the_wrong_kind_are_ignored_not_trusted():
    seen = CallResult.from_payment(
        200, {"status": 5, "total": "1000", "amount_refunded": True, "refunds": ["x", {"redirect_url": "javascript:x"}]}
    )
    assert (seen.payment_status, seen.total, seen.amount_refunded, seen.redirect_url) == (None, None, None, None)
    assert decide(REFUND, seen, attempt_no=1, max_attempts=3).pending


# ----------------------------------------------------------------------------------- refusals are looked at first


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (422, "not_refundable"),
        (422, "invalid_parameter"),  # e.g. a payment refunded by hand in the dashboard
        (400, "bad_request"),
        (404, "not_found"),
        (402, "request_failed"),
        (502, "insufficient_funds"),  # the payment processor's refusal (the hook does not call it transient)
        (405, None),
    ],
)
@pytest.mark.parametrize(("job", "reached"), [(CANCEL, "cancelled"), (REFUND, "refunded")])
def test_any_refusal_of_a_payment_already_there_is_success(job, reached, status, code):
    refusal = error(status, code)
    check_first(job, refusal)
    decision = decide(job, refusal, attempt_no=3, max_attempts=3, check=payment(reached))
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
    unfixable = decide(REFUND, error(404, "not_found"), attempt_no=1, max_attempts=3, check=error(404, "not_found"))
    assert unfixable.final, "a payment KOMOJU does not know is not retried"


def test_the_other_jobs_refusal_code_is_an_ordinary_error():
    # not_refundable answered to a cancel is not the cancel's refusal: an unfixable 422, not a Rejected.
    decision = decide(CANCEL, error(422, "not_refundable"), attempt_no=1, max_attempts=3, check=payment("captured"))
    assert (decision.status, decision.final) == (FAILED, True)


@pytest.mark.parametrize("job", [CANCEL, REFUND])
def test_a_401_aborts_the_site(job):
    assert decide(job, error(401, "unauthorized"), attempt_no=1, max_attempts=3) == Decision(
        None, None, abort_site=True
    )


@pytest.mark.parametrize("job", [CANCEL, REFUND])
def test_komojus_403_fails_only_that_order_for_good(job):
    decision = decide(job, error(403, "forbidden", "no access"), attempt_no=1, max_attempts=3, payment_id="pay1")
    assert (decision.status, decision.final, decision.forbidden, decision.abort_site) == (FAILED, True, True, False)
    assert decision.response == "this key may not access payment pay1 (HTTP 403 forbidden: no access)"


@pytest.mark.parametrize(
    ("status", "code", "json_error"),
    [
        (500, "internal_server_error", True),
        (502, "bad_gateway", True),
        (503, "service_unavailable", True),
        (504, "gateway_timeout", True),
        (429, None, True),
        (409, "conflict", True),
        (None, None, False),  # timeout or connection error: no answer at all
        (502, None, False),  # an HTML page from a proxy
        (403, None, False),  # an HTML 403 from a firewall in front of KOMOJU
    ],
)
@pytest.mark.parametrize("job", [CANCEL, REFUND])
def test_transient_errors_fail_the_attempt_until_attempts_run_out(job, status, code, json_error):
    result = error(status, code, transient=True, json_error=json_error)
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
def test_errors_retrying_cannot_fix_are_final_once_the_payment_is_seen_not_done(job, status, code):
    result = error(status, code, "bad")
    check_first(job, result)
    seen = "captured" if job is REFUND else "authorized"
    decision = decide(job, result, attempt_no=1, max_attempts=3, check=payment(seen))
    assert (decision.status, decision.final, decision.transient) == (FAILED, True, False)
    assert decision.response == f"HTTP {status} {code}: bad (payment is {seen})"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (402, "request_failed"),
        (402, "insufficient_funds"),
        (502, "insufficient_funds"),
        (502, "card_declined"),
        (405, None),
    ],
)
def test_refusals_worth_retrying_use_an_attempt_and_are_final_at_the_limit(status, code):
    result = error(status, code)
    check_first(REFUND, result)
    captured = payment("captured")
    first = decide(REFUND, result, attempt_no=1, max_attempts=3, check=captured)
    assert (first.status, first.final, first.transient) == (FAILED, False, False)
    assert decide(REFUND, result, attempt_no=3, max_attempts=3, check=captured).final
    assert decide(REFUND, result, attempt_no=1, max_attempts=1, check=captured).final


# ------------------------------------------------------------------------------------------- following a Pending

ACCEPTED = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)


@pytest.mark.parametrize(("job", "reached"), [(CANCEL, "cancelled"), (REFUND, "refunded")])
def test_a_pending_order_is_done_once_the_payment_shows_it(job, reached):
    decision = decide_pending(job, payment(reached), accepted_at=ACCEPTED, now=ACCEPTED + WEEK * 2, limit=WEEK)
    assert decision.status == job.done_status


def test_a_pending_order_stays_pending_then_fails_for_good_past_the_limit():
    still = decide_pending(REFUND, payment("captured"), accepted_at=ACCEPTED, now=ACCEPTED + WEEK / 2, limit=WEEK)
    assert (still.status, still.pending) == (PENDING, True)
    assert "KOMOJU accepted the refund on 2026-12-01 09:30 UTC; not completed yet" in still.response
    late = decide_pending(REFUND, payment("captured"), accepted_at=ACCEPTED, now=ACCEPTED + WEEK, limit=WEEK)
    assert (late.status, late.final, late.pending) == (FAILED, True, False)
    assert late.response == (
        "KOMOJU accepted the refund on 2026-12-01 09:30 UTC; it has not completed within 7 day(s) (payment is captured)"
    )


def test_a_pending_order_whose_check_fails_is_left_as_it_is_until_the_limit():
    outage = error(503, "service_unavailable", transient=True)
    assert decide_pending(CANCEL, outage, accepted_at=ACCEPTED, now=ACCEPTED + WEEK / 2, limit=WEEK) is None
    late = decide_pending(CANCEL, outage, accepted_at=ACCEPTED, now=ACCEPTED + WEEK * 2, limit=WEEK)
    assert late.final
    assert "checking it failed: HTTP 503" in late.response
    refused = decide_pending(CANCEL, error(401, "unauthorized"), accepted_at=ACCEPTED, now=ACCEPTED, limit=WEEK)
    assert refused.abort_site


def test_a_refund_created_since_the_attempt_began_means_komoju_has_it():
    started = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)

    def seen(created: str | None, status: str = "captured") -> CallResult:
        refunds = [{"created_at": created}] if created else []
        return CallResult.from_payment(200, {"status": status, "total": 1000, "amount_refunded": 0, "refunds": refunds})

    assert accepted_since(REFUND, seen("2026-12-02T10:00:01Z"), started)
    assert accepted_since(REFUND, seen("2026-12-02T09:57:00Z"), started), "KOMOJU's clock may run a little behind"
    assert not accepted_since(REFUND, seen("2026-12-01T10:00:00Z"), started), "an older refund is someone else's"
    assert not accepted_since(REFUND, seen(None), started)
    assert not accepted_since(REFUND, seen("2026-12-02T10:00:01Z", "refunded"), started), "done is not pending"
    assert not accepted_since(CANCEL, seen("2026-12-02T10:00:01Z"), started)


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
    decision = decide(REFUND, error(402, "other_error", message), attempt_no=1, max_attempts=3, check=payment("x"))
    assert decision.response.startswith("HTTP 402 other_error: line one line two [31m sk_*** xxx")
    assert len(decision.response) == 1000
    assert decision.response.endswith("…")
