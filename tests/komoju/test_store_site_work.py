"""Which sites a job has work for (``<job>_sites_work.sql``), against real PostgreSQL: each kind of work, what is
not work, the orders to settle by hand, the partial indexes the statement uses, and the recorded checks."""

from __future__ import annotations

import pytest

from komoju import store
from komoju.sql import query

PAY = "pay".ljust(25, "0")


def _site(cur, site_id: str, *, emails: tuple[str, ...] = ("ops@example.com",), enabled: bool = True) -> None:
    cur.execute(
        "INSERT INTO komoju.site (site_id, notify_emails, email_enabled) VALUES (%s, %s, %s)",
        (site_id, list(emails), enabled),
    )


def _order(cur, site_id: str, order_no: str, *, job: str = "refund", status: str | None = None,
           payment_id: str | None = PAY, amount: str = "1000", currency: str = "JPY",
           order_status: str = "cancelled") -> None:  # fmt: skip
    cur.execute(
        "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id,"
        " total_gross_price, currency, komoju_cancel_status, komoju_refund_status)"
        " VALUES (%s, %s, %s, %s, 'KOMOJU_HOSTED_PAGE', %s, %s, %s, %s, %s)",
        (site_id, order_no, order_status, "not_paid" if job == "cancel" else "paid", payment_id, amount, currency,
         status if job == "cancel" else None, status if job == "refund" else None),
    )  # fmt: skip


def _failure(cur, site_id: str, order_no: str, attempt_no: int, *, job: str = "refund", payment_id: str = PAY,
             amount: str = "1000", currency: str = "JPY", status: str = "Failed",
             mailed: bool = True) -> None:  # fmt: skip
    notification_id = None
    if mailed:  # in an e-mail sent already
        cur.execute(
            "INSERT INTO komoju.notification (job, site_id, recipients, subject, message_id, sent_at)"
            " VALUES (%s, %s, '{ops@example.com}', 's', %s, now()) RETURNING notification_id",
            (job, site_id, f"<{site_id}-{order_no}@test>"),
        )
        (notification_id,) = cur.fetchone()
    cur.execute(
        "INSERT INTO komoju.final_failure (job, site_id, order_no, attempt_no, komoju_payment_id, status, reason,"
        " amount, currency, notification_id) VALUES (%s, %s, %s, %s, %s, %s, 'why', %s, %s, %s)",
        (job, site_id, order_no, attempt_no, payment_id, status, amount, currency, notification_id),
    )


def _open_attempt(cur, site_id: str, order_no: str, *, job: str = "refund") -> None:
    cur.execute(
        "INSERT INTO komoju.attempt (job, site_id, order_no, attempt_no, komoju_payment_id, idempotency_key)"
        " VALUES (%s, %s, %s, 1, %s, %s)",
        (job, site_id, order_no, PAY, f"key-{site_id}-{order_no}"),
    )


def _work(db, job: str = "refund") -> dict[str, tuple[bool, bool, bool, int]]:
    with db.cursor() as cur:
        cur.execute("SELECT site_id FROM komoju.site")
        ids = [row[0] for row in cur.fetchall()]
    found = store.sites_work(db, job, ids)
    db.rollback()
    return {s: (w.orders_to_work, w.attempts_to_check, w.emails_to_send, w.to_settle) for s, w in found.items()}


