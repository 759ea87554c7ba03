"""Set up komoju-airflow for a deployment: what the compose ``airflow-init`` service runs (and a Kubernetes Job can).

    python docker/komoju_init.py init   1. airflow db migrate
                                        2. the admin user, when the FAB auth manager is configured
                                        3. the connections komoju_postgres, komoju_default, smtp_default from the
                                           environment (see .env.example)
                                        4. python -m komoju db upgrade
    python docker/komoju_init.py demo   the ``demo`` profile: komoju_default / komoju_global pointing at the KOMOJU
                                        emulator, smtp_default at Mailpit, and the demo sites and orders
                                        (devtools/demo/seed.sql) loaded when komoju.site is empty

Every step is idempotent; run ``init`` at every deployment. The environment is the source of truth for the three
connections: ``init`` overwrites them, so change them in ``.env``, not in the UI (a connection whose settings are
absent, e.g. no ``KOMOJU_SECRET_KEY``, is left as it is). Nothing secret is printed or left on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Runner = Callable[..., subprocess.CompletedProcess]  # (argv, env=None) -> the finished process

# The demo's KOMOJU accounts (emulator/scenarios/demo.json); the demo sites name these connections.
DEMO_KOMOJU_KEYS = {"komoju_default": "sk_test_demo_tokyo", "komoju_global": "sk_test_demo_global"}
SMTP_SECURITY = {  # SMTP_SECURITY -> the smtp provider's extras (both are on unless disabled)
    "starttls": {"disable_ssl": True, "disable_tls": False},
    "ssl": {"disable_ssl": False, "disable_tls": True},
    "none": {"disable_ssl": True, "disable_tls": True},
}


class InitError(Exception):
    """A setting is missing or wrong; the message says which."""


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, "").strip()
    return value or default


def _required(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if not value:
        raise InitError(f"{name} is not set: put it in .env (see .env.example).")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _get(env, name, str(default))
    try:
        return int(value)
    except ValueError:
        raise InitError(f"{name} must be a port number, got {value!r}.") from None


def _drop_empty(conn: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in conn.items() if v not in (None, "", {})}


def postgres_connection(env: Mapping[str, str]) -> dict[str, Any]:
    """``komoju_postgres``: the status database (``KOMOJU_DB_*``)."""
    extra = {"sslmode": _get(env, "KOMOJU_DB_SSLMODE")}
    return _drop_empty(
        {
            "conn_type": "postgres",
            "host": _get(env, "KOMOJU_DB_HOST", "postgres"),
            "port": _port(env, "KOMOJU_DB_PORT", 5432),
            "login": _get(env, "KOMOJU_DB_USER", "komoju"),
            "password": _required(env, "KOMOJU_DB_PASSWORD"),
            "schema": _get(env, "KOMOJU_DB_NAME", "komoju"),
            "extra": _drop_empty(extra),
        }
    )


def smtp_connection(env: Mapping[str, str], *, host: str, port: int) -> dict[str, Any]:
    """``smtp_default`` for ``host:port`` with ``SMTP_SECURITY``, ``SMTP_USER``/``SMTP_PASSWORD``, ``SMTP_FROM``."""
    security = (_get(env, "SMTP_SECURITY", "starttls") or "").lower()
    if security not in SMTP_SECURITY:
        raise InitError(f"SMTP_SECURITY must be one of {', '.join(SMTP_SECURITY)}, got {security!r}.")
    return _drop_empty(
        {
            "conn_type": "smtp",
            "host": host,
            "port": port,
            "login": _get(env, "SMTP_USER"),
            "password": _get(env, "SMTP_PASSWORD"),
            "extra": {**SMTP_SECURITY[security], "from_email": _get(env, "SMTP_FROM", "komoju-airflow@localhost")},
        }
    )


def connections_from_env(env: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The connections ``init`` writes, by id (Airflow's JSON form), and notes on those it leaves alone."""
    found = {"komoju_postgres": postgres_connection(env)}
    notes = []
    if secret_key := _get(env, "KOMOJU_SECRET_KEY"):
        found["komoju_default"] = _drop_empty(
            {"conn_type": "komoju", "host": _get(env, "KOMOJU_API_URL"), "password": secret_key}
        )
    else:
        notes.append("komoju_default left as it is: KOMOJU_SECRET_KEY is not set")
    if smtp_host := _get(env, "SMTP_HOST"):
        found["smtp_default"] = smtp_connection(env, host=smtp_host, port=_port(env, "SMTP_PORT", 587))
    else:
        notes.append("smtp_default left as it is: SMTP_HOST is not set")
    return found, notes


