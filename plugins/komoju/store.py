"""Everything the jobs keep in PostgreSQL, one function per named statement in ``include/sql/queries``.

The store knows Postgres and nothing about HTTP; callers pass an open psycopg2 connection and decide when
to commit, except where a function says it commits (a unit of work that must be whole): such a function runs
its statements in ``with conn, conn.cursor() as cur:``, psycopg2's transaction block, which commits when the
block ends and rolls back on any exception (it does not close the connection).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from komoju import settings
from komoju.settings import Actor, FieldChange
from komoju.sql import query

if TYPE_CHECKING:  # psycopg2 is imported where connections are opened (komoju.db), not by the DAG files
    from psycopg2.extensions import connection as Connection

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Site:
    """One storefront site's settings (``komoju.site``)."""

    site_id: str
    name: str | None
    komoju_conn_id: str
    notify_emails: tuple[str, ...]
    email_locale: str
    email_enabled: bool
    active: bool

    @property
    def wants_email(self) -> bool:
        return self.email_enabled and bool(self.notify_emails)


class ScopeError(ValueError):
    """A run asked for sites that do not exist or are not active."""


def _site(row: Sequence[Any]) -> Site:
    site_id, name, conn_id, emails, locale, enabled, active = row
    return Site(site_id, name, conn_id, tuple(emails or ()), locale, enabled, active)


def sites(conn: Connection, site_ids: Sequence[str]) -> list[Site]:
    """The sites with these ids (unknown ids are simply absent), ordered by id."""
    with conn.cursor() as cur:
        cur.execute(query("sites_by_id"), {"site_ids": list(site_ids)})
        return [_site(row) for row in cur.fetchall()]


def all_sites(conn: Connection) -> list[Site]:
    """Every site, active or not, ordered by id."""
    with conn.cursor() as cur:
        cur.execute(query("sites_all"))
        return [_site(row) for row in cur.fetchall()]


class NotFound(LookupError):
    """A change names a site or payment method that does not exist."""


def update_site(conn: Connection, site_id: str, wanted: Mapping[str, Any], actor: Actor) -> list[FieldChange]:
    """Change the site settings ``wanted`` names (validated by :func:`komoju.settings.parse`), keep the others,
    and record each changed field with ``actor``. Returns what changed. The caller commits (or rolls back):
    :func:`komoju.audit.apply` does, once Airflow's audit log has the change too."""
    with conn.cursor() as cur:
        cur.execute(query("site_for_update"), {"site_id": site_id})
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"There is no site '{site_id}' in komoju.site.")
        changes = settings.site_diff(site_id, _site(row).__dict__, wanted)
        if changes:
            values: dict[str, Any] = {"site_id": site_id}
            for name in settings.SITE_FIELDS:
                values[f"set_{name}"] = name in wanted
                values[name] = wanted.get(name)
            cur.execute(query("site_update"), values)
            _record_changes(cur, site_id, changes, actor)
    return changes


def _record_changes(cur: Any, site_id: str, changes: Sequence[FieldChange], actor: Actor) -> None:
    cur.execute(
        query("setting_changes_record"),
        {
            "changed_by": actor.name,
            "channel": actor.channel,
            "site_id": site_id,
            "changes": json.dumps([change.to_json() for change in changes], default=str),
        },
    )


@dataclass(frozen=True)
class SettingChange:
    """One recorded change of a site's settings or payment methods."""

    change_id: int
    changed_at: Any
    changed_by: str
    channel: str
    action: str
    site_id: str
    subject: str | None
    field: str
    old_value: Any
    new_value: Any


def setting_changes(conn: Connection, site_id: str, limit: int = 20) -> list[SettingChange]:
    """The site's most recent recorded changes, newest first."""
    with conn.cursor() as cur:
        cur.execute(query("setting_changes_of_site"), {"site_id": site_id, "limit": limit})
        return [SettingChange(*row) for row in cur.fetchall()]


