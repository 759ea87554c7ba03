"""What the jobs do with an eligible order before any call (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from komoju.outcomes import Job, idempotency_key
from komoju.planning import KEY_REUSE_WINDOW, Action, plan, row_problem
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


def test_an_open_attempt_is_resent_with_its_own_key_and_counts_a_try():
    step = plan(Job.REFUND, "s1", open_order(tries=2), max_attempts=3, now=NOW)
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
        {"open_started_at": NOW - KEY_REUSE_WINDOW},  # KOMOJU may have forgotten the key
        {"open_started_at": NOW - dt.timedelta(days=3)},
        {"open_payment_id": "zzzzzzzzzzzzzzzzzzzzzzzzz"},  # the order's payment id changed since
        {"tries": 3},  # tries used up: look at the payment before giving up
    ],
)
def test_an_open_attempt_that_must_not_be_resent_is_settled_first(changes):
    step = plan(Job.REFUND, "s1", open_order(**changes), max_attempts=3, now=NOW)
    assert step.action is Action.SETTLE_FIRST
    assert step.attempt_no == 1


def test_an_open_attempt_wins_over_a_row_that_became_invalid():
    # Something may have been sent: it is settled before anything else, even if the row now looks wrong.
    step = plan(Job.REFUND, "s1", open_order(currency="???"), max_attempts=3, now=NOW)
    assert step.action is Action.CALL
    assert step.idempotency_key == "stored-key-1"


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
