"""Airflow operators of the three KOMOJU jobs, one site per task instance, and the failure e-mail.

Airflow imports this module each time it parses the DAG files, so it only declares the operators and reads
their parameters; what they do when their task runs is in :mod:`komoju.runner` (the hook, the store, the
decisions), imported then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.providers.smtp.operators.smtp import EmailOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from komoju import db

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BATCH_SIZE = 200
DEFAULT_TRANSIENT_STREAK = 5


def _as_int(name: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AirflowFailException(f"{name} must be a whole number, got {value!r}.") from None
    if number < minimum:
        raise AirflowFailException(f"{name} must be at least {minimum}, got {number}.")
    return number


def _unset(value: Any) -> bool:
    """A templated parameter left empty: None renders as "None"."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise AirflowFailException(f"{name} must be true or false, got {value!r}.")


class KomojuSyncPaymentMethodsOperator(BaseOperator):
    """Sync the payment methods KOMOJU offers the merchant into one site, keeping the merchant's toggles.

    :param site_id: the site (``komoju.site``); its ``komoju_conn_id`` names the KOMOJU connection.
    :param postgres_conn_id: the status database.
    """

    template_fields: Sequence[str] = ("site_id",)

    def __init__(self, *, site_id: str, postgres_conn_id: str = db.DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_id = site_id
        self.postgres_conn_id = postgres_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from komoju.runner import sync_payment_methods

        return sync_payment_methods(self)


class _KomojuOrdersOperator(BaseOperator):
    """Shared body of the cancel and refund operators: one site's eligible orders, exactly once each.

    What a run does (batches, locks, keys, calls, writes) is :class:`komoju.runner.SiteOrdersRun`.

    :param site_id: the site to work on.
    :param max_attempts: tries per order (and payment) before it is given up on and e-mailed (default 3).
    :param max_concurrency: KOMOJU calls in flight at once for this site; None (or an empty/"None" rendering):
        the site's KOMOJU connection extra ``max_concurrency``, else 8.
    :param dry_run: only log and count what would be done; call nothing, change nothing.
    :param batch_size: orders read, locked and written per database round trip.
    :param transient_streak: transient failures in a row that stop the site (its task fails and is retried).
    :param postgres_conn_id: the status database.
    """

    job: ClassVar[str]  # "cancel" or "refund" (komoju.outcomes.Job)
    template_fields: Sequence[str] = ("site_id", "max_attempts", "max_concurrency", "dry_run")

    def __init__(
        self,
        *,
        site_id: str,
        max_attempts: int | str = DEFAULT_MAX_ATTEMPTS,
        max_concurrency: int | str | None = None,
        dry_run: bool | str = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        transient_streak: int = DEFAULT_TRANSIENT_STREAK,
        postgres_conn_id: str = db.DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.site_id = site_id
        self.max_attempts = max_attempts
        self.max_concurrency = max_concurrency
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.transient_streak = transient_streak
        self.postgres_conn_id = postgres_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from komoju.runner import SiteOrdersRun

        max_attempts = _as_int("max_attempts", self.max_attempts, 1)
        concurrency = None if _unset(self.max_concurrency) else _as_int("max_concurrency", self.max_concurrency, 1)
        dry_run = _as_bool("dry_run", self.dry_run)
        run_id = str(context["run_id"]) if context and "run_id" in context else "manual"
        return SiteOrdersRun(self).execute(
            max_attempts=max_attempts, concurrency=concurrency, dry_run=dry_run, run_id=run_id
        )


class KomojuCancelOrdersOperator(_KomojuOrdersOperator):
    """Cancel at KOMOJU the payments of one site's orders cancelled before payment (SPEC §4.2)."""

    job = "cancel"


class KomojuRefundOrdersOperator(_KomojuOrdersOperator):
    """Refund at KOMOJU, in full, the payments of one site's orders cancelled after payment (SPEC §4.3)."""

    job = "refund"


class KomojuFailureEmailOperator(EmailOperator):
    """Send one prepared failure e-mail, exactly once: skipped if already sent or superseded.

    The e-mail's row stays locked from the check to the record of the send, so two runs never both send it.
    Nothing is templated: order numbers and KOMOJU's reasons are data, never Jinja. The message carries a
    plain-text part beside the HTML one (``multipart/alternative``), sent through the SMTP provider's own hook
    and the operator's ``conn_id`` (``smtp_default``), as ``EmailOperator`` sends.

    :param notification_id: the prepared e-mail (``komoju.notification``).
    :param site_id: for the task label.
    :param job: the job whose failures it reports, for the ``komoju.emails.sent`` metric.
    :param text_content: the plain-text part (the HTML one is ``html_content``).
    """

    template_fields: Sequence[str] = ()

    def __init__(
        self,
        *,
        notification_id: int,
        site_id: str,
        job: str | None = None,
        text_content: str | None = None,
        postgres_conn_id: str = db.DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.notification_id = notification_id
        self.site_id = site_id
        self.job = job
        self.text_content = text_content
        self.postgres_conn_id = postgres_conn_id

    def _send(self, context: Any) -> None:
        if self.text_content is None:  # an e-mail prepared before text parts existed: sent as it was
            super().execute(context)
            return
        with _TextAndHtmlSmtpHook(smtp_conn_id=self.conn_id, text_content=self.text_content) as hook:
            from_email = self.from_email or hook.from_email
            if from_email is None:
                raise AirflowFailException(
                    f"The e-mail of site {self.site_id} has no sender: set from_email in the extra of the Airflow "
                    f"connection '{self.conn_id}'. The failures wait for the next run's e-mail."
                )
            hook.send_email_smtp(
                to=self.to,
                subject=self.subject,
                html_content=self.html_content,
                from_email=from_email,
                files=self.files,
                cc=self.cc,
                bcc=self.bcc,
                mime_charset=self.mime_charset,
                custom_headers=self.custom_headers,
            )

    def execute(self, context: Any) -> None:
        from komoju import store

        conn = db.connect(self.postgres_conn_id)
        try:
            if not store.claim_notification_for_send(conn, self.notification_id):
                conn.rollback()
                self.log.info(
                    "E-mail %s of site %s: already sent or superseded; nothing to send",
                    self.notification_id,
                    self.site_id,
                )
                return
            self._send(context)
            store.mark_notification_sent(conn, self.notification_id)
        finally:
            conn.close()  # a send that failed leaves the e-mail unsent: the next run sends its failures
        if self.job:
            from komoju import metrics

            metrics.incr("komoju.emails.sent", self.job, self.site_id)


class _TextAndHtmlSmtpHook(SmtpHook):
    """The SMTP provider's hook, building ``multipart/alternative`` messages: the plain text, then the HTML."""

    def __init__(self, *, text_content: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_content = text_content

    def _build_mime_message(self, *args: Any, **kwargs: Any) -> Any:
        from email.mime.text import MIMEText

        kwargs["mime_subtype"] = "alternative"
        message, recipients = super()._build_mime_message(*args, **kwargs)
        charset = kwargs.get("mime_charset", "utf-8")
        message.set_payload([MIMEText(self.text_content, "plain", charset), *message.get_payload()])
        return message, recipients
