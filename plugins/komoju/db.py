"""Connections to the status database, opened from the ``komoju_postgres`` Airflow connection: psycopg2 for the jobs,
the same libpq settings for the asset watchers' psycopg 3 (async) connections in the triggerer."""

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
        raise ConnectionError(_missing(conn_id)) from exc
    return libpq_kwargs(conn, conn.extra_dejson, APPLICATION_NAME)


async def aconnect_kwargs(conn_id: str = DEFAULT_CONN_ID, application_name: str = APPLICATION_NAME) -> dict[str, Any]:
    """:func:`connect_kwargs` for async code (Airflow's triggerer): the connection is read without blocking the event
    loop, and its extra through ``aextra_dejson`` (the synchronous one would deadlock there)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConnectionError(_missing(conn_id)) from exc
    return libpq_kwargs(conn, await conn.aextra_dejson(), application_name)


def libpq_kwargs(conn: Any, extra: dict[str, Any], application_name: str) -> dict[str, Any]:
    """libpq keyword arguments (psycopg2 and psycopg 3 take the same) from an Airflow connection and its extra."""
    kwargs: dict[str, Any] = {
        "host": conn.host or None,
        "port": conn.port or None,
        "user": conn.login or None,
        "password": conn.password or None,
        "dbname": conn.schema or None,
        "application_name": application_name,
    }
    kwargs.update({k: v for k, v in extra.items() if k in _PASSTHROUGH_EXTRAS})
    return {k: v for k, v in kwargs.items() if v is not None}


def where(kwargs: dict[str, Any]) -> str:
    """``host:port/dbname`` of libpq keyword arguments, for messages (never the login or password)."""
    return f"{kwargs.get('host', 'local socket')}:{kwargs.get('port', 5432)}/{kwargs.get('dbname', '')}"


def _missing(conn_id: str) -> str:
    return (
        f"The Airflow connection '{conn_id}' for the komoju status database does not exist. Create it "
        f"(`airflow connections add {conn_id} --conn-type postgres ...` or AIRFLOW_CONN_{conn_id.upper()})."
    )


def connect(conn_id: str = DEFAULT_CONN_ID) -> psycopg2.extensions.connection:
    """A new psycopg2 connection to the status database of the Airflow connection ``conn_id``."""
    import psycopg2  # here, not at module level: the DAG files import this module and parse it often

    kwargs = connect_kwargs(conn_id)
    try:
        return psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        raise ConnectionError(
            f"Could not connect to the komoju status database ({where(kwargs)}) of Airflow connection "
            f"'{conn_id}': {str(exc).strip()}. Check that connection's host, port, login and database."
        ) from exc
