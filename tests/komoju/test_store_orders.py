"""The order store against real PostgreSQL: eligibility, per-order locks between sessions, attempts, e-mails."""

from __future__ import annotations

import psycopg2.errors
import pytest

from komoju import store

PAY = "pay0000000000000000000000"


@pytest.fixture
def orders(db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id) VALUES ('s1')")
        cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id,"
            " total_gross_price, currency, komoju_refund_status)"
            " SELECT 's1', 'R' || lpad(n::text, 3, '0'), 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE',"
            " %s || n, 1000 + n, 'JPY', NULL FROM generate_series(1, 25) AS n",
            (PAY[:-2],),
        )
        cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id,"
            " komoju_refund_status) VALUES"
            " ('s1', 'X-done', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'p', 'Refunded'),"
            " ('s1', 'X-open', 'open', 'paid', 'KOMOJU_HOSTED_PAGE', 'p', NULL),"
            " ('s1', 'X-nopay', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', '', NULL),"
            " ('s1', 'X-other', 'cancelled', 'paid', 'CREDIT_CARD', 'p', NULL),"
            " ('s1', 'X-unpaid', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'p', NULL)"
        )
    db.commit()
    return db


def _all(conn, job="refund", **kwargs):
    return [o.order_no for o in store.eligible_orders(conn, job, "s1", limit=1000, **kwargs)]


def test_eligibility_and_keyset_batches(orders):
    every = _all(orders)
    assert every == [f"R{n:03d}" for n in range(1, 26)]
    first = store.eligible_orders(orders, "refund", "s1", limit=10)
    second = store.eligible_orders(orders, "refund", "s1", after=first[-1].order_no, limit=10)
    assert [o.order_no for o in first + second] == every[:20]
    assert _all(orders, "cancel") == ["X-unpaid"]
    assert store.orders_without_payment_id(orders, "refund", "s1") == 1
    assert _all(orders, order_nos=["R002", "X-done", "R010"]) == ["R002", "R010"]


def test_an_order_with_a_final_failure_is_no_longer_eligible(orders):
    store.write_results(
        orders,
        "refund",
        "s1",
        attempts=[],
        statuses=[{"order_no": "R001", "status": "Failed", "response": "gone"}],
        failures=[
            {
                "order_no": "R001",
                "attempt_no": 0,
                "status": "Failed",
                "reason": "gone",
                "amount": None,
                "currency": "JPY",
            }
        ],
    )
    assert "R001" not in _all(orders)


def test_locks_keep_two_sessions_apart_and_die_with_the_connection(orders, pg_server, komoju_database):
    other = pg_server.connect(komoju_database)
    try:
        mine = store.lock_orders(orders, "refund", "s1", ["R001", "R002", "R003"])
        assert mine == ["R001", "R002", "R003"]
        assert store.lock_orders(other, "refund", "s1", ["R002", "R003", "R004"]) == ["R004"]
        # the same order under the other job is another lock
        assert store.lock_orders(other, "cancel", "s1", ["R002"]) == ["R002"]
        store.release_orders(orders, "refund", "s1", ["R002"])
        assert store.lock_orders(other, "refund", "s1", ["R002"]) == ["R002"]
    finally:
        other.close()  # a worker that dies: its locks go with its connection
    third = pg_server.connect(komoju_database)
    try:
        assert store.lock_orders(third, "refund", "s1", ["R002", "R004"]) == ["R002", "R004"]
    finally:
        third.close()


def _attempt(order_no, attempt_no, key):
    return {"order_no": order_no, "attempt_no": attempt_no, "payment_id": PAY, "idempotency_key": key}


