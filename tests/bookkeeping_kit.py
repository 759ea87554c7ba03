"""A status database holding a year of bookkeeping, old and recent, finished and not: what the retention tests (the
store, the CLI, the ``komoju_db_clean`` DAG) clean, and what each must keep. (Importable as ``bookkeeping_kit``:
pytest puts ``tests/`` on the path for the root conftest.)

Every order is the refund job's unless its number starts with ``C-`` (the cancel job's). "old" is 100 days ago,
"recent" 10 days ago; the clean removes what finished more than 90 days ago, and only what may go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OLD = "now() - interval '100 days'"
RECENT = "now() - interval '10 days'"
SITE = "r1"  # e-mails on
QUIET_SITE = "r2"  # e-mails off: its final failures are never e-mailed, so never removed


@dataclass
class Expected:
    """What must be left after the clean (``table -> set of keys``) and what must have gone."""

    attempts_kept: set[tuple[str, str, int]] = field(default_factory=set)  # (job, order_no, attempt_no)
    attempts_gone: set[tuple[str, str, int]] = field(default_factory=set)
    failures_kept: set[str] = field(default_factory=set)  # order_no
    failures_gone: set[str] = field(default_factory=set)
    links_kept: set[str] = field(default_factory=set)
    links_gone: set[str] = field(default_factory=set)
    notifications_kept: set[str] = field(default_factory=set)  # subject
    notifications_gone: set[str] = field(default_factory=set)


def _pay(order_no: str) -> str:
    return ("p" + "".join(c for c in order_no.lower() if c.isalnum())).ljust(25, "x")


class Seeder:
    """Writes orders, attempts, e-mails, final failures and customer links with chosen ages."""

    def __init__(self, cur: Any, expected: Expected) -> None:
        self.cur = cur
        self.expected = expected

    def order(self, order_no: str, status: str | None, site: str = SITE) -> None:
        job = "cancel" if order_no.startswith("C-") else "refund"
        paid = "not_paid" if job == "cancel" else "paid"
        self.cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id,"
            " total_gross_price, currency, komoju_cancel_status, komoju_refund_status)"
            " VALUES (%s, %s, 'cancelled', %s, 'KOMOJU_HOSTED_PAGE', %s, 1000, 'JPY', %s, %s)",
            (site, order_no, paid, _pay(order_no), status if job == "cancel" else None,
             status if job == "refund" else None),
        )  # fmt: skip

    def attempt(self, order_no: str, attempt_no: int, finished: str | None, outcome: str | None, *, keep: bool,
                site: str = SITE, accepted: bool = False, started: str = OLD) -> None:  # fmt: skip
        job = "cancel" if order_no.startswith("C-") else "refund"
        self.cur.execute(
            "INSERT INTO komoju.attempt (job, site_id, order_no, attempt_no, komoju_payment_id, idempotency_key,"  # noqa: S608
            f" started_at, last_tried_at, finished_at, outcome, accepted_at) VALUES (%s, %s, %s, %s, %s, %s, {started},"
            f" {started}, {finished or 'NULL'}, %s, {started if accepted else 'NULL'})",
            (job, site, order_no, attempt_no, _pay(order_no), f"key-{job}-{site}-{order_no}-{attempt_no}", outcome),
        )  # (test data: the ages are fixed SQL expressions of this module, never values)
        (self.expected.attempts_kept if keep else self.expected.attempts_gone).add((job, order_no, attempt_no))

    def notification(self, subject: str, sent: str | None, *, keep: bool, site: str = SITE,
                     job: str = "refund") -> int:  # fmt: skip
        self.cur.execute(
            "INSERT INTO komoju.notification (job, site_id, recipients, subject, message_id, created_at, sent_at)"  # noqa: S608
            f" VALUES (%s, %s, '{{ops@example.com}}', %s, %s, {OLD}, {sent or 'NULL'}) RETURNING notification_id",
            (job, site, subject, f"<{subject}@test>"),
        )
        (self.expected.notifications_kept if keep else self.expected.notifications_gone).add(subject)
        return self.cur.fetchone()[0]

    def failure(self, order_no: str, attempt_no: int, status: str, notification_id: int | None, *, keep: bool,
                site: str = SITE) -> None:  # fmt: skip
        job = "cancel" if order_no.startswith("C-") else "refund"
        self.cur.execute(
            "INSERT INTO komoju.final_failure (job, site_id, order_no, attempt_no, komoju_payment_id, status, reason,"  # noqa: S608
            f" amount, currency, recorded_at, notification_id) VALUES (%s, %s, %s, %s, %s, %s, 'why', 1000, 'JPY',"
            f" {OLD}, %s)",
            (job, site, order_no, attempt_no, _pay(order_no), status, notification_id),
        )
        (self.expected.failures_kept if keep else self.expected.failures_gone).add(order_no)

    def link(self, order_no: str, attempt_no: int, notification_id: int | None, *, keep: bool) -> None:
        self.cur.execute(
            "INSERT INTO komoju.customer_link (job, site_id, order_no, attempt_no, komoju_payment_id, redirect_url,"  # noqa: S608
            f" amount, currency, recorded_at, notification_id) VALUES ('refund', %s, %s, %s, %s,"
            f" 'https://komoju.example/bank', 1000, 'JPY', {OLD}, %s)",
            (SITE, order_no, attempt_no, _pay(order_no), notification_id),
        )
        (self.expected.links_kept if keep else self.expected.links_gone).add(order_no)


def seed_year_of_bookkeeping(conn: Any) -> Expected:
    """Write the scenario (two sites, old and recent rows of every kind); commits. Returns what a clean with
    ``--older-than 90`` must keep and remove."""
    expected = Expected()
    day_before_old = "now() - interval '101 days'"
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO komoju.site (site_id, notify_emails, email_enabled) VALUES"
            " (%s, '{ops@example.com}', true), (%s, '{quiet@example.com}', false)",
            (SITE, QUIET_SITE),
        )
        s = Seeder(cur, expected)
        # Done long ago: its whole history goes.
        s.order("R-DONE", "Refunded")
        s.attempt("R-DONE", 1, day_before_old, "transient", keep=False)
        s.attempt("R-DONE", 2, OLD, "succeeded", keep=False)
        s.order("C-DONE", "Cancelled")
        s.attempt("C-DONE", 1, OLD, "succeeded", keep=False)
        # Rejected long ago and e-mailed long ago: attempt, final failure and the e-mail go.
        s.order("R-REJ", "Rejected")
        s.attempt("R-REJ", 1, OLD, "rejected", keep=False)
        s.failure("R-REJ", 1, "Rejected", s.notification("mail-rejected", OLD, keep=False), keep=False)
        # Given up on (Failed for good) long ago: its attempts go, but its final failure stays (it is what keeps the
        # order from being tried again), and so does the e-mail carrying it; the Rejected order in the same e-mail
        # loses its final failure.
        s.order("R-GAVEUP", "Failed")
        for n in (1, 2, 3):
            s.attempt("R-GAVEUP", n, OLD, "failed", keep=False)
        shared = s.notification("mail-gave-up-and-rejected", OLD, keep=True)
        s.failure("R-GAVEUP", 3, "Failed", shared, keep=True)
        s.order("R-REJ2", "Rejected")
        s.attempt("R-REJ2", 1, OLD, "rejected", keep=False)
        s.failure("R-REJ2", 1, "Rejected", shared, keep=False)
        # Pending for 100 days: an open attempt KOMOJU accepted, its customer link e-mailed long ago: all stays.
        s.order("R-PEND", "Pending")
        s.attempt("R-PEND", 1, day_before_old, "failed", keep=True)
        s.attempt("R-PEND", 2, None, None, keep=True, accepted=True)
        s.link("R-PEND", 2, s.notification("mail-link", OLD, keep=True), keep=True)
        # An attempt whose outcome was never known (open), and an order still to be tried again: all stays.
        s.order("R-OPEN", "Failed")
        s.attempt("R-OPEN", 1, None, None, keep=True)
        s.order("R-RETRY", "Failed")
        s.attempt("R-RETRY", 1, OLD, "failed", keep=True)
        # A final failure in an e-mail never sent, and one in no e-mail (a site with e-mails off): all stays.
        s.order("R-UNSENT", "Rejected")
        s.attempt("R-UNSENT", 1, OLD, "rejected", keep=True)
        s.failure("R-UNSENT", 1, "Rejected", s.notification("mail-unsent", None, keep=True), keep=True)
        s.order("R-QUIET", "Rejected", site=QUIET_SITE)
        s.attempt("R-QUIET", 1, OLD, "rejected", keep=True, site=QUIET_SITE)
        s.failure("R-QUIET", 1, "Rejected", None, keep=True, site=QUIET_SITE)
        # Recent: stays; an order half old, half recent: stays whole.
        s.order("R-RECENT", "Refunded")
        s.attempt("R-RECENT", 1, RECENT, "succeeded", keep=True)
        s.order("R-MIXED", "Refunded")
        s.attempt("R-MIXED", 1, OLD, "failed", keep=True)
        s.attempt("R-MIXED", 2, RECENT, "succeeded", keep=True)
        # Rejected long ago but e-mailed only recently (mail was down): the attempt goes, the e-mail stays.
        s.order("R-REJ-LATE", "Rejected")
        s.attempt("R-REJ-LATE", 1, OLD, "rejected", keep=False)
        s.failure("R-REJ-LATE", 1, "Rejected", s.notification("mail-late", RECENT, keep=True), keep=True)
        # The storefront deleted the order: its old history goes.
        s.attempt("R-GONE", 1, OLD, "succeeded", keep=False)
        # The audit trail of setting changes is never cleaned.
        cur.execute(
            "INSERT INTO komoju.setting_change (changed_at, changed_by, channel, action, site_id, field, old_value,"
            " new_value) VALUES (now() - interval '100 days', 'ops', 'cli', 'komoju.site.update', %s,"
            " 'email_enabled', 'true', 'false')",
            (QUIET_SITE,),
        )
    conn.commit()
    return expected


def left(conn: Any) -> dict[str, set]:
    """What is in the bookkeeping tables now, keyed as :class:`Expected` keys them."""
    with conn.cursor() as cur:
        cur.execute("SELECT job, order_no, attempt_no FROM komoju.attempt")
        attempts = set(cur.fetchall())
        cur.execute("SELECT order_no FROM komoju.final_failure")
        failures = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT order_no FROM komoju.customer_link")
        links = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT subject FROM komoju.notification")
        notifications = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT count(*) FROM komoju.setting_change")
        (changes,) = cur.fetchone()
    conn.commit()
    return {"attempts": attempts, "failures": failures, "links": links, "notifications": notifications,
            "setting_changes": {changes}}  # fmt: skip


def problems(conn: Any, expected: Expected) -> list[str]:
    """Every row the clean removed that it must keep, or kept that it must remove (empty: all as expected)."""
    now = left(conn)
    found = []
    pairs = (
        ("attempts", expected.attempts_kept, expected.attempts_gone),
        ("failures", expected.failures_kept, expected.failures_gone),
        ("links", expected.links_kept, expected.links_gone),
        ("notifications", expected.notifications_kept, expected.notifications_gone),
    )
    for name, kept, gone in pairs:
        found += [f"{name}: {key} was removed, must be kept" for key in sorted(kept - now[name], key=str)]
        found += [f"{name}: {key} is still there, must be removed" for key in sorted(gone & now[name], key=str)]
    if now["setting_changes"] != {1}:
        found.append(f"setting_change rows: {now['setting_changes']}, expected the 1 seeded (never cleaned)")
    return found
