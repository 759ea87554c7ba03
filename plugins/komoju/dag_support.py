"""What the three DAG files share: schedules and retries from the environment, params, default args.

Read at parse time from environment variables only: no database or network work at import.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow.sdk import Param

from komoju.operators import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ATTEMPTS

START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TAGS = ["komoju", "payments"]


def schedule(variable: str, default: str | None) -> str | None:
    """The schedule in ``$variable`` (a cron expression, a preset like ``@hourly``, or ``none``), else ``default``."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    return None if value.lower() in ("none", "manual", "off") else value


EVENT_DRIVEN_VALUES = {"on": True, "1": True, "true": True, "yes": True, "off": False, "0": False, "false": False,
                       "no": False}  # fmt: skip


def event_driven() -> bool:
    """``KOMOJU_EVENT_DRIVEN``: on (the default) or off. A value that says neither stops the DAG files from
    parsing, with this message, rather than guessing."""
    value = os.environ.get("KOMOJU_EVENT_DRIVEN", "").strip().lower()
    if not value:
        return True
    if value not in EVENT_DRIVEN_VALUES:
        raise ValueError(f"KOMOJU_EVENT_DRIVEN must be on or off, got {value!r}.")
    return EVENT_DRIVEN_VALUES[value]


def order_job_schedule(job: str, variable: str, default: str) -> Any:
    """The cancel or refund DAG's schedule: its cron (``$variable``, else ``default``) or, when event-driven
    (``KOMOJU_EVENT_DRIVEN``, on by default), that same cron **or** an event of the job's asset, which a watcher in
    Airflow's triggerer updates when orders become eligible (``komoju.events``). With ``KOMOJU_EVENT_DRIVEN=off``,
    or a schedule of ``none`` (runs by hand only), the cron string alone, exactly as before issue 16."""
    cron = schedule(variable, default)
    if cron is None or cron in ("@once", "@continuous") or not event_driven():
        return cron
    from airflow.sdk import AssetOrTimeSchedule

    from komoju.events import order_asset

    return AssetOrTimeSchedule(timetable=cron_timetable(cron), assets=order_asset(job))


def cron_timetable(cron: str) -> Any:
    """The timetable Airflow makes of the schedule string ``cron`` for these DAGs (whose dates are in UTC): a
    ``CronTriggerTimetable``, or a ``CronDataIntervalTimetable`` where ``[scheduler] create_cron_data_intervals``
    says so, as a plain ``schedule=cron`` would give."""
    import pendulum
    from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable
    from airflow.sdk.configuration import conf

    timezone = pendulum.instance(START_DATE).timezone  # the DAG's timezone, as Airflow derives it from start_date
    if conf.getboolean("scheduler", "create_cron_data_intervals"):
        return CronDataIntervalTimetable(cron, timezone=timezone)
    return CronTriggerTimetable(cron, timezone=timezone)


def batch_size() -> int:
    """Orders read, locked and written per database round trip by the cancel and refund jobs:
    ``KOMOJU_BATCH_SIZE`` (default 200)."""
    value = os.environ.get("KOMOJU_BATCH_SIZE", "").strip()
    return int(value) if value else DEFAULT_BATCH_SIZE


def default_args() -> dict[str, Any]:
    """Per-task retries: ``KOMOJU_TASK_RETRIES`` (default 3), exponential back-off from ``KOMOJU_RETRY_DELAY_SECONDS``
    (default 60 s) up to 30 minutes."""
    return {
        "owner": "komoju",
        "retries": int(os.environ.get("KOMOJU_TASK_RETRIES", "3")),
        "retry_delay": dt.timedelta(seconds=float(os.environ.get("KOMOJU_RETRY_DELAY_SECONDS", "60"))),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=30),
    }


def site_ids_param() -> Param:
    """``site_ids``: the sites to work on; empty means every active site.

    The trigger form cannot read the database at parse time, so it offers the ids listed in
    ``KOMOJU_KNOWN_SITES`` (comma-separated) as a multi-select, or a text box of ids when that is unset. The
    type admits null, which is how Airflow's form marks a field optional (and what its multi-select sends when
    cleared); the tasks read null as an empty list.
    """
    known = [s.strip() for s in os.environ.get("KOMOJU_KNOWN_SITES", "").split(",") if s.strip()]
    if known:
        extra: dict[str, Any] = {"examples": known}
        description = "Choose the sites to run for. Leave it empty for every active site."
    else:
        extra = {}
        description = "Site ids (komoju.site.site_id) to run for, one per line. Leave it empty for every active site."
    return Param(
        [],
        type=["array", "null"],
        items={"type": "string", "minLength": 1},
        uniqueItems=True,
        title="Sites (optional)",
        description=description,
        **extra,
    )


def order_job_params() -> dict[str, Param]:
    """Params of the cancel and refund DAGs."""
    return {
        "site_ids": site_ids_param(),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="List what would be done; call and change nothing."
        ),
        "max_attempts": Param(
            DEFAULT_MAX_ATTEMPTS,
            type="integer",
            minimum=1,
            maximum=20,
            title="Attempts per order",
            description="After this many failed attempts an order is given up on and e-mailed.",
        ),
        "max_concurrency": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=64,
            title="Concurrent KOMOJU calls per site",
            description="Empty: the site's KOMOJU connection extra max_concurrency, else 8.",
        ),
    }
