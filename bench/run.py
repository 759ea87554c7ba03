"""Throughput, memory and DAG-parse benchmark of the refund job (``make bench``; docs/performance.md).

For each measured run: a fresh PostgreSQL database (the configured server, 127.0.0.1:5432, or a throwaway cluster
under .local/bench/pg) seeded with N refund-eligible orders per site for S sites in one ``INSERT ... SELECT``, a
KOMOJU emulator subprocess with answer latency L holding one captured payment per order, and the refund job for ONE
site run in a fresh Python process (``KomojuRefundOrdersOperator(...).execute(...)``, connections as
``AIRFLOW_CONN_*`` JSON, an isolated AIRFLOW_HOME under .local/bench/airflow). Afterwards every order of the site
must be ``Refunded``, no other site touched, one succeeded attempt per order, and the emulator's ledger must show
exactly one refund effect per order: otherwise the benchmark fails.

The "idle and scale" section (issue 15) runs the whole refund DAG with ``airflow dags test`` for 100 sites of which 3
have work, mapping every site (``KOMOJU_MAP_ALL_SITES=1``, the behaviour before) and only those with work, and then
``python -m komoju db clean --yes`` over 1,000,000 attempts while a refund run works beside it. The "event-driven"
section (issue 16) starts ``make up``'s Airflow (scheduler and triggerer), times paced cancellations from the
``UPDATE`` to KOMOJU receiving the refund POST, and counts the runs one 1,000-row burst makes.

    .venv/bin/python bench/run.py                      # defaults: N=2000, S=3, L=20 ms, C=8, + memory + parse
    .venv/bin/python bench/run.py --skip-memory --skip-idle --skip-events   # quick: throughput and parse only
    .venv/bin/python bench/run.py --skip-parse --skip-throughput --skip-memory --skip-events   # idle and scale only
    .venv/bin/python bench/run.py --skip-parse --skip-throughput --skip-memory --skip-idle     # event-driven only
    make bench BENCH_ARGS="--orders 5000 --concurrency 16"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # `python bench/run.py` puts bench/ first on the path, not the project
    sys.path.insert(0, str(PROJECT_ROOT))

from devtools import localpg  # noqa: E402
from devtools.ports import poll_until  # noqa: E402
from emulator.testing import EmulatorServer  # noqa: E402

LOCAL = PROJECT_ROOT / ".local" / "bench"
MERCHANT_ID = "bench"
SECRET_KEY = "sk_test_bench"  # noqa: S105 (the emulator's test key)
PAYMENT_CHUNK = 5000  # payments per POST /_emulator/payments
DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))

# Targets of issue 6 ("Done when").
TARGET_RATIO = 0.8
TARGET_SPEEDUP = 6.0
TARGET_MEMORY_RATIO = 1.5
TARGET_PARSE_S = 0.100
TARGET_PARSE_VS_EMPTY = 2.0
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))

EMPTY_DAG = '''"""The smallest useful DAG: one task, no imports beyond Airflow's (the benchmark's parse baseline)."""

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag


@dag(dag_id="bench_empty", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), catchup=False)
def bench_empty():
    EmptyOperator(task_id="nothing")


bench_empty()
'''

# The refund DAG's shape with Airflow's own pieces only (no komoju import): four Params with the same schemas, the
# same default_args, two @task functions, a mapped operator, an EmptyOperator, a kwargs-mapped operator, and (since
# issue 16) a cron-or-asset schedule whose asset has a watcher (a trigger of Airflow's standard provider). What
# Airflow itself charges for such a DAG, to tell it apart from anything the komoju files do at import.
SAME_SHAPE_DAG = '''"""Airflow-only DAG shaped like komoju_refund_process (the benchmark's second parse baseline)."""

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.triggers.file import FileDeleteTrigger
from airflow.sdk import (Asset, AssetOrTimeSchedule, AssetWatcher, BaseOperator, CronTriggerTimetable, Param, dag,
                         task)


class SiteOperator(BaseOperator):
    template_fields = ("site_id", "max_attempts", "max_concurrency", "dry_run")

    def __init__(self, *, site_id, max_attempts=3, max_concurrency=8, dry_run=False, **kwargs):
        super().__init__(**kwargs)
        self.site_id, self.max_attempts, self.max_concurrency, self.dry_run = (
            site_id, max_attempts, max_concurrency, dry_run)

    def execute(self, context):
        return None


class MailOperator(BaseOperator):
    template_fields = ()

    def __init__(self, *, notification_id, site_id, **kwargs):
        super().__init__(**kwargs)
        self.notification_id, self.site_id = notification_id, site_id

    def execute(self, context):
        return None


@task(task_id="resolve_sites")
def resolve_sites():
    return []


@task(task_id="prepare_failure_emails", trigger_rule="all_done")
def prepare_failure_emails(job):
    return []


@dag(
    dag_id="bench_same_shape",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/30 * * * *", timezone="UTC"),
        assets=Asset(name="bench_same_shape_orders", uri="x-bench://orders/refund", group="bench", watchers=[
            AssetWatcher(name="bench_same_shape_watcher", trigger=FileDeleteTrigger(filepath="/nonexistent/bench"))]),
    ),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "komoju", "retries": 3, "retry_delay": dt.timedelta(seconds=60),
                  "retry_exponential_backoff": True, "max_retry_delay": dt.timedelta(minutes=30)},
    params={
        "site_ids": Param([], type="array", items={"type": "string", "minLength": 1}, uniqueItems=True,
                          title="Sites", description="Site ids."),
        "dry_run": Param(False, type="boolean", title="Dry run", description="List only."),
        "max_attempts": Param(3, type="integer", minimum=1, maximum=20, title="Attempts", description="Tries."),
        "max_concurrency": Param(None, type=["null", "integer"], minimum=1, maximum=64, title="Concurrent calls"),
    },
    render_template_as_native_obj=True,
    doc_md=__doc__,
    tags=["komoju", "payments", "refund"],
)
def bench_same_shape():
    sites = resolve_sites()
    done = SiteOperator.partial(
        task_id="refund_site",
        map_index_template="{{ task.site_id }}",
        dry_run="{{ params.dry_run }}",
        max_attempts="{{ params.max_attempts }}",
        max_concurrency="{{ params.max_concurrency }}",
    ).expand(site_id=sites)
    emails = prepare_failure_emails(job="refund")
    done >> emails
    done >> EmptyOperator(task_id="all_sites_done")
    MailOperator.partial(task_id="send_failure_email", map_index_template="{{ task.site_id }}").expand_kwargs(emails)


