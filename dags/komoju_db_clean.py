"""
### KOMOJU bookkeeping clean

Removes the bookkeeping of **finished** orders older than *older_than_days* (90): their attempts
(`komoju.attempt`), and the sent failure e-mails (`komoju.notification`) with the final failures and customer
links they carried. The same as `python -m komoju db clean --older-than DAYS --yes`.

**Never removed**: an open or Pending attempt; the history of an order the cancel or refund job would still work on
(its tries and attempt numbers come from it); a final failure or customer link not yet e-mailed (sites with
e-mails off keep theirs); the audit trail of setting changes (`komoju.setting_change`).

**How**: in batches of 5,000 rows, each its own short transaction, touching only finished rows: the jobs run at
the same time unhindered. Then `VACUUM (ANALYZE)` of the cleaned tables. The log shows each table's rows and size
before and after.

**Params**: `older_than_days` (at least 2), `dry_run` (count only). Daily, or `KOMOJU_DB_CLEAN_SCHEDULE`; paused
until you unpause it.
"""

from airflow.sdk import Param, dag

from komoju import dag_support
from komoju.tasks import clean_bookkeeping


@dag(
    dag_id="komoju_db_clean",
    schedule=dag_support.schedule("KOMOJU_DB_CLEAN_SCHEDULE", "@daily"),
    start_date=dag_support.START_DATE,
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    default_args=dag_support.default_args(),
    params={
        "older_than_days": Param(
            90,
            type="integer",
            minimum=2,
            title="Older than (days)",
            description="Remove the bookkeeping of orders finished more than this many days ago.",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Count what would go; delete nothing."),
    },
    doc_md=__doc__,
    tags=[*dag_support.TAGS, "maintenance"],
)
def komoju_db_clean():
    clean_bookkeeping()


komoju_db_clean()