def resolve_scope(conn: Connection, requested: Sequence[str]) -> list[Site]:
    """The active sites a run works on: ``requested``, or every active site when it is empty.

    Raises ScopeError naming every unknown or inactive id, so a run fails before touching any order.
    """
    if not requested:
        with conn.cursor() as cur:
            cur.execute(query("sites_active"))
            return [_site(row) for row in cur.fetchall()]
    wanted = list(dict.fromkeys(requested))
    found = {site.site_id: site for site in sites(conn, wanted)}
    unknown = [site_id for site_id in wanted if site_id not in found]
    inactive = [site_id for site_id in wanted if site_id in found and not found[site_id].active]
    problems = []
    if unknown:
        problems.append(f"unknown site id(s) {', '.join(map(repr, unknown))} (not in komoju.site)")
    if inactive:
        problems.append(f"inactive site id(s) {', '.join(map(repr, inactive))} (komoju.site.active is false)")
    if problems:
        raise ScopeError(
            f"This run names {' and '.join(problems)}. Nothing was done. Trigger it again with the ids of active "
            "sites, or an empty site_ids list for every active site."
        )
    return [found[site_id] for site_id in wanted]


# ---------------------------------------------------------------------------------------------------------------
# Payment methods
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncCounts:
    """What one payment-method sync changed."""

    added: int
    refreshed: int
    vanished: int
    ignored: int  # items KOMOJU sent that lack a usable type_slug or currency


def method_rows(items: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """KOMOJU ``/payment_methods`` items as rows to store, and how many were unusable and left out."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    ignored = 0
    known = {"type_slug", "currency", "name_en", "name_ja", "name_ko", "subtypes"}
    for item in items:
        slug, currency = item.get("type_slug"), item.get("currency")
        if not isinstance(slug, str) or not slug.strip() or not isinstance(currency, str):
            ignored += 1
            continue
        currency = currency.upper()
        if not _CURRENCY.match(currency):
            ignored += 1
            continue
        subtypes = item.get("subtypes") or []
        rows[(slug, currency)] = {
            "type_slug": slug,
            "currency": currency,
            "name_en": _text_or_none(item.get("name_en")),
            "name_ja": _text_or_none(item.get("name_ja")),
            "name_ko": _text_or_none(item.get("name_ko")),
            "subtypes": [str(s) for s in subtypes] if isinstance(subtypes, list) else [],
            "details": {k: v for k, v in item.items() if k not in known},
        }
    return list(rows.values()), ignored


def sync_payment_methods(conn: Connection, site_id: str, items: Iterable[Mapping[str, Any]]) -> SyncCounts:
    """Store what KOMOJU returned for the site, keeping the merchant's toggles and order; commits."""
    rows, ignored = method_rows(items)
    with conn, conn.cursor() as cur:  # commits, or rolls back on any exception
        cur.execute(query("payment_methods_sync"), {"site_id": site_id, "methods": json.dumps(rows)})
        added, refreshed, vanished = cur.fetchone()
    return SyncCounts(added, refreshed, vanished, ignored)


@dataclass(frozen=True)
class PaymentMethod:
    """One stored payment method of a site."""

    type_slug: str
    currency: str
    name_en: str | None
    name_ja: str | None
    name_ko: str | None
    subtypes: tuple[str, ...]
    enabled: bool
    available: bool
    position: int


def payment_methods(conn: Connection, site_id: str) -> list[PaymentMethod]:
    """The site's stored methods in display order."""
    with conn.cursor() as cur:
        cur.execute(query("payment_methods_of_site"), {"site_id": site_id})
        return [
            PaymentMethod(slug, cur_, en, ja, ko, tuple(subtypes or ()), enabled, available, position)
            for slug, cur_, en, ja, ko, subtypes, enabled, available, position in cur.fetchall()
        ]


def set_payment_method_enabled(
    conn: Connection, site_id: str, type_slug: str, currency: str, enabled: bool, actor: Actor
) -> list[FieldChange]:
    """Switch one method on or off (the merchant's toggle) and record it with ``actor``.
    Raises NotFound if the site has no such method; returns [] when it already was so. The caller commits."""
    subject = settings.method_subject(type_slug, currency)
    key = {"site_id": site_id, "type_slug": type_slug, "currency": currency.upper()}
    with conn.cursor() as cur:
        old_enabled, _ = _method_for_update(cur, key, subject)
        if old_enabled == enabled:
            return []
        cur.execute(query("payment_method_set_enabled"), {**key, "enabled": enabled})
        changes = [FieldChange(settings.METHOD_TOGGLE, site_id, subject, "enabled", old_enabled, enabled)]
        _record_changes(cur, site_id, changes, actor)
    return changes


def move_payment_method(
    conn: Connection, site_id: str, type_slug: str, currency: str, position: int, actor: Actor
) -> list[FieldChange]:
    """Put one method at ``position`` (1-based; past the end: last), renumber the site's methods, and record the
    moved method's old and new position with ``actor``. Raises NotFound if the site has no such
    method; returns [] when it already was there. The caller commits."""
    subject = settings.method_subject(type_slug, currency)
    key = {"site_id": site_id, "type_slug": type_slug, "currency": currency.upper()}
    with conn.cursor() as cur:
        _, old_position = _method_for_update(cur, key, subject)
        cur.execute(query("payment_method_move"), {**key, "position": max(position, 1)})
        new_position = next(row[2] for row in cur.fetchall() if (row[0], row[1]) == (type_slug, key["currency"]))
        if new_position == old_position:
            return []
        changes = [FieldChange(settings.METHOD_MOVE, site_id, subject, "position", old_position, new_position)]
        _record_changes(cur, site_id, changes, actor)
    return changes


def _method_for_update(cur: Any, key: Mapping[str, str], subject: str) -> tuple[bool, int]:
    cur.execute(query("payment_method_for_update"), key)
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"Site '{key['site_id']}' has no payment method {subject}.")
    return row[0], row[1]