bench_same_shape()
'''

# One row per order, N per site, every one refund-eligible (SPEC §4.3). Payment ids are 25 lowercase letters and
# digits, as KOMOJU's: "bench" + 2-digit site + 18-digit order number.
SEED_SQL = """
INSERT INTO komoju.site (site_id, name, komoju_conn_id)
SELECT 'site' || lpad(s::text, 2, '0'), 'Benchmark site ' || s, 'komoju_default'
FROM generate_series(1, %(sites)s) AS s;

INSERT INTO komoju.orders
    (site_id, order_no, status, payment_status, payment_method, komoju_payment_id, total_gross_price, currency)
SELECT 'site' || lpad(s::text, 2, '0'),
       'B' || lpad(i::text, 9, '0'),
       'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE',
       'bench' || lpad(s::text, 2, '0') || lpad(i::text, 18, '0'),
       1000, 'JPY'
FROM generate_series(1, %(sites)s) AS s, generate_series(1, %(orders)s) AS i;

ANALYZE komoju.orders;
"""


def site_id(number: int) -> str:
    return f"site{number:02d}"


def payment_id(site: int, order: int) -> str:
    return f"bench{site:02d}{order:018d}"


# ---------------------------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------------------------


@contextmanager
def postgres() -> Iterator[localpg.PgServer]:
    """The configured server, else 127.0.0.1:5432, else a throwaway cluster in .local/bench/pg (stopped after)."""
    server = localpg.find_server()
    if server is None:
        folder = LOCAL / "pg"
        if folder.exists():  # left over from an interrupted run
            localpg.stop_cluster_in(folder)
            shutil.rmtree(folder, ignore_errors=True)
        server = localpg.start_throwaway(folder)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def bench_database(pg: localpg.PgServer, *, sites: int, orders: int) -> Iterator[str]:
    """A new database with the komoju schema and ``orders`` eligible orders for each of ``sites`` sites."""
    from komoju import migrations

    name = pg.create_database(prefix="komoju_bench")
    try:
        conn = pg.connect(name)
        try:
            migrations.upgrade(conn)
            with conn.cursor() as cur:
                cur.execute(SEED_SQL, {"sites": sites, "orders": orders})
            conn.commit()
        finally:
            conn.close()
        yield name
    finally:
        pg.drop_database(name)


@contextmanager
def emulator(*, latency_ms: float, sites: int, orders: int) -> Iterator[EmulatorServer]:
    """The KOMOJU emulator as a subprocess with ``latency_ms``, holding one captured payment per seeded order."""
    scenario = {
        "description": "komoju-airflow benchmark: one merchant, payments added over HTTP",
        "seed": 6,
        "settings": {"latency_ms": latency_ms, "jitter_ms": 0},
        "faults": [],
        "merchants": [{"id": MERCHANT_ID, "keys": [SECRET_KEY], "payment_methods": []}],
    }
    with EmulatorServer(scenario, mode="subprocess") as server:
        payments = (
            {"id": payment_id(s, i), "status": "captured", "amount": 1000, "currency": "JPY"}
            for s in range(1, sites + 1)
            for i in range(1, orders + 1)
        )
        chunk: list[dict[str, Any]] = []
        for payment in payments:
            chunk.append(payment)
            if len(chunk) == PAYMENT_CHUNK:
                server.add_payments(MERCHANT_ID, chunk)
                chunk = []
        if chunk:
            server.add_payments(MERCHANT_ID, chunk)
        yield server


def airflow_environment(connections: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """The worker's environment: an isolated Airflow home (SQLite), the repo's DAGs and plugins, the given
    connections as ``AIRFLOW_CONN_*`` JSON, and nothing inherited from the caller's own Airflow or KOMOJU settings."""
    home = LOCAL / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    inherited = ("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__", "KOMOJU_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(
        {
            # Bytecode cached, as in any installed Airflow: a parse never recompiles the komoju modules.
            "PYTHONPYCACHEPREFIX": str(PROJECT_ROOT / ".local" / "pycache"),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
    )
    for conn_id, conn in (connections or {}).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return env


def run_worker(
    argv: list[str], env: dict[str, str], log_name: str, timeout: float, *, profile: bool = False
) -> dict[str, Any]:
    """``python -m bench.worker ARGV --result FILE`` in a fresh process; its output goes to .local/bench/logs.
    With ``profile``, under ``py-spy record --gil`` (CPU samples of the thread holding the GIL) into
    .local/bench/profile-LOG_NAME.svg."""
    logs = LOCAL / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result = LOCAL / f"result-{uuid.uuid4().hex[:8]}.json"
    log = logs / f"{log_name}.log"
    command = [sys.executable, "-m", "bench.worker", argv[0], "--result", str(result), *argv[1:]]
    if profile:
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if py_spy is None:
            raise RuntimeError("--py-spy needs py-spy: .venv/bin/pip install py-spy (not a project requirement)")
        svg = LOCAL / f"profile-{log_name}.svg"
        command = [py_spy, "record", "--gil", "--rate", "200", "--output", str(svg), "--", *command]
    with log.open("w") as out:
        done = subprocess.run(
            command,
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0 or not result.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"bench worker {argv[0]} failed (exit {done.returncode}); log {log}:\n{tail}")
    try:
        return json.loads(result.read_text())
    finally:
        result.unlink()


# ---------------------------------------------------------------------------------------------------------------
# One measured run of the refund job
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class JobRun:
    orders: int
    sites: int
    latency_ms: float
    concurrency: int
    wall_s: float
    round_trips: dict[str, int]
    peak_rss_kib: int
    rss_before_kib: int
    cpu_s: float  # CPU of the job process during execute
    emulator_cpu_s: float  # CPU of the emulator process while the job process lived
    api_requests: int
    calls: dict[str, Any] = field(default_factory=dict)  # HTTP attempts as the job process timed them
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.orders / self.wall_s

    @property
    def limit(self) -> float | None:
        """The latency limit C/L in orders per second (None at L=0: no limit)."""
        return self.concurrency / (self.latency_ms / 1000) if self.latency_ms > 0 else None

    @property
    def ratio(self) -> float | None:
        return self.rate / self.limit if self.limit else None

    @property
    def round_trips_total(self) -> int:
        return sum(self.round_trips.values())


def measure_job(
    pg: localpg.PgServer,
    *,
    orders: int,
    sites: int,
    latency_ms: float,
    concurrency: int,
    batch_size: int | None,
    label: str,
    profile: bool = False,
) -> JobRun:
    """Seed, run the refund job for site01 in a fresh process, verify the work done; return the measurements."""
    started = time.monotonic()
    with (
        bench_database(pg, sites=sites, orders=orders) as database,
        emulator(latency_ms=latency_ms, sites=sites, orders=orders) as komoju,
    ):
        seeded = time.monotonic()
        env = airflow_environment(
            {
                "komoju_postgres": pg.airflow_connection(database),
                "komoju_default": {"conn_type": "komoju", "host": komoju.base_url, "password": SECRET_KEY},
            }
        )
        argv = ["job", "--site", site_id(1), "--concurrency", str(concurrency), "--run-id", f"bench-{label}"]
        if batch_size:
            argv += ["--batch-size", str(batch_size)]
        emulator_cpu = _process_cpu(komoju)
        result = run_worker(argv, env, f"job-{label}", timeout=max(600.0, orders * 0.1), profile=profile)
        emulator_cpu = _process_cpu(komoju) - emulator_cpu
        ran = time.monotonic()
        requests = verify(pg, database, komoju, orders=orders)
    print(
        f"  {label}: seeded in {seeded - started:.1f} s, job {ran - seeded:.1f} s (execute {result['wall_s']:.2f} s),"
        f" verified in {time.monotonic() - ran:.1f} s",
        flush=True,
    )
    return JobRun(
        orders=orders,
        sites=sites,
        latency_ms=latency_ms,
        concurrency=concurrency,
        wall_s=result["wall_s"],
        round_trips=result["round_trips"],
        peak_rss_kib=result["peak_rss_kib"],
        rss_before_kib=result["rss_before_kib"],
        cpu_s=result["cpu_s"],
        emulator_cpu_s=emulator_cpu,
        api_requests=requests,
        calls=result["calls"],
        summary=result["summary"],
    )


def _process_cpu(server: EmulatorServer) -> float:
    """User + system CPU seconds used so far by the emulator subprocess."""
    import psutil  # an Airflow dependency

    times = psutil.Process(server._process.pid).cpu_times()  # the harness exposes no pid
    return times.user + times.system


class WrongWork(AssertionError):
    """The job did not do exactly the work the benchmark seeded: its numbers mean nothing."""


def verify(pg: localpg.PgServer, database: str, komoju: EmulatorServer, *, orders: int) -> int:
    """Every order of site01 Refunded, other sites untouched, one succeeded attempt each, and exactly one refund
    effect at KOMOJU per order of site01 (and none elsewhere). Returns the number of API requests the job made."""
    site = site_id(1)
    conn = pg.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT site_id = %(site)s, komoju_refund_status, count(*) FROM komoju.orders GROUP BY 1, 2",
                {"site": site},
            )
            statuses = {(mine, status): count for mine, status, count in cur.fetchall()}
            cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE outcome = 'succeeded'), count(DISTINCT order_no),"
                " count(*) FILTER (WHERE site_id <> %(site)s) FROM komoju.attempt",
                {"site": site},
            )
            attempts, succeeded, distinct_orders, elsewhere = cur.fetchone()
    finally:
        conn.close()
    problems = []
    mine = {status: count for (is_mine, status), count in statuses.items() if is_mine}
    if mine != {"Refunded": orders}:
        problems.append(f"site {site} orders by refund status: {mine} (expected {{'Refunded': {orders}}})")
    others = {status: count for (is_mine, status), count in statuses.items() if not is_mine and status is not None}
    if others:
        problems.append(f"orders of other sites were changed: {others}")
    if (attempts, succeeded, distinct_orders, elsewhere) != (orders, orders, orders, 0):
        problems.append(
            f"attempts: {attempts} rows, {succeeded} succeeded, {distinct_orders} orders, {elsewhere} of other sites"
            f" (expected {orders}, {orders}, {orders}, 0)"
        )
    entries = komoju.ledger()
    effects = [e for e in entries if e["type"] == "effect"]
    refunded = Counter(e["payment_id"] for e in effects if e["action"] == "refund")
    expected = {payment_id(1, i) for i in range(1, orders + 1)}
    if len(effects) != orders or set(refunded) != expected or any(n != 1 for n in refunded.values()):
        twice = sum(1 for n in refunded.values() if n > 1)
        problems.append(
            f"emulator ledger: {len(effects)} effects, {len(refunded)} payments refunded ({twice} more than once),"
            f" {len(expected - set(refunded))} of site {site} not refunded, {len(set(refunded) - expected)} others"
            f" (expected exactly one refund effect for each of the {orders} payments)"
        )
    if problems:
        raise WrongWork("The benchmark run did the wrong work:\n  " + "\n  ".join(problems))
    return sum(1 for e in entries if e["type"] == "request")


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, rule, *body])


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def throughput_table(runs: list[JobRun]) -> str:
    headers = ["N", "L (ms)", "C", "wall s", "orders/s", "limit C/L", "ratio", "DB trips/order", "API calls/order",
               "job CPU ms/order", "emulator CPU ms/order", "peak RSS MiB"]  # fmt: skip
    rows = []
    for run in runs:
        rows.append(
            [
                str(run.orders),
                f"{run.latency_ms:g}",
                str(run.concurrency),
                f"{run.wall_s:.2f}",
                f"{run.rate:.0f}",
                f"{run.limit:.0f}" if run.limit else "-",
                f"{run.ratio:.2f}" if run.ratio is not None else "-",
                f"{run.round_trips_total / run.orders:.3f}",
                f"{run.api_requests / run.orders:.2f}",
                f"{run.cpu_s * 1000 / run.orders:.2f}",
                f"{run.emulator_cpu_s * 1000 / run.orders:.2f}",
                mib(run.peak_rss_kib),
            ]
        )
    return table(headers, rows)


def breakdown_table(runs: list[JobRun]) -> str:
    """ratio = (L / mean call) x (mean calls in flight / C) x (calls window / wall): exact when one call per order."""
    headers = ["C", "mean call ms", "L / call", "calls in flight", "in flight / C", "startup s", "tail s",
               "window / wall", "product = ratio"]  # fmt: skip
    rows = []
    for run in runs:
        calls = run.calls
        if not calls.get("count") or not calls.get("window_s"):
            continue
        mean_call = calls["busy_s"] / calls["count"]
        in_flight = calls["busy_s"] / calls["window_s"]
        factors = (run.latency_ms / 1000 / mean_call, in_flight / run.concurrency, calls["window_s"] / run.wall_s)
        rows.append(
            [
                str(run.concurrency),
                f"{mean_call * 1000:.1f}",
                f"{factors[0]:.3f}",
                f"{in_flight:.2f}",
                f"{factors[1]:.3f}",
                f"{calls['startup_s']:.2f}",
                f"{calls['tail_s']:.2f}",
                f"{factors[2]:.3f}",
                f"{factors[0] * factors[1] * factors[2]:.2f}",
            ]
        )
    return table(headers, rows) if rows else "  (no calls timed)"


def memory_table(runs: list[JobRun]) -> str:
    headers = ["eligible orders", "L (ms)", "C", "wall s", "orders/s", "RSS before execute MiB", "peak RSS MiB",
               "growth in execute MiB"]  # fmt: skip
    rows = [
        [
            str(run.orders),
            f"{run.latency_ms:g}",
            str(run.concurrency),
            f"{run.wall_s:.1f}",
            f"{run.rate:.0f}",
            mib(run.rss_before_kib),
            mib(run.peak_rss_kib),
            mib(run.peak_rss_kib - run.rss_before_kib),
        ]
        for run in runs
    ]
    return table(headers, rows)


def parse_table(parsed: dict[str, Any]) -> tuple[str, list[tuple[str, float, bool, bool]]]:
    """Rows: the empty DAG, the Airflow-only DAG of the same shape, then the project's DAG files, judged on the
    median parse in a new process (as Airflow's DAG processor parses): under 100 ms, and within 2x the empty DAG
    (two separate verdicts). ``x same shape`` tells what the project adds to what Airflow itself costs."""
    empty, same_shape, *project = parsed["files"]
    base, base_imported = empty["wall_median_s"], empty["imported_wall_median_s"]
    shape = same_shape["wall_median_s"]
    headers = ["DAG file", "parse ms (median)", "min-max ms", "CPU ms", "x empty", "x same shape",
               "modules imported: ms", "x empty", "< 100 ms", "<= 2x empty"]  # fmt: skip
    rows, checks = [], []
    for entry in parsed["files"]:
        wall, imported = entry["wall_median_s"], entry["imported_wall_median_s"]
        name = Path(entry["file"]).name
        fast, near_empty = wall < TARGET_PARSE_S, wall <= TARGET_PARSE_VS_EMPTY * base
        if entry in project:
            checks.append((name, wall, fast, near_empty))
        label = {id(empty): "(empty DAG) ", id(same_shape): "(same shape, Airflow only) "}.get(id(entry), "")
        rows.append(
            [
                label + name,
                f"{wall * 1000:.1f}",
                f"{entry['wall_min_s'] * 1000:.1f}-{entry['wall_max_s'] * 1000:.1f}",
                f"{entry['cpu_median_s'] * 1000:.1f}",
                f"{wall / base:.2f}",
                f"{wall / shape:.2f}",
                f"{imported * 1000:.1f}",
                f"{imported / base_imported:.2f}",
                verdict(fast) if entry in project else "-",
                verdict(near_empty) if entry in project else "-",
            ]
        )
    return table(headers, rows), checks


# ---------------------------------------------------------------------------------------------------------------
# Idle and scale (issue 15): 100 sites of which 3 have work; the clean over 1,000,000 attempts
# ---------------------------------------------------------------------------------------------------------------

# S sites; every site holds D orders refunded long ago (the partial index skips them), the busy ones N eligible orders
# more. Payment ids: "idle" + 3-digit site + 18-digit order (25 characters, as KOMOJU's).
IDLE_SEED_SQL = """
INSERT INTO komoju.site (site_id, name, komoju_conn_id)
SELECT 'site' || lpad(s::text, 3, '0'), 'Benchmark site ' || s, 'komoju_default'
FROM generate_series(1, %(sites)s) AS s;

INSERT INTO komoju.orders
    (site_id, order_no, status, payment_status, payment_method, komoju_payment_id, total_gross_price, currency,
     komoju_refund_status, komoju_refund_response)
SELECT 'site' || lpad(s::text, 3, '0'), 'D' || lpad(i::text, 9, '0'), 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE',
       'done' || lpad(s::text, 3, '0') || lpad(i::text, 18, '0'), 1000, 'JPY', 'Refunded', 'refunded long ago'
FROM generate_series(1, %(sites)s) AS s, generate_series(1, %(done)s) AS i;

INSERT INTO komoju.orders
    (site_id, order_no, status, payment_status, payment_method, komoju_payment_id, total_gross_price, currency)
SELECT 'site' || lpad(s::text, 3, '0'), 'B' || lpad(i::text, 9, '0'), 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE',
       'idle' || lpad(s::text, 3, '0') || lpad(i::text, 18, '0'), 1000, 'JPY'
FROM unnest(%(busy)s::int[]) AS s, generate_series(1, %(orders)s) AS i;

ANALYZE komoju.orders;
"""

# A year of history: A refund orders over the sites, one attempt each, finished 100 to 399 days ago except every
# tenth (i % 10 = 5: ten days ago, kept); every hundredth order Rejected with its final failure e-mailed (sent) at
# the same age, one e-mail each. All of it may go at --older-than 90 but the recent tenth.
HISTORY_SEED_SQL = """
INSERT INTO komoju.orders
    (site_id, order_no, status, payment_status, payment_method, komoju_payment_id, total_gross_price, currency,
     komoju_refund_status, komoju_refund_response)
SELECT 'site' || lpad((1 + i %% %(sites)s)::text, 3, '0'), 'H' || lpad(i::text, 9, '0'), 'cancelled', 'paid',
       'KOMOJU_HOSTED_PAGE', 'hist' || lpad(i::text, 21, '0'), 1000, 'JPY',
       CASE WHEN i %% 100 = 0 THEN 'Rejected' ELSE 'Refunded' END, 'history'
FROM generate_series(1, %(attempts)s) AS i;

INSERT INTO komoju.attempt
    (job, site_id, order_no, attempt_no, komoju_payment_id, idempotency_key, run_id, started_at, last_tried_at,
     last_run_id, finished_at, outcome, http_status, response)
SELECT 'refund', 'site' || lpad((1 + i %% %(sites)s)::text, 3, '0'), 'H' || lpad(i::text, 9, '0'), 1,
       'hist' || lpad(i::text, 21, '0'), 'komoju-airflow-refund-bench-' || i, 'history', at, at, 'history', at,
       CASE WHEN i %% 100 = 0 THEN 'rejected' ELSE 'succeeded' END, CASE WHEN i %% 100 = 0 THEN 422 ELSE 200 END,
       'history'
FROM (SELECT i, CASE WHEN i %% 10 = 5 THEN now() - interval '10 days'
                     ELSE now() - (100 + i %% 300) * interval '1 day' END AS at
      FROM generate_series(1, %(attempts)s) AS i) AS g;

INSERT INTO komoju.notification (notification_id, job, site_id, recipients, subject, message_id, run_id, created_at,
                                 sent_at)
SELECT i / 100, 'refund', 'site' || lpad((1 + i %% %(sites)s)::text, 3, '0'), '{ops@example.com}', 'history',
       '<history.' || i || '@bench>', 'history', now() - (100 + i %% 300) * interval '1 day',
       now() - (100 + i %% 300) * interval '1 day'
FROM generate_series(100, %(attempts)s, 100) AS i;

SELECT setval('komoju.notification_notification_id_seq', (SELECT max(notification_id) FROM komoju.notification));

INSERT INTO komoju.final_failure (job, site_id, order_no, attempt_no, komoju_payment_id, status, reason, amount,
                                  currency, recorded_at, notification_id)
SELECT 'refund', 'site' || lpad((1 + i %% %(sites)s)::text, 3, '0'), 'H' || lpad(i::text, 9, '0'), 1,
       'hist' || lpad(i::text, 21, '0'), 'Rejected', 'history', 1000, 'JPY',
       now() - (100 + i %% 300) * interval '1 day', i / 100
FROM generate_series(100, %(attempts)s, 100) AS i;

ANALYZE komoju.orders, komoju.attempt, komoju.final_failure, komoju.notification;
"""


def _ledger_time(value: str) -> dt.datetime:
    """An emulator ledger time (ISO 8601, ``Z``) as an aware datetime."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def busy_sites(sites: int, busy: int) -> list[int]:
    """``busy`` site numbers spread over 1..``sites`` (the first, the last, and evenly between)."""
    if busy <= 1:
        return [1][:busy]
    return sorted({round(1 + k * (sites - 1) / (busy - 1)) for k in range(busy)})


def idle_site_id(number: int) -> str:
    return f"site{number:03d}"


def idle_payment_id(site: int, order: int) -> str:
    return f"idle{site:03d}{order:018d}"


@contextmanager
def idle_database(pg: localpg.PgServer, *, sites: int, busy: list[int], orders: int, done: int,
                  history: int = 0) -> Iterator[str]:  # fmt: skip
    """A new database: ``sites`` sites with ``done`` refunded orders each, ``orders`` eligible ones on the ``busy``
    sites, and ``history`` finished attempts (with their orders, e-mailed final failures) when asked."""
    from komoju import migrations

    name = pg.create_database(prefix="komoju_bench")
    try:
        conn = pg.connect(name)
        try:
            migrations.upgrade(conn)
            with conn.cursor() as cur:
                cur.execute(IDLE_SEED_SQL, {"sites": sites, "busy": busy, "orders": orders, "done": done})
                if history:
                    cur.execute(HISTORY_SEED_SQL, {"sites": sites, "attempts": history})
            conn.commit()
        finally:
            conn.close()
        yield name
    finally:
        pg.drop_database(name)


@contextmanager
def idle_emulator(*, latency_ms: float, busy: list[int], orders: int) -> Iterator[EmulatorServer]:
    """The emulator holding one captured payment per eligible order of the busy sites."""
    scenario = {
        "description": "komoju-airflow benchmark: idle and scale",
        "seed": 15,
        "settings": {"latency_ms": latency_ms, "jitter_ms": 0},
        "faults": [],
        "merchants": [{"id": MERCHANT_ID, "keys": [SECRET_KEY], "payment_methods": []}],
    }
    with EmulatorServer(scenario, mode="subprocess") as server:
        payments = [
            {"id": idle_payment_id(s, i), "status": "captured", "amount": 1000, "currency": "JPY"}
            for s in busy
            for i in range(1, orders + 1)
        ]
        for start in range(0, len(payments), PAYMENT_CHUNK):
            server.add_payments(MERCHANT_ID, payments[start : start + PAYMENT_CHUNK])
        yield server


def migrate_airflow_home(env: dict[str, str]) -> None:
    """``airflow db migrate`` of the benchmark's Airflow home (quick when it is up to date)."""
    log = LOCAL / "logs" / "airflow-db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run([AIRFLOW_BIN, "db", "migrate"], env=env, cwd=PROJECT_ROOT, stdout=out,
                              stderr=subprocess.STDOUT, timeout=600, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed (exit {done.returncode}); log {log}")


@dataclass
class DagRun:
    """One ``airflow dags test`` of the refund DAG, measured from outside."""

    label: str
    wall_s: float
    cpu_s: float  # user + system CPU of the process and everything it started and waited for
    peak_rss_kib: int
    state: str
    tasks: dict[str, int]  # task instances by state
    site_tasks: int  # refund_site instances that ran


def run_dags_test(env: dict[str, str], conf: dict[str, Any], label: str, timeout: float = 900.0) -> DagRun:
    """``airflow dags test komoju_refund_process -c CONF`` in a new process: wall time, CPU of its process tree
    (``wait4``), and its task instances read back from the Airflow metadata database."""
    log = LOCAL / "logs" / f"dags-test-{label}.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([AIRFLOW_BIN, "dags", "test", "komoju_refund_process", "-c", json.dumps(conf)],
                                env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    database = Path(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    metadata = sqlite3.connect(database)
    try:
        run_id, state = metadata.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = 'komoju_refund_process' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        rows = metadata.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = 'komoju_refund_process' AND run_id = ?",
            (run_id,),
        ).fetchall()
    finally:
        metadata.close()
    tasks = dict(Counter(str(state) for _, _, state in rows))
    site_tasks = sum(1 for task_id, index, s in rows if task_id == "refund_site" and index >= 0 and s == "success")
    if proc.returncode != 0 or state != "success":
        raise WrongWork(f"airflow dags test ({label}) exited {proc.returncode}, run {state}; log {log}")
    return DagRun(label, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, state, tasks, site_tasks)


def executed(run: DagRun) -> int:
    """Task instances that ran (not skipped, not removed)."""
    return sum(n for state, n in run.tasks.items() if state in ("success", "failed", "up_for_retry"))


def verify_refunds(pg: localpg.PgServer, database: str, komoju: EmulatorServer, busy: list[int], orders: int) -> None:
    """Every eligible order of the busy sites Refunded with exactly one refund at KOMOJU; nothing else refunded."""
    conn = pg.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE komoju_refund_status = 'Refunded'), count(*) FROM komoju.orders"
                " WHERE order_no LIKE 'B%'"
            )
            refunded, eligible = cur.fetchone()
            cur.execute("SELECT count(*) FROM komoju.attempt WHERE run_id <> 'history' AND outcome = 'succeeded'")
            (succeeded,) = cur.fetchone()
    finally:
        conn.close()
    effects = Counter(e["payment_id"] for e in komoju.ledger() if e["type"] == "effect")
    expected = {idle_payment_id(s, i) for s in busy for i in range(1, orders + 1)}
    problems = []
    if (refunded, eligible, succeeded) != (len(expected),) * 3:
        problems.append(f"{refunded} of {eligible} eligible orders Refunded, {succeeded} succeeded attempts "
                        f"(expected {len(expected)} each)")  # fmt: skip
    if set(effects) != expected or any(n != 1 for n in effects.values()):
        problems.append(f"{len(effects)} payments refunded at KOMOJU, {sum(effects.values())} effects "
                        f"(expected exactly one for each of {len(expected)})")  # fmt: skip
    if problems:
        raise WrongWork("The idle benchmark run did the wrong work:\n  " + "\n  ".join(problems))


def idle_table(runs: list[DagRun]) -> str:
    headers = ["run", "per-site tasks", "task instances run", "skipped", "wall s", "CPU s (process tree)",
               "peak RSS MiB"]  # fmt: skip
    rows = [
        [run.label, str(run.site_tasks), str(executed(run)), str(run.tasks.get("skipped", 0)), f"{run.wall_s:.1f}",
         f"{run.cpu_s:.1f}", mib(run.peak_rss_kib)]
        for run in runs
    ]  # fmt: skip
    return table(headers, rows)


def idle_phase(pg: localpg.PgServer, args: argparse.Namespace, checks: Checks, raw: dict[str, Any]) -> None:
    """Table 4: one refund DAG run for S sites of which B have work, every site mapped (as before issue 15) and
    only the sites with work; a run where no site has work; then the clean over A attempts beside a refund run."""
    busy = busy_sites(args.idle_sites, args.idle_busy)
    print(f"\n[4/5] Idle and scale: the refund DAG (airflow dags test) for {args.idle_sites} sites, {len(busy)} with "
          f"{args.idle_orders} eligible orders each; then db clean over {args.clean_attempts} attempts")  # fmt: skip
    phase = time.monotonic()
    base_env = airflow_environment()
    migrate_airflow_home(base_env)
    runs: list[DagRun] = []
    variants = (
        ("every site mapped (KOMOJU_MAP_ALL_SITES=1, before)", {"KOMOJU_MAP_ALL_SITES": "1"}, True),
        ("only sites with work (after)", {}, True),
        ("no site has work (after)", {}, False),
    )
    for label, extra, work in variants:
        with (
            idle_database(pg, sites=args.idle_sites, busy=busy if work else [], orders=args.idle_orders,
                          done=args.idle_done) as database,
            idle_emulator(latency_ms=args.latency_ms, busy=busy, orders=args.idle_orders) as komoju,
        ):  # fmt: skip
            env = airflow_environment(
                {
                    "komoju_postgres": pg.airflow_connection(database),
                    "komoju_default": {"conn_type": "komoju", "host": komoju.base_url, "password": SECRET_KEY},
                }
            )
            env.update(extra)
            run = run_dags_test(env, {}, label.split(" (")[0].replace(" ", "-"))
            run.label = label
            if work:
                verify_refunds(pg, database, komoju, busy, args.idle_orders)
            runs.append(run)
            print(f"  {label}: {run.site_tasks} per-site tasks, {executed(run)} task instances run, "
                  f"{run.wall_s:.1f} s, {run.cpu_s:.1f} CPU s", flush=True)  # fmt: skip
    before, after, none = runs
    print(f"\nOne refund run, {args.idle_sites} sites, {len(busy)} with work ({time.monotonic() - phase:.0f} s, "
          f"load average {_load()}):")  # fmt: skip
    print(idle_table(runs))
    saved = executed(before) - executed(after)
    if saved:
        print(f"  per task instance saved: {(before.cpu_s - after.cpu_s) / saved:.2f} CPU s, "
              f"{(before.wall_s - after.wall_s) / saved:.2f} s wall (in one `airflow dags test` process; a "
              "deployment's executor also starts a process per task instance)")  # fmt: skip
    checks.append((f"per-site tasks with {len(busy)} of {args.idle_sites} sites busy", after.site_tasks == len(busy),
                   f"{after.site_tasks} (before: {before.site_tasks})"))  # fmt: skip
    checks.append(("per-site tasks when no site has work", none.site_tasks == 0, str(none.site_tasks)))
    raw["idle"] = [run.__dict__ for run in runs]
    clean_concurrent(pg, args, busy, checks, raw)


def clean_concurrent(pg: localpg.PgServer, args: argparse.Namespace, busy: list[int], checks: Checks,
                     raw: dict[str, Any]) -> None:  # fmt: skip
    """``python -m komoju db clean --older-than 90 --yes`` over A attempts, started once the refund run beside it
    sent its first refund; both must end well: the run's orders refunded exactly once, the clean's counts exact."""
    attempts = args.clean_attempts
    print(f"\n  seeding {attempts} finished attempts (with their orders, 1 % Rejected and e-mailed) ...", flush=True)
    seeded = time.monotonic()
    with (
        idle_database(pg, sites=args.idle_sites, busy=busy, orders=args.clean_job_orders, done=0,
                      history=attempts) as database,
        idle_emulator(latency_ms=args.clean_job_latency_ms, busy=busy, orders=args.clean_job_orders) as komoju,
    ):  # fmt: skip
        print(f"  seeded in {time.monotonic() - seeded:.0f} s", flush=True)
        env = airflow_environment(
            {
                "komoju_postgres": pg.airflow_connection(database),
                "komoju_default": {"conn_type": "komoju", "host": komoju.base_url, "password": SECRET_KEY,
                                   "extra": {"max_concurrency": args.clean_job_concurrency}},
            }
        )  # fmt: skip
        job: dict[str, Any] = {}

        def refund_run() -> None:
            try:
                job["run"] = run_dags_test(env, {}, "beside-clean")
            except BaseException as exc:  # reported below
                job["error"] = exc

        runner = threading.Thread(target=refund_run, name="refund-run")
        runner.start()
        deadline = time.monotonic() + 300
        while not any(e["type"] == "effect" for e in komoju.ledger()):
            if not runner.is_alive() or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # polling the emulator's ledger until the run's first refund (with a deadline)
        clean_log = LOCAL / "logs" / "db-clean.log"
        started, clean_from = time.monotonic(), dt.datetime.now(dt.UTC)
        done = subprocess.run([sys.executable, "-m", "komoju", "db", "clean", "--older-than", "90", "--yes"],
                              env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600,
                              check=False)  # fmt: skip
        clean_to = dt.datetime.now(dt.UTC)
        clean_s = time.monotonic() - started
        clean_log.write_text(done.stdout + done.stderr)
        runner.join(900)
        effects = [e for e in komoju.ledger() if e["type"] == "effect"]
        if done.returncode != 0:
            raise WrongWork(f"db clean exited {done.returncode}; log {clean_log}")
        if "error" in job:
            raise WrongWork(f"the refund run beside the clean failed: {job['error']}")
        verify_refunds(pg, database, komoju, busy, args.clean_job_orders)
        conn = pg.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FILTER (WHERE run_id = 'history'), count(*) FROM komoju.attempt")
                history_left, attempts_left = cur.fetchone()
                cur.execute("SELECT count(*) FROM komoju.final_failure")
                (failures_left,) = cur.fetchone()
        finally:
            conn.close()
    kept = attempts // 10  # the recent tenth
    during = [e for e in effects if clean_from <= _ledger_time(e["time"]) <= clean_to]
    after_clean = len(during)
    run = job["run"]
    print(f"\nThe clean over {attempts} attempts, beside a refund run ({len(busy)} sites x {args.clean_job_orders} "
          f"orders, L = {args.clean_job_latency_ms:g} ms, C = {args.clean_job_concurrency}):")  # fmt: skip
    print("\n".join("    " + line for line in done.stdout.splitlines()))
    print(f"  clean: {clean_s:.1f} s wall; history attempts left {history_left} (expected {kept}), final failures "
          f"left {failures_left} (expected 0)")  # fmt: skip
    print(f"  refund run beside it: {run.state}, {run.site_tasks} per-site tasks, {len(effects)} refunds (exactly "
          f"one per order), {after_clean} of them made while the clean ran ({clean_from:%H:%M:%S}-{clean_to:%H:%M:%S}"
          f" UTC), wall {run.wall_s:.1f} s")  # fmt: skip
    checks.append(("db clean removed exactly the old finished attempts", history_left == kept and failures_left == 0,
                   f"{attempts - history_left} removed, {history_left} kept in {clean_s:.1f} s"))  # fmt: skip
    checks.append(("refund run beside the clean unharmed", run.state == "success" and after_clean > 0,
                   f"{len(effects)} refunds, {after_clean} during the clean"))  # fmt: skip
    raw["clean"] = {"attempts": attempts, "seconds": clean_s, "history_left": history_left,
                    "attempts_left": attempts_left, "output": done.stdout, "job": run.__dict__,
                    "refunds_during_clean": after_clean}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Event-driven runs (issue 16): make up's Airflow; a cancellation's way to KOMOJU, and the runs of a burst
# ---------------------------------------------------------------------------------------------------------------

EVENT_SITES = 5  # the burst's orders are spread over them; the paced cancellations use the first three
TARGET_EVENT_P95_S = 15.0
TARGET_BURST_RUNS = 5  # "at most a handful"

# Every order starts open and paid (not eligible); the benchmark cancels them. Order numbers: L (paced one at a
# time) and B (the burst); payment ids "ev" + the order number padded to 25 characters.
EVENT_SEED_SQL = """
INSERT INTO komoju.site (site_id, name, komoju_conn_id)
SELECT 'ev' || lpad(s::text, 2, '0'), 'Event benchmark site ' || s, 'komoju_default'
FROM generate_series(1, %(sites)s) AS s;

INSERT INTO komoju.orders
    (site_id, order_no, status, payment_status, payment_method, komoju_payment_id, total_gross_price, currency)
SELECT 'ev' || lpad((1 + i %% 3)::text, 2, '0'), 'L' || lpad(i::text, 5, '0'), 'open', 'paid',
       'KOMOJU_HOSTED_PAGE', 'evl' || lpad(i::text, 22, '0'), 1000, 'JPY'
FROM generate_series(1, %(paced)s) AS i;

INSERT INTO komoju.orders
    (site_id, order_no, status, payment_status, payment_method, komoju_payment_id, total_gross_price, currency)
SELECT 'ev' || lpad((1 + i %% %(sites)s)::text, 2, '0'), 'B' || lpad(i::text, 5, '0'), 'open', 'paid',
       'KOMOJU_HOSTED_PAGE', 'evb' || lpad(i::text, 22, '0'), 1000, 'JPY'
FROM generate_series(1, %(burst)s) AS i;

ANALYZE komoju.orders;
"""


CANCEL_ONE = "UPDATE komoju.orders SET status = 'cancelled' WHERE order_no = %(o)s"
CANCEL_BURST = "UPDATE komoju.orders SET status = 'cancelled' WHERE order_no LIKE 'B%'"


def event_payment_id(order_no: str) -> str:
    return f"ev{order_no[0].lower()}{order_no[1:].rjust(22, '0')}"


@dataclass
class Cancellation:
    """One order cancelled by the benchmark, and when its refund reached KOMOJU."""

    order_no: str
    committed_at: float  # wall clock, just after the UPDATE's COMMIT returned
    received_at: float | None = None  # the emulator's wall clock when the refund POST arrived
    run: dict[str, Any] | None = None  # the refund run that sent it (Airflow's REST view of the DAG run)

    @property
    def latency(self) -> float:
        assert self.received_at is not None
        return self.received_at - self.committed_at


def _epoch(value: str | None) -> float | None:
    return None if value is None else dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


class EventBench:
    """The benchmark's own `make up`: a database, the emulator, Airflow's four components (devtools.airflow_stack,
    with make up's settings), and what it needs to read back (ledger, runs, orders)."""

    def __init__(self, pg: localpg.PgServer, database: str, komoju: EmulatorServer, stack: Any) -> None:
        self.pg, self.database, self.komoju, self.stack = pg, database, komoju, stack
        self.conn = pg.connect(database)
        self.headers: dict[str, str] = {}

    def cancel(self, statement: str, params: dict[str, Any] | None = None) -> float:
        """Run one UPDATE cancelling orders, in a transaction of its own; the wall clock just after its COMMIT."""
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
        self.conn.commit()
        return time.time()

    def posts(self) -> dict[str, dict[str, Any]]:
        """The first refund POST KOMOJU received per payment id."""
        found: dict[str, dict[str, Any]] = {}
        for entry in self.komoju.requests_log():
            if entry["method"] == "POST" and entry["payment_id"] and entry["payment_id"] not in found:
                found[entry["payment_id"]] = entry
        return found

    def runs(self) -> list[dict[str, Any]]:
        return self.stack.dag_runs("komoju_refund_process", self.headers) + self.stack.dag_runs(
            "komoju_cancel_process", self.headers
        )

    def watchers(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
                ("komoju-airflow-watcher",),
            )
            (count,) = cur.fetchone()
        self.conn.commit()
        return count

    def wait_quiet(self, seconds: float = 8.0, timeout: float = 600) -> None:
        """Until no cancel or refund run has been queued or running for ``seconds`` (longer than a watcher's quiet
        interval and the triggerer's loop): whatever events were pending have made their runs and those ended."""
        quiet_since: list[float] = []

        def quiet() -> bool:
            if any(run["state"] in ("queued", "running") for run in self.runs()):
                quiet_since.clear()
                return False
            quiet_since[:] = quiet_since or [time.monotonic()]
            return time.monotonic() - quiet_since[0] >= seconds

        poll_until(quiet, timeout=timeout, interval=1.0, what="no cancel or refund run queued or running")


def event_phase(pg: localpg.PgServer, args: argparse.Namespace, checks: Checks, raw: dict[str, Any]) -> None:
    """Table 5: under a real scheduler and triggerer (make up's Airflow), the time from the UPDATE cancelling a paid
    order to KOMOJU receiving its refund, over paced cancellations; then the runs one 1,000-row UPDATE makes."""
    from devtools.airflow_stack import AirflowStack
    from devtools.ports import free_port
    from komoju import migrations

    paced, burst = args.event_orders, args.event_burst
    print(f"\n[5/5] Event-driven runs: Airflow's API server, scheduler (LocalExecutor), DAG processor and triggerer as "
          f"make up runs them; {paced} paid orders cancelled one by one over about {args.event_spread:g} s, then "
          f"{burst} in one UPDATE (emulator latency {args.event_latency_ms:g} ms)")  # fmt: skip
    phase = time.monotonic()
    name = pg.create_database(prefix="komoju_bench")
    stack = AirflowStack(home=LOCAL / "events-airflow", logs=LOCAL / "logs" / "events", port=free_port())
    try:
        conn = pg.connect(name)
        try:
            migrations.upgrade(conn)
            with conn.cursor() as cur:
                cur.execute(EVENT_SEED_SQL, {"sites": EVENT_SITES, "paced": paced, "burst": burst})
            conn.commit()
        finally:
            conn.close()
        scenario = {
            "description": "komoju-airflow benchmark: event-driven runs",
            "seed": 16,
            "settings": {"latency_ms": args.event_latency_ms, "jitter_ms": 0},
            "faults": [],
            "merchants": [{"id": MERCHANT_ID, "keys": [SECRET_KEY], "payment_methods": []}],
        }
        with EmulatorServer(scenario, mode="subprocess") as komoju:
            orders = [f"L{i:05d}" for i in range(1, paced + 1)] + [f"B{i:05d}" for i in range(1, burst + 1)]
            payments = [{"id": event_payment_id(o), "status": "captured", "amount": 1000, "currency": "JPY"}
                        for o in orders]  # fmt: skip
            for start in range(0, len(payments), PAYMENT_CHUNK):
                komoju.add_payments(MERCHANT_ID, payments[start : start + PAYMENT_CHUNK])
            connections = {
                "komoju_default": {"conn_type": "komoju", "host": komoju.base_url, "password": SECRET_KEY},
                "komoju_postgres": pg.airflow_connection(name),
            }
            started = time.monotonic()
            stack.prepare(connections, unpause=("komoju_cancel_process", "komoju_refund_process"))
            stack.start()
            stack.wait_serving()
            bench = EventBench(pg, name, komoju, stack)
            try:
                bench.headers = stack.headers()
                poll_until(lambda: bench.watchers() == 2, timeout=300, interval=1.0,
                           what="both watchers listening in the triggerer")  # fmt: skip
                bench.wait_quiet()  # the runs of unpausing and of the watchers' first events are over
                ready_s = time.monotonic() - started
                before = {run["dag_run_id"] for run in bench.runs()}
                rng = random.Random(args.seed)  # noqa: S311 (pacing, not secrets)
                cancellations = []
                for order_no in orders[:paced]:
                    time.sleep(rng.uniform(0, 2 * args.event_spread / paced))  # pacing the cancellations
                    cancellations.append(Cancellation(order_no, bench.cancel(CANCEL_ONE, {"o": order_no})))
                poll_until(lambda: len(bench.posts()) >= paced, timeout=600, interval=1.0,
                           what=f"the refunds of the {paced} cancelled orders at KOMOJU")  # fmt: skip
                bench.wait_quiet()
                paced_runs = [run for run in bench.runs() if run["dag_run_id"] not in before]
                burst_at = bench.cancel(CANCEL_BURST)
                poll_until(lambda: len(bench.posts()) >= paced + burst, timeout=900, interval=1.0,
                           what=f"the refunds of the {burst} orders of the burst at KOMOJU")  # fmt: skip
                bench.wait_quiet()
                known = before | {run["dag_run_id"] for run in paced_runs}
                burst_runs = [run for run in bench.runs() if run["dag_run_id"] not in known]
                posts = bench.posts()
                runs_by_id = {run["dag_run_id"]: run for run in paced_runs}
                sent_by = _attempt_runs(pg, name, orders[:paced])
                for c in cancellations:
                    c.received_at = posts[event_payment_id(c.order_no)]["received_at"]
                    c.run = runs_by_id.get(sent_by.get(c.order_no, ""))
                burst_posts = [posts[event_payment_id(o)]["received_at"] for o in orders[paced:]]
                verify_event_refunds(pg, name, komoju, orders)
            finally:
                bench.conn.close()
    finally:
        stack.stop()
        pg.drop_database(name)
    latencies = [c.latency for c in cancellations]
    p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
    print(f"\nPaced cancellations ({time.monotonic() - phase:.0f} s in all, Airflow ready after {ready_s:.0f} s; load "
          f"average {_load()}):")  # fmt: skip
    print(event_table(cancellations, paced_runs))
    print("\n" + event_breakdown(cancellations))
    refund_events = [r for r in burst_runs if (r["dag_id"], r["run_type"]) == ("komoju_refund_process",
                                                                                "asset_triggered")]  # fmt: skip
    first, last = min(burst_posts) - burst_at, max(burst_posts) - burst_at
    print(f"\nOne UPDATE cancelling {burst} paid orders of {EVENT_SITES} sites (one transaction): "
          f"{len(burst_runs)} run(s) after it ({_run_kinds(burst_runs)}); first refund at KOMOJU "
          f"{first:.1f} s after the COMMIT, the last {last:.1f} s after")  # fmt: skip
    checks.append(("p95 from the cancelling UPDATE to KOMOJU's refund POST", p95 <= TARGET_EVENT_P95_S,
                   f"{p95:.1f} s (<= {TARGET_EVENT_P95_S:g} s; p50 {p50:.1f} s)"))  # fmt: skip
    burst_ok = len(burst_runs) <= TARGET_BURST_RUNS and len(refund_events) >= 1
    checks.append((f"DAG runs made by a {burst}-row burst", burst_ok, f"{len(burst_runs)} (<= {TARGET_BURST_RUNS})"))
    raw["events"] = {
        "ready_s": ready_s,
        "latencies_s": latencies,
        "p50_s": p50,
        "p95_s": p95,
        "paced_runs": [_run_summary(r) for r in paced_runs],
        "burst_runs": [_run_summary(r) for r in burst_runs],
        "burst_first_post_s": first,
        "burst_last_post_s": last,
    }


def _attempt_runs(pg: localpg.PgServer, database: str, order_nos: list[str]) -> dict[str, str]:
    """The DAG run id whose refund attempt sent each order (komoju.attempt.run_id)."""
    conn = pg.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT order_no, run_id FROM komoju.attempt WHERE job = 'refund' AND order_no = ANY(%s)"
                        " AND attempt_no = 1", (order_nos,))  # fmt: skip
            return dict(cur.fetchall())
    finally:
        conn.close()


def verify_event_refunds(pg: localpg.PgServer, database: str, komoju: EmulatorServer, orders: list[str]) -> None:
    """Every cancelled order Refunded, with exactly one refund at KOMOJU; nothing else happened at KOMOJU."""
    conn = pg.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FILTER (WHERE komoju_refund_status = 'Refunded'), count(*) FROM komoju.orders")
            refunded, total = cur.fetchone()
    finally:
        conn.close()
    effects = Counter(e["payment_id"] for e in komoju.ledger() if e["type"] == "effect")
    expected = {event_payment_id(o) for o in orders}
    problems = []
    if (refunded, total) != (len(orders), len(orders)):
        problems.append(f"{refunded} of {total} orders Refunded (expected all {len(orders)})")
    if set(effects) != expected or any(n != 1 for n in effects.values()):
        problems.append(f"{len(effects)} payments refunded at KOMOJU, {sum(effects.values())} effects "
                        f"(expected exactly one for each of {len(expected)})")  # fmt: skip
    if problems:
        raise WrongWork("The event-driven benchmark did the wrong work:\n  " + "\n  ".join(problems))


def _run_kinds(runs: list[dict[str, Any]]) -> str:
    kinds = Counter(f"{r['dag_id'].removeprefix('komoju_').removesuffix('_process')} {r['run_type']}" for r in runs)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in ("dag_id", "dag_run_id", "run_type", "state", "run_after", "queued_at",
                                    "start_date", "end_date")}  # fmt: skip


def event_table(cancellations: list[Cancellation], runs: list[dict[str, Any]]) -> str:
    latencies = [c.latency for c in cancellations]
    headers = ["cancellations", "span s", "p50 s", "p95 s", "max s", "mean s", "min s", "runs (cancel+refund)",
               "p95 <= 15 s"]  # fmt: skip
    span = max(c.committed_at for c in cancellations) - min(c.committed_at for c in cancellations)
    p95 = _percentile(latencies, 95)
    rows = [[str(len(latencies)), f"{span:.0f}", f"{_percentile(latencies, 50):.1f}", f"{p95:.1f}",
             f"{max(latencies):.1f}", f"{statistics.mean(latencies):.1f}", f"{min(latencies):.1f}",
             f"{len(runs)} ({_run_kinds(runs)})", verdict(p95 <= TARGET_EVENT_P95_S)]]  # fmt: skip
    return table(headers, rows)


def event_breakdown(cancellations: list[Cancellation]) -> str:
    """Where a cancellation's time goes, from Airflow's view of the refund run that sent it: COMMIT -> the run's
    asset event (run_after: the notification, the watcher, the triggerer's loop) -> the run started (the scheduler)
    -> KOMOJU received the POST (resolve_sites and refund_site: two task starts under LocalExecutor, the call)."""
    own, earlier = [], []
    for c in cancellations:
        if c.run is None or c.received_at is None:
            continue
        run_after, started = _epoch(c.run.get("run_after")), _epoch(c.run.get("start_date"))
        if run_after is None or started is None:
            continue
        parts = (run_after - c.committed_at, started - run_after, c.received_at - started)
        (own if parts[0] >= 0 else earlier).append(parts)
    lines = ["Where the time goes (medians, s):"]
    if own:
        columns = list(zip(*own, strict=True))
        event, start, post = (statistics.median(column) for column in columns)
        lines.append(
            f"  {len(own)} orders sent by a run made after their COMMIT: COMMIT -> asset event {event:.1f}, -> run "
            f"started {start:.1f} (max {max(columns[1]):.1f}: waiting for the run before), -> refund POST {post:.1f}"
        )
    if earlier:
        lines.append(f"  {len(earlier)} orders picked up by a run already made when they were cancelled (its "
                     "resolve_sites read them)")  # fmt: skip
    others = len(cancellations) - len(own) - len(earlier)
    if others:
        lines.append(f"  {others} orders sent by a run that is not asset-triggered (a cron sweep)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--orders", type=int, default=2000, help="eligible orders per site (default 2000)")
    parser.add_argument("-s", "--sites", type=int, default=3, help="sites seeded; the job runs for one (default 3)")
    parser.add_argument("-l", "--latency-ms", type=float, default=20.0, help="emulator answer latency (default 20)")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="max_concurrency of the job (default 8)")
    parser.add_argument("--batch-size", type=int, help="the operator's batch_size (default: the operator's own)")
    parser.add_argument("--repeat", type=int, default=3, help="runs at C (the C=1 run is made once); the table "
                        "shows the median by wall time and every wall time is listed (default 3)")  # fmt: skip
    parser.add_argument("--skip-throughput", action="store_true", help="skip the throughput table (~1.5 min)")
    parser.add_argument("--skip-sequential", action="store_true", help="skip the C=1 run (and the speed-up)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 1k/100k memory table (~5-6 min here)")
    parser.add_argument("--memory-orders", type=int, nargs=2, default=[1000, 100_000], metavar=("SMALL", "LARGE"),
                        help="eligible orders of the two memory runs (default 1000 100000)")  # fmt: skip
    parser.add_argument("--skip-parse", action="store_true", help="skip the DAG parse table")
    parser.add_argument("--skip-idle", action="store_true", help="skip the idle and scale section (~5 min here)")
    parser.add_argument("--idle-sites", type=int, default=100, help="sites of the idle runs (default 100)")
    parser.add_argument("--idle-busy", type=int, default=3, help="of which with work (default 3)")
    parser.add_argument("--idle-orders", type=int, default=20, help="eligible orders per busy site (default 20)")
    parser.add_argument("--idle-done", type=int, default=100, help="refunded orders per site (default 100)")
    parser.add_argument(
        "--clean-attempts", type=int, default=1_000_000, help="finished attempts the clean looks at (default 1000000)"
    )
    parser.add_argument(
        "--clean-job-orders",
        type=int,
        default=300,
        help="eligible orders per busy site of the refund run beside the clean (default 300)",
    )
    parser.add_argument(
        "--clean-job-latency-ms",
        type=float,
        default=100.0,
        help="emulator latency for the run beside the clean, so it lasts (default 100)",
    )
    parser.add_argument("--clean-job-concurrency", type=int, default=2,
                        help="max_concurrency of the run beside the clean (default 2)")  # fmt: skip
    parser.add_argument(
        "--skip-events",
        action="store_true",
        help="skip the event-driven section (~9 min: Airflow started, paced cancellations, a burst)",
    )
    parser.add_argument(
        "--event-orders",
        type=int,
        default=60,
        help="paid orders cancelled one at a time, each timed to its refund (default 60)",
    )
    parser.add_argument(
        "--event-spread",
        type=float,
        default=240.0,
        help="seconds the paced cancellations are spread over, at random gaps (default 240)",
    )
    parser.add_argument(
        "--event-burst",
        type=int,
        default=1000,
        help="paid orders cancelled by the one UPDATE of the burst (default 1000)",
    )
    parser.add_argument(
        "--event-latency-ms", type=float, default=50.0, help="emulator latency in the event-driven section (default 50)"
    )
    parser.add_argument("--seed", type=int, default=16, help="seed of the paced cancellations' gaps (default 16)")
    parser.add_argument("--parse-repeats", type=int, default=21, help="timed parses per DAG file (default 21)")
    parser.add_argument("--json", type=Path, default=LOCAL / "last.json", help="where to save the raw results")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="profile each job process with py-spy (CPU of the GIL holder) into .local/bench/profile-*.svg; "
        "slows the runs, so their figures do not count",
    )
    args = parser.parse_args(argv)
    for name in ("orders", "sites", "concurrency", "repeat", "parse_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.latency_ms <= 0:
        parser.error("--latency-ms must be positive (the limit C/L needs a latency)")
    return args


def median_run(runs: list[JobRun]) -> JobRun:
    return sorted(runs, key=lambda r: r.wall_s)[(len(runs) - 1) // 2]


Checks = list[tuple[str, bool, str]]


def throughput_phase(pg: localpg.PgServer, args: argparse.Namespace, checks: Checks, raw: dict[str, Any]) -> None:
    """Table 1: the refund job at C and at C=1, N orders, latency L."""
    print(f"\n[2/5] Throughput: refund job for 1 of {args.sites} sites, {args.orders} eligible orders each")
    phase = time.monotonic()
    concurrencies = [args.concurrency] + ([] if args.skip_sequential or args.concurrency == 1 else [1])
    runs: dict[int, list[JobRun]] = {c: [] for c in concurrencies}
    for attempt in range(args.repeat):
        for c in concurrencies if attempt == 0 else concurrencies[:1]:
            label = f"c{c}-l{args.latency_ms:g}-n{args.orders}" + (f"-r{attempt + 1}" if args.repeat > 1 else "")
            runs[c].append(
                measure_job(
                    pg,
                    orders=args.orders,
                    sites=args.sites,
                    latency_ms=args.latency_ms,
                    concurrency=c,
                    batch_size=args.batch_size,
                    label=label,
                    profile=args.py_spy,
                )
            )
    chosen = [median_run(runs[c]) for c in concurrencies]
    print(f"\nThroughput (refund job, one site; {time.monotonic() - phase:.0f} s, load average {_load()}):")
    print(throughput_table(chosen))
    print("\nWhere the wall time goes (ratio = L/call x in-flight/C x window/wall; one KOMOJU call per order):")
    print(breakdown_table(chosen))
    for c in concurrencies:
        if len(runs[c]) > 1:
            walls = ", ".join(f"{r.wall_s:.2f}" for r in runs[c])
            print(f"  C={c}: wall seconds of the {len(runs[c])} runs: {walls} (median shown)")
    main_run = chosen[0]
    assert main_run.ratio is not None
    checks.append(("ratio to the limit C/L", main_run.ratio >= TARGET_RATIO, f"{main_run.ratio:.2f} (>= 0.8)"))
    if len(chosen) > 1:
        speedup = chosen[1].wall_s / main_run.wall_s
        print(f"  speed-up of C={args.concurrency} over C=1: {speedup:.2f}x")
        checks.append(("speed-up over C=1", speedup >= TARGET_SPEEDUP, f"{speedup:.2f}x (>= 6x)"))
        raw["speedup"] = speedup
    raw["throughput"] = {c: [r.__dict__ for r in runs[c]] for c in concurrencies}


def memory_phase(pg: localpg.PgServer, args: argparse.Namespace, checks: Checks, raw: dict[str, Any]) -> None:
    """Table 2: peak RSS of a run with SMALL and with LARGE eligible orders for one site, L=0."""
    small, large = args.memory_orders
    print(f"\n[3/5] Memory: {small} vs {large} eligible orders for one site, L=0, C={args.concurrency}")
    phase = time.monotonic()
    memory = [
        measure_job(
            pg,
            orders=n,
            sites=1,
            latency_ms=0.0,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            label=f"memory-n{n}",
            profile=args.py_spy,
        )
        for n in (small, large)
    ]
    ratio = memory[1].peak_rss_kib / memory[0].peak_rss_kib
    print(f"\nPeak RSS of the job process ({time.monotonic() - phase:.0f} s, load average {_load()}):")
    print(memory_table(memory))
    print(f"  peak RSS ratio {large}/{small}: {ratio:.2f}")
    checks.append((f"peak RSS {large}/{small}", ratio <= TARGET_MEMORY_RATIO, f"{ratio:.2f} (<= 1.5)"))
    raw["memory"] = [r.__dict__ for r in memory]
    raw["memory_ratio"] = ratio


def parse_phase(args: argparse.Namespace, checks: Checks, raw: dict[str, Any]) -> None:
    """Table 3: each DAG file's parse time next to an empty DAG's and an Airflow-only DAG of the same shape."""
    print(f"\n[1/5] DAG parse: DagBag(dag_folder=<file>), {args.parse_repeats} timed parses per file")
    phase = time.monotonic()
    folder = LOCAL / "empty_dag"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    empty = folder / "bench_empty_dag.py"
    empty.write_text(EMPTY_DAG, encoding="utf-8")
    same_shape = folder / "bench_same_shape_dag.py"
    same_shape.write_text(SAME_SHAPE_DAG, encoding="utf-8")
    parsed = run_worker(
        ["parse", "--repeats", str(args.parse_repeats), str(empty), str(same_shape), *map(str, DAG_FILES)],
        airflow_environment(),
        "parse",
        timeout=600,
    )
    text, parse_checks = parse_table(parsed)
    print(f"\nDAG parse times (Airflow imported first, in {parsed['import_airflow_s']:.1f} s; "
          f"{time.monotonic() - phase:.0f} s):")  # fmt: skip
    print(text)
    print(f"  parse ms: median of {args.parse_repeats} DagBag parses of the file, each in a new process forked")
    print("    from one with Airflow and the DAG files' airflow.* imports loaded, as Airflow's DAG processor does")
    print("    (the child imports the komoju modules the file names, and what Airflow loads lazily, itself);")
    print("    CPU ms: the child's CPU time")
    print("  modules imported: the same, forked after the parent imported everything the file imports")
    empty_ms = parsed["files"][0]["wall_median_s"] * 1000
    for name, wall, fast, near_empty in parse_checks:
        checks.append((f"parse {name} < 100 ms", fast, f"{wall * 1000:.1f} ms"))
        checks.append((f"parse {name} <= 2x empty DAG", near_empty, f"{wall * 1000:.1f} ms (<= 2 x {empty_ms:.1f} ms)"))
    raw["parse"] = parsed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    LOCAL.mkdir(parents=True, exist_ok=True)
    begun = time.monotonic()
    checks: Checks = []
    raw: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    print(f"komoju-airflow benchmark on {os.cpu_count()} CPUs, load average {_load()} at start")
    if not args.skip_parse:  # first, while the machine is quiet: the other phases keep both cores busy
        parse_phase(args, checks, raw)
    if not (args.skip_throughput and args.skip_memory and args.skip_idle and args.skip_events):
        with postgres() as pg:
            print(f"PostgreSQL: {pg.origin}")
            if not args.skip_throughput:
                throughput_phase(pg, args, checks, raw)
            if not args.skip_memory:
                memory_phase(pg, args, checks, raw)
            if not args.skip_idle:
                idle_phase(pg, args, checks, raw)
            if not args.skip_events:
                event_phase(pg, args, checks, raw)
    print(f"\nTargets (issues 6, 15 and 16), total time {time.monotonic() - begun:.0f} s, load average {_load()} at "
          "the end:")  # fmt: skip
    for name, met, value in checks:
        print(f"  {verdict(met):<8} {name}: {value}")
    raw["checks"] = [{"name": n, "met": m, "value": v} for n, m, v in checks]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(raw, indent=2, default=str), encoding="utf-8")
    print(f"Raw results: {_rel(args.json)}; job logs: {_rel(LOCAL / 'logs')}")
    return 1 if args.check and not all(met for _, met, _ in checks) else 0


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except WrongWork as error:
        print(f"\nFAILED: {error}", file=sys.stderr)
        sys.exit(2)
