"""TaskFlow tasks the DAGs share: resolve the run's sites, prepare the failure e-mails."""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from komoju import db, emails, store
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
def resolve_sites() -> list[str]:
    """The run's sites: ``params.site_ids`` checked against ``komoju.site`` (unknown or inactive ids fail)."""
    requested = requested_site_ids(get_current_context()["params"])
    conn = db.connect()
    try:
        sites = store.resolve_scope(conn, requested)
    except store.ScopeError as exc:
        raise AirflowFailException(str(exc)) from None
    finally:
        conn.close()
    if not sites:
        log.info("No active site in komoju.site: nothing to do.")
    return [site.site_id for site in sites]


@task(task_id="prepare_failure_emails", trigger_rule="all_done")
def prepare_failure_emails(job: str) -> list[dict[str, Any]]:
    """One e-mail per site of the run with final failures not yet e-mailed (and e-mails on, contacts set).

    Runs even when some site failed, so the other sites' failures still go out. Reads the scope again
    rather than taking it from ``resolve_sites``, which may have failed.
    """
    context = get_current_context()
    params = context["params"]
    if params.get("dry_run") in (True, "true", "True"):
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
        return [m for site in sites if (m := _prepare_site(conn, Job(job), site, str(context["run_id"])))]
    finally:
        conn.close()


def _prepare_site(conn: Any, job: Job, site: store.Site, run_id: str) -> dict[str, Any] | None:
    if not site.wants_email:
        conn.rollback()
        return None
    pending, _unsent = store.pending_failures(conn, job.value, site.site_id)
    if not pending:
        conn.rollback()
        return None
    label = site.name or site.site_id
    lines = [emails.FailureLine(f.order_no, f.amount, f.currency, f.status, f.reason) for f in pending]
    subject = emails.failure_subject(job, label, len(lines), site.email_locale)
    notification = store.create_notification(
        conn,
        job.value,
        site.site_id,
        failure_ids=[f.failure_id for f in pending],
        recipients=site.notify_emails,
        subject=subject,
        run_id=run_id,
        mail_domain=MAIL_DOMAIN,
    )
    return {
        "notification_id": notification.notification_id,
        "site_id": site.site_id,
        "to": list(site.notify_emails),
        "subject": subject,
        "html_content": emails.failure_html(job, label, lines, site.email_locale),
        "custom_headers": {"Message-ID": notification.message_id},
    }
