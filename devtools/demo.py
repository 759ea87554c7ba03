"""``make demo``: the three jobs doing their work on this machine, with nothing to set up by hand.

Starts (or finds) PostgreSQL, loads the demo sites and orders into a fresh ``komoju_demo`` database, starts the
KOMOJU emulator with ``emulator/scenarios/demo.json`` and an SMTP sink writing to ``.local/mail/``, runs the
three DAGs one after the other with ``airflow dags test``, prints what happened, and stops what it started.
Everything it writes is under ``.local/`` (and the database it names).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import PROJECT_ROOT, localpg
from devtools.smtp_sink import SmtpSink

LOCAL = PROJECT_ROOT / ".local"
# The demo's database on the PostgreSQL server found (KOMOJU_DEMO_DATABASE names another, e.g. for a second
# checkout's `make up` beside yours, or the tests').
DEMO_DATABASE = os.environ.get("KOMOJU_DEMO_DATABASE") or "komoju_demo"
SCENARIO = PROJECT_ROOT / "emulator" / "scenarios" / "demo.json"
SEED = PROJECT_ROOT / "devtools" / "demo" / "seed.sql"
DAG_IDS = ("komoju_update_payment_methods", "komoju_cancel_process", "komoju_refund_process")
# The demo's KOMOJU accounts (emulator/scenarios/demo.json): the sites' connections name them.
KOMOJU_CONNECTIONS = {"komoju_default": "sk_test_demo_tokyo", "komoju_global": "sk_test_demo_global"}


def airflow_environment(airflow_home: Path) -> dict[str, str]:
    """This process's environment with Airflow pointed at ``airflow_home`` (SQLite), the repo's DAGs and
    plugins, and no connection or setting inherited from the caller's own Airflow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "KOMOJU_"))}
    env.update(
        {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "PYTHONPYCACHEPREFIX": str(LOCAL / "pycache"),
            "KOMOJU_RETRY_DELAY_SECONDS": "1",
            "KOMOJU_KNOWN_SITES": "tokyo,osaka,global",
        }
    )
    return env


def connections(pg: localpg.PgServer, database: str, emulator_url: str, smtp_port: int) -> dict[str, dict]:
    """The Airflow connections of the local stack, by connection id (Airflow's JSON form)."""
    found = {
        "komoju_postgres": pg.airflow_connection(database),
        "smtp_default": {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": smtp_port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "komoju-demo@example.com"},
        },
    }
    for conn_id, key in KOMOJU_CONNECTIONS.items():
        found[conn_id] = {"conn_type": "komoju", "host": emulator_url, "password": key}
    return found


@dataclass
class Stack:
    """The local services of a demo."""

    pg: localpg.PgServer
    database: str
    emulator_url: str
    smtp: SmtpSink

    def environment(self, airflow_home: Path) -> dict[str, str]:
        """Airflow's environment with the stack's connections as ``AIRFLOW_CONN_*`` variables."""
        env = airflow_environment(airflow_home)
        for conn_id, conn in connections(self.pg, self.database, self.emulator_url, self.smtp.port).items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        return env


def postgres(folder: Path, port: int | None = None) -> localpg.PgServer:
    """The configured server, else 127.0.0.1:5432, else a throwaway cluster in ``folder`` (on ``port``)."""
    server = localpg.find_server()
    if server is not None:
        return server
    if folder.exists():  # left over from an interrupted run
        localpg.stop_cluster_in(folder)
        shutil.rmtree(folder, ignore_errors=True)
    return localpg.start_throwaway(folder, port=port)


def fresh_database(pg: localpg.PgServer) -> str:
    """Drop and recreate the demo database, apply the schema and load the demo data."""
    from komoju import migrations

    pg.drop_database(DEMO_DATABASE)
    pg.create_database(name=DEMO_DATABASE)
    conn = pg.connect(DEMO_DATABASE)
    try:
        migrations.upgrade(conn)
        with conn.cursor() as cur:
            cur.execute(SEED.read_text(encoding="utf-8"))
        conn.commit()
    finally:
        conn.close()
    return DEMO_DATABASE


@contextmanager
def local_stack(*, emulator_port: int | None = None, smtp_port: int | None = None) -> Iterator[Stack]:
    """PostgreSQL with the demo data, the KOMOJU emulator and the SMTP sink, stopped on exit."""
    from emulator.testing import EmulatorServer

    mail = LOCAL / "mail"
    shutil.rmtree(mail, ignore_errors=True)
    pg = postgres(LOCAL / "pg")
    try:
        database = fresh_database(pg)
        with (
            EmulatorServer(SCENARIO, mode="subprocess", port=emulator_port) as emulator,
            SmtpSink(port=smtp_port, folder=mail) as smtp,
        ):
            yield Stack(pg, database, emulator.base_url, smtp)
    finally:
        pg.stop()


