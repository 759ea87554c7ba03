"""Airflow's four components as processes of their own on an Airflow home of their own: the API server, the scheduler
(LocalExecutor), the DAG processor and the triggerer. ``make up`` runs one (devtools/up.py), so do the benchmark's
event-driven section (bench/run.py) and the reliability suite's event tests (tests/reliability).

Each component runs in its own session (process group), so that stopping or killing it reaches whatever it started
(the LocalExecutor's workers, the triggerer's runner). The API server listens on ``host`` (127.0.0.1 by default);
the scheduler and triggerer start no log server (Airflow's log servers listen on every interface; the API server
reads the task logs from the home itself).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from devtools import PROJECT_ROOT
from devtools.demo import airflow_environment
from devtools.ports import poll_until

COMPONENTS = {  # name: the airflow command (no log servers: they would listen on every interface)
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
# SimpleAuthManager's roles, most powerful first.
ROLES = ("admin", "op", "user", "viewer")
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path, *, append: bool = False) -> dict[str, Any]:
    """Start ``argv`` in a session of its own, output to ``log_dir/NAME.log`` (a new file, or added to with
    ``append``); its record (name, pid, log)."""
    log = log_dir / f"{name}.log"
    with log.open("a" if append else "w") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True
        )
    try:
        shown = str(log.relative_to(PROJECT_ROOT))
    except ValueError:
        shown = str(log)
    return {"name": name, "pid": process.pid, "log": shown}


def alive(pid: int) -> bool:
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


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(pid: int, *, grace: float = 30.0) -> None:
    """SIGTERM the process group ``pid`` leads, then SIGKILL whatever is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            time.sleep(0.2)  # polling the group's end, with the deadline above
        if not group_alive(pid):
            return


def post_retrying(url: str, *, attempts: int = 5, **kwargs: Any) -> requests.Response:
    """``requests.post`` tried again (2 s apart) while Airflow's API server answers 5xx: on SQLite, a write of the
    API server can fail with "database is locked" while the other components write (the request changed nothing:
    its transaction was rolled back). Raises for the last answer if it is still an error."""
    for attempt in range(1, attempts + 1):
        answer = requests.post(url, timeout=30, **kwargs)
        if answer.status_code < 500 or attempt == attempts:
            answer.raise_for_status()
            return answer
        time.sleep(2)  # a pause before trying the request again, not a wait for a condition
    raise AssertionError("unreachable")


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (a comparison, not a bind)


