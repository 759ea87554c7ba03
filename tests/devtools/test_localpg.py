"""The test harness's PostgreSQL discovery: configured server first, then 127.0.0.1:5432, then a throwaway one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg2
import pytest

from devtools import localpg


def test_komoju_test_dsn_wins_over_everything(monkeypatch, pg_server, komoju_database):
    conn = pg_server.airflow_connection(komoju_database)
    monkeypatch.setenv(
        "KOMOJU_TEST_DSN", f"host={conn['host']} port={conn['port']} user={conn['login']} dbname={komoju_database}"
    )
    found = localpg.find_server()
    assert found.origin == "KOMOJU_TEST_DSN"
    with found.connect() as probe, probe.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone()[0] == komoju_database


def test_an_unreachable_configured_server_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setenv("KOMOJU_TEST_DSN", "host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=2")
    with pytest.raises(RuntimeError, match="KOMOJU_TEST_DSN does not answer"):
        localpg.find_server()


def test_pg_variables_are_honoured(monkeypatch, pg_server):
    conn = pg_server.airflow_connection("postgres")
    monkeypatch.delenv("KOMOJU_TEST_DSN", raising=False)
    monkeypatch.setenv("PGHOST", conn["host"])
    monkeypatch.setenv("PGPORT", str(conn["port"]))
    monkeypatch.setenv("PGUSER", conn["login"])
    assert localpg.find_server().origin == "PG* variables"


@pytest.mark.slow
def test_throwaway_cluster_starts_serves_and_disappears():
    # Not pytest's tmp_path: as root, the cluster runs as `postgres`, which cannot enter /tmp/pytest-of-root.
    base = Path(tempfile.mkdtemp(prefix="komoju-test-pg-"))
    server = localpg.start_throwaway(base)
    try:
        assert server.origin.startswith("throwaway cluster")
        name = server.create_database()
        with server.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user, current_setting('port')::int")
            assert cur.fetchone() == ("postgres", server.params["port"])
        conn.close()
        session = server.connect(name)
        server.restart()  # cuts every session, and serves again when it returns
        with pytest.raises(psycopg2.OperationalError), session.cursor() as cur:
            cur.execute("SELECT 1")
        with server.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.close()
        server.drop_database(name)
    finally:
        server.stop()
    assert not base.exists()
    assert not os.path.exists(base / "data" / "postmaster.pid")
