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


def _failure(order_no, attempt_no, payment_id, status="Failed", reason="gone"):
    return {
        "order_no": order_no,
        "attempt_no": attempt_no,
        "payment_id": payment_id,
        "status": status,
        "reason": reason,
        "amount": "1200",
        "currency": "JPY",
    }


def test_a_final_failure_ends_the_order_for_its_payment_only(orders):
    store.write_results(orders, "refund", "s1", failures=[_failure("R001", 1, PAY[:-2] + "1")])
    assert "R001" not in _all(orders)
    # a failure before any call (a bad row) keeps the order in, so a corrected row is processed
    store.write_results(orders, "refund", "s1", failures=[_failure("R002", 0, PAY[:-2] + "2")])
    assert "R002" in _all(orders)
    # a corrected payment id starts afresh
    with orders.cursor() as cur:
        cur.execute("UPDATE komoju.orders SET komoju_payment_id = 'newpayment' WHERE order_no = 'R001'")
    orders.commit()
    assert "R001" in _all(orders)


def test_the_first_batch_includes_an_empty_order_number(orders):
    with orders.cursor() as cur:
        cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id)"
            " VALUES ('s1', '', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'pempty')"
        )
    orders.commit()
    assert _all(orders)[0] == ""


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
    # the payment id the fixture gave the order (R001 -> ...01)
    return {
        "order_no": order_no,
        "attempt_no": attempt_no,
        "payment_id": PAY[:-2] + str(int(order_no[1:])),
        "idempotency_key": key,
    }


def _one(conn, order_no):
    (found,) = store.eligible_orders(conn, "refund", "s1", order_nos=[order_no], limit=1)
    return found


def test_attempts_stay_open_on_transient_tries_then_close(orders):
    store.start_attempts(orders, "refund", "s1", "run-1", new=[_attempt("R001", 1, "key-r001-1")], resent=[])
    first = _one(orders, "R001")
    assert (first.tries, first.last_attempt_no, first.open_attempt_no, first.open_idempotency_key) == (
        1,
        1,
        1,
        "key-r001-1",
    )
    assert first.open_started_at is not None
    transient = {
        "order_no": "R001",
        "attempt_no": 1,
        "http_status": 503,
        "error_code": "service_unavailable",
        "response": "maintenance",
    }
    store.write_results(
        orders,
        "refund",
        "s1",
        kept_open=[transient],
        statuses=[{"order_no": "R001", "status": "Failed", "response": "maintenance"}],
    )
    store.start_attempts(orders, "refund", "s1", "run-2", new=[], resent=[{"order_no": "R001", "attempt_no": 1}])
    second = _one(orders, "R001")
    assert (second.tries, second.open_attempt_no, second.open_idempotency_key) == (2, 1, "key-r001-1")
    store.write_results(orders, "refund", "s1", closed=[{**transient, "outcome": "failed", "http_status": 402}])
    assert _one(orders, "R001").progress == (1, 2, None)
    with orders.cursor() as cur:
        cur.execute("SELECT komoju_refund_status, komoju_refund_response FROM komoju.orders WHERE order_no = 'R001'")
        assert cur.fetchone() == ("Failed", "maintenance")
        cur.execute("SELECT tries, last_error, outcome FROM komoju.attempt WHERE order_no = 'R001'")
        assert cur.fetchone() == (2, "maintenance", "failed")
    orders.commit()


def test_tries_never_sent_are_taken_back(orders):
    store.start_attempts(
        orders, "refund", "s1", "run-1", new=[_attempt("R001", 1, "k1"), _attempt("R002", 1, "k2")], resent=[]
    )
    store.start_attempts(orders, "refund", "s1", "run-2", new=[], resent=[{"order_no": "R002", "attempt_no": 1}])
    store.write_results(
        orders,
        "refund",
        "s1",
        taken_back=[
            {"order_no": "R001", "attempt_no": 1, "new": True, "counted": True},
            {"order_no": "R002", "attempt_no": 1, "new": False, "counted": True},
        ],
    )
    assert _one(orders, "R001").progress == (0, 0, None)  # forgotten: as if never started
    assert _one(orders, "R002").progress == (1, 1, 1)  # still open, its try given back


def test_one_open_attempt_per_order_and_unique_keys(orders):
    store.start_attempts(orders, "refund", "s1", "run-1", new=[_attempt("R001", 1, "key-a")], resent=[])
    with pytest.raises(psycopg2.errors.UniqueViolation, match="attempt_one_open"):
        store.start_attempts(orders, "refund", "s1", "run-2", new=[_attempt("R001", 2, "key-b")], resent=[])
    with pytest.raises(psycopg2.errors.UniqueViolation):
        store.start_attempts(orders, "refund", "s1", "run-2", new=[_attempt("R002", 1, "key-a")], resent=[])
    # the failed statements changed nothing
    assert [o.open_idempotency_key for o in store.eligible_orders(orders, "refund", "s1", limit=2)] == ["key-a", None]