@dataclass
class AirflowStack:
    """One local Airflow: its home (SQLite metadata), where its logs go, its API server's port, and settings of its
    own (``AIRFLOW__*``, ``KOMOJU_*`` variables added to its environment)."""

    home: Path
    logs: Path
    port: int
    host: str = "127.0.0.1"
    settings: dict[str, str] = field(default_factory=dict)
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)  # component name: its record (spawn)
    passwords: dict[str, str] = field(default_factory=dict)
    _started: set[str] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return f"http://{client_host(self.host)}:{self.port}"

    def environment(self) -> dict[str, str]:
        """The components' environment: the demo's Airflow settings (devtools.demo) on this home, LocalExecutor,
        the four SimpleAuthManager users, the API server's address, and ``settings``."""
        env = airflow_environment(self.home)
        env["AIRFLOW__API__HOST"] = self.host
        env["AIRFLOW__API__PORT"] = str(self.port)
        env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(f"{role}:{role}" for role in ROLES)
        # Tasks reach the API server's execution API. Its default URL says localhost:8080: the port may differ,
        # and localhost may resolve to ::1 while the API server listens on IPv4 only.
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{self.url}/execution/"
        env.update(self.settings)
        return env

    def prepare(self, connections: dict[str, dict[str, Any]], unpause: Iterable[str] = ()) -> dict[str, str]:
        """A fresh home: new passwords for the four roles, ``airflow db migrate``, the connections stored in
        Airflow (never left on disk), the DAGs serialized and ``unpause`` unpaused. Returns the passwords."""
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.passwords = {role: secrets.token_urlsafe(12) for role in ROLES}
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(self.passwords))
        self.airflow("db", "migrate")
        connection_file = self.home / "connections.json"
        connection_file.write_text(json.dumps(connections))
        try:
            self.airflow("connections", "import", "--overwrite", str(connection_file))
        finally:
            connection_file.unlink()  # it holds keys; they now live in Airflow's connections
        self.airflow("dags", "reserialize")
        for dag_id in unpause:
            self.airflow("dags", "unpause", dag_id)
        return self.passwords

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """``airflow ARGS`` in this stack's environment; its output (an error naming the command if it fails)."""
        done = subprocess.run([AIRFLOW_BIN, *args], env=self.environment(), capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=PROJECT_ROOT)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def start(self, *names: str) -> list[dict[str, Any]]:
        """Start the named components (all four by default); their records."""
        started = []
        for name in names or tuple(COMPONENTS):
            again = name in self._started  # a component started again (a test's restart) adds to its log
            record = spawn(name, [AIRFLOW_BIN, *COMPONENTS[name]], self.environment(), self.logs, append=again)
            self._started.add(name)
            self.processes[name] = record
            started.append(record)
        return started

    def wait_serving(self, timeout: float = 300) -> None:
        """Until the API server answers its health check (an error at once if a component exited)."""

        def serving() -> bool:
            dead = [name for name, record in self.processes.items() if not alive(record["pid"])]
            if dead:
                raise RuntimeError(f"airflow {dead[0]} exited; see {self.processes[dead[0]]['log']}")
            return requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).ok

        poll_until(serving, timeout=timeout, interval=0.5, what=f"the Airflow API server answering at {self.url}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to component ``name``'s whole process group and wait until it is gone."""
        pid = self.processes.pop(name)["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        poll_until(lambda: not alive(pid) and not group_alive(pid), timeout=60, what=f"airflow {name} gone",
                   interval=0.1)  # fmt: skip

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL after 30 s)."""
        for name in reversed(list(self.processes)):
            stop_group(self.processes.pop(name)["pid"])

    # -- REST -------------------------------------------------------------------------------------------------

    def headers(self, role: str = "admin") -> dict[str, str]:
        """A Bearer header for ``role`` (POST /auth/token)."""
        answer = requests.post(f"{self.url}/auth/token",
                               json={"username": role, "password": self.passwords[role]}, timeout=30)  # fmt: skip
        answer.raise_for_status()
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def dag_runs(self, dag_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest first."""
        found: list[dict[str, Any]] = []
        while True:
            page = requests.get(f"{self.url}/api/v2/dags/{dag_id}/dagRuns", headers=headers, timeout=30,
                                params={"order_by": "id", "limit": 100, "offset": len(found)}).json()  # fmt: skip
            found += page["dag_runs"]
            if len(found) >= page["total_entries"] or not page["dag_runs"]:
                return found

    def busy(self, dag_id: str, headers: dict[str, str]) -> bool:
        """Whether ``dag_id`` has an asset event waiting for a run, or a run queued or running. (Read in that
        order: the scheduler turns a queued event into a queued run in one transaction, so one of them is seen.)"""
        queued = requests.get(f"{self.url}/api/v2/dags/{dag_id}/assets/queuedEvents", headers=headers, timeout=30)
        if queued.status_code != 404 and queued.json()["total_entries"]:
            return True
        return any(run["state"] in ("queued", "running") for run in self.dag_runs(dag_id, headers))

    def trigger(self, dag_id: str, headers: dict[str, str], conf: dict[str, Any] | None = None,
                timeout: float = 300) -> dict[str, Any]:  # fmt: skip
        """Trigger ``dag_id`` over REST and wait for its run to end; the run."""
        api = f"{self.url}/api/v2/dags/{dag_id}/dagRuns"
        triggered = post_retrying(api, headers=headers, json={"logical_date": None, "conf": conf or {}})
        run_id = triggered.json()["dag_run_id"]

        def ended() -> dict | None:
            run = requests.get(f"{api}/{run_id}", headers=headers, timeout=30).json()
            return run if run["state"] in ("success", "failed") else None

        return poll_until(ended, timeout=timeout, interval=1, what=f"the {dag_id} run {run_id}")
