"""Acceptance (issue 15): a real refund run with Airflow's StatsD metrics on sends the komoju.* metrics, read off a
UDP socket this test listens on: orders by outcome, KOMOJU calls by class and their latency, e-mails sent, and the
orders to settle by hand. Plain StatsD (the job and site in the name) and StatsD with InfluxDB tags (as tags).

Airflow reads ``[metrics]`` when its metrics layer is initialised: the test sets the ``AIRFLOW__METRICS__*``
variables, initialises Airflow's ``stats`` module again (as Airflow's task runner does at start), and puts both
back afterwards.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
from scenario import Case, Site, emulator_scenario, payment, setup_database

from emulator.testing import EmulatorServer

KEY = "sk_test_e2e_metrics"
SITE = Site("met.shop", "Metrics shop", "komoju_default", "merchant-met", KEY, ("met@example.com",), locale="en")
# What the dot in the site id becomes in a metric: "_", and a digest of the original so no two sites collide.
SITE_LABEL = "met_shop-" + hashlib.sha256(b"met.shop").hexdigest()[:8]
CASES = (
    Case("refund", SITE, "M-DONE", "1000", "JPY", payment=payment("metdone", "captured", 1000), expect="Refunded",
         effect=1000),
    Case("refund", SITE, "M-429", "1100", "JPY", payment=payment("met429", "captured", 1100), expect="Refunded",
         effect=1100, fault="rate_limit"),
    Case("refund", SITE, "M-DROP", "1200", "JPY", payment=payment("metdrop", "captured", 1200), expect="Refunded",
         effect=1200, fault="drop"),
    Case("refund", SITE, "M-REJ", "900", "JPY", payment=payment("metrej", "pending", 900), expect="Rejected",
         final=True),
    Case("refund", SITE, "M-404", "800", "JPY", payment_id=payment("met404", "captured", 1)["id"], expect="Failed",
         final=True),
    Case("refund", SITE, "M-503", "700", "JPY", payment=payment("met503", "captured", 700), expect="Failed"),
    Case("refund", SITE, "M-CASH", "600", "JPY", payment=payment("metcash", "captured", 600, payment_type="konbini"),
         expect="Pending"),
)  # fmt: skip
ORDERS = {"done": 3, "rejected": 1, "given_up": 1, "failed": 1, "pending": 1}
# one HTTP attempt each: POSTs of M-DONE, M-CASH, the retries of M-429 and M-DROP, the GET after M-REJ's refusal;
# 422 M-REJ, 404 and its GET for M-404; 503 four times (the hook's retries); 429 once; the dropped connection
CALLS = {"2xx": 5, "4xx": 3, "5xx": 4, "429": 1, "transport_error": 1}
_LINE = re.compile(r"^(?P<name>[^:]+):(?P<value>-?[0-9.]+)\|(?P<kind>c|g|ms)$")


class StatsdListener:
    """A UDP socket on loopback, collecting the StatsD lines sent to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return
            self.lines.extend(line for line in data.decode().split("\n") if line)

    def until(self, seen, timeout: float = 10.0) -> None:
        """Collect until ``seen(lines)`` holds, polling with a deadline (UDP on loopback is quick, not instant)."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            if seen(self.lines) or time.monotonic() > deadline:
                return

    def close(self) -> None:
        self.sock.close()


def _initialise_stats() -> None:
    """What Airflow's task runner does at start: read [metrics] and pick the backend (read again at first use)."""
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    from komoju import metrics

    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    metrics.tags_supported.cache_clear()


@pytest.fixture(params=["names", "tags"])
def statsd(request, monkeypatch) -> Iterator[tuple[StatsdListener, str]]:
    listener = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", str(request.param == "tags"))
    _initialise_stats()
    try:
        yield listener, request.param
    finally:
        monkeypatch.undo()
        _initialise_stats()  # back to no metrics for the tests after this one
        listener.close()


@pytest.fixture
def komoju(db, set_komoju_connection):
    faults = {"M-429": {"retry_after": 0}, "M-DROP": {"mode": "reset"}}
    scenario = emulator_scenario(CASES, (SITE,))
    for rule in scenario["faults"]:
        case = next(c for c in CASES if c.fault and c.payment["id"] == rule["match"]["payment_id"])
        rule.update(faults.get(case.order_no, {}))
    every_send = {"method": "POST", "payment_id": payment("met503", "captured", 1)["id"]}
    scenario["faults"].append({"kind": "error_503", "match": every_send, "times": 10})
    with EmulatorServer(scenario) as server:
        server.set_settings(cash_refunds="redirect_url")
        set_komoju_connection("komoju_default", server.base_url, KEY)
        setup_database(db, CASES, (SITE,))
        yield server


def parse(lines: list[str], mode: str) -> dict[tuple[str, str, str], list[float]]:
    """``{(name, kind, "job/site"): [values in order]}`` of the komoju.* lines, whichever way job and site came."""
    found: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for line in lines:
        match = _LINE.match(line)
        assert match, f"not a StatsD line: {line!r}"
        name, kind, value = match["name"], match["kind"], float(match["value"])
        if not name.startswith("airflow.komoju."):
            continue
        if mode == "tags":
            base, *tags = name.split(",")
            assert dict(tag.split("=", 1) for tag in tags).keys() == {"job", "site"}, line
            labels = dict(tag.split("=", 1) for tag in tags)
            found[(base.removeprefix("airflow."), kind, f"{labels['job']}/{labels['site']}")].append(value)
        else:
            base, job, site = name.rsplit(".", 2)
            found[(base.removeprefix("airflow."), kind, f"{job}/{site}")].append(value)
    return found


def test_a_refund_run_sends_every_komoju_metric(db, komoju, statsd, smtp_sink, run_dag):
    listener, mode = statsd
    where = f"refund/{SITE_LABEL}"

    run = run_dag("komoju_refund_process")

    assert run.state == "success"
    assert run.states("refund_site") == {SITE.site_id: "success"}
    listener.until(lambda lines: any("komoju.emails.sent" in line for line in lines))
    metrics = parse(listener.lines, mode)
    assert {key[2] for key in metrics} == {where}, "every metric names the job and the site"
    counters = {name: sum(values) for (name, kind, _), values in metrics.items() if kind == "c"}
    assert {name.removeprefix("komoju.orders."): n for name, n in counters.items() if ".orders." in name} == ORDERS
    assert {name.removeprefix("komoju.calls."): n for name, n in counters.items() if ".calls." in name} == CALLS
    assert counters["komoju.emails.sent"] == 1
    latencies = metrics[("komoju.call_latency", "ms", where)]
    assert len(latencies) == sum(CALLS.values()) - CALLS["transport_error"]  # one per answer KOMOJU gave
    assert all(0 < ms < 10_000 for ms in latencies)
    assert metrics[("komoju.orders.to_settle", "g", where)] == [0, 2]  # before the run (resolve_sites), after it
    assert len(smtp_sink.messages) == 1
