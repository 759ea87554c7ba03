"""Migration 0007: an order becoming eligible for cancel or refund notifies ``komoju_orders`` with its site and job;
nothing else does (the jobs' own writes included), a rolled-back change notifies nothing, and a burst in one
transaction is one notification per site and job."""

from __future__ import annotations

import json
import select

import pytest

HOSTED = "KOMOJU_HOSTED_PAGE"


@pytest.fixture
def listener(pg_server, komoju_database):
    """A second session LISTENing on komoju_orders; ``received()`` drains what it got, as (site_id, job) pairs."""
    conn = pg_server.connect(komoju_database)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("LISTEN komoju_orders")

    class Listener:
        def received(self, wait: float = 0.5) -> list[tuple[str | None, str]]:
            """Every notification so far: waits up to ``wait`` s for the first, then takes whatever else is there
            (NOTIFY is delivered at commit, before the writer's COMMIT returns, so none is still on its way)."""
            select.select([conn], [], [], wait)
            conn.poll()
            assert {n.channel for n in conn.notifies} <= {"komoju_orders"}
            got = [json.loads(n.payload) for n in conn.notifies]
            conn.notifies.clear()
            return [(p.get("site_id"), p["job"]) for p in got]

    try:
        yield Listener()
    finally:
        conn.close()


