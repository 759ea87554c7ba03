"""Schema migrations: fresh upgrade, idempotence, concurrent runners, immutability, check constraints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest

from devtools import PROJECT_ROOT as ROOT
from devtools.ports import poll_until
from komoju import migrations, sql

EXPECTED_TABLES = {
    "site",
    "payment_method",
    "orders",
    "attempt",
    "notification",
    "final_failure",
    "setting_change",
    "customer_link",
    "site_check",
    "schema_migration",
}


def _tables(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'komoju' AND table_type = 'BASE TABLE'"
        )
        return {name for (name,) in cur.fetchall()}


def _applied_versions(conn) -> list[int]:
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM komoju.schema_migration ORDER BY version")
        return [v for (v,) in cur.fetchall()]


def test_upgrade_creates_the_schema_on_an_empty_database(pg_server, empty_database):
    conn = pg_server.connect(empty_database)
    try:
        assert migrations.status(conn)[0].applied_at is None
        applied = migrations.upgrade(conn)
        assert [m.label for m in applied] == [m.label for m in sql.migrations()]
        assert applied[0].label == "0001_initial"
        assert _tables(conn) == EXPECTED_TABLES
        assert _applied_versions(conn) == [m.version for m in sql.migrations()]
        assert all(state.applied_at is not None for state in migrations.status(conn))
    finally:
        conn.close()


def test_second_upgrade_is_a_no_op(pg_server, empty_database):
    conn = pg_server.connect(empty_database)
    try:
        migrations.upgrade(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT version, applied_at FROM komoju.schema_migration")
            before = cur.fetchall()
        assert migrations.upgrade(conn) == []
        with conn.cursor() as cur:
            cur.execute("SELECT version, applied_at FROM komoju.schema_migration")
            assert cur.fetchall() == before
    finally:
        conn.close()


def _cli(args: list[str], database: str, pg_server) -> subprocess.Popen:
    env = dict(os.environ)
    env["AIRFLOW_CONN_KOMOJU_POSTGRES"] = json.dumps(pg_server.airflow_connection(database))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])
    return subprocess.Popen(
        [sys.executable, "-m", "komoju", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_upgrades_from_two_processes_apply_each_migration_once(pg_server, empty_database):
    holder = pg_server.connect(empty_database)
    holder.autocommit = True
    watcher = pg_server.connect(empty_database)
    watcher.autocommit = True
    try:
        # Hold the runners' lock so both processes are certainly queued on it at the same time.
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (migrations.MIGRATION_LOCK_ID,))
        runners = [_cli(["db", "upgrade"], empty_database, pg_server) for _ in range(2)]

        def both_waiting() -> bool:
            with watcher.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                return cur.fetchone()[0] == 2

        poll_until(both_waiting, timeout=60, what="both upgrade processes waiting on the migration lock")
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (migrations.MIGRATION_LOCK_ID,))
        outputs = [runner.communicate(timeout=60) for runner in runners]
        assert [runner.returncode for runner in runners] == [0, 0], outputs
        stdouts = [out for out, _err in outputs]
        assert sum("applied 0001_initial" in out for out in stdouts) == 1, stdouts
        assert sum("komoju schema already at version" in out for out in stdouts) == 1, stdouts
        assert _applied_versions(watcher) == [m.version for m in sql.migrations()]
        assert _tables(watcher) == EXPECTED_TABLES
    finally:
        holder.close()
        watcher.close()


def test_cli_status_lists_pending_then_applied(pg_server, empty_database):
    out, err = _cli(["db", "status"], empty_database, pg_server).communicate(timeout=60)
    assert "0001_initial" in out
    assert "pending" in out
    assert "0 applied" in out, err
    out, err = _cli(["db", "upgrade"], empty_database, pg_server).communicate(timeout=60)
    assert "applied 0001_initial" in out, err
    out, err = _cli(["db", "status"], empty_database, pg_server).communicate(timeout=60)
    assert "pending" not in out.split("\n")[0]
    assert f"{len(sql.migrations())} applied, 0 pending" in out, err


def test_cli_names_a_missing_connection(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_KOMOJU_POSTGRES"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "komoju", "db", "upgrade", "--conn-id", "no_such_db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "'no_such_db'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_changed_applied_migration_is_refused(pg_server, empty_database, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "include" / "sql", tmp_path / "sql")
    monkeypatch.setenv("KOMOJU_SQL_DIR", str(tmp_path / "sql"))
    sql.query.cache_clear()
    conn = pg_server.connect(empty_database)
    try:
        migrations.upgrade(conn)
        first = tmp_path / "sql" / "migrations" / "0001_initial.sql"
        first.write_text(first.read_text() + "\n-- edited after release\n")
        with pytest.raises(migrations.MigrationError, match=r"0001_initial\.sql was changed after it was applied"):
            migrations.upgrade(conn)
    finally:
        conn.close()
        sql.query.cache_clear()


def test_a_failing_migration_is_rolled_back_and_named(pg_server, empty_database, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "include" / "sql", tmp_path / "sql")
    (tmp_path / "sql" / "migrations" / "9999_broken.sql").write_text(
        "CREATE TABLE komoju.half_done (x int);\nSELECT no_such_function();\n"
    )
    monkeypatch.setenv("KOMOJU_SQL_DIR", str(tmp_path / "sql"))
    sql.query.cache_clear()
    conn = pg_server.connect(empty_database)
    try:
        with pytest.raises(migrations.MigrationError, match=r"9999_broken\.sql failed and was rolled back"):
            migrations.upgrade(conn)
        assert "half_done" not in _tables(conn)
        assert 9999 not in _applied_versions(conn)
        assert 1 in _applied_versions(conn)
    finally:
        conn.close()
        sql.query.cache_clear()


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("INSERT INTO komoju.site (site_id, email_locale) VALUES ('s2', 'fr')", "site_email_locale_check"),
        ("INSERT INTO komoju.site (site_id) VALUES ('')", "site_site_id_check"),
        (
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status) VALUES ('s1','o1','gone','paid')",
            "orders_status_check",
        ),
        (
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status) "
            "VALUES ('s1','o1','cancelled','refunded')",
            "orders_payment_status_check",
        ),
        (
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, komoju_cancel_status) "
            "VALUES ('s1','o1','cancelled','not_paid','Done')",
            "orders_komoju_cancel_status_check",
        ),
        (
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, komoju_refund_status) "
            "VALUES ('s1','o1','cancelled','paid','Cancelled')",
            "orders_komoju_refund_status_check",
        ),
        (
            "INSERT INTO komoju.payment_method (site_id, type_slug, currency, enabled, available, position) "
            "VALUES ('s1', 'paypay', 'yen', true, true, 1)",
            "payment_method_currency_check",
        ),
        (
            "INSERT INTO komoju.attempt (job, site_id, order_no, attempt_no, komoju_payment_id, idempotency_key) "
            "VALUES ('cancel', 's1', 'o1', 1, 'p', repeat('k', 101))",
            "attempt_idempotency_key_check",
        ),
        (
            "INSERT INTO komoju.attempt (job, site_id, order_no, attempt_no, komoju_payment_id, idempotency_key) "
            "VALUES ('capture', 's1', 'o1', 1, 'p', 'key-1')",
            "attempt_job_check",
        ),
        (
            "INSERT INTO komoju.final_failure (job, site_id, order_no, status, reason) "
            "VALUES ('refund', 's1', 'o1', 'Refunded', 'x')",
            "final_failure_status_check",
        ),
    ],
)
def test_check_constraints_reject_bad_values(db, statement, constraint):
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id) VALUES ('s1')")
        with pytest.raises(psycopg2.errors.CheckViolation) as caught:
            cur.execute(statement)
    assert caught.value.diag.constraint_name == constraint
    db.rollback()


def test_good_rows_are_accepted_with_the_documented_defaults(db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id) VALUES ('s1')")
        cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method,"
            " komoju_payment_id, total_gross_price, currency)"
            " VALUES ('s1', 'o1', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'p1', 1200, 'JPY')"
        )
        cur.execute("SELECT komoju_conn_id, notify_emails, email_locale, email_enabled, active FROM komoju.site")
        assert cur.fetchone() == ("komoju_default", [], "ja", True, True)
    db.commit()


def test_cli_finds_a_connection_stored_in_airflows_database(pg_server, empty_database, airflow_db):
    conn = pg_server.airflow_connection(empty_database)
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_KOMOJU_POSTGRES"}
    airflow = str(Path(sys.executable).with_name("airflow"))
    added = subprocess.run(
        [airflow, "connections", "add", "komoju_pg_in_db", "--conn-json", json.dumps(conn)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "komoju", "db", "status", "--conn-id", "komoju_pg_in_db"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"0 applied, {len(sql.migrations())} pending" in done.stdout
