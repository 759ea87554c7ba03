"""Concurrent runs (SPEC §5; issue 5, item 2).

Two runs of the same job over the same sites at once, bypassing ``max_active_runs``: two `airflow dags test`
processes per job (refund and cancel, four processes), each with its own Airflow home, all on the same komoju
database, KOMOJU emulator and SMTP sink. They are held at a gate (a lock on ``komoju.site``, which their first task
reads) until all four wait there, then released together. One run of each pair takes the sites in one order, the
other in another (or the same), so that they meet on the same site at the same time.

No order may be processed twice: exactly one effect per order at KOMOJU, one attempt (one key) per order, each
key sent once; every order final; each final failure e-mailed once (both runs prepare and send e-mails).
"""

from __future__ import annotations

import ast
import re
from collections import Counter

import pytest
from reliability_kit import (
    DAG_IDS,
    SEED,
    DagTestProcess,
    Gate,
    already_done_order,
    check_mails,
    done_order,
    half_written,
    insert_orders,
    insert_site,
    komoju_connection,
    outcome_problems,
    rejected_order,
    rows,
    scenario,
    subprocess_environment,
    unknown_payment_order,
    unsent_failures,
)

from devtools.ports import poll_until
from devtools.smtp_sink import SmtpSink
from emulator.testing import EmulatorServer

pytestmark = pytest.mark.reliability

KEY = "sk_test_reliability_concurrent_key"
SITES = ("conc-1", "conc-2", "conc-3")
# Each job: two runs, with the sites in these orders (the refund pair starts on the same site).
RUNS = {
    "refund": (["conc-1", "conc-2", "conc-3"], ["conc-1", "conc-2", "conc-3"]),
    "cancel": (["conc-1", "conc-2", "conc-3"], ["conc-3", "conc-1", "conc-2"]),
}
ORDERS_PER_SITE = 8  # of each job
_SUMMARY = re.compile(r"Site (\S+), (cancel|refund) job: (\{.*?\}) \[")


def concurrent_orders(job: str, site_id: str) -> list:
    tag = f"{job[0].upper()}{site_id[-1]}"
    label = tag.lower()
    orders = [done_order(site_id, job, f"{tag}-{n:02d}", f"cc{label}d{n}", 100 * n) for n in range(1, ORDERS_PER_SITE)]
    return [
        *orders,
        already_done_order(site_id, job, f"{tag}-A", f"cc{label}a"),
        rejected_order(site_id, job, f"{tag}-R", f"cc{label}r"),
        unknown_payment_order(site_id, job, f"{tag}-N", f"cc{label}n"),
    ]


def summaries(output: str) -> list[dict]:
    """The per-site summaries a run logged (``Site X, refund job: {...}``)."""
    return [ast.literal_eval(found.group(3)) for found in _SUMMARY.finditer(output)]


def test_two_runs_of_each_job_at_once_never_process_an_order_twice(pg_server, make_database, make_airflow_home):
    dbname = make_database()
    orders = {job: [o for site in SITES for o in concurrent_orders(job, site)] for job in RUNS}
    payments = [o.payment for job_orders in orders.values() for o in job_orders if o.payment]
    recipients = {site: f"ops-{site}@example.com" for site in SITES}
    processes: list[DagTestProcess] = []
    with (
        EmulatorServer(scenario(payments, [KEY], seed=SEED, latency_ms=150, jitter_ms=150)) as komoju,
        SmtpSink() as sink,
    ):
        gate = Gate(lambda: pg_server.connect(dbname))
        try:
            with gate.conn.cursor() as cur:
                for site in SITES:
                    insert_site(cur, site, name=f"Concurrent {site}", emails=[recipients[site]])
                insert_orders(cur, [o for job_orders in orders.values() for o in job_orders])
            connections = {
                "komoju_postgres": pg_server.airflow_connection(dbname),
                "komoju_default": komoju_connection(komoju.base_url, KEY),
                "smtp_default": sink.airflow_connection(),
            }
            logs = make_airflow_home("concurrent-logs")
            for job, site_orders in RUNS.items():
                for n, site_ids in enumerate(site_orders):
                    home = make_airflow_home(f"concurrent-{job}-{n}")
                    conf = {"site_ids": site_ids, "max_concurrency": 2 + n}
                    processes.append(DagTestProcess(DAG_IDS[job], conf, subprocess_environment(home, connections),
                                                    logs / f"{job}-{n}.log"))  # fmt: skip
            for process in processes:  # fail early, with its output, if one cannot even start
                poll_until(lambda p=process: p.saw("starting task_id=resolve_sites") or not p.running,
                           timeout=600, what="every run starting")  # fmt: skip
                assert process.running, process.tail()
            poll_until(lambda: gate.waiting() == len(processes), timeout=120, what="every run waiting at the gate")
        finally:
            gate.open()  # all four go at once
        try:
            codes = [process.wait(300) for process in processes]
        finally:
            for process in processes:
                process.kill()

        assert codes == [0] * len(processes), "\n\n".join(p.tail(30) for p in processes)
        conn = pg_server.connect(dbname)
        try:
            ledger = komoju.ledger()
            for job, job_orders in orders.items():
                assert outcome_problems(conn, job, job_orders, ledger) == [], job
                assert half_written(conn, job, SITES) == [], job
                assert unsent_failures(conn, job, SITES) == [], job
            # one attempt (one key) per order, taken by one of the runs; each key sent once
            attempts = rows(conn, "SELECT job, site_id, order_no, count(*), count(DISTINCT run_id), min(run_id)"
                                  " FROM komoju.attempt GROUP BY 1, 2, 3")  # fmt: skip
            assert [a for a in attempts if a[3] != 1] == []
            posts = Counter(e["idempotency_key"] for e in ledger if e["type"] == "request" and e["method"] == "POST")
            assert [key for key, n in posts.items() if n != 1] == []
            assert not [e for e in ledger if e["type"] == "request" and e["replayed"]]
            by_run = Counter((job, run_id) for job, _, _, _, _, run_id in attempts)
            for site in SITES:
                finals = {o.order_no for job_orders in orders.values() for o in job_orders
                          if o.final and o.site_id == site}  # fmt: skip
                mails = check_mails(sink.messages, recipients[site], finals)
                assert mails.problems == [], site
                assert mails.duplicates == 0, site
        finally:
            conn.close()
    skipped = Counter()
    for process in processes:
        for summary in summaries(process.output()):
            skipped[summary["job"]] += summary.get("skipped_held_by_another_run", 0)
            skipped[summary["job"]] += summary.get("skipped_handled_by_another_run", 0)
    print(f"orders taken per run: {dict(by_run)}; orders one run left to the other: {dict(skipped)}")
