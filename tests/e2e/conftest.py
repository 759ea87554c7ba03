"""Fixtures of the end-to-end tests: the project's DAGs run with ``dag.test()`` against real Postgres, the KOMOJU
emulator and the SMTP sink (the root conftest provides ``db``, ``smtp_sink`` and ``airflow_db``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from devtools import PROJECT_ROOT
from devtools.ports import free_port

# Quick retries inside the hook, so that a persistent 5xx costs well under a second per order; each call is sent
# at most 1 + max_retries = 4 times in a try (some tests count on it).
FAST_HOOK_EXTRA = {"backoff_base": 0.01, "max_retry_wait": 0.5, "read_timeout": 5, "max_retries": 3}
DAG_IDS = ("komoju_update_payment_methods", "komoju_cancel_process", "komoju_refund_process")


@dataclass(frozen=True)
class TaskResult:
    """One task instance of a finished run, read out of Airflow's metadata database."""

    task_id: str
    map_index: int
    label: str | None  # rendered_map_index: the site id for the per-site tasks
    state: str | None
    try_number: int


@dataclass(frozen=True)
class RunResult:
    """A finished DAG run: its state and its task instances."""

    dag_id: str
    state: str
    tasks: tuple[TaskResult, ...]
    run_id: str = ""

    def task(self, task_id: str) -> TaskResult:
        """The one (unmapped) instance of ``task_id``."""
        (found,) = [t for t in self.tasks if t.task_id == task_id]
        return found

    def mapped(self, task_id: str) -> list[TaskResult]:
        """The mapped instances of ``task_id``, in map index order."""
        return sorted((t for t in self.tasks if t.task_id == task_id and t.map_index >= 0), key=lambda t: t.map_index)

    def per_site(self, task_id: str) -> dict[str, TaskResult]:
        """The mapped instances of ``task_id`` by site id (their ``map_index_template`` label), one per site."""
        instances = self.mapped(task_id)
        labels = [t.label for t in instances]
        assert len(set(labels)) == len(labels), f"{task_id}: several instances per site: {labels}"
        return {t.label: t for t in instances}

    def states(self, task_id: str) -> dict[str, str | None]:
        """``{site id: state}`` of the mapped instances of ``task_id``."""
        return {label: t.state for label, t in self.per_site(task_id).items()}


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    """The project's DAG folder, parsed once for the whole e2e session."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    assert set(DAG_IDS) <= set(bag.dags), sorted(bag.dags)
    return bag


@pytest.fixture(scope="session")
def param_defaults(dagbag) -> dict[str, dict[str, Any]]:
    """Each DAG's params as declared, read before any run."""
    return {
        dag_id: {name: dagbag.dags[dag_id].params[name] for name in dagbag.dags[dag_id].params} for dag_id in DAG_IDS
    }


@pytest.fixture
def run_dag(dagbag, param_defaults) -> Callable[..., RunResult]:
    """``run_dag(dag_id, site_ids=[...], dry_run=..., ...)``: one whole run with ``dag.test()``, summarised.

    Every param is passed explicitly: ``dag.test()`` runs the tasks in this process, and Airflow updates the
    params of the (shared) task objects with a run's conf, so a param left out would keep the value an earlier
    test gave it, not the DAG's default.
    """

    def run(dag_id: str, **conf: Any) -> RunResult:
        unknown = set(conf) - set(param_defaults[dag_id])
        assert not unknown, f"{dag_id} has no param(s) {sorted(unknown)}"
        run = dagbag.dags[dag_id].test(run_conf={**param_defaults[dag_id], **conf})
        tasks = tuple(
            TaskResult(ti.task_id, ti.map_index, ti.rendered_map_index, _state(ti.state), ti.try_number)
            for ti in run.get_task_instances()
        )
        return RunResult(dag_id, _state(run.state), tasks, run.run_id)

    return run


def _state(state: Any) -> str | None:
    return None if state is None else str(getattr(state, "value", state))


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
