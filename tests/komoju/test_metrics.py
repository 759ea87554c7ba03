"""How the komoju.* metrics are named for each kind of metrics backend (no backend needed)."""

from __future__ import annotations

import hashlib

import pytest

from komoju import metrics


@pytest.fixture
def backend(monkeypatch):
    """``backend(**metrics_settings)``: configure Airflow's [metrics] section for this test."""

    def configure(**settings: str) -> None:
        for name in ("STATSD_ON", "STATSD_INFLUXDB_ENABLED", "STATSD_DATADOG_ENABLED", "STATSD_DATADOG_METRICS_TAGS",
                     "OTEL_ON"):  # fmt: skip
            monkeypatch.delenv(f"AIRFLOW__METRICS__{name}", raising=False)
        for name, value in settings.items():
            monkeypatch.setenv(f"AIRFLOW__METRICS__{name.upper()}", value)
        metrics.tags_supported.cache_clear()

    yield configure
    metrics.tags_supported.cache_clear()


def test_site_labels_are_safe_and_never_collide():
    assert metrics.label("tokyo-main_2") == "tokyo-main_2"
    digest = hashlib.sha256(b"tokyo.main").hexdigest()[:8]
    assert metrics.label("tokyo.main") == f"tokyo_main-{digest}"
    assert metrics.label("tokyo.main") != metrics.label("tokyo_main")
    assert metrics.label("東京") != metrics.label("大阪")
    long = metrics.label("x" * 500)
    assert len(long) == metrics.LABEL_MAX + 9
    assert metrics.label("a,b=c:d|e site").startswith("a_b_c_d_e_site-")  # nothing StatsD or InfluxDB would parse


@pytest.mark.parametrize(
    ("settings", "tags"),
    [
        ({"statsd_on": "True"}, False),
        ({"statsd_on": "True", "statsd_influxdb_enabled": "True"}, True),
        ({"statsd_datadog_enabled": "True"}, True),
        ({"statsd_datadog_enabled": "True", "statsd_datadog_metrics_tags": "False"}, False),
        ({"otel_on": "True"}, True),
    ],
)
def test_job_and_site_are_tags_where_the_backend_carries_them_else_in_the_name(backend, settings, tags):
    backend(**settings)
    name, sent_tags = metrics.stat("komoju.orders.done", "refund", "tokyo")
    if tags:
        assert (name, sent_tags) == ("komoju.orders.done", {"job": "refund", "site": "tokyo"})
    else:
        assert (name, sent_tags) == ("komoju.orders.done.refund.tokyo", None)


def test_call_classes():
    assert [metrics.call_class(s) for s in (200, 202, 302, 400, 404, 422, 429, 500, 503, None)] == [
        "2xx", "2xx", "3xx", "4xx", "4xx", "4xx", "429", "5xx", "5xx", "transport_error"
    ]  # fmt: skip