def payment_methods_document(conn: Connection, site_id: str) -> list[dict[str, Any]]:
    """The site's offered methods as one JSON-ready list (the cartridge's custom attribute)."""
    with conn.cursor() as cur:
        cur.execute(query("payment_methods_document"), {"site_id": site_id})
        row = cur.fetchone()
    return row[0] if row else []


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------------------------------------------------------
# Orders of the cancel and refund jobs
# ---------------------------------------------------------------------------------------------------------------

# Advisory lock classes (first key of pg_advisory_lock(int, int)), one per job: "KM" + job number.
ORDER_LOCK_CLASS = {"cancel": 0x4B4D0001, "refund": 0x4B4D0002}


@dataclass(frozen=True)
class EligibleOrder:
    """An order a job must work on, with its attempt history."""

    order_no: str
    payment_id: str
    amount: Any  # Decimal | None, as the storefront shows it
    currency: str | None
    last_attempt_no: int  # highest attempt number so far (0: none)
    tries: int  # tries so far for the current payment id (what max_attempts limits)
    open_attempt_no: int | None  # an attempt whose outcome is unknown or transient: its key is resent
    open_idempotency_key: str | None
    open_payment_id: str | None
    open_started_at: Any  # datetime | None: first use of the open key
    open_accepted_at: Any = None  # datetime | None: KOMOJU accepted the open attempt, not done yet (Pending)
    open_http_status: int | None = None  # the last answer to the open key (None: no answer arrived)
    tried_this_run: bool = False  # an earlier try of this DAG run's task already tried it

    @property
    def progress(self) -> tuple[int, int, int | None]:
        """What changes when a run works on the order (to notice a concurrent run did)."""
        return (self.last_attempt_no, self.tries, self.open_attempt_no)


