"""What the benchmark runs in a fresh process: one refund job for one site, or the DAG parse timings.

Started by ``bench/run.py`` as ``python -m bench.worker job|parse ...`` with the Airflow environment (an isolated
AIRFLOW_HOME, ``AIRFLOW_CONN_*`` JSON connections) already in place, so that Airflow reads it at first import and
each run's peak RSS (``ru_maxrss``) is that run's alone. Writes one JSON document to ``--result``.
"""

from __future__ import annotations

import argparse
import compileall
import gc
import importlib
import json
import os
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]

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
    """DagBag parse times of each file, measured the way Airflow's DAG processor parses: each parse in a new child
    process (``fork()``) of a parent that has imported Airflow, frozen its objects out of the garbage collector
    (``gc.freeze()``) and then pre-imported the ``airflow.*`` modules the DAG files import (``[dag_processor]
    parsing_pre_import_modules``), so the child imports everything else the file needs (komoju, requests,
    psycopg2, ...) itself. Then the same with those modules already imported by the parent
    (what a parse costs once imports are free). Wall and CPU time of each parse; ``repeats`` of each."""
    started = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.file import iter_airflow_imports

    import_airflow_s = time.perf_counter() - started
    # Bytecode for the project's modules and the DAG files, as an installed Airflow has it (none is timed).
    compileall.compile_dir(str(PROJECT_ROOT / "plugins"), quiet=1)
    for path in args.files:
        compileall.compile_file(path, quiet=1)
    gc.freeze()  # as DagFileProcessorManager.before_run does before its parsing loop
    for path in args.files:  # as DagFileProcessorProcess.start does for each file, after that freeze
        for module in iter_airflow_imports(path):
            importlib.import_module(module)
    fresh = {path: [_parse_in_fork(DagBag, path) for _ in range(args.repeats)] for path in args.files}
    results = []
    for path in args.files:
        bag = DagBag(dag_folder=path)  # imports what the file imports, in this process
        if bag.import_errors or not bag.dags:
            raise SystemExit(f"{path} did not parse into a DAG: {bag.import_errors or 'no DAG found'}")
        warm = [_parse_in_fork(DagBag, path) for _ in range(args.repeats)]
        results.append(
            {
                "file": path,
                "dag_ids": sorted(bag.dags),
                "wall_median_s": statistics.median(w for w, _ in fresh[path]),
                "wall_min_s": min(w for w, _ in fresh[path]),
                "wall_max_s": max(w for w, _ in fresh[path]),
                "cpu_median_s": statistics.median(c for _, c in fresh[path]),
                "imported_wall_median_s": statistics.median(w for w, _ in warm),
            }
        )
    return {"import_airflow_s": import_airflow_s, "files": results}


def _parse_once(dagbag_class: Any, path: str) -> tuple[float, float, Any]:
    cpu = time.process_time()
    started = time.perf_counter()
    bag = dagbag_class(dag_folder=path)
    return time.perf_counter() - started, time.process_time() - cpu, bag


def _parse_in_fork(dagbag_class: Any, path: str) -> tuple[float, float]:
    """One parse in a new child process; returns its wall and CPU seconds."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, report, leave without running any cleanup of the parent's
        status = 1
        try:
            os.close(read_end)
            wall, cpu, bag = _parse_once(dagbag_class, path)
            os.write(write_end, json.dumps([wall, cpu, bool(bag.dags)]).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not report:
        raise SystemExit(f"parsing {path} in a forked child failed (wait status {status})")
    wall, cpu, found = json.loads(report)
    if not found:
        raise SystemExit(f"{path} gave no DAG in a forked child")
    return wall, cpu


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
