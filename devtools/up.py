"""``make up`` / ``make down``: the demo's local services plus a local Airflow, for the Airflow UI.

``up`` loads the demo data into a fresh ``komoju_demo`` database, starts the KOMOJU emulator, an SMTP sink
(saving to ``.local/mail``) and Airflow's four components (API server, scheduler with LocalExecutor, DAG
processor, triggerer; a fresh home ``.local/up/airflow`` with SQLite, so that Airflow's run history is about this
demo data) with the connections stored in Airflow and the three DAGs unpaused, waits until the UI answers, runs
the payment-method sync once, and prints its URL and the logins of four users, one per SimpleAuthManager role
(admin, op, user, viewer). Each process is started in its own session and recorded in
``.local/up/processes.json``; ``down`` stops exactly those (and a throwaway PostgreSQL cluster ``up`` started),
then checks their ports are free.

Safe by default: the API server listens on 127.0.0.1 only, and the scheduler and triggerer start no log server
(Airflow's log servers listen on every interface; the API server reads the task logs from ``.local/up/airflow``
itself). ``AIRFLOW_HOST`` makes the API server listen elsewhere (``0.0.0.0``: every interface).

Honoured: ``AIRFLOW_HOST`` (127.0.0.1), ``AIRFLOW_PORT`` (8080), ``KOMOJU_EMULATOR_PORT`` (8123), ``SMTP_PORT``
(8025), ``PGPORT`` (the throwaway cluster's, when no PostgreSQL server is found) and the PostgreSQL choice of
``make demo`` (``KOMOJU_TEST_DSN``, ``PG*``; ``KOMOJU_DEMO_DATABASE``, default ``komoju_demo``). Replaced: every
other ``AIRFLOW__*``, ``AIRFLOW_CONN_*`` and ``KOMOJU_*`` variable of the caller's environment (the local Airflow
is configured by this file alone); ``up`` lists those it ignored.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from devtools import PROJECT_ROOT, localpg
from devtools.airflow_stack import AirflowStack, alive, spawn, stop_group
from devtools.demo import DAG_IDS, LOCAL, SCENARIO, connections, fresh_database, postgres
from devtools.ports import poll_until

STATE = LOCAL / "up"
PROCESSES = STATE / "processes.json"
AIRFLOW_HOME = STATE / "airflow"


def _port(variable: str, default: int) -> int:
    return int(os.environ.get(variable) or default)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# SimpleAuthManager's roles, most powerful first, and what each may do on the KOMOJU page.
ROLES = {
    "admin": "everything",
    "op": "also a site's settings on the KOMOJU page (Airflow: edit connections, pools, variables)",
    "user": "also payment methods on the KOMOJU page (Airflow: edit and trigger DAGs)",
    "viewer": "read only",
}
HONOURED = (
    "AIRFLOW_HOST", "AIRFLOW_PORT", "KOMOJU_EMULATOR_PORT", "SMTP_PORT", "PGPORT", "KOMOJU_TEST_DSN",
    "KOMOJU_DEMO_DATABASE", "KOMOJU_EVENT_DRIVEN",
)  # fmt: skip


def _ignored_variables() -> list[str]:
    """The caller's Airflow and komoju settings that ``up`` replaces with its own."""
    return sorted(
        name
        for name in os.environ
        if name.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "KOMOJU_")) and name not in HONOURED
    )


def _watchers(pg: localpg.PgServer, database: str) -> int:
    """The asset watchers' listening sessions on the demo database (komoju.events.APPLICATION_NAME)."""
    conn = pg.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name = 'komoju-airflow-watcher'")  # fmt: skip
            return cur.fetchone()[0]
    finally:
        conn.close()


def _settings() -> dict[str, str]:
    """The komoju settings of the local Airflow: the caller's ``KOMOJU_EVENT_DRIVEN`` if set (else on)."""
    return {"KOMOJU_EVENT_DRIVEN": os.environ["KOMOJU_EVENT_DRIVEN"]} if os.environ.get("KOMOJU_EVENT_DRIVEN") else {}


