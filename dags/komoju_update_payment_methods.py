"""
### KOMOJU update payment methods

Pulls the payment methods enabled on the merchant's KOMOJU account into each site (`komoju.payment_method`).
The Airflow version of the SFCC cartridge's `updatePaymentMethod`. **Run it once at set-up, then whenever the
methods on the KOMOJU account change** (manual by default).

- A method new to the site is added, switched **on**, after the existing ones.
- A known method keeps the merchant's on/off toggle and its position; its names (en/ja/ko) and subtypes are
  refreshed, and it is marked available.
- A method KOMOJU no longer returns is kept but marked unavailable (not offered); if it returns, it keeps its
  old toggle.
- One site's sync is one transaction: a failed KOMOJU call changes nothing.

Each site's offered methods are also one JSON document: view `komoju.site_payment_methods_document`.
Switch methods on/off or reorder them with `python -m komoju payment-methods ...`.

**Params**: `site_ids` (empty = every active site). Schedule: none, or `KOMOJU_PAYMENT_METHODS_SCHEDULE`.
"""

from airflow.sdk import dag

from komoju import dag_support
from komoju.operators import KomojuSyncPaymentMethodsOperator
from komoju.tasks import resolve_sites


@dag(
    dag_id="komoju_update_payment_methods",
    schedule=dag_support.schedule("KOMOJU_PAYMENT_METHODS_SCHEDULE", None),
    start_date=dag_support.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=dag_support.default_args(),
    params={"site_ids": dag_support.site_ids_param()},
    doc_md=__doc__,
    tags=[*dag_support.TAGS, "payment-methods"],
)
def komoju_update_payment_methods():
    sites = resolve_sites()  # every active site, or those named in site_ids
    KomojuSyncPaymentMethodsOperator.partial(
        task_id="sync_site",
        map_index_template="{{ task.site_id }}",
    ).expand(site_id=sites)


komoju_update_payment_methods()