def eligible_orders(
    conn: Connection,
    job: str,
    site_id: str,
    *,
    after: str | None = None,
    order_nos: Sequence[str] | None = None,
    limit: int,
    run_id: str | None = None,
) -> list[EligibleOrder]:
    """Up to ``limit`` eligible orders of the site after ``after`` (keyset; None: from the first), or among
    ``order_nos``."""
    with conn.cursor() as cur:
        cur.execute(
            query(f"{_job(job)}_eligible"),
            {
                "site_id": site_id,
                "after": after,
                "order_nos": list(order_nos) if order_nos is not None else None,
                "limit": limit,
                "run_id": run_id,
            },
        )
        return [EligibleOrder(*row) for row in cur.fetchall()]


def orders_without_payment_id(conn: Connection, job: str, site_id: str) -> int:
    """How many of the site's orders would be the job's but lack a KOMOJU payment id."""
    with conn.cursor() as cur:
        cur.execute(
            query("without_payment_id_count"),
            {"site_id": site_id, "payment_status": "not_paid" if _job(job) == "cancel" else "paid"},
        )
        return cur.fetchone()[0]


def lock_orders(conn: Connection, job: str, site_id: str, order_nos: Sequence[str]) -> list[str]:
    """Take this session's advisory lock on each order not held by another run; return those taken."""
    with conn.cursor() as cur:
        cur.execute(
            query("order_locks_take"),
            {"lock_class": ORDER_LOCK_CLASS[_job(job)], "site_id": site_id, "order_nos": list(order_nos)},
        )
        taken = [row[0] for row in cur.fetchall()]
    conn.commit()  # the locks are session-level: they outlive the transaction
    return taken


def release_orders(conn: Connection, job: str, site_id: str, order_nos: Sequence[str]) -> None:
    """Release this session's advisory locks on the orders (after their results are committed)."""
    if not order_nos:
        return
    with conn.cursor() as cur:
        cur.execute(
            query("order_locks_release"),
            {"lock_class": ORDER_LOCK_CLASS[_job(job)], "site_id": site_id, "order_nos": list(order_nos)},
        )
    conn.commit()


def start_attempts(
    conn: Connection,
    job: str,
    site_id: str,
    run_id: str,
    *,
    new: Sequence[Mapping],
    resent: Sequence[Mapping],
) -> None:
    """Commit, before anything is sent: the ``new`` attempts with their keys (``order_no, attempt_no,
    payment_id, idempotency_key``), and one more try of each ``resent`` open attempt (``order_no, attempt_no``)."""
    if not new and not resent:
        return
    job = _job(job)
    with conn, conn.cursor() as cur:  # commits, or rolls back on any exception
        if new:
            cur.execute(
                query("attempts_start"),
                {"job": job, "site_id": site_id, "run_id": run_id, "attempts": json.dumps(list(new))},
            )
        if resent:
            cur.execute(
                query("attempts_retry"),
                {"job": job, "site_id": site_id, "run_id": run_id, "attempts": json.dumps(list(resent))},
            )


def write_results(
    conn: Connection,
    job: str,
    site_id: str,
    *,
    run_id: str | None = None,
    closed: Sequence[Mapping] = (),
    kept_open: Sequence[Mapping] = (),
    taken_back: Sequence[Mapping] = (),
    pending: Sequence[Mapping] = (),
    statuses: Sequence[Mapping] = (),
    failures: Sequence[Mapping] = (),
    links: Sequence[Mapping] = (),
) -> None:
    """In one transaction: close attempts KOMOJU answered for good, note transient tries on attempts kept open,
    take back tries never sent, mark attempts KOMOJU accepted but has not done (Pending), write order statuses,
    record final failures and the links customers must visit.

    ``closed``: ``order_no, attempt_no, outcome, http_status, error_code, response``; ``kept_open``: the same
    without ``outcome``; ``taken_back``: ``order_no, attempt_no, new``; ``pending``: ``order_no, attempt_no,
    http_status, response, redirect_url``; ``statuses``: ``order_no, status, response``; ``failures``:
    ``order_no, attempt_no, payment_id, status, reason, amount, currency``; ``links``: ``order_no, attempt_no,
    payment_id, redirect_url, amount, currency``. ``run_id``: the DAG run, recorded with the final failures.
    """
    job = _job(job)
    statements = (
        ("attempts_finish", closed),
        ("attempts_keep_open", kept_open),
        ("attempts_take_back", taken_back),
        ("attempts_mark_pending", pending),
        (f"{job}_status_write", statuses),
    )
    with conn, conn.cursor() as cur:  # commits, or rolls back on any exception
        for name, rows in statements:
            if rows:
                cur.execute(query(name), {"job": job, "site_id": site_id, "results": json.dumps(list(rows))})
        if failures:
            cur.execute(
                query("final_failures_record"),
                {
                    "job": job,
                    "site_id": site_id,
                    "run_id": run_id,
                    "failures": json.dumps(list(failures), default=str),
                },
            )
        if links:
            cur.execute(
                query("customer_links_record"),
                {"job": job, "site_id": site_id, "links": json.dumps(list(links), default=str)},
            )