def up() -> int:
    if PROCESSES.exists():
        print(f"Already up (see {PROCESSES.relative_to(PROJECT_ROOT)}); run `make down` first.", file=sys.stderr)
        return 1
    ports = {
        "airflow": _port("AIRFLOW_PORT", 8080),
        "emulator": _port("KOMOJU_EMULATOR_PORT", 8123),
        "smtp": _port("SMTP_PORT", 8025),
    }
    host = os.environ.get("AIRFLOW_HOST") or "127.0.0.1"
    ignored = _ignored_variables()
    if ignored:
        print(f"make up configures its own Airflow and ignores these variables of yours: {', '.join(ignored)}")
    busy = [f"{name} port {port}" for name, port in ports.items() if _listening(port)]
    if busy:
        print(f"Port(s) in use: {', '.join(busy)}. Free them or choose others (AIRFLOW_PORT, ...).", file=sys.stderr)
        return 1
    STATE.mkdir(parents=True, exist_ok=True)
    pg = postgres(LOCAL / "pg", port=int(os.environ["PGPORT"]) if os.environ.get("PGPORT") else None)
    state = {"ports": ports, "throwaway_pg": pg.data_dir is not None, "processes": []}
    PROCESSES.write_text(json.dumps(state))  # from here on, `make down` can clean up whatever started
    try:
        database = fresh_database(pg)
        # The demo database is new: so is Airflow's home, so that its run history (the KOMOJU page's "latest run"
        # links) is about these sites and orders, not those of an earlier `make up`.
        stack = AirflowStack(home=AIRFLOW_HOME, logs=STATE, port=ports["airflow"], host=host, settings=_settings())
        env = stack.environment()
        event_driven = env.get("KOMOJU_EVENT_DRIVEN", "on").strip().lower() not in ("off", "0", "false", "no")
        emulator_url = f"http://127.0.0.1:{ports['emulator']}"
        state["processes"].append(
            spawn(
                "emulator",
                [sys.executable, "-m", "emulator", "--port", str(ports["emulator"]), "--scenario", str(SCENARIO)],
                env,
                STATE,
            )
        )
        state["processes"].append(
            spawn(
                "smtp",
                [sys.executable, "-m", "devtools.smtp_sink", "--port", str(ports["smtp"]), "--folder",
                 str(LOCAL / "mail")],
                env,
                STATE,
            )
        )  # fmt: skip
        PROCESSES.write_text(json.dumps(state))
        passwords = stack.prepare(connections(pg, database, emulator_url, ports["smtp"]), unpause=DAG_IDS)
        state["processes"] += stack.start("api-server", "scheduler", "dag-processor")
        PROCESSES.write_text(json.dumps(state))
        url = stack.url
        stack.wait_serving(timeout=300)
        poll_until(lambda: _listening(ports["emulator"]) and _listening(ports["smtp"]), timeout=30, what="services")
        print("Syncing the sites' payment methods from KOMOJU (komoju_update_payment_methods) ...", flush=True)
        synced = stack.trigger("komoju_update_payment_methods", stack.headers())
        # The triggerer last: its watchers' first runs (each asks for one when it starts listening) then do not
        # crowd the sync above on Airflow's SQLite database.
        state["processes"] += stack.start("triggerer")
        PROCESSES.write_text(json.dumps(state))
        if event_driven:
            poll_until(lambda: _watchers(pg, database) == 2, timeout=300, interval=0.5,
                       what="the cancel and refund watchers listening in the triggerer")  # fmt: skip
    except BaseException:
        print("Start-up failed; stopping what was started.", file=sys.stderr)
        down()
        raise
    print(f"\nAirflow UI: {url}   (listening on {host}; AIRFLOW_HOST changes it)")
    print("Logins (SimpleAuthManager roles; the README's KOMOJU page section says who may do what):")
    for role, what in ROLES.items():
        print(f"  login: {role} / {passwords[role]}   {what}")
    print(f"KOMOJU emulator: {emulator_url}   SMTP sink: 127.0.0.1:{ports['smtp']} -> .local/mail/")
    print(f"Status database: {pg.origin}, database {database}. Logs: {STATE.relative_to(PROJECT_ROOT)}/*.log")
    print(f"Payment methods synced once: run {synced['dag_run_id']} ended {synced['state']}.")
    if not event_driven:
        print("The three komoju_* DAGs are unpaused (cancel and refund run every 30 minutes). Stop with `make down`.")
    else:
        print("The three komoju_* DAGs are unpaused: cancel and refund run every 30 minutes and, within seconds, when")
        print("orders become eligible (the triggerer's watchers; KOMOJU_EVENT_DRIVEN=off: the cron only). Stop with")
        print("`make down`.")
    return 0


def down() -> int:
    if not PROCESSES.exists():
        print("Nothing to stop: `make up` is not running (no .local/up/processes.json).")
        return 0
    state = json.loads(PROCESSES.read_text())
    for process in reversed(state["processes"]):
        stop_group(process["pid"])
        print(f"stopped {process['name']} (pid {process['pid']})")
    if state.get("throwaway_pg"):
        localpg.stop_cluster_in(LOCAL / "pg")
        print("stopped the throwaway PostgreSQL cluster")
    still = [p["name"] for p in state["processes"] if alive(p["pid"])]
    busy = [name for name, port in state["ports"].items() if _listening(port)]
    PROCESSES.unlink()
    if still or busy:
        print(f"Still running: {still}; ports still in use: {busy}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["up"]:
        return up()
    if argv[1:] == ["down"]:
        return down()
    print("usage: python -m devtools.up up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