@pytest.fixture
def shop(db):
    """Two sites; ``write(sql, params)`` runs one statement in its own transaction."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id) VALUES ('s1'), ('s2')")
    db.commit()

    def write(sql: str, params=None) -> None:
        with db.cursor() as cur:
            cur.execute(sql, params)
        db.commit()

    return write


def insert(shop, order_no, *, site="s1", status="cancelled", paid="paid", method=HOSTED, payment="pay1",
           cancel_status=None, refund_status=None) -> None:  # fmt: skip
    shop(
        "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id,"
        " total_gross_price, currency, komoju_cancel_status, komoju_refund_status)"
        " VALUES (%s, %s, %s, %s, %s, %s, 1000, 'JPY', %s, %s)",
        (site, order_no, status, paid, method, payment, cancel_status, refund_status),
    )


def test_inserting_an_eligible_order_notifies_its_site_and_job(shop, listener):
    insert(shop, "R1", paid="paid")
    assert listener.received() == [("s1", "refund")]
    insert(shop, "C1", site="s2", paid="not_paid")
    assert listener.received() == [("s2", "cancel")]


@pytest.mark.parametrize(
    "row",
    [
        {"status": "open"},
        {"method": "CREDIT_CARD"},
        {"payment": None},
        {"payment": ""},
        {"paid": "part_paid"},
        {"refund_status": "Refunded"},
        {"refund_status": "Rejected"},
    ],
    ids=["not-cancelled", "not-komoju", "no-payment-id", "empty-payment-id", "part-paid", "refunded", "rejected"],
)
def test_inserting_an_order_that_is_not_eligible_notifies_nothing(shop, listener, row):
    insert(shop, "X1", **row)
    assert listener.received(wait=0.2) == []


def test_an_update_that_makes_an_order_eligible_notifies(shop, listener):
    insert(shop, "R1", status="open", paid="paid")
    insert(shop, "C1", status="open", paid="not_paid")
    assert listener.received(wait=0.2) == []
    shop("UPDATE komoju.orders SET status = 'cancelled' WHERE order_no = 'R1'")
    assert listener.received() == [("s1", "refund")]
    shop("UPDATE komoju.orders SET status = 'cancelled' WHERE order_no = 'C1'")
    assert listener.received() == [("s1", "cancel")]
    insert(shop, "R2", payment=None)
    shop("UPDATE komoju.orders SET komoju_payment_id = 'pay2' WHERE order_no = 'R2'")  # the payment id arrives
    assert listener.received() == [("s1", "refund")]


def test_updates_of_an_eligible_order_and_the_jobs_own_writes_notify_nothing(shop, listener):
    insert(shop, "R1")
    assert listener.received() == [("s1", "refund")]
    shop("UPDATE komoju.orders SET total_gross_price = 1200, status = 'cancelled' WHERE order_no = 'R1'")
    for status in ("Failed", "Pending", "Failed", None, "Refunded"):  # a run's writes, and a storefront's reset
        shop("UPDATE komoju.orders SET komoju_refund_status = %s, komoju_refund_response = 'x' WHERE order_no = 'R1'",
             (status,))  # fmt: skip
    assert listener.received(wait=0.2) == []
    insert(shop, "C1", paid="not_paid")
    assert listener.received() == [("s1", "cancel")]
    shop("UPDATE komoju.orders SET komoju_cancel_status = 'Rejected' WHERE order_no = 'C1'")
    assert listener.received(wait=0.2) == []


def test_an_order_given_up_on_notifies_again_only_with_a_new_payment_id(shop, listener):
    insert(shop, "R1")
    assert listener.received() == [("s1", "refund")]
    shop("UPDATE komoju.orders SET komoju_refund_status = 'Rejected' WHERE order_no = 'R1'")
    shop(
        "INSERT INTO komoju.final_failure (job, site_id, order_no, attempt_no, komoju_payment_id, status, reason)"
        " VALUES ('refund', 's1', 'R1', 1, 'pay1', 'Failed', 'gone')"
    )
    shop("UPDATE komoju.orders SET komoju_refund_status = NULL WHERE order_no = 'R1'")  # same payment: still given up
    assert listener.received(wait=0.2) == []
    shop("UPDATE komoju.orders SET komoju_payment_id = 'pay9' WHERE order_no = 'R1'")  # a new payment: a new chance
    assert listener.received() == [("s1", "refund")]


def test_a_rolled_back_change_notifies_nothing(db, shop, listener):
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id)"
            " VALUES ('s1', 'R1', 'cancelled', 'paid', %s, 'pay1')",
            (HOSTED,),
        )
    db.rollback()
    assert listener.received(wait=0.2) == []


def test_a_burst_of_1000_cancellations_in_one_transaction_is_one_notification_per_site_and_job(shop, listener):
    shop(
        "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id)"
        " SELECT CASE WHEN n %% 2 = 0 THEN 's1' ELSE 's2' END, 'B' || n, 'open',"
        " CASE WHEN n %% 4 < 2 THEN 'paid' ELSE 'not_paid' END, %s, 'pay' || n FROM generate_series(1, 1000) AS n",
        (HOSTED,),
    )
    assert listener.received(wait=0.2) == []
    shop("UPDATE komoju.orders SET status = 'cancelled' WHERE order_no LIKE 'B%'")
    assert sorted(listener.received()) == [("s1", "cancel"), ("s1", "refund"), ("s2", "cancel"), ("s2", "refund")]


def test_a_site_id_too_long_for_a_payload_still_notifies_the_job(shop, listener):
    site = "s" * 5000
    shop("INSERT INTO komoju.site (site_id) VALUES (%s)", (site,))
    insert(shop, "R1", site=site)
    assert listener.received() == [(None, "refund")]


def test_notify_is_delivered_to_a_listener_of_another_session_only(pg_server, komoju_database, shop):
    """The channel is per database: a listener on another database hears nothing (the tests' databases are many)."""
    other = pg_server.connect("postgres")
    other.autocommit = True
    try:
        with other.cursor() as cur:
            cur.execute("LISTEN komoju_orders")
        insert(shop, "R1")
        select.select([other], [], [], 0.3)
        other.poll()
        assert other.notifies == []
    finally:
        other.close()


def test_the_listen_query_names_the_channel_the_trigger_notifies():
    from komoju import events
    from komoju.sql import migrations, query

    assert query("orders_listen").strip().splitlines()[-1] == f"LISTEN {events.CHANNEL}"
    (notifications,) = [m for m in migrations() if m.name == "order_notifications"]
    assert f"'{events.CHANNEL}'" in notifications.text