def _job(job: str) -> str:
    if job not in ORDER_LOCK_CLASS:
        raise ValueError(f"Unknown job {job!r}: expected 'cancel' or 'refund'.")
    return job


# ---------------------------------------------------------------------------------------------------------------
# Final failures and their e-mails
# ---------------------------------------------------------------------------------------------------------------

NOTIFICATION_LOCK_CLASS = 0x4B4D0010


@dataclass(frozen=True)
class PendingFailure:
    """A final failure as an e-mail lists it."""

    failure_id: int
    order_no: str
    amount: Any
    currency: str | None
    status: str
    reason: str


@dataclass(frozen=True)
class CustomerLink:
    """A link KOMOJU gave for a customer to visit (a cash refund's bank-account form), as an e-mail lists it."""

    link_id: int
    order_no: str
    amount: Any
    currency: str | None
    redirect_url: str


@dataclass(frozen=True)
class UnsentNotification:
    """An e-mail prepared earlier and never sent: sent again as it was."""

    notification_id: int
    subject: str
    message_id: str
    failures: list[PendingFailure]
    links: list[CustomerLink]


@dataclass(frozen=True)
class Notification:
    """An e-mail prepared for a site's contacts, carrying some final failures and customer links."""

    notification_id: int
    message_id: str
    failures: int
    links: int


def lock_site_notifications(conn: Connection, job: str, site_id: str) -> None:
    """Serialise e-mail preparation for the site and job until the caller's transaction ends."""
    params = {"lock_class": NOTIFICATION_LOCK_CLASS, "job": _job(job), "site_id": site_id}
    with conn.cursor() as cur:
        cur.execute(query("notification_lock_site"), params)


def unsent_notifications(conn: Connection, job: str, site_id: str) -> list[UnsentNotification]:
    """The site's e-mails prepared but never sent, with their failures and customer links."""
    with conn.cursor() as cur:
        cur.execute(query("notifications_unsent"), {"job": _job(job), "site_id": site_id})
        found = {row[0]: UnsentNotification(*row, [], []) for row in cur.fetchall()}
        if not found:
            return []
        ids = {"notification_ids": list(found)}
        cur.execute(query("notification_failures"), ids)
        for notification_id, *failure in cur.fetchall():
            found[notification_id].failures.append(PendingFailure(*failure))
        cur.execute(query("notification_links"), ids)
        for notification_id, *link in cur.fetchall():
            found[notification_id].links.append(CustomerLink(*link))
    return list(found.values())


def unassigned_failures(conn: Connection, job: str, site_id: str) -> list[PendingFailure]:
    """The site's final failures in no e-mail yet."""
    with conn.cursor() as cur:
        cur.execute(query("final_failures_unassigned"), {"job": _job(job), "site_id": site_id})
        return [PendingFailure(*row) for row in cur.fetchall()]


def unassigned_links(conn: Connection, job: str, site_id: str) -> list[CustomerLink]:
    """The site's customer links in no e-mail yet."""
    with conn.cursor() as cur:
        cur.execute(query("customer_links_unassigned"), {"job": _job(job), "site_id": site_id})
        return [CustomerLink(*row) for row in cur.fetchall()]


