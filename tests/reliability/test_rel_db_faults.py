"""Database faults (SPEC §3, §5; issue 5, item 4).

While a site task's calls to KOMOJU are in flight (the emulator answers slowly), a watcher kills the task's
PostgreSQL session with ``pg_terminate_backend`` (the jobs name their sessions ``komoju-airflow``), at a seeded
point: once the attempts (keys) are committed, once KOMOJU applied the first cancel/refund, or once the orders are
locked. The site task must fail, and its Airflow retry, in the same run, must finish the work: every order final,
exactly one effect per order at KOMOJU, no half-written order (a status without its attempt closed, or the
reverse), each final failure e-mailed once.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable

import pytest
from reliability_kit import (
    APPLICATION_NAME,
    DAG_IDS,
    SEED,
    SITE_TASKS,
    already_done_order,
    assert_site_finished,
    done_order,
    insert_orders,
    insert_site,
    komoju_connection,
    rejected_order,
    rows,
    scenario,
    unknown_payment_order,
)

from devtools.ports import poll_until
from emulator.testing import EmulatorServer

pytestmark = pytest.mark.reliability

KEY = "sk_test_reliability_dbfaults_key"
TRIGGERS = ("keys_stored", "first_effect", "orders_locked")
TRIALS = [(job, trigger) for trigger in TRIGGERS for job in ("refund", "cancel")]
ORDER_LOCK_CLASSES = (0x4B4D0001, 0x4B4D0002)  # komoju.store.ORDER_LOCK_CLASS: advisory locks on orders


class BackendKiller(threading.Thread):
    """Waits for ``ready()`` (polling with a deadline), then terminates the jobs' sessions on the database."""

    def __init__(self, connect: Callable, dbname: str, ready: Callable[[], bool], timeout: float = 120) -> None:
        super().__init__(name="backend-killer", daemon=True)
        self._connect, self._dbname, self._ready, self._timeout = connect, dbname, ready, timeout
        self.terminated: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            poll_until(self._ready, timeout=self._timeout, interval=0.005, what="the kill point")
            conn = self._connect()
            conn.autocommit = True
            try:
                with conn.cursor() as cur:  # first the jobs' sessions on this database, then each of them alone
                    cur.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
                        " AND pid <> pg_backend_pid()",
                        (self._dbname, APPLICATION_NAME),
                    )
                    for (pid,) in cur.fetchall():
                        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        if cur.fetchone()[0]:
                            self.terminated.append(pid)
            finally:
                conn.close()
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.mark.parametrize(("job", "trigger"), TRIALS, ids=[f"{job}-{trigger}" for job, trigger in TRIALS])
def test_session_killed_mid_batch_the_task_retry_finishes_the_work(
    job, trigger, db, pg_server, komoju_database, smtp_sink, run_dag, monkeypatch
):
    rng = random.Random(f"{SEED}/db/{job}/{trigger}")
    site_id, tag, recipient = f"dbfault-{job}", f"D{TRIGGERS.index(trigger)}", f"ops-dbfault-{job}@example.com"
    orders = [done_order(site_id, job, f"{tag}-{n:02d}", f"{tag.lower()}{job[0]}d{n}", 1000 * n) for n in range(1, 7)]
    orders += [
        already_done_order(site_id, job, f"{tag}-A", f"{tag.lower()}{job[0]}a"),
        rejected_order(site_id, job, f"{tag}-R", f"{tag.lower()}{job[0]}r"),
        unknown_payment_order(site_id, job, f"{tag}-N", f"{tag.lower()}{job[0]}n"),
    ]
    with db.cursor() as cur:
        insert_site(cur, site_id, emails=[recipient])
        insert_orders(cur, orders)
    db.commit()
    komoju_scenario = scenario([o.payment for o in orders if o.payment], [KEY], seed=SEED, latency_ms=300,
                               jitter_ms=300)  # fmt: skip
    with EmulatorServer(komoju_scenario) as komoju:
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(komoju.base_url, KEY)))
        watch = pg_server.connect(komoju_database)
        watch.autocommit = True

        def ready() -> bool:
            if trigger == "keys_stored":
                return bool(rows(watch, "SELECT 1 FROM komoju.attempt WHERE site_id = %s", (site_id,)))
            if trigger == "first_effect":
                return any(e["type"] == "effect" for e in komoju.ledger())
            # pg_locks is server-wide (other databases run the same jobs): only this database's locks count
            return bool(rows(watch, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = ANY(%s)"
                                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                             (list(ORDER_LOCK_CLASSES),)))  # fmt: skip

        killer = BackendKiller(lambda: pg_server.connect(komoju_database), komoju_database, ready)
        killer.start()
        try:
            run = run_dag(DAG_IDS[job], site_ids=[site_id], max_concurrency=rng.choice((2, 3)))
        finally:
            killer.join(130)
            watch.close()
        assert killer.error is None, killer.error
        assert killer.terminated, "no session of the jobs was there to kill"

        site_task = run.per_site(SITE_TASKS[job])[site_id]
        assert site_task.state == "success"
        assert site_task.try_number == 2, "the site task should have failed once, then its retry finished"
        assert run.state == "success"
        ledger = komoju.ledger()
        assert_site_finished(db, job, site_id, orders, ledger, smtp_sink.messages, recipient)
        # the retry resent the keys the first try had stored: one attempt per order, never a second key
        attempts = rows(db, "SELECT order_no, count(*) FROM komoju.attempt WHERE site_id = %s GROUP BY 1",
                        (site_id,))  # fmt: skip
        assert [a for a in attempts if a[1] != 1] == []
        print(f"{job}, killed at {trigger}: terminated {len(killer.terminated)} session(s); site task tries "
              f"{site_task.try_number}")  # fmt: skip