def test_attempts_open_then_finish_and_feed_eligibility(orders):
    store.start_attempts(orders, "refund", "s1", "run-1", [_attempt("R001", 1, "key-r001-1")])
    (open_one,) = store.eligible_orders(orders, "refund", "s1", order_nos=["R001"], limit=1)
    assert (open_one.attempts, open_one.open_attempt_no, open_one.open_idempotency_key) == (1, 1, "key-r001-1")
    assert open_one.open_started_at is not None
    store.write_results(
        orders,
        "refund",
        "s1",
        attempts=[
            {
                "order_no": "R001",
                "attempt_no": 1,
                "outcome": "transient",
                "http_status": 503,
                "error_code": "service_unavailable",
                "response": "maintenance",
            }
        ],
        statuses=[{"order_no": "R001", "status": "Failed", "response": "maintenance"}],
        failures=[],
    )
    (closed,) = store.eligible_orders(orders, "refund", "s1", order_nos=["R001"], limit=1)
    assert (closed.attempts, closed.open_attempt_no) == (1, None)
    with orders.cursor() as cur:
        cur.execute("SELECT komoju_refund_status, komoju_refund_response FROM komoju.orders WHERE order_no = 'R001'")
        assert cur.fetchone() == ("Failed", "maintenance")
    orders.commit()


def test_one_open_attempt_per_order_and_unique_keys(orders):
    store.start_attempts(orders, "refund", "s1", "run-1", [_attempt("R001", 1, "key-a")])
    with pytest.raises(psycopg2.errors.UniqueViolation, match="attempt_one_open"):
        store.start_attempts(orders, "refund", "s1", "run-2", [_attempt("R001", 2, "key-b")])
    with pytest.raises(psycopg2.errors.UniqueViolation):
        store.start_attempts(orders, "refund", "s1", "run-2", [_attempt("R002", 1, "key-a")])
    # the failed statements changed nothing
    assert [o.open_idempotency_key for o in store.eligible_orders(orders, "refund", "s1", limit=2)] == ["key-a", None]


def _record_failure(conn, order_no):
    store.write_results(
        conn,
        "refund",
        "s1",
        attempts=[],
        statuses=[],
        failures=[
            {
                "order_no": order_no,
                "attempt_no": 1,
                "status": "Rejected",
                "reason": "no",
                "amount": "1200",
                "currency": "JPY",
            }
        ],
    )


def test_failures_go_into_one_email_and_an_unsent_email_hands_them_on(orders):
    _record_failure(orders, "R001")
    _record_failure(orders, "R002")
    _record_failure(orders, "R002")  # recorded twice (a rerun): kept once
    pending, unsent = store.pending_failures(orders, "refund", "s1")
    assert [f.order_no for f in pending] == ["R001", "R002"]
    assert unsent == []
    first = store.create_notification(
        orders,
        "refund",
        "s1",
        failure_ids=[f.failure_id for f in pending],
        recipients=["a@example.com"],
        subject="s",
        run_id="run-1",
        mail_domain="example.com",
    )
    assert first.failures == 2
    assert first.message_id.startswith("<komoju-airflow.refund.")
    assert first.message_id.endswith("@example.com>")
    # The send failed (never marked): the next run takes the same failures plus a new one into a new e-mail.
    _record_failure(orders, "R003")
    pending, unsent = store.pending_failures(orders, "refund", "s1")
    assert [f.order_no for f in pending] == ["R001", "R002", "R003"]
    assert unsent == [first.notification_id]
    second = store.create_notification(
        orders,
        "refund",
        "s1",
        failure_ids=[f.failure_id for f in pending],
        recipients=["a@example.com"],
        subject="s",
        run_id="run-2",
        mail_domain="example.com",
    )
    assert store.claim_notification_for_send(orders, first.notification_id) is False  # superseded: not sent
    orders.rollback()
    assert store.claim_notification_for_send(orders, second.notification_id) is True
    store.mark_notification_sent(orders, second.notification_id)
    assert store.claim_notification_for_send(orders, second.notification_id) is False  # sent already
    orders.rollback()
    assert store.pending_failures(orders, "refund", "s1")[0] == []
    orders.rollback()
