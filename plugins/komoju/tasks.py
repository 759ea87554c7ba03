"""TaskFlow tasks the DAGs share: resolve the run's sites, prepare the failure e-mails."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from komoju import db

if TYPE_CHECKING:  # imported when the tasks run, not when Airflow parses the DAG files that import this module
    from komoju import store
    from komoju.outcomes import Job

log = logging.getLogger(__name__)
MAIL_DOMAIN = os.environ.get("KOMOJU_MAIL_DOMAIN", "komoju-airflow.local")


def requested_site_ids(params: Any) -> list[str]:
    """The ``site_ids`` param as a list of ids; a clear failure when it is not a list of strings."""
    value = params.get("site_ids") if params else None
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise AirflowFailException(
            f"Param site_ids must be a list of site ids (strings), got {value!r}. Trigger the run again with e.g. "
            '{"site_ids": ["my-site"]}, or [] for every active site.'
        )
    return [v.strip() for v in value]


@task(task_id="resolve_sites")
def resolve_sites(job: str | None = None) -> list[str]:
    """The run's sites: ``params.site_ids`` checked against ``komoju.site`` (unknown or inactive ids fail).

    With ``job`` (the cancel and refund DAGs), only the sites that job has work for are returned, so only they
    get a task: eligible orders, open or Pending attempts, failure e-mails to send (one statement for every site,
    :func:`komoju.store.sites_work`). Each site is recorded as checked (``komoju.site_check``), and the others are
    reported in the log and in the XCom ``nothing_to_do``. Sites named in ``site_ids`` are always returned, and so
    is every site when ``KOMOJU_MAP_ALL_SITES=1`` (the behaviour before issue 15).
    """
    from komoju import store

    context = get_current_context()
    requested = requested_site_ids(context["params"])
    conn = db.connect()
    try:
        try:
            sites = store.resolve_scope(conn, requested)
        except store.ScopeError as exc:
            raise AirflowFailException(str(exc)) from None
        if not sites:
            log.info("No active site in komoju.site: nothing to do.")
        if job is None:
            return [site.site_id for site in sites]
        work = store.sites_work(conn, job, [site.site_id for site in sites])
        conn.rollback()
        if not _dry_run(context["params"]):
            store.record_site_checks(
                conn, job, str(context["run_id"]), {site_id: found.has_work for site_id, found in work.items()}
            )
    finally:
        conn.close()
    return _sites_to_map(job, sites, work, requested, context)


def _sites_to_map(
    job: str, sites: list[store.Site], work: dict[str, store.SiteWork], requested: list[str], context: Any
) -> list[str]:
    from komoju import metrics

    map_all = os.environ.get("KOMOJU_MAP_ALL_SITES", "").strip().lower() in ("1", "true", "yes")
    mapped, idle = [], []
    for site in sites:
        found = work.get(site.site_id)
        if found is not None:
            metrics.gauge("komoju.orders.to_settle", job, site.site_id, found.to_settle)
        if found is not None and found.has_work:
            log.info("Site %s: %s", site.site_id, ", ".join(found.reasons))
            mapped.append(site.site_id)
        elif requested or map_all:
            why = "named in site_ids" if requested else "KOMOJU_MAP_ALL_SITES is set"
            log.info("Site %s: nothing to do, run all the same (%s)", site.site_id, why)
            mapped.append(site.site_id)
        else:
            idle.append(site.site_id)
    if idle:
        log.info(
            "%d of %d site(s) checked with nothing to do for the %s job (no task): %s",
            len(idle), len(sites), job, ", ".join(idle),
        )  # fmt: skip
    log.info("%d site(s) to run: %s", len(mapped), ", ".join(mapped) or "none")
    context["ti"].xcom_push(key="nothing_to_do", value=idle)
    return mapped


def _dry_run(params: Any) -> bool:
    return params.get("dry_run") in (True, "true", "True")


@task(task_id="prepare_failure_emails", trigger_rule="all_done")
def prepare_failure_emails(job: str) -> list[dict[str, Any]]:
    """The e-mails to send for the run's sites: each e-mail prepared before but never sent, as it was (same
    failures, same Message-ID), and one new e-mail per site with final failures or customer links (cash refunds
    waiting for a bank account) in no e-mail yet. Only for sites with e-mails on and contacts set.

    Runs even when some site failed, so the other sites' failures still go out. Reads the scope again rather
    than taking it from ``resolve_sites``, which may have failed.
    """
    from komoju import store
    from komoju.outcomes import Job

    context = get_current_context()
    params = context["params"]
    if _dry_run(params):
        log.info("Dry run: no e-mail is prepared or sent.")
        return []
    try:
        requested = requested_site_ids(params)
    except AirflowFailException:
        return []
    conn = db.connect()
    try:
        try:
            sites = store.resolve_scope(conn, requested)
        except store.ScopeError:
            return []
        # One statement tells which sites have anything to e-mail; only those are locked and read.
        work = store.sites_work(conn, job, [site.site_id for site in sites])
        conn.rollback()
        with_mail = [site for site in sites if work.get(site.site_id) and work[site.site_id].emails_to_send]
        return [mail for site in with_mail for mail in _prepare_site(conn, Job(job), site, str(context["run_id"]))]
    finally:
        conn.close()


def _prepare_site(conn: Any, job: Job, site: store.Site, run_id: str) -> list[dict[str, Any]]:
    from komoju import emails, store

    if not site.wants_email:
        return []
    store.lock_site_notifications(conn, job.value, site.site_id)  # until this transaction ends
    mails = [
        _mail(job, site, n.notification_id, n.subject, n.message_id, n.failures, n.links)
        for n in store.unsent_notifications(conn, job.value, site.site_id)
    ]
    failures = store.unassigned_failures(conn, job.value, site.site_id)
    links = store.unassigned_links(conn, job.value, site.site_id)
    if not failures and not links:
        conn.rollback()
        return mails
    subject = emails.failure_subject(job, site.name or site.site_id, len(failures), site.email_locale, len(links))
    notification = store.create_notification(
        conn,
        job.value,
        site.site_id,
        failure_ids=[f.failure_id for f in failures],
        link_ids=[link.link_id for link in links],
        recipients=site.notify_emails,
        subject=subject,
        run_id=run_id,
        mail_domain=MAIL_DOMAIN,
    )
    mails.append(_mail(job, site, notification.notification_id, subject, notification.message_id, failures, links))
    return mails


def _mail(
    job: Job,
    site: store.Site,
    notification_id: int,
    subject: str,
    message_id: str,
    failures: list[store.PendingFailure],
    links: list[store.CustomerLink],
) -> dict[str, Any]:
    """The EmailOperator's arguments for one e-mail (to the site's contacts as they are now)."""
    from komoju import emails

    lines = [emails.FailureLine(f.order_no, f.amount, f.currency, f.status, f.reason) for f in failures]
    to_forward = [emails.LinkLine(link.order_no, link.amount, link.currency, link.redirect_url) for link in links]
    return {
        "notification_id": notification_id,
        "site_id": site.site_id,
        "job": job.value,
        "to": list(site.notify_emails),
        "subject": subject,
        "html_content": emails.failure_html(job, site.name or site.site_id, lines, site.email_locale, to_forward),
        "text_content": emails.failure_text(job, site.name or site.site_id, lines, site.email_locale, to_forward),
        "custom_headers": {"Message-ID": message_id},
    }


@task(task_id="clean_bookkeeping")
def clean_bookkeeping() -> dict[str, Any]:
    """``python -m komoju db clean`` as a task: remove the bookkeeping of finished orders older than
    ``params.older_than_days`` (only count it when ``params.dry_run``); the report goes to the task's log."""
    from komoju import retention

    params = get_current_context()["params"]
    try:
        older_than_days = int(params.get("older_than_days", retention.DEFAULT_OLDER_THAN_DAYS))
    except (TypeError, ValueError):
        raise AirflowFailException(
            f"Param older_than_days must be a whole number of days, got {params.get('older_than_days')!r}."
        ) from None
    delete = not _dry_run(params)
    conn = db.connect()
    try:
        try:
            report = retention.clean(conn, older_than_days=older_than_days, delete=delete, progress=log.info)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
    finally:
        conn.close()
    for line in report.lines():
        log.info("%s", line)
    counted = report.removed if delete else report.removable
    return {"older_than_days": older_than_days, "dry_run": not delete, "removed" if delete else "removable": counted}
