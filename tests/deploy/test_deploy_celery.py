"""The cancel DAG distributed by the real CeleryExecutor gives the same outcome as a single-process run.

As separate processes on this machine, as in docker-compose.yaml: an api-server (the execution API the tasks report
to), a scheduler, a dag-processor and two ``airflow celery worker`` (distinct Celery host names, concurrency 1 each),
with Redis as the broker (the server on 127.0.0.1:6379, else a ``redis-server`` started for the test) and a fresh
PostgreSQL database as Airflow's metadata database and Celery result backend. docker/komoju_init.py sets up Airflow
and the komoju schema as the compose init service does. The run is triggered with ``airflow dags trigger`` for four
sites; the same scenario is then run in one process with ``dag.test()``. Both must end with the same order statuses
and responses, the same changes and requests at the KOMOJU emulator, the same e-mails and the same task states, and
the mapped site tasks must have run on both workers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from compose_checks import HERE, INIT_SCRIPT
from cryptography.fernet import Fernet

from devtools import PROJECT_ROOT
from devtools.ports import free_port, poll_until
from devtools.smtp_sink import SmtpSink
from emulator.testing import EmulatorServer

pytestmark = [pytest.mark.slow, pytest.mark.deploy]

DAG_ID = "komoju_cancel_process"
SECRET_KEY = "sk_test_deploy_celery_merchant"
WORKERS = ("komoju-deploy-worker-a", "komoju-deploy-worker-b")
STARTUP_TIMEOUT = 120.0  # api-server healthy and both workers ready, on a loaded 2-core machine
RUN_TIMEOUT = 150.0


# ------------------------------------------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class Site:
    site_id: str
    name: str
    locale: str
    emails: tuple[str, ...]
    email_enabled: bool
    fault: str | None  # a fault firing once on the POST of the site's C5 order


SITES = (
    Site("tokyo", "東京ストア", "ja", ("ops-tokyo@example.com",), True, "error_500"),
    Site("osaka", "大阪ストア", "ja", ("ops-osaka@example.com",), False, None),
    Site("nagoya", "名古屋ストア", "ja", ("ops-nagoya@example.com",), True, "applied_500"),
    Site("global", "Global Store", "en", ("ops@example.com", "finance@example.com"), True, "error_500"),
)
SITE_IDS = [site.site_id for site in SITES]


def _pid(label: str) -> str:
    return label.ljust(25, "0")


def _orders(site: Site) -> list[tuple[str, str, str, str | None, int, str | None]]:
    """(order_no, status, payment_status, payment id, amount, KOMOJU status of the payment or None if unknown)."""
    p = f"dp{site.site_id[:3]}"
    return [
        (f"{site.site_id}-C1", "cancelled", "not_paid", _pid(f"{p}c1"), 1000, "pending"),
        (f"{site.site_id}-C2", "cancelled", "not_paid", _pid(f"{p}c2"), 2500, "authorized"),
        (f"{site.site_id}-C3", "cancelled", "not_paid", _pid(f"{p}c3"), 1200, "captured"),  # not cancellable
        (f"{site.site_id}-C4", "cancelled", "not_paid", _pid(f"{p}unknown"), 900, None),  # KOMOJU: not found
        (f"{site.site_id}-C5", "cancelled", "not_paid", _pid(f"{p}c5"), 1300, "pending"),
        (f"{site.site_id}-N1", "open", "paid", _pid(f"{p}n1"), 4000, "captured"),  # not eligible
    ]


def emulator_scenario() -> dict[str, Any]:
    payments, faults = [], []
    for site in SITES:
        for _, _, _, payment_id, amount, status in _orders(site):
            if status is not None:
                payments.append({"id": payment_id, "status": status, "amount": amount, "currency": "JPY"})
        if site.fault:
            target = {"method": "POST", "payment_id": _pid(f"dp{site.site_id[:3]}c5")}
            faults.append({"kind": site.fault, "match": target, "times": 1})
    method = {"type_slug": "konbini", "currency": "JPY", "name_en": "Konbini", "name_ja": "コンビニ", "name_ko": "-"}
    return {
        "description": "tests/deploy: four sites of one merchant for the Celery run",
        "seed": 8,
        "settings": {"latency_ms": 100, "jitter_ms": 0},  # each site's task takes a moment: both workers get some
        "faults": faults,
        "merchants": [{"id": "deploy", "keys": [SECRET_KEY], "payment_methods": [method], "payments": payments}],
    }


def seed(conn) -> None:
    with conn.cursor() as cur:
        for site in SITES:
            cur.execute(
                "INSERT INTO komoju.site (site_id, name, komoju_conn_id, notify_emails, email_locale, email_enabled,"
                " active) VALUES (%s, %s, 'komoju_default', %s, %s, %s, true)",
                (site.site_id, site.name, list(site.emails), site.locale, site.email_enabled),
            )
            for order_no, status, payment_status, payment_id, amount, _ in _orders(site):
                cur.execute(
                    "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method,"
                    " komoju_payment_id, total_gross_price, currency)"
                    " VALUES (%s, %s, %s, %s, 'KOMOJU_HOSTED_PAGE', %s, %s, 'JPY')",
                    (site.site_id, order_no, status, payment_status, payment_id, amount),
                )
    conn.commit()


def outcome(pg_server, database: str, emulator: EmulatorServer, sink: SmtpSink) -> dict[str, Any]:
    """What a run changed: orders, KOMOJU's effects and requests, the e-mails."""
    conn = pg_server.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT site_id, order_no, komoju_cancel_status, komoju_cancel_response FROM komoju.orders"
                " ORDER BY site_id, order_no"
            )
            orders = {f"{site}/{order}": (status, response) for site, order, status, response in cur.fetchall()}
    finally:
        conn.close()
    effects = sorted(
        (e["payment_id"], e["action"], e["from_status"], e["to_status"], e["amount"]) for e in emulator.effects()
    )
    calls = Counter((r["method"], r["path"], r["status"], r["fault"]) for r in emulator.requests_log())
    mails = sorted((tuple(sorted(m.rcpt_tos)), str(m.message["Subject"])) for m in sink.messages)
    return {"orders": orders, "effects": effects, "requests": sorted(calls.items()), "mails": mails}


