"""The init steps of the deployment, run for real against this machine's PostgreSQL: the Postgres container's script
that creates the komoju database and its role, and docker/komoju_init.py (airflow db migrate, the connections from
the environment, python -m komoju db upgrade; the demo profile's connections and data)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid

import psycopg2
import pytest
from compose_checks import INIT_SCRIPT, POSTGRES_INIT
from cryptography.fernet import Fernet
from psycopg2 import sql

from devtools import PROJECT_ROOT
from devtools.demo import KOMOJU_CONNECTIONS, SCENARIO, SEED

BASE_ENV = {"KOMOJU_DB_PASSWORD": "pw", "KOMOJU_DB_HOST": "db.internal"}


# ------------------------------------------------------------------------------------------ connections (unit)


def test_connections_come_from_the_environment(komoju_init):
    env = {
        **BASE_ENV,
        "KOMOJU_DB_SSLMODE": "require",
        "KOMOJU_SECRET_KEY": "sk_live_x",
        "SMTP_HOST": "smtp.example.com",
        "SMTP_USER": "mailer",
        "SMTP_PASSWORD": "secret",
        "SMTP_FROM": "ops@example.com",
    }
    found, notes = komoju_init.connections_from_env(env)
    assert notes == []
    assert found == {
        "komoju_postgres": {
            "conn_type": "postgres",
            "host": "db.internal",
            "port": 5432,
            "login": "komoju",
            "password": "pw",
            "schema": "komoju",
            "extra": {"sslmode": "require"},
        },
        "komoju_default": {"conn_type": "komoju", "password": "sk_live_x"},  # no host: https://komoju.com
        "smtp_default": {
            "conn_type": "smtp",
            "host": "smtp.example.com",
            "port": 587,
            "login": "mailer",
            "password": "secret",
            "extra": {"disable_ssl": True, "disable_tls": False, "from_email": "ops@example.com"},  # STARTTLS
        },
    }


def test_unset_settings_leave_connections_alone_and_missing_secrets_stop_init(komoju_init):
    found, notes = komoju_init.connections_from_env({**BASE_ENV, "KOMOJU_SECRET_KEY": "  ", "SMTP_HOST": ""})
    assert set(found) == {"komoju_postgres"}
    assert notes == [
        "komoju_default left as it is: KOMOJU_SECRET_KEY is not set",
        "smtp_default left as it is: SMTP_HOST is not set",
    ]
    with pytest.raises(komoju_init.InitError, match="KOMOJU_DB_PASSWORD is not set"):
        komoju_init.connections_from_env({})
    with pytest.raises(komoju_init.InitError, match="SMTP_SECURITY must be one of"):
        komoju_init.connections_from_env({**BASE_ENV, "SMTP_HOST": "h", "SMTP_SECURITY": "tls"})
    with pytest.raises(komoju_init.InitError, match="SMTP_PORT must be a port number"):
        komoju_init.connections_from_env({**BASE_ENV, "SMTP_HOST": "h", "SMTP_PORT": "x"})
    ssl = komoju_init.connections_from_env({**BASE_ENV, "SMTP_HOST": "h", "SMTP_SECURITY": "ssl"})[0]["smtp_default"]
    assert (ssl["extra"]["disable_ssl"], ssl["extra"]["disable_tls"]) == (False, True)  # SMTPS


def test_demo_connections_reach_the_demo_accounts_of_the_emulator_and_mailpit(komoju_init):
    found = komoju_init.demo_connections({})
    # The same accounts as make demo's, and keys the demo scenario's merchants accept.
    assert komoju_init.DEMO_KOMOJU_KEYS == KOMOJU_CONNECTIONS
    scenario_keys = {key for merchant in json.loads(SCENARIO.read_text())["merchants"] for key in merchant["keys"]}
    assert set(komoju_init.DEMO_KOMOJU_KEYS.values()) <= scenario_keys
    for conn_id in KOMOJU_CONNECTIONS:
        assert found[conn_id]["host"] == "http://127.0.0.1:8123"  # loopback: the emulator shares the worker's network
    assert found["smtp_default"]["host"] == "mailpit"
    assert found["smtp_default"]["port"] == 1025
    assert found["smtp_default"]["extra"]["disable_ssl"] is True
    assert found["smtp_default"]["extra"]["disable_tls"] is True


def test_init_refuses_unknown_steps(komoju_init, capsys):
    assert komoju_init.main(["upgrade"], env={}) == 2
    assert komoju_init.main(["init"], env={}) == 1  # KOMOJU_DB_PASSWORD missing: stops before touching anything
    assert "KOMOJU_DB_PASSWORD is not set" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- Postgres container script


def _scram_matches(stored: str, password: str) -> bool:
    """Whether a ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` verifier was made from ``password``."""
    method, params, keys = stored.split("$")
    iterations, salt = params.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return (
        method == "SCRAM-SHA-256"
        and hashlib.sha256(client_key).digest() == stored_key
        and hmac.new(salted, b"Server Key", hashlib.sha256).digest() == server_key
    )


def test_postgres_init_script_creates_the_komoju_database_owned_by_its_role(pg_server):
    from komoju import migrations

    suffix = uuid.uuid4().hex[:8]
    name, role, password = f"komoju_deploy_{suffix}", f"komoju_deploy_owner_{suffix}", "pa'ss\"word $x; --"
    dsn = pg_server.connect().get_dsn_parameters()
    env = {
        **os.environ,
        "PGHOST": dsn.get("host") or "127.0.0.1",
        "PGPORT": str(dsn.get("port") or 5432),
        "PGPASSWORD": pg_server.params.get("password") or "",
        "POSTGRES_USER": dsn["user"],
        "POSTGRES_DB": "postgres",
        "KOMOJU_DB_NAME": name,
        "KOMOJU_DB_USER": role,
        "KOMOJU_DB_PASSWORD": password,
    }
    admin = pg_server.connect()
    admin.autocommit = True
    try:
        for _ in range(2):  # idempotent: a second run changes nothing and succeeds
            done = subprocess.run(["bash", str(POSTGRES_INIT)], env=env, capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
        assert password not in done.stdout + done.stderr
        with admin.cursor() as cur:
            cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,))
            assert cur.fetchone() == (role,)
            cur.execute("SELECT rolcanlogin, rolsuper, rolpassword FROM pg_authid WHERE rolname = %s", (role,))
            can_login, superuser, verifier = cur.fetchone()
        assert can_login
        assert not superuser
        assert _scram_matches(verifier, password), "the role's password is not the one given"
        # As that role (not a superuser), the komoju migrations apply: the database is really its own.
        conn = psycopg2.connect(**{**pg_server.params, "dbname": name, "user": role, "password": password})
        try:
            assert migrations.upgrade(conn), "no migration applied in the new database"
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM komoju.schema_migration")
                assert cur.fetchone()[0] >= 1
        finally:
            conn.close()
        missing = {k: v for k, v in env.items() if k != "KOMOJU_DB_PASSWORD"}
        done = subprocess.run(["bash", str(POSTGRES_INIT)], env=missing, capture_output=True, text=True, check=False)
        assert done.returncode != 0
        assert "KOMOJU_DB_PASSWORD is not set" in done.stderr
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


# ----------------------------------------------------------------------------- komoju_init.py against Postgres


@pytest.fixture
def init_env(pg_server, tmp_path):
    """A fresh Airflow metadata database and komoju database on the test server, and the environment
    docker/komoju_init.py gets in the airflow-init container (pointing at them)."""
    meta = pg_server.create_database(prefix="komoju_deploy_meta")
    status = pg_server.create_database(prefix="komoju_deploy_status")
    conn = pg_server.airflow_connection(status)
    password = pg_server.params.get("password") or ""
    auth = f"{conn['login']}:{password}@" if password else f"{conn['login']}@"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "KOMOJU_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{auth}{conn['host']}:{conn['port']}/{meta}",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "KOMOJU_DB_HOST": conn["host"],
            "KOMOJU_DB_PORT": str(conn["port"]),
            "KOMOJU_DB_USER": conn["login"],
            "KOMOJU_DB_PASSWORD": password or "unused-with-trust-auth",
            "KOMOJU_DB_NAME": status,
            "KOMOJU_SECRET_KEY": "sk_test_deploy_init",
            "KOMOJU_API_URL": "http://127.0.0.1:8123",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": "2525",
            "SMTP_SECURITY": "none",
            "SMTP_FROM": "ops@example.com",
            "KOMOJU_DEMO_SEED": str(SEED),
        }
    )
    try:
        yield env, status
    finally:
        pg_server.drop_database(meta)
        pg_server.drop_database(status)


def _init(env, step: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(INIT_SCRIPT), step], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _stored_connections(env, folder) -> dict[str, dict]:
    """The connections in Airflow's metadata database, as ``airflow connections export`` writes them."""
    exported = folder / f"connections-{uuid.uuid4().hex[:6]}.json"
    airflow = [sys.executable, "-m", "airflow", "connections", "export", str(exported)]
    subprocess.run(airflow, env=env, capture_output=True, text=True, timeout=120, check=True)
    try:
        return json.loads(exported.read_text())
    finally:
        exported.unlink()


@pytest.mark.slow
@pytest.mark.deploy
def test_init_migrates_stores_connections_and_upgrades_the_komoju_schema(init_env, pg_server, komoju_init, tmp_path):
    env, status = init_env
    for attempt in range(2):  # every deployment runs it again
        done = _init(env, "init")
        assert done.returncode == 0, f"run {attempt + 1}: {done.stdout}\n{done.stderr}"
        assert "airflow db migrate: done" in done.stdout
        assert "connections: komoju_default, komoju_postgres, smtp_default" in done.stdout
    assert "komoju schema already at version" in done.stdout  # the second run found nothing to apply
    for secret in (env["KOMOJU_SECRET_KEY"], env["AIRFLOW__CORE__FERNET_KEY"]):
        assert secret not in done.stdout + done.stderr
    stored = _stored_connections(env, tmp_path)
    assert stored["komoju_default"]["conn_type"] == "komoju"
    assert stored["komoju_default"]["host"] == "http://127.0.0.1:8123"
    assert stored["komoju_postgres"]["schema"] == status
    assert stored["smtp_default"]["port"] == 2525
    assert json.loads(stored["smtp_default"]["extra"])["disable_tls"] is True
    conn = pg_server.connect(status)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM komoju.schema_migration")
            assert cur.fetchone()[0] >= 2
    finally:
        conn.close()

    # The demo profile's step, after init: demo connections, and the demo data, loaded once.
    done = _init(env, "demo")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "demo data: loaded" in done.stdout
    assert komoju_init.seed_demo(env, SEED) is False  # a second run finds komoju.site filled and leaves it
    stored = _stored_connections(env, tmp_path)
    assert {"komoju_default", "komoju_global"} <= set(stored)
    assert stored["komoju_global"]["host"] == "http://127.0.0.1:8123"
    assert stored["smtp_default"]["host"] == "mailpit"
    conn = pg_server.connect(status)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT site_id FROM komoju.site ORDER BY site_id")
            assert [r[0] for r in cur.fetchall()] == ["closed", "global", "osaka", "tokyo"]
    finally:
        conn.close()
