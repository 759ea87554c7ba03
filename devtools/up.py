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

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from devtools import PROJECT_ROOT, localpg
from devtools.demo import DAG_IDS, LOCAL, SCENARIO, airflow_environment, connections, fresh_database, postgres
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


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> dict:
    log = STATE / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True
        )
    return {"name": name, "pid": process.pid, "log": str(log.relative_to(PROJECT_ROOT))}


# SimpleAuthManager's roles, most powerful first, and what each may do on the KOMOJU page.
ROLES = {
    "admin": "everything",
    "op": "also a site's settings on the KOMOJU page (Airflow: edit connections, pools, variables)",
    "user": "also payment methods on the KOMOJU page (Airflow: edit and trigger DAGs)",
    "viewer": "read only",
}
HONOURED = (
    "AIRFLOW_HOST", "AIRFLOW_PORT", "KOMOJU_EMULATOR_PORT", "SMTP_PORT", "PGPORT", "KOMOJU_TEST_DSN",
    "KOMOJU_DEMO_DATABASE",
)  # fmt: skip
COMPONENTS = {  # name: the airflow command (no log servers: they would listen on every interface)
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def _ignored_variables() -> list[str]:
    """The caller's Airflow and komoju settings that ``up`` replaces with its own."""
    return sorted(
        name
        for name in os.environ
        if name.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "KOMOJU_")) and name not in HONOURED
    )


def _airflow(env: dict[str, str], *args: str) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")


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
        python = sys.executable
        env = airflow_environment(AIRFLOW_HOME)
        env["AIRFLOW__API__HOST"] = host
        env["AIRFLOW__API__PORT"] = str(ports["airflow"])
        env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(f"{role}:{role}" for role in ROLES)
        # Tasks reach the API server's execution API. Its default URL says localhost:8080: the port may differ,
        # and localhost may resolve to ::1 while the API server listens on IPv4 only.
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://{_client_host(host)}:{ports['airflow']}/execution/"
        emulator_url = f"http://127.0.0.1:{ports['emulator']}"
        state["processes"].append(
            _spawn(
                "emulator",
                [python, "-m", "emulator", "--port", str(ports["emulator"]), "--scenario", str(SCENARIO)],
                env,
            )
        )
        state["processes"].append(
            _spawn(
                "smtp",
                [python, "-m", "devtools.smtp_sink", "--port", str(ports["smtp"]), "--folder", str(LOCAL / "mail")],
                env,
            )
        )
        PROCESSES.write_text(json.dumps(state))

        # The demo database is new: so is Airflow's, so that its run history (the KOMOJU page's "latest run"
        # links) is about these sites and orders, not those of an earlier `make up`.
        shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
        AIRFLOW_HOME.mkdir(parents=True)
        passwords = {role: secrets.token_urlsafe(12) for role in ROLES}
        (AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(passwords))
        _airflow(env, "db", "migrate")
        connection_file = STATE / "connections.json"
        connection_file.write_text(json.dumps(connections(pg, database, emulator_url, ports["smtp"])))
        _airflow(env, "connections", "import", "--overwrite", str(connection_file))
        connection_file.unlink()  # it holds the demo's keys; they now live in Airflow's connections
        _airflow(env, "dags", "reserialize")
        for dag_id in DAG_IDS:
            _airflow(env, "dags", "unpause", dag_id)
        airflow = str(Path(python).with_name("airflow"))
        for name, command in COMPONENTS.items():
            state["processes"].append(_spawn(name, [airflow, *command], env))
        PROCESSES.write_text(json.dumps(state))

        url = f"http://{_client_host(host)}:{ports['airflow']}"
        airflow_pids = {p["name"]: p["pid"] for p in state["processes"] if p["name"] in COMPONENTS}

        def serving() -> bool:
            dead = [name for name, pid in airflow_pids.items() if not _alive(pid)]
            if dead:
                raise RuntimeError(f"airflow {dead[0]} exited; see {STATE.relative_to(PROJECT_ROOT)}/{dead[0]}.log")
            return requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok

        poll_until(
            serving,
            timeout=300,
            interval=0.5,
            what=f"the Airflow API server answering at {url}",
        )
        poll_until(lambda: _listening(ports["emulator"]) and _listening(ports["smtp"]), timeout=30, what="services")
        print("Syncing the sites' payment methods from KOMOJU (komoju_update_payment_methods) ...", flush=True)
        synced = _run_once(url, passwords["admin"], "komoju_update_payment_methods")
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
    print(f"Payment methods synced once: run {synced['run_id']} ended {synced['state']}.")
    print("The three komoju_* DAGs are unpaused (cancel and refund run every 30 minutes). Stop with `make down`.")
    return 0


def _run_once(url: str, admin_password: str, dag_id: str) -> dict:
    """Trigger ``dag_id`` through Airflow's REST API (as admin) and wait for the run to end; return the run."""
    token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": admin_password}, timeout=30)
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    api = f"{url}/api/v2/dags/{dag_id}/dagRuns"
    triggered = requests.post(api, headers=headers, json={"logical_date": None, "conf": {}}, timeout=30)
    triggered.raise_for_status()
    run_id = triggered.json()["dag_run_id"]

    def ended() -> dict | None:
        run = requests.get(f"{api}/{run_id}", headers=headers, timeout=30).json()
        return run if run["state"] in ("success", "failed") else None

    run = poll_until(ended, timeout=300, interval=1, what=f"the first {dag_id} run")
    return {"run_id": run_id, "state": run["state"]}


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (a comparison, not a bind)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a child of ours that exited is reaped, not mistaken for alive as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(pid: int) -> None:
    """SIGTERM the process group ``pid`` leads, then SIGKILL whatever is left after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            time.sleep(0.2)
        if not _group_alive(pid):
            return


def down() -> int:
    if not PROCESSES.exists():
        print("Nothing to stop: `make up` is not running (no .local/up/processes.json).")
        return 0
    state = json.loads(PROCESSES.read_text())
    for process in reversed(state["processes"]):
        _stop_group(process["pid"])
        print(f"stopped {process['name']} (pid {process['pid']})")
    if state.get("throwaway_pg"):
        localpg.stop_cluster_in(LOCAL / "pg")
        print("stopped the throwaway PostgreSQL cluster")
    still = [p["name"] for p in state["processes"] if _alive(p["pid"])]
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