def run_dags(env: dict[str, str], logs: Path) -> dict[str, int]:
    """``airflow dags test`` each job in turn (all sites); return each one's exit code. Output goes to ``logs``."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    logs.mkdir(parents=True, exist_ok=True)
    codes = {}
    for dag_id in DAG_IDS:
        started = time.monotonic()
        with (logs / f"{dag_id}.log").open("w") as log:
            done = subprocess.run(
                [airflow, "dags", "test", dag_id, "-c", json.dumps({"site_ids": []})],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=PROJECT_ROOT,
                timeout=600,
                check=False,
            )
        codes[dag_id] = done.returncode
        verdict = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        print(f"  {dag_id:<32} {verdict:<10} {time.monotonic() - started:5.1f} s   log: {_rel(logs / f'{dag_id}.log')}")
    return codes


def summary(stack: Stack) -> dict[str, Any]:
    """What the jobs did, read back from the database and the mail sink."""
    from komoju import store

    conn = stack.pg.connect(stack.database)
    try:
        sites = store.resolve_scope(conn, [])
        report: dict[str, Any] = {"sites": {}, "mails": []}
        for site in sites:
            report["sites"][site.site_id] = {
                "name": site.name,
                "payment_methods": [
                    f"{m.type_slug} {m.currency}" for m in store.payment_methods(conn, site.site_id) if m.enabled
                ],
                "orders": store.order_status_counts(conn, site.site_id),
                "final_failures": [
                    {
                        "job": f.job,
                        "order_no": f.order_no,
                        "status": f.status,
                        "reason": f.reason,
                        "emailed": bool(f.emailed_at),
                    }
                    for f in reversed(store.final_failures(conn, site.site_id, limit=1000))
                ],
            }
    finally:
        conn.close()
    for mail in stack.smtp.messages:
        report["mails"].append(
            {
                "to": list(mail.rcpt_tos),
                "subject": str(mail.message["Subject"]),
                "path": _rel(mail.path) if mail.path else None,
            }
        )
    return report


def print_summary(report: dict[str, Any]) -> None:
    """The report for a person."""
    print("\nWhat the jobs did, per site (orders per KOMOJU status; 'to do' = not handled):")
    for site_id, site in report["sites"].items():
        print(f"\n  site {site_id} ({site['name']})")
        print(f"    payment methods on: {', '.join(site['payment_methods']) or 'none'}")
        for job, counts in site["orders"].items():
            parts = [f"{status or 'to do'} {count}" for status, count in counts.items()]
            print(f"    {job:<7} {', '.join(parts) if parts else 'no orders'}")
        for failure in site["final_failures"]:
            emailed = "e-mailed" if failure["emailed"] else "not e-mailed (e-mails off)"
            line = f"{failure['job']:<6} {failure['order_no']:<7} {failure['status']:<8} {emailed:<27}"
            print(f"    ! {line} {failure['reason']}")
    print(f"\nE-mails received by the SMTP sink: {len(report['mails'])}")
    for mail in report["mails"]:
        print(f"  to {', '.join(mail['to'])}\n     {mail['subject']}\n     {mail['path']}")


def main() -> int:
    LOCAL.mkdir(exist_ok=True)
    airflow_home = LOCAL / "demo" / "airflow"
    shutil.rmtree(airflow_home, ignore_errors=True)
    airflow_home.mkdir(parents=True)
    print("komoju-airflow demo: starting PostgreSQL, the KOMOJU emulator and an SMTP sink ...")
    with local_stack() as stack:
        print(f"  PostgreSQL: {stack.pg.origin}, database {stack.database}")
        print(f"  KOMOJU emulator: {stack.emulator_url}")
        print(f"  SMTP sink: 127.0.0.1:{stack.smtp.port}, saving mail to {_rel(LOCAL / 'mail')}")
        env = stack.environment(airflow_home)
        subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=300,
        )
        print("Running the three jobs for every active site with `airflow dags test`:")
        codes = run_dags(env, LOCAL / "demo" / "logs")
        report = summary(stack)
    print_summary(report)
    (LOCAL / "demo" / "summary.json").write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    print(f"\nSummary as JSON: {_rel(LOCAL / 'demo' / 'summary.json')}. Services stopped.")
    if any(codes.values()):
        print("Some job failed: see its log above.", file=sys.stderr)
        return 1
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    raise SystemExit(main())