def create_notification(
    conn: Connection,
    job: str,
    site_id: str,
    *,
    failure_ids: Sequence[int],
    link_ids: Sequence[int] = (),
    recipients: Sequence[str],
    subject: str,
    run_id: str,
    mail_domain: str,
) -> Notification:
    """Record an e-mail carrying ``failure_ids`` and ``link_ids`` (those in no e-mail yet); commits."""
    with conn, conn.cursor() as cur:  # commits, or rolls back on any exception
        cur.execute(
            query("notification_create"),
            {
                "job": _job(job),
                "site_id": site_id,
                "recipients": list(recipients),
                "subject": subject,
                "run_id": run_id,
                "mail_domain": mail_domain,
                "failure_ids": list(failure_ids),
                "link_ids": list(link_ids),
            },
        )
        notification = Notification(*cur.fetchone())
    return notification


def claim_notification_for_send(conn: Connection, notification_id: int) -> bool:
    """Lock the e-mail until :func:`mark_notification_sent` or rollback; True when it is still to be sent."""
    with conn.cursor() as cur:
        cur.execute(query("notification_claim_for_send"), {"notification_id": notification_id})
        row = cur.fetchone()
    return row is not None and row[0] is None


def mark_notification_sent(conn: Connection, notification_id: int) -> None:
    """Record that the e-mail went out; commits (and releases the lock of the claim)."""
    with conn.cursor() as cur:
        cur.execute(query("notification_mark_sent"), {"notification_id": notification_id})
    conn.commit()


# ---------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalFailureReport:
    """A final failure as operators see it."""

    job: str
    order_no: str
    status: str
    reason: str
    amount: Any
    currency: str | None
    recorded_at: Any
    emailed_at: Any  # None: not e-mailed yet


def order_status_counts(conn: Connection, site_ids: Sequence[str]) -> dict[str, dict[str, dict[str | None, int]]]:
    """``{site_id: {"cancel": {None: 3, "Cancelled": 10, ...}, "refund": {...}}}`` for the sites' job orders
    (None: not handled yet; ``"no payment id"``: not the jobs' to handle)."""
    counts: dict[str, dict[str, dict[str | None, int]]] = {s: {"cancel": {}, "refund": {}} for s in site_ids}
    with conn.cursor() as cur:
        cur.execute(query("orders_status_counts"), {"site_ids": list(site_ids)})
        for site_id, job, status, count in cur.fetchall():
            counts[site_id][job][status] = count
    return counts


@dataclass(frozen=True)
class OrderToSettle:
    """An order the jobs gave up on, still in that state: to settle by hand in KOMOJU's dashboard."""

    site_id: str
    job: str
    order_no: str
    status: str
    reason: str
    amount: Any
    currency: str | None
    recorded_at: Any
    emailed_at: Any  # None: not e-mailed yet


@dataclass(frozen=True)
class PendingOrder:
    """An order KOMOJU accepted but has not completed."""

    site_id: str
    job: str
    order_no: str
    since: Any
    response: str | None
    amount: Any
    currency: str | None
    customer_link: str | None


def orders_to_settle(conn: Connection, site_ids: Sequence[str], limit: int = 500) -> list[OrderToSettle]:
    """The sites' orders to settle by hand, newest first."""
    with conn.cursor() as cur:
        cur.execute(query("orders_to_settle"), {"site_ids": list(site_ids), "limit": limit})
        return [OrderToSettle(*row) for row in cur.fetchall()]


def pending_orders(conn: Connection, site_ids: Sequence[str], limit: int = 500) -> list[PendingOrder]:
    """The sites' Pending orders, oldest first."""
    with conn.cursor() as cur:
        cur.execute(query("orders_pending"), {"site_ids": list(site_ids), "limit": limit})
        return [PendingOrder(*row) for row in cur.fetchall()]


