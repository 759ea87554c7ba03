"""The jobs' metrics, sent through Airflow's own metrics layer: StatsD, Datadog's DogStatsD or OpenTelemetry,
whichever the deployment's ``[metrics]`` section turned on (none: nothing is sent). docs/metrics.md lists them.

Every metric is named ``komoju.*`` (Airflow adds its ``statsd_prefix``/``otel_prefix``, ``airflow.`` by default)
and is about one job and one site. Where the configured backend carries tags (DogStatsD with
``statsd_datadog_metrics_tags``, StatsD with ``statsd_influxdb_enabled``, OpenTelemetry attributes), those are
the tags ``job`` and ``site``. Plain StatsD drops tags, so there the job and the site go into the name instead,
as Airflow's own legacy names do: ``komoju.orders.done.refund.tokyo``.

A metric never fails a job: anything the backend raises is logged at DEBUG and dropped. Imported only where a
task runs (never by the DAG files).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Order outcomes as the orders counters name them, from the status a run wrote (and whether it is for good).
ORDER_OUTCOMES = ("done", "rejected", "failed", "pending", "given_up")
CALL_CLASSES = ("2xx", "3xx", "4xx", "429", "5xx", "transport_error")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
LABEL_MAX = 64


@functools.lru_cache(maxsize=4096)  # a site's label is computed for every call it makes
def label(value: str) -> str:
    """A site id (or job) as it appears in metric names and tag values: ASCII letters, digits, ``_`` and ``-``,
    at most 64 characters, then 9 more when it had to change: ``-`` and 8 hex digits of the original's SHA-256, so
    that two sites never share a series (``tokyo.main`` becomes ``tokyo_main-01fdf3fe``)."""
    clean = _UNSAFE.sub("_", value)[:LABEL_MAX]
    if clean == value and clean:
        return clean
    return f"{clean}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"


@functools.cache
def tags_supported() -> bool:
    """Whether the configured metrics backend carries tags (read once per process from Airflow's config)."""
    from airflow.sdk.configuration import conf

    if conf.getboolean("metrics", "statsd_datadog_enabled", fallback=False):
        return conf.getboolean("metrics", "statsd_datadog_metrics_tags", fallback=True)
    if conf.getboolean("metrics", "statsd_on", fallback=False):
        return conf.getboolean("metrics", "statsd_influxdb_enabled", fallback=False)
    return True  # OpenTelemetry: attributes (or no backend at all: nothing is sent either way)


def stat(name: str, job: str, site_id: str) -> tuple[str, dict[str, str] | None]:
    """The metric name and tags to send ``name`` for ``job`` and ``site_id`` with, for the configured backend."""
    job_label, site_label = label(job), label(site_id)
    if tags_supported():
        return name, {"job": job_label, "site": site_label}
    return f"{name}.{job_label}.{site_label}", None


def incr(name: str, job: str, site_id: str, count: int = 1) -> None:
    """Add ``count`` to the counter ``name`` of the job and site (nothing when ``count`` is 0)."""
    if count:
        _send("incr", name, job, site_id, count)


def gauge(name: str, job: str, site_id: str, value: float) -> None:
    """Set the gauge ``name`` of the job and site."""
    _send("gauge", name, job, site_id, value)


def timing(name: str, job: str, site_id: str, milliseconds: float) -> None:
    """Record one observation of the timer ``name`` (milliseconds) for the job and site."""
    _send("timing", name, job, site_id, milliseconds)


def orders(job: str, site_id: str, outcomes: Mapping[str, int]) -> None:
    """``komoju.orders.<outcome>`` counters for the orders whose results one batch wrote."""
    for outcome, count in outcomes.items():
        incr(f"komoju.orders.{outcome}", job, site_id, count)


def call_class(http_status: int | None) -> str:
    """How a KOMOJU answer is counted: ``2xx``, ``3xx``, ``4xx``, ``429`` (apart from the other 4xx), ``5xx``, or
    ``transport_error`` (no HTTP answer: a timeout, a refused or dropped connection)."""
    if http_status is None:
        return "transport_error"
    if http_status == 429:
        return "429"
    return f"{min(max(http_status // 100, 1), 5)}xx"


def _send(kind: str, name: str, job: str, site_id: str, value: float) -> None:
    try:
        from airflow.sdk.observability import stats

        metric, tags = stat(name, job, site_id)
        if kind == "incr":
            stats.incr(metric, int(value), tags=tags)
        elif kind == "gauge":
            stats.gauge(metric, value, tags=tags)
        else:
            stats.timing(metric, value, tags=tags)
    except Exception:  # a metric must never fail a job
        log.debug("Could not send metric %s", name, exc_info=True)