# ------------------------------------------------------------------------------------------------ the services


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Processes:
    """Processes started in their own session (process group), logging to files; ``stop`` ends every group."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        with (self.folder / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True
            )
        self.started.append((name, process))
        return process

    def log(self, name: str, chars: int = 2500) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def check_alive(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)}")

    def logs(self) -> str:
        return "\n".join(f"----- {name} -----\n{self.log(name)}" for name, _ in self.started)

    def stop(self) -> None:
        """SIGTERM every group, wait up to 30 s, then SIGKILL what is left."""
        for _, process in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for _, process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group may outlive its leader (task runners)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


@pytest.fixture
def redis_port(tmp_path) -> Iterator[int]:
    """This machine's Redis on 127.0.0.1:6379, else a redis-server started for the test; skip if neither."""
    if _redis_answers(6379):
        yield 6379
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "No Redis answers on 127.0.0.1:6379 and there is no redis-server binary to start one "
            "(Debian: apt-get install redis-server): the CeleryExecutor run needs a broker."
        )
    port = free_port()
    processes = Processes(tmp_path)
    processes.start(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"],
        dict(os.environ),
    )
    try:
        try:
            poll_until(lambda: _redis_answers(port), timeout=20, interval=0.1, what="redis-server answering")
        except TimeoutError:
            pytest.skip(f"redis-server could not be started on 127.0.0.1:{port}:\n{processes.log('redis')}")
        yield port
    finally:
        processes.stop()


def _database_url(pg_server, database: str, driver: str) -> str:
    conn = pg_server.airflow_connection(database)
    password = f":{quote(conn['password'], safe='')}" if conn.get("password") else ""
    return f"{driver}://{quote(conn['login'], safe='')}{password}@{conn['host']}:{conn['port']}/{database}"


def _celery_environment(home: Path, metadata_url: str, broker: str, queue: str, api_port: int) -> dict[str, str]:
    own = ("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__", "KOMOJU_")  # the caller's Airflow settings stay out
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env.update(
        {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,  # this run's own queue on a shared Redis
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "KOMOJU_TASK_RETRIES": "1",
            "KOMOJU_RETRY_DELAY_SECONDS": "1",
            # No schedule: unpausing a scheduled DAG starts a run of its latest interval for every site at once,
            # which would do the work before the triggered run.
            "KOMOJU_CANCEL_SCHEDULE": "none",
        }
    )
    return env


