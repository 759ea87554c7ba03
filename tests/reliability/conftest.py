"""Fixtures of the reliability suite (``make test-reliability``; every test is marked ``reliability``).

The root conftest provides the test Airflow home, ``pg_server``, ``komoju_database``, ``db``, ``smtp_sink`` and
``airflow_db``. Here: in-process runs with ``dag.test()`` (``run_dag``), Airflow homes for `airflow dags test`
subprocesses (a copy of a freshly created metadata database, so no subprocess pays for ``airflow db migrate``),
and extra komoju databases.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_kit import SEED
from testkit import RunResult, dag_runner

from devtools import PROJECT_ROOT


def pytest_report_header(config: Any) -> str:
    return f"komoju reliability suite: seed {SEED} (KOMOJU_RELIABILITY_SEED)"


@pytest.fixture(scope="session")
def airflow_template(airflow_db: Path, tmp_path_factory) -> Path:
    """A copy of the freshly created Airflow metadata database, taken before any run writes to it."""
    target = tmp_path_factory.mktemp("airflow-template") / "airflow.db"
    source = sqlite3.connect(airflow_db)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return target


@pytest.fixture(scope="session")
def make_airflow_home(airflow_template: Path, tmp_path_factory) -> Callable[[str], Path]:
    """``make_airflow_home(name)``: a new Airflow home with a ready metadata database, for one subprocess."""

    def make(name: str) -> Path:
        home = tmp_path_factory.mktemp(f"airflow-home-{name}")
        (home / "airflow.db").write_bytes(airflow_template.read_bytes())
        return home

    return make


@pytest.fixture(scope="session")
def rel_dagbag(airflow_template):
    """The project's DAGs, parsed once in this process (for in-process runs)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"), safe_mode=False)
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture(scope="session")
def run_dag(rel_dagbag) -> Callable[..., RunResult]:
    """``run_dag(dag_id, **conf)``: one whole run with ``dag.test()`` in this process, summarised
    (``testkit.dag_runner``)."""
    return dag_runner(rel_dagbag)


@pytest.fixture(scope="session")
def make_database(pg_server) -> Iterator[Callable[[], str]]:
    """``make_database()``: a new database with the komoju schema; all dropped at the end of the session."""
    from komoju import migrations

    made: list[str] = []

    def make() -> str:
        name = pg_server.create_database(prefix="komoju_rel")
        made.append(name)
        conn = pg_server.connect(name)
        try:
            migrations.upgrade(conn)
        finally:
            conn.close()
        return name

    try:
        yield make
    finally:
        for name in made:
            pg_server.drop_database(name)
