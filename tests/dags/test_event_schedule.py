"""The cancel and refund DAGs' schedule (issue 16): by default their cron or an event of their job's asset, watched
by the triggerer; with ``KOMOJU_EVENT_DRIVEN=off`` exactly the DAGs of before; and parsing them does no I/O."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from devtools import PROJECT_ROOT as ROOT

JOBS = {"cancel": "komoju_cancel_process", "refund": "komoju_refund_process"}


def parse(path: Path) -> Any:
    """The one DAG of the file at ``path``, parsed now (the environment as it is now)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    (dag,) = bag.dags.values()
    return dag


def serialized(dag: Any) -> dict[str, Any]:
    """The DAG as the DAG processor stores it, without where its file is."""
    from airflow.serialization.serialized_objects import DagSerialization

    data = DagSerialization.to_dict(dag)["dag"]
    for where in ("fileloc", "relative_fileloc"):
        data.pop(where, None)
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def dag_file(job: str) -> Path:
    return ROOT / "dags" / f"{JOBS[job]}.py"


def dag_file_before_issue_16(job: str, folder: Path) -> Path:
    """The DAG file as it was before issue 16: its schedule line was the cron of ``dag_support.schedule``."""
    text = dag_file(job).read_text(encoding="utf-8")
    now = f'schedule=dag_support.order_job_schedule("{job}", "KOMOJU_{job.upper()}_SCHEDULE", "*/30 * * * *"),'
    assert now in text
    before = text.replace(now, f'schedule=dag_support.schedule("KOMOJU_{job.upper()}_SCHEDULE", "*/30 * * * *"),')
    path = folder / f"{JOBS[job]}.py"
    path.write_text(before, encoding="utf-8")
    return path


@pytest.mark.parametrize("job", JOBS)
def test_by_default_the_dag_runs_on_its_cron_or_its_assets_event(job, monkeypatch):
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    monkeypatch.delenv("KOMOJU_EVENT_DRIVEN", raising=False)
    dag = parse(dag_file(job))
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert isinstance(dag.timetable.timetable, CronTriggerTimetable)
    assert (dag.timetable.timetable.expression, str(dag.timetable.timetable.timezone)) == ("*/30 * * * *", "UTC")
    asset = dag.timetable.asset_condition
    assert (asset.name, asset.uri) == (f"komoju_orders_{job}", f"x-komoju://orders/{job}")
    (watcher,) = asset.watchers
    assert watcher.trigger.serialize() == (
        "komoju.events.OrderEventTrigger",
        {"job": job, "conn_id": "komoju_postgres", "gather_seconds": 0.2, "quiet_seconds": 5.0},
    )
    assert (dag.max_active_runs, dag.catchup) == (1, False)
    stored = serialized(dag)["timetable"]["__var"]
    assert stored["asset_condition"]["watchers"][0]["trigger"]["classpath"] == "komoju.events.OrderEventTrigger"
    assert "password" not in json.dumps(stored)


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("off", ["off", "OFF", "0", "false", "no"])
def test_event_driven_off_gives_exactly_the_dag_of_before(job, off, monkeypatch, tmp_path):
    """Serialized, the DAG equals in every field the one its file makes with the schedule line it had before issue
    16 (the file's text is otherwise the same: its doc_md says more since)."""
    monkeypatch.setenv("KOMOJU_EVENT_DRIVEN", off)
    now = serialized(parse(dag_file(job)))
    before = serialized(parse(dag_file_before_issue_16(job, tmp_path)))
    assert now == before
    assert now["timetable"]["__type"] == "airflow.timetables.trigger.CronTriggerTimetable"
    assert "x-komoju" not in json.dumps(now)


@pytest.mark.parametrize("job", JOBS)
def test_the_cron_inside_the_event_schedule_is_the_cron_of_before(job, monkeypatch, tmp_path):
    monkeypatch.setenv(f"KOMOJU_{job.upper()}_SCHEDULE", "7 * * * *")
    monkeypatch.delenv("KOMOJU_EVENT_DRIVEN", raising=False)
    inner = serialized(parse(dag_file(job)))["timetable"]["__var"]["timetable"]
    assert inner == serialized(parse(dag_file_before_issue_16(job, tmp_path)))["timetable"]


@pytest.mark.parametrize("job", JOBS)
def test_a_schedule_of_none_means_by_hand_only_and_no_events(job, monkeypatch):
    monkeypatch.setenv(f"KOMOJU_{job.upper()}_SCHEDULE", "none")
    monkeypatch.delenv("KOMOJU_EVENT_DRIVEN", raising=False)
    dag = parse(dag_file(job))
    assert serialized(dag)["timetable"]["__type"] == "airflow.timetables.simple.NullTimetable"


def test_a_switch_value_that_says_neither_on_nor_off_stops_the_parse_with_a_clear_error(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("KOMOJU_EVENT_DRIVEN", "maybe")
    bag = DagBag(dag_folder=str(dag_file("refund")), safe_mode=False)
    (error,) = bag.import_errors.values()
    assert "KOMOJU_EVENT_DRIVEN must be on or off, got 'maybe'." in error


def test_parsing_the_dags_connects_to_nothing(tmp_path):
    """In a new process whose every socket connect fails, the DAG folder parses without error, the DAGs carry their
    watchers, and no PostgreSQL driver was even imported: the watchers connect in the triggerer, never at parse."""
    script = textwrap.dedent(
        """
        import socket, sys

        def refuse(*args, **kwargs):
            raise AssertionError("a DAG file connected to something at parse time")

        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        watched = sorted(
            dag_id for dag_id, dag in bag.dags.items() if getattr(dag.timetable, "asset_condition", None) is not None
        )
        assert watched == ["komoju_cancel_process", "komoju_refund_process"], watched
        drivers = sorted(m for m in ("psycopg", "psycopg2", "asyncpg") if m in sys.modules)
        print("drivers imported:", drivers)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "dags")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env={**_airflow_env(tmp_path), "KOMOJU_EVENT_DRIVEN": "on"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "drivers imported: []" in done.stdout


def _airflow_env(home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "KOMOJU_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "dags"), str(ROOT)]),
        }
    )
    return env
