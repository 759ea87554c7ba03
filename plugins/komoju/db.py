"""psycopg2 connections to the status database, opened from the ``komoju_postgres`` Airflow connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg2.extensions

DEFAULT_CONN_ID = "komoju_postgres"
APPLICATION_NAME = "komoju-airflow"

# libpq options an operator may put in the connection's extra (TLS, timeouts).
_PASSTHROUGH_EXTRAS = frozenset(
    {
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "options",
        "target_session_attrs",
        "application_name",
    }
)


def connect_kwargs(conn_id: str = DEFAULT_CONN_ID) -> dict[str, Any]:
    """psycopg2 keyword arguments for the Airflow connection ``conn_id`` (Postgres type)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConnectionError(
            f"The Airflow connection '{conn_id}' for the komoju status database does not exist. Create it "
            f"(`airflow connections add {conn_id} --conn-type postgres ...` or AIRFLOW_CONN_{conn_id.upper()})."
        ) from exc
    kwargs: dict[str, Any] = {
        "host": conn.host or None,
        "port": conn.port or None,
        "user": conn.login or None,
        "password": conn.password or None,
        "dbname": conn.schema or None,
        "application_name": APPLICATION_NAME,
    }
    kwargs.update({k: v for k, v in conn.extra_dejson.items() if k in _PASSTHROUGH_EXTRAS})
    return {k: v for k, v in kwargs.items() if v is not None}


def connect(conn_id: str = DEFAULT_CONN_ID) -> psycopg2.extensions.connection:
    """A new psycopg2 connection to the status database of the Airflow connection ``conn_id``."""
    import psycopg2  # here, not at module level: the DAG files import this module and parse it often

    kwargs = connect_kwargs(conn_id)
    try:
        return psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        where = f"{kwargs.get('host', 'local socket')}:{kwargs.get('port', 5432)}/{kwargs.get('dbname', '')}"
        raise ConnectionError(
            f"Could not connect to the komoju status database ({where}) of Airflow connection "
            f"'{conn_id}': {str(exc).strip()}. Check that connection's host, port, login and database."
        ) from exc
