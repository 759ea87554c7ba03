"""Fixtures of the end-to-end tests: the project's DAGs run with ``dag.test()`` against real Postgres, the KOMOJU
emulator and the SMTP sink (the root conftest provides ``db``, ``smtp_sink`` and ``airflow_db``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from testkit import RunResult, dag_runner

from devtools import PROJECT_ROOT
from devtools.ports import free_port

# Quick retries inside the hook, so that a persistent 5xx costs well under a second per order; each call is sent
# at most 1 + max_retries = 4 times in a try (some tests count on it).
FAST_HOOK_EXTRA = {"backoff_base": 0.01, "max_retry_wait": 0.5, "read_timeout": 5, "max_retries": 3}
DAG_IDS = ("komoju_update_payment_methods", "komoju_cancel_process", "komoju_refund_process")


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    """The project's DAG folder, parsed once for the whole e2e session."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    assert set(DAG_IDS) <= set(bag.dags), sorted(bag.dags)
    return bag


@pytest.fixture(scope="session")
def run_dag(dagbag) -> Callable[..., RunResult]:
    """``run_dag(dag_id, site_ids=[...], dry_run=..., ...)``: one whole run with ``dag.test()``, summarised
    (``testkit.dag_runner``: every param passed, the declared defaults filled in)."""
    return dag_runner(dagbag)


def komoju_connection(base_url: str, secret_key: str, **extra: Any) -> str:
    """An Airflow connection of type ``komoju`` in the JSON form of ``AIRFLOW_CONN_*`` variables."""
    return json.dumps(
        {"conn_type": "komoju", "host": base_url, "password": secret_key, "extra": {**FAST_HOOK_EXTRA, **extra}}
    )


@pytest.fixture
def set_komoju_connection(monkeypatch) -> Callable[..., None]:
    """``set_komoju_connection(conn_id, base_url, secret_key, **extra)``: (re)define a KOMOJU connection for this
    test (``extra`` adds to the fast test defaults)."""

    def define(conn_id: str, base_url: str, secret_key: str, **extra: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", komoju_connection(base_url, secret_key, **extra))

    return define


@pytest.fixture
def smtp_switch(smtp_sink, monkeypatch) -> Callable[[bool], None]:
    """``smtp_switch(False)`` points ``smtp_default`` at a closed loopback port; ``smtp_switch(True)`` back at
    the sink."""
    up = json.dumps(smtp_sink.airflow_connection())
    down = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": free_port(),  # nothing listens there: every send is refused at once
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "komoju-airflow@example.com"},
        }
    )

    def switch(on: bool) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", up if on else down)

    return switch