def _airflow(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


@dataclass
class CeleryRun:
    state: str
    tasks: dict[tuple[str, str], str]  # (task_id, site label or ""): state
    site_hosts: dict[str, str]  # site id: hostname of its cancel_site task instance
    hosts: dict[str, set[str]]  # hostnames by task id
    outcome: dict[str, Any]
    seconds: dict[str, float]
    instances: list[tuple]  # (task_id, map_index, label, state, hostname), for messages


def run_under_celery(pg_server, tmp_path: Path, redis_port: int) -> CeleryRun:
    seconds: dict[str, float] = {}
    started = time.monotonic()
    metadata = pg_server.create_database(prefix="komoju_deploy_airflow")
    status_db = pg_server.create_database(prefix="komoju_deploy_celery")
    queue = f"komoju_deploy_{uuid.uuid4().hex[:10]}"
    broker = f"redis://127.0.0.1:{redis_port}/{random.randint(1, 15)}"
    processes = Processes(tmp_path)
    try:
        with EmulatorServer(emulator_scenario()) as emulator, SmtpSink() as sink:
            metadata_url = _database_url(pg_server, metadata, "postgresql+psycopg2")
            env = _celery_environment(tmp_path / "airflow", metadata_url, broker, queue, free_port())
            status = pg_server.airflow_connection(status_db)
            init_env = {
                **env,
                "KOMOJU_DB_HOST": status["host"],
                "KOMOJU_DB_PORT": str(status["port"]),
                "KOMOJU_DB_USER": status["login"],
                "KOMOJU_DB_PASSWORD": status.get("password") or "unused-with-trust-auth",
                "KOMOJU_DB_NAME": status_db,
                "KOMOJU_SECRET_KEY": SECRET_KEY,
                "KOMOJU_API_URL": emulator.base_url,
                "SMTP_HOST": sink.host,
                "SMTP_PORT": str(sink.port),
                "SMTP_SECURITY": "none",
                "SMTP_FROM": "komoju-airflow@example.com",
            }
            done = subprocess.run(
                [sys.executable, str(INIT_SCRIPT), "init"], env=init_env, capture_output=True, text=True, timeout=300,
                check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"komoju_init.py init failed:\n{done.stdout}\n{done.stderr}"
            conn = pg_server.connect(status_db)
            try:
                seed(conn)
            finally:
                conn.close()
            _airflow(env, "dags", "reserialize")
            _airflow(env, "dags", "unpause", DAG_ID)
            seconds["init"] = time.monotonic() - started

            api_port = env["AIRFLOW__API__PORT"]
            processes.start("api-server", [sys.executable, "-m", "airflow", "api-server", "--port", api_port], env)
            processes.start("scheduler", [sys.executable, "-m", "airflow", "scheduler", "--skip-serve-logs"], env)
            processes.start("dag-processor", [sys.executable, "-m", "airflow", "dag-processor"], env)
            worker_env = {
                **env,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "komoju_deploy_hostname.hostname",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            }
            for name in WORKERS:
                processes.start(
                    name,
                    [sys.executable, "-m", "airflow", "celery", "worker", "--celery-hostname", name,
                     "--concurrency", "1", "--queues", queue, "--skip-serve-logs",
                     "--pid", str(tmp_path / f"{name}.pid"), "--without-mingle", "--without-gossip"],
                    {**worker_env, "KOMOJU_DEPLOY_WORKER_NAME": name},
                )  # fmt: skip

            def ready() -> bool:
                processes.check_alive()
                workers = all(f"{name} ready" in processes.log(name, 100_000) for name in WORKERS)
                health = requests.get(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=2)
                return workers and health.ok

            try:
                poll_until(ready, timeout=STARTUP_TIMEOUT, interval=0.5, what="the api-server and both workers")
            except (TimeoutError, RuntimeError) as exc:
                raise AssertionError(f"{exc}\n{processes.logs()}") from exc
            seconds["start"] = time.monotonic() - started - seconds["init"]

            run_id = f"deploy_celery_{uuid.uuid4().hex[:8]}"
            _airflow(env, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps({"site_ids": SITE_IDS}))
            meta = pg_server.connect(metadata)
            meta.autocommit = True
            try:

                def finished() -> str | None:
                    processes.check_alive()
                    with meta.cursor() as cur:
                        cur.execute("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
                        row = cur.fetchone()
                    return row[0] if row and row[0] in ("success", "failed") else None

                try:
                    state = poll_until(finished, timeout=RUN_TIMEOUT, interval=0.5, what=f"the end of run {run_id}")
                except (TimeoutError, RuntimeError) as exc:
                    raise AssertionError(f"{exc}\n{processes.logs()}") from exc
                seconds["run"] = time.monotonic() - started - seconds["init"] - seconds["start"]
                with meta.cursor() as cur:
                    cur.execute(
                        "SELECT task_id, map_index, rendered_map_index, state, hostname FROM task_instance"
                        " WHERE dag_id = %s AND run_id = %s",
                        (DAG_ID, run_id),
                    )
                    instances = cur.fetchall()
            finally:
                meta.close()
            result = outcome(pg_server, status_db, emulator, sink)
    finally:
        processes.stop()
        with contextlib.suppress(Exception):
            _forget_queue(redis_port, broker, queue)
        pg_server.drop_database(metadata)
        pg_server.drop_database(status_db)
    tasks = {(task_id, (label or "") if index >= 0 else ""): state for task_id, index, label, state, _ in instances}
    site_hosts = {label: host for task_id, map_index, label, _, host in instances if task_id == "cancel_site"}
    hosts: dict[str, set[str]] = {}
    for task_id, *_, host in instances:
        hosts.setdefault(task_id, set()).add(host or "")
    return CeleryRun(state, tasks, site_hosts, hosts, result, seconds, sorted(instances))


def _forget_queue(redis_port: int, broker: str, queue: str) -> None:
    """Delete this run's queue keys from a shared Redis (nothing else)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_port, db=int(broker.rsplit("/", 1)[1]))
    for key in client.scan_iter(match=f"*{queue}*"):
        client.delete(key)
    client.close()


def run_in_one_process(pg_server, monkeypatch) -> dict[str, Any]:
    """The same scenario with ``dag.test()`` in this process (Airflow's SQLite test home)."""
    from airflow.dag_processing.dagbag import DagBag

    status_db = pg_server.create_database(prefix="komoju_deploy_single")
    try:
        conn = pg_server.connect(status_db)
        try:
            from komoju import migrations

            migrations.upgrade(conn)
            seed(conn)
        finally:
            conn.close()
        with EmulatorServer(emulator_scenario()) as emulator, SmtpSink() as sink:
            monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_POSTGRES", json.dumps(pg_server.airflow_connection(status_db)))
            monkeypatch.setenv(
                "AIRFLOW_CONN_KOMOJU_DEFAULT",
                json.dumps({"conn_type": "komoju", "host": emulator.base_url, "password": SECRET_KEY}),
            )
            monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(sink.airflow_connection()))
            dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"), safe_mode=False).dags[DAG_ID]
            conf = {name: dag.params[name] for name in dag.params} | {"site_ids": SITE_IDS}
            run = dag.test(run_conf=conf)
            tasks = {
                (ti.task_id, (ti.rendered_map_index or "") if ti.map_index >= 0 else ""): str(
                    getattr(ti.state, "value", ti.state)
                )
                for ti in run.get_task_instances()
            }
            state = str(getattr(run.state, "value", run.state))
            return {"state": state, "tasks": tasks, "outcome": outcome(pg_server, status_db, emulator, sink)}
    finally:
        pg_server.drop_database(status_db)


# -------------------------------------------------------------------------------------------------------- test


def test_cancel_dag_on_celery_with_two_workers_equals_the_single_process_run(
    pg_server, airflow_db, redis_port, tmp_path, monkeypatch
):
    if importlib.util.find_spec("airflow.providers.celery") is None:
        pytest.fail(
            "apache-airflow-providers-celery is not installed: it belongs in requirements.txt (with its celery, "
            "kombu and redis pins in constraints.txt) for the CeleryExecutor deployment."
        )
    single = run_in_one_process(pg_server, monkeypatch)
    # The scenario really exercises the jobs: every final status, KOMOJU changes, e-mails for three sites.
    statuses = Counter(status for status, _ in single["outcome"]["orders"].values())
    assert statuses == {"Cancelled": 12, "Rejected": 4, "Failed": 4, None: 4}, statuses
    assert len(single["outcome"]["effects"]) == 12
    assert len(single["outcome"]["mails"]) == 3
    assert single["state"] == "success"

    celery = run_under_celery(pg_server, tmp_path, redis_port)
    print(f"\nCelery run timings (s): {celery.seconds}; site tasks on {celery.site_hosts}")

    assert celery.state == "success"
    assert set(celery.site_hosts) == set(SITE_IDS)
    assert set(celery.site_hosts.values()) == set(WORKERS), f"site tasks not on both workers: {celery.site_hosts}"
    # Every task ran on the workers; only the EmptyOperator is marked done by the scheduler without running.
    assert {task: hosts for task, hosts in celery.hosts.items() if not hosts <= set(WORKERS)} == {
        "all_sites_done": {""}
    }, "\n".join(map(str, celery.instances))
    assert celery.tasks == single["tasks"]
    assert celery.outcome["orders"] == single["outcome"]["orders"]
    assert celery.outcome["effects"] == single["outcome"]["effects"]
    assert celery.outcome["requests"] == single["outcome"]["requests"]
    assert celery.outcome["mails"] == single["outcome"]["mails"]
