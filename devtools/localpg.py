"""Find a PostgreSQL server for tests and the demo, or start a throwaway one.

Order: ``KOMOJU_TEST_DSN`` (a libpq DSN/URL) or the usual ``PG*`` variables when set; else a server on
127.0.0.1:5432 (user ``postgres``) when one answers; else a new cluster from the machine's PostgreSQL
binaries in a folder of the caller's, run as the ``postgres`` user when we are root (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from devtools.ports import free_port

_PG_ENV = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE")


@dataclass
class PgServer:
    """Where to reach a PostgreSQL server, and how it was found."""

    params: dict[str, Any]  # psycopg2 keyword arguments for its maintenance database
    origin: str  # "KOMOJU_TEST_DSN", "PG* variables", "127.0.0.1:5432" or "throwaway cluster in DIR"
    data_dir: Path | None = None
    _owner: str | None = field(default=None, repr=False)

    def connect(self, dbname: str | None = None) -> psycopg2.extensions.connection:
        params = dict(self.params)
        if dbname:
            params["dbname"] = dbname
        return psycopg2.connect(**params)

    def airflow_connection(self, dbname: str) -> dict[str, Any]:
        """The Airflow connection (JSON form) for database ``dbname`` on this server."""
        dsn = self.connect(dbname).get_dsn_parameters()  # libpq's resolved host, port and user
        return {
            "conn_type": "postgres",
            "host": dsn.get("host") or "127.0.0.1",
            "port": int(dsn.get("port") or 5432),
            "login": dsn.get("user"),
            "password": self.params.get("password"),
            "schema": dbname,
        }

    def create_database(self, *, name: str | None = None, prefix: str = "komoju_test") -> str:
        """Create a new empty database, ``name`` or a unique ``prefix_...`` one; return its name."""
        name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting whoever is still in it."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Stop and delete a throwaway cluster; a server we only found is left alone."""
        if self.data_dir is None:
            return
        _run_as(self._owner, [_pg_bin("pg_ctl"), "stop", "-D", str(self.data_dir / "data"), "-m", "fast", "-w"])
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self) -> None:
        """Restart a throwaway cluster (fast shutdown: every session is cut, as in a database failover); returns
        once it accepts connections again. A server we only found is never restarted."""
        if self.data_dir is None:
            raise RuntimeError(f"Only a throwaway cluster is restarted by the tests, not the server of {self.origin}.")
        _run_as(
            self._owner,
            [_pg_bin("pg_ctl"), "restart", "-D", str(self.data_dir / "data"), "-m", "fast", "-w", "-t", "60", "-l",
             str(self.data_dir / "log")],
        )  # fmt: skip

    def _admin(self, statement: sql.Composed) -> None:
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()


def find_server() -> PgServer | None:
    """A configured or already running server, or ``None``."""
    if dsn := os.environ.get("KOMOJU_TEST_DSN"):
        params = psycopg2.extensions.parse_dsn(dsn)
        _check(params, "KOMOJU_TEST_DSN")
        return PgServer(params, "KOMOJU_TEST_DSN")
    if any(os.environ.get(name) for name in _PG_ENV):
        params: dict[str, Any] = {}  # libpq reads the PG* variables itself
        if not os.environ.get("PGDATABASE"):
            params["dbname"] = "postgres"
        _check(params, "PG* variables")
        return PgServer(params, "PG* variables")
    params = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres", "connect_timeout": 3}
    try:
        psycopg2.connect(**params).close()
    except psycopg2.OperationalError:
        return None
    return PgServer(params, "127.0.0.1:5432")


def start_throwaway(base_dir: Path, port: int | None = None) -> PgServer:
    """Initialise and start a new cluster in ``base_dir`` (created; must not hold one already).

    As root the cluster runs as ``postgres``, which must be able to enter every parent of ``base_dir``.
    """
    owner = "postgres" if os.geteuid() == 0 else None
    base_dir.mkdir(parents=True, exist_ok=True)
    if owner:
        shutil.chown(base_dir, user=owner)
    data, sockets, port = base_dir / "data", base_dir / "sockets", port or free_port()
    _run_as(owner, ["mkdir", "-p", str(sockets)])
    _run_as(
        owner,
        [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-locale"],
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    _run_as(
        owner,
        [_pg_bin("pg_ctl"), "start", "-D", str(data), "-w", "-t", "60", "-l", str(base_dir / "log"), "-o", options],
    )
    params = {"host": "127.0.0.1", "port": port, "user": "postgres", "dbname": "postgres"}
    return PgServer(params, f"throwaway cluster in {base_dir}", data_dir=base_dir, _owner=owner)


def stop_cluster_in(base_dir: Path) -> None:
    """Stop a cluster left running in ``base_dir`` by an interrupted run (nothing if none runs there)."""
    data = base_dir / "data"
    if not (data / "postmaster.pid").exists():
        return
    owner = "postgres" if os.geteuid() == 0 else None
    _run_as(owner, [_pg_bin("pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"])


def _check(params: dict[str, Any], origin: str) -> None:
    try:
        psycopg2.connect(**params).close()
    except psycopg2.OperationalError as exc:
        raise RuntimeError(f"The PostgreSQL server named by {origin} does not answer: {str(exc).strip()}") from exc


def _pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    if found := shutil.which(name):
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    if not candidates:
        raise FileNotFoundError(
            f"No PostgreSQL server binary '{name}' on this machine. Install PostgreSQL (Debian: "
            "apt-get install postgresql) or point KOMOJU_TEST_DSN at a server."
        )
    return candidates[-1]


def _run_as(owner: str | None, argv: list[str]) -> None:
    ids: dict[str, Any] = {}
    if owner:
        pw = pwd.getpwnam(owner)
        ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": "/"}
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **ids)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
