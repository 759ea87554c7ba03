"""
### KOMOJU refund process

Refunds, at KOMOJU and in full, the payments of orders **cancelled after being paid**. The Airflow version of the
SFCC cartridge's `komojuRefundProcess`.

**Which orders**: in `komoju.orders`, `status = 'cancelled'`, `payment_status = 'paid'`,
`payment_method = 'KOMOJU_HOSTED_PAGE'`, a KOMOJU payment id, and `komoju_refund_status` not yet `Refunded` or
`Rejected`. A refund moves money: an order whose currency is unknown or whose amount is negative is not sent
but reported.

**What it writes**: `komoju_refund_status` = `Refunded` (done, or KOMOJU shows it refunded already), `Rejected`
(KOMOJU says it cannot be refunded, e.g. konbini payments, which need a bank refund by hand) or `Failed` (tried
again next run, up to *max_attempts*), with KOMOJU's reason in `komoju_refund_response`.

Every refund carries an idempotency key stored before the call: a retry, a task retry or a rerun after a crash
never refunds twice.

**Per site**: one mapped task per site (labelled with the site id), with its own retries. Retry or clear one site
without touching the others. A site whose KOMOJU key is refused fails at once, changing nothing. Only the sites
with work get a task (eligible orders, open or Pending attempts, failure e-mails to send); `resolve_sites` logs the
others as checked with nothing to do. A site named in *site_ids* always gets its task.

**Run state**: the run fails when a site failed (its e-mails still go out) or the site list is invalid. A run
in which no site has work runs no site task (*skipped*) and succeeds.

**E-mail**: orders given up on (`Rejected`, or `Failed` for good) are e-mailed once to the site's contacts
(`komoju.site.notify_emails`, in its `email_locale`), asking to settle them in the KOMOJU dashboard.

**Params**: `site_ids` (empty = every active site), `dry_run` (list only), `max_attempts`, `max_concurrency`.

**Schedule**: every 30 minutes (`KOMOJU_REFUND_SCHEDULE`: cron, or `none`), **and** within seconds of an order becoming
eligible: the asset `komoju_orders_refund` gets an event from its watcher in the triggerer, which listens for the
status database's notifications. The cron stays as the sweep for notifications nobody heard.
`KOMOJU_EVENT_DRIVEN=off`: the cron alone.
"""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag

from komoju import dag_support
from komoju.operators import KomojuFailureEmailOperator, KomojuRefundOrdersOperator
from komoju.tasks import prepare_failure_emails, resolve_sites


@dag(
    dag_id="komoju_refund_process",
    schedule=dag_support.order_job_schedule("refund", "KOMOJU_REFUND_SCHEDULE", "*/30 * * * *"),
    start_date=dag_support.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=dag_support.default_args(),
    params=dag_support.order_job_params(),
    render_template_as_native_obj=True,
    doc_md=__doc__,
    tags=[*dag_support.TAGS, "refund"],
)
def komoju_refund_process():
    sites = resolve_sites(job="refund")  # only the sites with work (or named in site_ids)
    refunded = KomojuRefundOrdersOperator.partial(
        task_id="refund_site",
        map_index_template="{{ task.site_id }}",
        dry_run="{{ params.dry_run }}",
        max_attempts="{{ params.max_attempts }}",
        max_concurrency="{{ params.max_concurrency }}",
        batch_size=dag_support.batch_size(),
    ).expand(site_id=sites)
    failure_emails = prepare_failure_emails(job="refund")  # runs even when some site failed
    refunded >> failure_emails
    refunded >> EmptyOperator(task_id="all_sites_done")  # the run fails when the scope or any site failed
    KomojuFailureEmailOperator.partial(
        task_id="send_failure_email", map_index_template="{{ task.site_id }}"
    ).expand_kwargs(failure_emails)


komoju_refund_process()