def demo_connections(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The demo profile's connections: the demo KOMOJU accounts on the emulator, and Mailpit."""
    emulator = _get(env, "KOMOJU_DEMO_EMULATOR_URL", "http://127.0.0.1:8123")
    found = {
        conn_id: {"conn_type": "komoju", "host": emulator, "password": key} for conn_id, key in DEMO_KOMOJU_KEYS.items()
    }
    demo_env = {"SMTP_SECURITY": "none", "SMTP_FROM": "komoju-demo@example.com"}
    found["smtp_default"] = smtp_connection(
        demo_env,
        host=_get(env, "KOMOJU_DEMO_SMTP_HOST", "mailpit") or "mailpit",
        port=_port(env, "KOMOJU_DEMO_SMTP_PORT", 1025),
    )
    return found


# ------------------------------------------------------------------------------------------------------ steps


def _run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, env=env)


def _airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def _must(runner: Runner, argv: Sequence[str], what: str) -> None:
    done = runner(argv)
    if done.returncode != 0:
        output = (done.stderr or done.stdout or "").strip()[-3000:]
        raise InitError(f"{what} failed (exit {done.returncode}):\n{output}")


def import_connections(connections: Mapping[str, Mapping[str, Any]], runner: Runner) -> None:
    """``airflow connections import --overwrite`` from a private temporary file, removed afterwards."""
    fd, name = tempfile.mkstemp(prefix="komoju-connections-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(connections, out)
        _must(runner, _airflow("connections", "import", "--overwrite", name), "airflow connections import")
    finally:
        Path(name).unlink(missing_ok=True)
    print(f"connections: {', '.join(sorted(connections))}")


def ensure_admin_user(env: Mapping[str, str], runner: Runner) -> None:
    """Create the UI admin (FAB auth manager only), as Airflow's image entrypoint does: an existing user is kept."""
    auth_manager = _get(env, "AIRFLOW__CORE__AUTH_MANAGER", "") or ""
    if "fab" not in auth_manager.lower():
        print("admin user: not created (the auth manager is not FAB; see Airflow's auth manager docs)")
        return
    username = _get(env, "AIRFLOW_ADMIN_USERNAME", "admin") or "admin"
    password = _required(env, "AIRFLOW_ADMIN_PASSWORD")
    done = runner(
        _airflow(
            "users", "create", "--username", username, "--password", password, "--role", "Admin",
            "--firstname", "Airflow", "--lastname", "Admin",
            "--email", _get(env, "AIRFLOW_ADMIN_EMAIL", "airflow-admin@example.com") or "",
        )
    )  # fmt: skip
    if done.returncode == 0:
        print(f"admin user: {username} (created, or already there)")
    else:
        print(f"admin user: `airflow users create` exited {done.returncode}; kept going", file=sys.stderr)


def init(env: Mapping[str, str], runner: Runner = _run) -> None:
    """The ``airflow-init`` service: migrate, admin, connections, komoju schema."""
    connections, notes = connections_from_env(env)  # fails on missing settings before touching anything
    _must(runner, _airflow("db", "migrate"), "airflow db migrate")
    print("airflow db migrate: done")
    ensure_admin_user(env, runner)
    import_connections(connections, runner)
    for note in notes:
        print(note)
    # The komoju CLI reads its connection through the Task SDK, which outside a task sees environment variables
    # and secrets backends but not the metadata database: hand it komoju_postgres as AIRFLOW_CONN_KOMOJU_POSTGRES.
    cli_env = {**env, "AIRFLOW_CONN_KOMOJU_POSTGRES": json.dumps(connections["komoju_postgres"])}
    done = runner([sys.executable, "-m", "komoju", "db", "upgrade"], env=cli_env)
    if done.returncode != 0:
        raise InitError(f"python -m komoju db upgrade failed:\n{(done.stderr or done.stdout).strip()[-3000:]}")
    print(done.stdout.strip())


def seed_demo(env: Mapping[str, str], seed: Path) -> bool:
    """Load ``seed`` into the status database unless komoju.site has rows already; True when loaded."""
    import psycopg2

    params = postgres_connection(env)
    conn = psycopg2.connect(
        host=params["host"],
        port=params["port"],
        user=params["login"],
        password=params["password"],
        dbname=params["schema"],
        application_name="komoju-init",
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM komoju.site")
            if cur.fetchone()[0]:
                return False
            cur.execute(seed.read_text(encoding="utf-8"))
        conn.commit()
        return True
    finally:
        conn.close()


def demo(env: Mapping[str, str], runner: Runner = _run) -> None:
    """The ``demo`` profile's init: demo connections and data (after ``init``)."""
    seed = Path(_get(env, "KOMOJU_DEMO_SEED", "/opt/komoju-demo/seed.sql") or "")
    if not seed.is_file():
        raise InitError(f"The demo data {seed} is missing (compose mounts devtools/demo/seed.sql there).")
    import_connections(demo_connections(env), runner)
    loaded = seed_demo(env, seed)
    print("demo data: loaded" if loaded else "demo data: komoju.site has rows already; left as it is")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    environment = os.environ if env is None else env
    steps = {"init": init, "demo": demo}
    if len(args) != 1 or args[0] not in steps:
        print("usage: python docker/komoju_init.py init|demo", file=sys.stderr)
        return 2
    try:
        steps[args[0]](environment)
    except InitError as exc:
        print(f"komoju-init: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
