"""What the benchmark runs in a fresh process: one refund job for one site, or the DAG parse timings.

Started by ``bench/run.py`` as ``python -m bench.worker job|parse ...`` with the Airflow environment (an isolated
AIRFLOW_HOME, ``AIRFLOW_CONN_*`` JSON connections) already in place, so that Airflow reads it at first import and
each run's peak RSS (``ru_maxrss``) is that run's alone. Writes one JSON document to ``--result``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------------------------
# Database round trips, counted on the client
# ---------------------------------------------------------------------------------------------------------------

ROUND_TRIPS: Counter[str] = Counter()


def count_round_trips() -> None:
    """Make every later ``psycopg2.connect`` return a connection that counts its round trips to the server.

    psycopg2 sends ``BEGIN`` on its own before the first statement of a transaction (when not in autocommit),
    each ``execute`` is one round trip (client-side cursors fetch everything with it), and ``commit``/``rollback``
    go to the server only while a transaction is open. Connecting counts as one.
    """
    import psycopg2
    import psycopg2.extensions as ext

    class CountingCursor(ext.cursor):
        def _begin(self) -> None:
            conn = self.connection
            if not conn.autocommit and conn.status == ext.STATUS_READY:
                ROUND_TRIPS["begin"] += 1

        def execute(self, query: Any, vars: Any = None) -> Any:
            self._begin()
            ROUND_TRIPS["statement"] += 1
            return super().execute(query, vars)

        def executemany(self, query: Any, vars_list: Any) -> Any:
            vars_list = list(vars_list)
            self._begin()
            ROUND_TRIPS["statement"] += len(vars_list)
            return super().executemany(query, vars_list)

    class CountingConnection(ext.connection):
        def commit(self) -> None:
            if self.status != ext.STATUS_READY:
                ROUND_TRIPS["commit"] += 1
            super().commit()

        def rollback(self) -> None:
            if self.status != ext.STATUS_READY:
                ROUND_TRIPS["rollback"] += 1
            super().rollback()

    original = psycopg2.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("connection_factory", CountingConnection)
        kwargs.setdefault("cursor_factory", CountingCursor)
        ROUND_TRIPS["connect"] += 1
        return original(*args, **kwargs)

    psycopg2.connect = connect


class CallClock:
    """Totals over every HTTP attempt the KOMOJU hook sends (``KomojuHook._send``): count, summed duration, first
    start and last end. Constant memory, so it does not disturb the peak RSS being measured."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.count = 0
        self.busy = 0.0
        self.first: float | None = None
        self.last: float | None = None

    def install(self) -> None:
        from komoju.hooks import KomojuHook

        original = KomojuHook._send
        clock = self

        def _send(hook: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(hook, *args, **kwargs)
            finally:
                ended = time.perf_counter()
                with clock._lock:
                    clock.count += 1
                    clock.busy += ended - started
                    clock.first = started if clock.first is None else min(clock.first, started)
                    clock.last = ended if clock.last is None else max(clock.last, ended)

        KomojuHook._send = _send


def rss_kib() -> int:
    """This process's resident set size now, in KiB."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---------------------------------------------------------------------------------------------------------------
# One refund job
# ---------------------------------------------------------------------------------------------------------------


def run_job(args: argparse.Namespace) -> dict[str, Any]:
    count_round_trips()
    from komoju.operators import KomojuRefundOrdersOperator  # imports Airflow: after the environment is set

    calls = CallClock()
    calls.install()

    kwargs: dict[str, Any] = {"max_concurrency": args.concurrency}
    if args.batch_size:
        kwargs["batch_size"] = args.batch_size
    operator = KomojuRefundOrdersOperator(task_id="bench_refund_site", site_id=args.site, **kwargs)
    gc.collect()
    rss_before = rss_kib()
    peak_before = peak_rss_kib()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    summary = operator.execute(context={"run_id": args.run_id})
    wall = time.perf_counter() - started
    ended = time.perf_counter()
    cpu = _cpu_seconds() - cpu_before
    return {
        "wall_s": wall,
        "summary": summary,
        "round_trips": dict(ROUND_TRIPS),
        "rss_before_kib": rss_before,
        "peak_before_kib": peak_before,
        "peak_rss_kib": peak_rss_kib(),
        "cpu_s": cpu,
        "calls": {
            "count": calls.count,
            "busy_s": calls.busy,
            "startup_s": (calls.first - started) if calls.first is not None else None,
            "window_s": (calls.last - calls.first) if calls.first is not None and calls.last is not None else None,
            "tail_s": (ended - calls.last) if calls.last is not None else None,
        },
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------------------------
# DAG parse times
# ---------------------------------------------------------------------------------------------------------------


def run_parse(args: argparse.Namespace) -> dict[str, Any]:
    """For each file: the first ``DagBag`` parse in this process (it imports the modules the file needs), then
    ``repeats`` more with those modules imported, each after a ``gc.collect()``; Airflow itself is imported before
    anything is timed. Wall and process CPU time of each parse."""
    started = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    import_airflow_s = time.perf_counter() - started
    results = []
    for path in args.files:
        first, _, bag = _parse_once(DagBag, path)
        if bag.import_errors or not bag.dags:
            raise SystemExit(f"{path} did not parse into a DAG: {bag.import_errors or 'no DAG found'}")
        walls, cpus = [], []
        for _ in range(args.repeats):
            gc.collect()
            wall, cpu, _ = _parse_once(DagBag, path)
            walls.append(wall)
            cpus.append(cpu)
        results.append(
            {
                "file": path,
                "dag_ids": sorted(bag.dags),
                "first_s": first,
                "wall_median_s": statistics.median(walls),
                "wall_min_s": min(walls),
                "wall_max_s": max(walls),
                "cpu_median_s": statistics.median(cpus),
            }
        )
    return {"import_airflow_s": import_airflow_s, "files": results}


def _parse_once(dagbag_class: Any, path: str) -> tuple[float, float, Any]:
    cpu = time.process_time()
    started = time.perf_counter()
    bag = dagbag_class(dag_folder=path)
    return time.perf_counter() - started, time.process_time() - cpu, bag


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    sub = parser.add_subparsers(dest="what", required=True)
    job = sub.add_parser("job", help="run the refund job for one site")
    job.add_argument("--result", required=True)
    job.add_argument("--site", required=True)
    job.add_argument("--concurrency", type=int, required=True)
    job.add_argument("--batch-size", type=int)
    job.add_argument("--run-id", required=True)
    parse = sub.add_parser("parse", help="time DagBag on each file")
    parse.add_argument("--result", required=True)
    parse.add_argument("--repeats", type=int, default=5)
    parse.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    result = run_job(args) if args.what == "job" else run_parse(args)
    Path(args.result).write_text(json.dumps(result, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