def _record_failure(conn, order_no):
    store.write_results(conn, "refund", "s1", failures=[_failure(order_no, 1, "p" + order_no, "Rejected", "no")])


def _new_mail(conn, run_id):
    store.lock_site_notifications(conn, "refund", "s1")
    pending = store.unassigned_failures(conn, "refund", "s1")
    return store.create_notification(
        conn,
        "refund",
        "s1",
        failure_ids=[f.failure_id for f in pending],
        recipients=["a@example.com"],
        subject="s",
        run_id=run_id,
        mail_domain="example.com",
    )


def test_an_unsent_email_is_sent_again_as_it_was_and_new_failures_get_their_own(orders):
    _record_failure(orders, "R001")
    _record_failure(orders, "R002")
    _record_failure(orders, "R002")  # recorded twice (a rerun): kept once
    first = _new_mail(orders, "run-1")
    assert first.failures == 2
    assert first.message_id.startswith("<komoju-airflow.refund.")
    assert first.message_id.endswith("@example.com>")
    # The send failed (never marked). Next run: the same e-mail again, and the new failure in a new one.
    _record_failure(orders, "R003")
    (unsent,) = store.unsent_notifications(orders, "refund", "s1")
    assert (unsent.notification_id, unsent.message_id) == (first.notification_id, first.message_id)
    assert [f.order_no for f in unsent.failures] == ["R001", "R002"]
    second = _new_mail(orders, "run-2")
    assert second.failures == 1
    assert store.claim_notification_for_send(orders, first.notification_id) is True
    store.mark_notification_sent(orders, first.notification_id)
    assert store.claim_notification_for_send(orders, first.notification_id) is False  # sent already
    orders.rollback()
    assert [n.notification_id for n in store.unsent_notifications(orders, "refund", "s1")] == [second.notification_id]
    orders.rollback()


def test_customer_links_are_recorded_once_and_travel_in_an_email_until_it_is_sent(orders):
    link = {"order_no": "R001", "attempt_no": 1, "payment_id": "pR001", "redirect_url": "https://k.example/r/1",
            "amount": "1500", "currency": "JPY"}  # fmt: skip
    store.write_results(orders, "refund", "s1", links=[link])
    store.write_results(orders, "refund", "s1", links=[{**link, "redirect_url": "https://k.example/r/other"}])
    (unassigned,) = store.unassigned_links(orders, "refund", "s1")
    assert (unassigned.order_no, unassigned.redirect_url) == ("R001", "https://k.example/r/1"), "the first is kept"
    store.lock_site_notifications(orders, "refund", "s1")
    mail = store.create_notification(
        orders, "refund", "s1", failure_ids=[], link_ids=[unassigned.link_id], recipients=["a@example.com"],
        subject="s", run_id="run-1", mail_domain="example.com",
    )  # fmt: skip
    assert (mail.failures, mail.links) == (0, 1)
    assert store.unassigned_links(orders, "refund", "s1") == []
    (unsent,) = store.unsent_notifications(orders, "refund", "s1")  # a links-only e-mail whose send failed
    assert (unsent.failures, [x.redirect_url for x in unsent.links]) == ([], ["https://k.example/r/1"])
    store.mark_notification_sent(orders, mail.notification_id)
    assert store.unsent_notifications(orders, "refund", "s1") == []


def test_a_sender_waiting_on_a_concurrent_send_sees_it_sent(orders, pg_server, komoju_database):
    _record_failure(orders, "R001")
    mail = _new_mail(orders, "run-1")
    other = pg_server.connect(komoju_database)
    try:
        assert store.claim_notification_for_send(orders, mail.notification_id) is True  # sending, row locked
        import threading

        seen = {}
        waiter = threading.Thread(
            target=lambda: seen.update(claim=store.claim_notification_for_send(other, mail.notification_id))
        )
        waiter.start()
        from devtools.ports import poll_until

        def waiting() -> bool:
            with pg_server.connect(komoju_database) as probe, probe.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted")
                found = cur.fetchone()[0] > 0
            probe.close()
            return found

        poll_until(waiting, timeout=10, what="the second sender waiting on the e-mail's lock")
        store.mark_notification_sent(orders, mail.notification_id)
        waiter.join(10)
        assert seen == {"claim": False}
    finally:
        other.close()