def test_each_kind_of_work_and_what_is_not_work(db):
    with db.cursor() as cur:
        for site_id in ("idle", "eligible", "given-up", "bad-row", "bad-row-fixed", "open", "open-left",
                        "mail", "mail-unsent", "mail-off", "link", "done"):  # fmt: skip
            _site(cur, site_id, enabled=site_id != "mail-off")
        _order(cur, "eligible", "E1", status="Failed")  # tried before, tries left
        _order(cur, "given-up", "G1", status="Failed")
        _failure(cur, "given-up", "G1", 3)  # given up on for this payment id: not work, but to settle
        _order(cur, "given-up", "G2", status="Rejected")
        _failure(cur, "given-up", "G2", 1, status="Rejected")
        _order(cur, "bad-row", "B1", status="Failed", currency="XYZ")
        _failure(cur, "bad-row", "B1", 0, currency="XYZ")  # refused before any call, unchanged since
        _order(cur, "bad-row-fixed", "B2", status="Failed", currency="JPY")
        _failure(cur, "bad-row-fixed", "B2", 0, currency="XYZ")  # the storefront corrected the currency
        _order(cur, "open", "O1", status="Pending")
        _open_attempt(cur, "open", "O1")
        _order(cur, "open-left", "O2", order_status="completed")  # no longer the job's: its open attempt is not work
        _open_attempt(cur, "open-left", "O2")
        _order(cur, "mail", "M1", status="Rejected")
        _failure(cur, "mail", "M1", 1, status="Rejected", mailed=False)  # in no e-mail yet
        _order(cur, "mail-off", "F1", status="Rejected")
        _failure(cur, "mail-off", "F1", 1, status="Rejected", mailed=False)  # e-mails off: never e-mailed, not work
        cur.execute(
            "INSERT INTO komoju.notification (job, site_id, recipients, subject, message_id)"
            " VALUES ('refund', 'mail-unsent', '{ops@example.com}', 's', '<m@test>')"
        )
        cur.execute(
            "INSERT INTO komoju.customer_link (job, site_id, order_no, attempt_no, komoju_payment_id, redirect_url)"
            " VALUES ('refund', 'link', 'L1', 1, %s, 'https://komoju.example/bank')",
            (PAY,),
        )
        _order(cur, "done", "D1", status="Refunded")
        _order(cur, "done", "D2", payment_id="")  # no payment id: not the job's to do
        _order(cur, "done", "D3", job="cancel")  # the other job's
    db.commit()

    assert _work(db) == {
        "idle": (False, False, False, 0),
        "eligible": (True, False, False, 0),
        "given-up": (False, False, False, 2),
        "bad-row": (False, False, False, 1),
        "bad-row-fixed": (True, False, False, 1),
        "open": (True, True, False, 0),
        "open-left": (False, False, False, 0),
        "mail": (False, False, True, 1),
        "mail-unsent": (False, False, True, 0),
        "mail-off": (False, False, False, 1),
        "link": (False, False, True, 0),
        "done": (False, False, False, 0),
    }
    cancel = _work(db, "cancel")
    assert {site for site, (orders, *_rest) in cancel.items() if orders} == {"done"}
    found = store.sites_work(db, "refund", ["open", "mail", "idle", "unknown"])
    assert sorted(found) == ["idle", "mail", "open"]
    assert found["open"].has_work
    assert found["open"].reasons == ["orders to work on", "attempts to check"]
    assert found["mail"].reasons == ["e-mails to send"]
    assert not found["idle"].has_work
    assert found["idle"].reasons == []


@pytest.mark.parametrize("job", ["cancel", "refund"])
def test_the_statement_uses_the_partial_indexes(db, job):
    """With sequential scans off, the plan must name the job's candidate index, the open-attempt index and the
    unsent-mail indexes: the statement repeats their predicates exactly (else no index would fit and the plan
    would still read whole tables)."""
    with db.cursor() as cur:
        _site(cur, "s1")
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN " + query(f"{job}_sites_work"), {"site_ids": ["s1"]})
        plan = "\n".join(row[0] for row in cur.fetchall())
    db.rollback()
    for index in (f"orders_{job}_candidates", "attempt_one_open", "final_failure_unnotified",
                  "customer_link_unnotified", "notification_unsent", f"orders_{job}_unsettled"):  # fmt: skip
        assert index in plan, f"{index} not used:\n{plan}"


def test_checks_are_recorded_once_per_site_and_job_and_read_back(db):
    with db.cursor() as cur:
        _site(cur, "a")
        _site(cur, "b")
    db.commit()
    store.record_site_checks(db, "refund", "run-1", {"a": True, "b": False})
    store.record_site_checks(db, "cancel", "run-2", {"a": False})
    first = store.site_checks(db)
    store.record_site_checks(db, "refund", "run-3", {"a": False})
    checks = store.site_checks(db)
    db.rollback()
    assert sorted(checks) == ["a", "b"]
    assert sorted(checks["a"]) == ["cancel", "refund"]
    assert (checks["a"]["refund"].had_work, checks["a"]["refund"].run_id) == (False, "run-3")
    assert checks["a"]["refund"].checked_at >= first["a"]["refund"].checked_at
    assert (checks["b"]["refund"].had_work, checks["b"]["refund"].run_id) == (False, "run-1")
    assert list(checks["b"]) == ["refund"]
    assert checks["a"]["cancel"].run_id == "run-2"
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM komoju.site_check")
        assert cur.fetchone()[0] == 3  # one row per site and job, however often checked
    db.rollback()