def attention_counts(conn: Connection, site_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{site_id: (orders to settle by hand, Pending orders)}``; sites with neither are absent."""
    with conn.cursor() as cur:
        cur.execute(query("attention_counts"), {"site_ids": list(site_ids)})
        return {site_id: (to_settle, pending) for site_id, to_settle, pending in cur.fetchall()}


@dataclass(frozen=True)
class RunFailure:
    """A final failure one DAG run recorded."""

    site_id: str
    order_no: str
    status: str
    reason: str
    amount: Any
    currency: str | None


def run_final_failures(conn: Connection, job: str, run_id: str) -> list[RunFailure]:
    """The final failures the DAG run ``run_id`` of ``job`` recorded."""
    with conn.cursor() as cur:
        cur.execute(query("run_final_failures"), {"job": _job(job), "run_id": run_id})
        return [RunFailure(*row) for row in cur.fetchall()]


def run_notifications(conn: Connection, job: str, run_id: str) -> list[tuple[str, bool, int]]:
    """``(site_id, sent, recipients)`` of each e-mail the DAG run ``run_id`` of ``job`` prepared."""
    with conn.cursor() as cur:
        cur.execute(query("run_notifications"), {"job": _job(job), "run_id": run_id})
        return [(site_id, sent, recipients) for site_id, sent, recipients in cur.fetchall()]


def final_failures(conn: Connection, site_id: str, job: str | None = None, limit: int = 50) -> list[FinalFailureReport]:
    """The site's most recent final failures (of one job, or both)."""
    with conn.cursor() as cur:
        cur.execute(
            query("final_failures_of_site"),
            {"site_id": site_id, "job": _job(job) if job else None, "limit": limit},
        )
        return [FinalFailureReport(*row) for row in cur.fetchall()]


# ---------------------------------------------------------------------------------------------------------------
# Which sites have work, and when each was last checked
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteWork:
    """What a job has to do for one site, as ``<job>_sites_work.sql`` found it."""

    site_id: str
    orders_to_work: bool  # eligible orders
    attempts_to_check: bool  # open or Pending attempts
    emails_to_send: bool  # final failures or customer links to e-mail, or e-mails to send again
    to_settle: int  # orders given up on (Rejected, or Failed for good)

    @property
    def has_work(self) -> bool:
        return self.orders_to_work or self.attempts_to_check or self.emails_to_send

    @property
    def reasons(self) -> list[str]:
        """What the work is, in words for the run's log."""
        named = (
            (self.orders_to_work, "orders to work on"),
            (self.attempts_to_check, "attempts to check"),
            (self.emails_to_send, "e-mails to send"),
        )
        return [text for present, text in named if present]


def sites_work(conn: Connection, job: str, site_ids: Sequence[str]) -> dict[str, SiteWork]:
    """``{site_id: SiteWork}`` for the given sites (unknown ids are absent): one statement for all of them."""
    with conn.cursor() as cur:
        cur.execute(query(f"{_job(job)}_sites_work"), {"site_ids": list(site_ids)})
        return {row[0]: SiteWork(*row) for row in cur.fetchall()}


def record_site_checks(conn: Connection, job: str, run_id: str, had_work: Mapping[str, bool]) -> None:
    """Record that ``job`` checked these sites in ``run_id`` (``{site_id: had_work}``), one row per site; commits."""
    if not had_work:
        return
    checks = [{"site_id": site_id, "had_work": bool(work)} for site_id, work in had_work.items()]
    with conn, conn.cursor() as cur:  # commits, or rolls back on any exception
        cur.execute(query("site_checks_record"), {"job": _job(job), "run_id": run_id, "checks": json.dumps(checks)})


@dataclass(frozen=True)
class SiteCheck:
    """The latest check of one site by one job: when, in which DAG run, and whether it found work."""

    site_id: str
    job: str
    checked_at: Any  # datetime
    had_work: bool
    run_id: str | None


def site_checks(conn: Connection) -> dict[str, dict[str, SiteCheck]]:
    """``{site_id: {job: SiteCheck}}``: the latest check of every site by the cancel and refund jobs."""
    found: dict[str, dict[str, SiteCheck]] = {}
    with conn.cursor() as cur:
        cur.execute(query("site_checks_all"))
        for row in cur.fetchall():
            check = SiteCheck(*row)
            found.setdefault(check.site_id, {})[check.job] = check
    return found


# ---------------------------------------------------------------------------------------------------------------
# Retention (python -m komoju db clean): one function per batch statement; komoju.retention runs the batches
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSize:
    """One bookkeeping table: its rows and its size on disk (with indexes and TOAST)."""

    table: str
    rows: int
    bytes: int


def retention_cutoff(conn: Connection, older_than_days: int) -> Any:
    """The database clock's now minus ``older_than_days`` days (a timestamptz)."""
    with conn.cursor() as cur:
        cur.execute(query("retention_cutoff"), {"older_than_days": older_than_days})
        return cur.fetchone()[0]


def bookkeeping_sizes(conn: Connection) -> list[TableSize]:
    """Rows and size of each bookkeeping table (and of komoju.setting_change, which is never cleaned)."""
    with conn.cursor() as cur:
        cur.execute(query("retention_table_sizes"))
        return [TableSize(*row) for row in cur.fetchall()]


AttemptKey = tuple[str, str, str, int]  # (job, site_id, order_no, attempt_no): komoju.attempt's primary key
ATTEMPT_KEY_START: AttemptKey = ("", "", "", 0)  # before every key (job is never empty)


@dataclass(frozen=True)
class AttemptsBatch:
    """One batch of attempts looked at by the clean: how many, how many may go, how many went, where it ended."""

    scanned: int
    removable: int
    removed: int
    last: AttemptKey | None  # None: nothing left after the cursor


def clean_attempts_batch(
    conn: Connection, *, cutoff: Any, after: AttemptKey, limit: int, delete: bool
) -> AttemptsBatch:
    """Look at the next ``limit`` attempts after ``after``; delete those that may go when ``delete``; commits."""
    job, site_id, order_no, attempt_no = after
    with conn, conn.cursor() as cur:  # commits, or rolls back on any exception
        cur.execute(
            query("retention_attempts"),
            {
                "cutoff": cutoff,
                "after_job": job,
                "after_site_id": site_id,
                "after_order_no": order_no,
                "after_attempt_no": attempt_no,
                "batch": limit,
                "delete": delete,
            },
        )
        scanned, removable, removed, last_job, last_site_id, last_order_no, last_attempt_no = cur.fetchone()
    last = None if last_job is None else (last_job, last_site_id, last_order_no, last_attempt_no)
    return AttemptsBatch(scanned, removable, removed, last)


@dataclass(frozen=True)
class NotificationsBatch:
    """One batch of e-mails looked at by the clean, with the final failures and customer links they carry."""

    scanned: int
    notifications_removable: int
    notifications_removed: int
    failures_removable: int
    failures_removed: int
    links_removable: int
    links_removed: int
    last_id: int | None  # None: nothing left after the cursor


def clean_notifications_batch(
    conn: Connection, *, cutoff: Any, after_id: int, limit: int, delete: bool
) -> NotificationsBatch:
    """Look at the next ``limit`` e-mails after ``after_id``; delete what may go when ``delete``; commits."""
    with conn, conn.cursor() as cur:  # commits, or rolls back on any exception
        cur.execute(
            query("retention_notifications"),
            {"cutoff": cutoff, "after_id": after_id, "batch": limit, "delete": delete},
        )
        row = cur.fetchone()
    return NotificationsBatch(*row)


def vacuum_bookkeeping(conn: Connection) -> None:
    """VACUUM (ANALYZE) the cleaned tables, outside any transaction (the connection is left as it was)."""
    autocommit = conn.autocommit
    conn.rollback()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query("retention_vacuum"))
    finally:
        conn.autocommit = autocommit
