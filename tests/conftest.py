"""Test harness: an isolated Airflow home, a fresh PostgreSQL database, the KOMOJU emulator, an SMTP sink.

Airflow reads its configuration at first import, so the environment is set here, at the top of the
root conftest, before anything imports ``airflow``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from devtools import PROJECT_ROOT as ROOT

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="komoju-test-airflow-"))

for _name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
    del os.environ[_name]  # a developer's own connections must not leak into the tests
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # SimpleAuthManager's four roles, for the KOMOJU page's permission tests (passwords: generated file).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,op:op,user:user,viewer:viewer",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        # DAG files read these at parse time: keep Airflow's task retries real but quick in tests.
        "KOMOJU_RETRY_DELAY_SECONDS": "0.2",
        "KOMOJU_TASK_RETRIES": "2",
        # Small batches, so that the runs go through several batches, pipelined (the default is 200).
        "KOMOJU_BATCH_SIZE": "3",
    }
)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures (imported after the environment above is in place)
# ---------------------------------------------------------------------------------------------------------------
import json  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import psycopg2  # noqa: E402
import pytest  # noqa: E402

from devtools import localpg  # noqa: E402
from devtools.smtp_sink import SmtpSink  # noqa: E402

# Every table integrators and jobs write; emptied before each test that uses ``db``.
TRUNCATE_KOMOJU_TABLES = (
    "TRUNCATE komoju.final_failure, komoju.customer_link, komoju.notification, komoju.attempt, komoju.setting_change,"
    " komoju.site_check,"
    " komoju.payment_method, komoju.orders, komoju.site RESTART IDENTITY CASCADE"
)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[localpg.PgServer]:
    """A PostgreSQL server: the configured one, else 127.0.0.1:5432, else a throwaway cluster."""
    server = localpg.find_server()
    if server is None:
        server = localpg.start_throwaway(Path(tempfile.mkdtemp(prefix="komoju-test-pg-")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def komoju_database(pg_server) -> Iterator[str]:
    """A fresh database for this run with the komoju schema applied; ``komoju_postgres`` points at it."""
    from komoju import migrations

    name = pg_server.create_database()
    os.environ["AIRFLOW_CONN_KOMOJU_POSTGRES"] = json.dumps(pg_server.airflow_connection(name))
    try:
        conn = pg_server.connect(name)
        try:
            migrations.upgrade(conn)
        finally:
            conn.close()
        yield name
    finally:
        os.environ.pop("AIRFLOW_CONN_KOMOJU_POSTGRES", None)
        pg_server.drop_database(name)


@pytest.fixture
def db(pg_server, komoju_database) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the run's database, every komoju table emptied first."""
    conn = pg_server.connect(komoju_database)
    with conn.cursor() as cur:
        cur.execute(TRUNCATE_KOMOJU_TABLES)
    conn.commit()
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def empty_database(pg_server) -> Iterator[str]:
    """A new database with nothing in it (for migration tests), dropped afterwards."""
    name = pg_server.create_database(prefix="komoju_empty")
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on loopback; ``smtp_default`` points at it for the test."""
    with SmtpSink() as sink:
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(sink.airflow_connection())
        try:
            yield sink
        finally:
            os.environ.pop("AIRFLOW_CONN_SMTP_DEFAULT", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's own metadata database (SQLite in the test Airflow home), freshly created."""
    from airflow.utils import db as airflow_db_utils

    airflow_db_utils.resetdb()
    return AIRFLOW_HOME / "airflow.db"


@dataclass
class AirflowApi:
    """Airflow's API server app in this process (``TestClient``), and a Bearer header per SimpleAuthManager role."""

    client: Any
    tokens: dict[str, dict[str, str]]


@pytest.fixture(scope="session")
def airflow_api(airflow_db, komoju_database) -> Iterator[AirflowApi]:
    """Airflow's API server app with the plugins folder's KOMOJU plugin mounted, each role logged in through
    ``POST /auth/token``, and the DAGs serialized (Airflow shows a DAG's audit log entries only to users who may
    read a DAG it knows)."""
    import argparse

    from airflow.api_fastapi.app import create_app, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.cli.commands.dag_command import dag_reserialize
    from fastapi.testclient import TestClient

    dag_reserialize(argparse.Namespace(bundle_name=None))
    client = TestClient(create_app(), base_url="http://testserver")
    passwords = SimpleAuthManager.get_passwords()
    tokens = {}
    for role in ("admin", "op", "user", "viewer"):
        answer = client.post("/auth/token", json={"username": role, "password": passwords[role]})
        assert answer.status_code in (200, 201), answer.text
        tokens[role] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    yield AirflowApi(client, tokens)
    purge_cached_app()
