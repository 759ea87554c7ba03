"""What the jobs do with an eligible order before any call (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from komoju.outcomes import Job, idempotency_key
from komoju.planning import KEY_REUSE_WINDOW, Action, after_settling, plan, row_problem
from komoju.store import EligibleOrder

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
PAY = "abcdefghijklmnopqrstuvwxy"


def order(**changes) -> EligibleOrder:
    fields = {
        "order_no": "1001",
        "payment_id": PAY,
        "amount": Decimal("1200"),
        "currency": "JPY",
        "last_attempt_no": 0,
        "tries": 0,
        "open_attempt_no": None,
        "open_idempotency_key": None,
        "open_payment_id": None,
        "open_started_at": None,
    }
    return EligibleOrder(**{**fields, **changes})


def open_order(**changes) -> EligibleOrder:
    fields = {
        "last_attempt_no": 1,
        "tries": 1,
        "open_attempt_no": 1,
        "open_idempotency_key": "stored-key-1",
        "open_payment_id": PAY,
        "open_started_at": NOW - dt.timedelta(hours=2),
    }
    return order(**{**fields, **changes})


def test_a_fresh_order_starts_attempt_one_with_its_derived_key():
    step = plan(Job.REFUND, "s1", order(), max_attempts=3, now=NOW)
    assert (step.action, step.attempt_no, step.try_no, step.new_attempt) == (Action.CALL, 1, 1, True)
    assert step.idempotency_key == idempotency_key(Job.REFUND, "s1", "1001", PAY, 1)


def test_an_order_whose_attempt_was_answered_gets_a_new_attempt_and_key():
    step = plan(Job.CANCEL, "s1", order(last_attempt_no=2, tries=2), max_attempts=3, now=NOW)
    assert (step.action, step.attempt_no, step.try_no, step.new_attempt) == (Action.CALL, 3, 3, True)
    assert step.idempotency_key.endswith("-3")


@pytest.mark.parametrize(
    "changes",
    [
        {},  # even a young key: KOMOJU may have done it, or stored an error it would only replay
        {"open_http_status": 503},
        {"open_started_at": NOW - KEY_REUSE_WINDOW},  # KOMOJU may have forgotten the key
        {"open_started_at": NOW - dt.timedelta(days=3)},
        {"open_payment_id": "zzzzzzzzzzzzzzzzzzzzzzzzz"},  # the order's payment id changed since
        {"tries": 3},  # tries used up: look at the payment before giving up
        {"currency": "???"},  # something may have been sent: settled before the row's problems count
    ],
)
def test_an_open_attempt_of_an_earlier_run_is_settled_by_get_first(changes):
    step = plan(Job.REFUND, "s1", open_order(**changes), max_attempts=3, now=NOW)
    assert step.action is Action.SETTLE_FIRST
    assert step.attempt_no == 1


def test_a_pending_attempt_is_only_ever_checked():
    pending = open_order(open_accepted_at=NOW - dt.timedelta(days=1), open_http_status=202, tried_this_run=True)
    step = plan(Job.REFUND, "s1", pending, max_attempts=1, now=NOW)
    assert (step.action, step.attempt_no, step.counts_try) == (Action.CHECK_PENDING, 1, False)


def test_after_settling_a_key_no_answer_came_for_is_resent_and_counts_a_try():
    step = after_settling(Job.REFUND, "s1", open_order(tries=2), max_attempts=3, now=NOW)
    assert (step.action, step.attempt_no, step.try_no, step.idempotency_key, step.new_attempt) == (
        Action.CALL,
        1,
        3,
        "stored-key-1",
        False,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"open_http_status": 503},  # KOMOJU answered an error: resending the key may only replay it
        {"open_http_status": 409},
        {"open_started_at": NOW - KEY_REUSE_WINDOW},
        {"open_payment_id": "zzzzzzzzzzzzzzzzzzzzzzzzz"},
    ],
)
def test_after_settling_anything_else_starts_a_new_attempt_with_a_new_key(changes):
    step = after_settling(Job.REFUND, "s1", open_order(**changes), max_attempts=3, now=NOW)
    assert (step.action, step.attempt_no, step.try_no, step.new_attempt) == (Action.CALL, 2, 2, True)
    assert step.idempotency_key == idempotency_key(Job.REFUND, "s1", "1001", PAY, 2)


def test_after_settling_without_tries_left_the_order_is_given_up():
    step = after_settling(Job.REFUND, "s1", open_order(tries=3, open_http_status=503), max_attempts=3, now=NOW)
    assert step.action is Action.GIVE_UP
    assert after_settling(Job.REFUND, "s1", open_order(tries=3), max_attempts=3, now=NOW).action is Action.GIVE_UP


def test_tries_used_up_means_give_up_without_a_call():
    step = plan(Job.REFUND, "s1", order(last_attempt_no=2, tries=3), max_attempts=3, now=NOW)
    assert step.action is Action.GIVE_UP
    assert step.attempt_no == 2
    assert step.idempotency_key is None
    assert "3 tries" in step.reason


@pytest.mark.parametrize(
    ("job", "changes", "fragment"),
    [
        (Job.CANCEL, {"payment_id": "'; DROP TABLE komoju.orders; --"}, "is not a KOMOJU payment id"),
        (Job.REFUND, {"payment_id": "pay/../../admin"}, "is not a KOMOJU payment id"),
        (Job.REFUND, {"currency": "XYZ"}, "currency 'XYZ' is not a known ISO 4217 code"),
        (Job.REFUND, {"currency": None}, "currency None is not a known"),
        (Job.REFUND, {"amount": Decimal("-1")}, "total_gross_price -1 is not a valid amount"),
        (Job.REFUND, {"amount": Decimal("NaN")}, "total_gross_price NaN is not a valid amount"),
        (Job.REFUND, {"amount": "not a number"}, "could not be planned"),
    ],
)
def test_bad_rows_are_refused_with_a_reason_and_never_raise(job, changes, fragment):
    step = plan(job, "s1", order(**changes), max_attempts=3, now=NOW)
    assert step.action is Action.INVALID
    assert step.attempt_no == 0
    assert fragment in step.reason


def test_cancel_does_not_need_a_sound_amount_or_currency():
    # A cancelled order's payment must not stay payable, whatever the storefront wrote in its amount.
    assert row_problem(Job.CANCEL, order(currency="XYZ", amount=Decimal("-5"))) is None
    assert row_problem(Job.REFUND, order(amount=None)) is None  # full refund: KOMOJU knows the amount


def test_progress_notices_a_concurrent_run():
    before = order()
    assert before.progress != dataclasses.replace(before, tries=1, last_attempt_no=1, open_attempt_no=1).progress


def test_a_task_retry_resends_the_open_key_without_counting_a_try():
    step = plan(Job.REFUND, "s1", open_order(tries=3, tried_this_run=True), max_attempts=3, now=NOW)
    assert (step.action, step.try_no, step.idempotency_key, step.counts_try) == (
        Action.CALL,
        3,
        "stored-key-1",
        False,
    )


def test_an_order_answered_earlier_in_this_run_waits_for_the_next_run():
    step = plan(Job.REFUND, "s1", order(last_attempt_no=1, tries=1, tried_this_run=True), max_attempts=3, now=NOW)
    assert step.action is Action.NEXT_RUN
    assert step.idempotency_key is None
