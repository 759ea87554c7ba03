"""
### KOMOJU cancel process

Cancels, at KOMOJU, the payments of orders **cancelled before being paid**, so that a customer can no longer pay
them (a konbini slip, a pending bank transfer). The Airflow version of the SFCC cartridge's `komojuCancelProcess`.

**Which orders**: in `komoju.orders`, `status = 'cancelled'`, `payment_status = 'not_paid'`,
`payment_method = 'KOMOJU_HOSTED_PAGE'`, a KOMOJU payment id, and `komoju_cancel_status` not yet `Cancelled` or
`Rejected`.

**What it writes**: `komoju_cancel_status` = `Cancelled` (done, or KOMOJU shows it cancelled already), `Rejected`
(KOMOJU says it cannot be cancelled, e.g. it was paid after all) or `Failed` (tried again next run, up to
*max_attempts*), with KOMOJU's reason in `komoju_cancel_response`.

**Per site**: one mapped task per site (labelled with the site id), with its own retries. Retry or clear one site
without touching the others. A site whose KOMOJU key is refused fails at once, changing nothing. Only the sites
with work get a task (eligible orders, open or Pending attempts, failure e-mails to send); `resolve_sites` logs the
others as checked with nothing to do. A site named in *site_ids* always gets its task.

**Run state**: the run fails when a site failed (its e-mails still go out) or the site list is invalid. A run
in which no site has work runs no site task (*skipped*) and succeeds.

**E-mail**: orders given up on (`Rejected`, or `Failed` for good) are e-mailed once to the site's contacts
(`komoju.site.notify_emails`, in its `email_locale`), asking to settle them in the KOMOJU dashboard.

**Params**: `site_ids` (empty = every active site), `dry_run` (list only), `max_attempts`, `max_concurrency`.

**Schedule**: every 30 minutes (`KOMOJU_CANCEL_SCHEDULE`: cron, or `none`), **and** within seconds of an order becoming
eligible: the asset `komoju_orders_cancel` gets an event from its watcher in the triggerer, which listens for the
status database's notifications. The cron stays as the sweep for notifications nobody heard.
`KOMOJU_EVENT_DRIVEN=off`: the cron alone.
"""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag

from komoju import dag_support
from komoju.operators import KomojuCancelOrdersOperator, KomojuFailureEmailOperator
from komoju.tasks import prepare_failure_emails, resolve_sites


@dag(
    dag_id="komoju_cancel_process",
    schedule=dag_support.order_job_schedule("cancel", "KOMOJU_CANCEL_SCHEDULE", "*/30 * * * *"),
    start_date=dag_support.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=dag_support.default_args(),
    params=dag_support.order_job_params(),
    render_template_as_native_obj=True,
    doc_md=__doc__,
    tags=[*dag_support.TAGS, "cancel"],
)
def komoju_cancel_process():
    sites = resolve_sites(job="cancel")  # only the sites with work (or named in site_ids)
    cancelled = KomojuCancelOrdersOperator.partial(
        task_id="cancel_site",
        map_index_template="{{ task.site_id }}",
        dry_run="{{ params.dry_run }}",
        max_attempts="{{ params.max_attempts }}",
        max_concurrency="{{ params.max_concurrency }}",
        batch_size=dag_support.batch_size(),
    ).expand(site_id=sites)
    failure_emails = prepare_failure_emails(job="cancel")  # runs even when some site failed
    cancelled >> failure_emails
    cancelled >> EmptyOperator(task_id="all_sites_done")  # the run fails when the scope or any site failed
    KomojuFailureEmailOperator.partial(
        task_id="send_failure_email", map_index_template="{{ task.site_id }}"
    ).expand_kwargs(failure_emails)


komoju_cancel_process()
