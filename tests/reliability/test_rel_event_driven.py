"""Event-driven runs under faults (issue 16, item 6), with Airflow's four components as `make up` runs them
(devtools.airflow_stack: API server, scheduler with LocalExecutor, DAG processor, triggerer), on a throwaway
PostgreSQL cluster of the test's own (so that it can be restarted) and the KOMOJU emulator.

- The triggerer is killed (SIGKILL, with its runner) while refund orders are being cancelled and a run is going, and
  started again: no order is missed, none is refunded twice.
- A notification nobody hears (the triggerer down) only waits for the cron sweep: here the cancel DAG's schedule is
  every minute, standing in for the 30-minute one, and the order is cancelled by a *scheduled* run.
- The database restarts: the watchers reconnect, the orders cancelled before they listen again are refunded (a
  watcher that starts listening asks for a run), and later notifications still make asset-triggered runs.

Every wait polls with a deadline; the checks end with exactly one effect per payment at KOMOJU and no half-written
order (reliability_kit).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from reliability_kit import (
    Order,
    done_order,
    half_written,
    insert_orders,
    insert_site,
    komoju_connection,
    outcome_problems,
    rows,
    scenario,
)

from devtools import localpg
from devtools.airflow_stack import AirflowStack
from devtools.ports import free_port, poll_until
from emulator.testing import EmulatorServer

pytestmark = pytest.mark.reliability

KEY = "sk_test_reliability_events_key"
WATCHER = "komoju-airflow-watcher"  # komoju.events.APPLICATION_NAME
SITES = ("ev-tokyo", "ev-osaka")
DATABASE = "komoju"


def refund_orders(prefix: str, count: int) -> list[Order]:
    return [done_order(SITES[n % 2], "refund", f"{prefix}{n:02d}", f"{prefix.lower()}{n:02d}", 1000 + n)
            for n in range(count)]  # fmt: skip


def cancel_orders(prefix: str, count: int) -> list[Order]:
    return [done_order(SITES[n % 2], "cancel", f"{prefix}{n:02d}", f"{prefix.lower()}{n:02d}", 500 + n)
            for n in range(count)]  # fmt: skip


# Every order of the module, created open (not eligible) at the start; the tests cancel them.
TRIGGERER_ORDERS = {"before": refund_orders("RA", 8), "dead": refund_orders("RB", 6), "after": refund_orders("RC", 6)}
SWEEP_ORDERS = cancel_orders("CS", 2)
RESTART_ORDERS = {"reconnecting": refund_orders("RD", 4), "later": refund_orders("RE", 2)}
ALL_ORDERS = [o for group in (*TRIGGERER_ORDERS.values(), SWEEP_ORDERS, *RESTART_ORDERS.values()) for o in group]


@dataclass
class EventStack:
    """The running stack: the cluster, the emulator, Airflow, and a connection of the storefront's."""

    pg: localpg.PgServer
    komoju: EmulatorServer
    airflow: AirflowStack
    conn: Any
    headers: dict[str, str]

    def cancel(self, orders: list[Order]) -> float:
        """The storefront cancels ``orders``, one transaction each; the wall clock after the last COMMIT."""
        for order in orders:
            with self.conn.cursor() as cur:
                cur.execute("UPDATE komoju.orders SET status = 'cancelled' WHERE site_id = %s AND order_no = %s",
                            (order.site_id, order.order_no))  # fmt: skip
            self.conn.commit()
        return time.time()

    def reconnect(self) -> None:
        """The storefront's own connection again (after the database restarted)."""
        self.conn = self.pg.connect(DATABASE)

    def watchers(self) -> int:
        """The watchers' listening sessions on the status database."""
        return rows(self.conn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (WATCHER,))[0][0]

    def wait_listening(self, timeout: float = 180) -> None:
        poll_until(lambda: self.watchers() == 2, timeout=timeout, interval=0.2, what="both watchers listening")

    def wait_final(self, orders: list[Order], timeout: float = 240) -> None:
        """Until every order has the status its job must give it."""

        def final() -> bool:
            found = dict(
                ((site, order), (cancel, refund))
                for site, order, cancel, refund in rows(
                    self.conn,
                    "SELECT site_id, order_no, komoju_cancel_status, komoju_refund_status FROM komoju.orders",
                )
            )
            return all(found[(o.site_id, o.order_no)][0 if o.job == "cancel" else 1] == o.expect for o in orders)

        poll_until(final, timeout=timeout, interval=0.5, what=f"{len(orders)} orders done")

    def sent_by(self, order: Order) -> str:
        """The DAG run id of the attempt that sent ``order`` to KOMOJU."""
        ((run_id,),) = rows(self.conn, "SELECT run_id FROM komoju.attempt WHERE job = %s AND site_id = %s AND "
                                       "order_no = %s", (order.job, order.site_id, order.order_no))  # fmt: skip
        return run_id

    def asset_events(self, job: str) -> list[dict[str, Any]]:
        """The events of ``job``'s asset (``payload``: what the watcher said), oldest first."""
        url = self.airflow.url
        (asset,) = requests.get(f"{url}/api/v2/assets", params={"name_pattern": f"komoju_orders_{job}"},
                                headers=self.headers, timeout=30).json()["assets"]  # fmt: skip
        events = requests.get(f"{url}/api/v2/assets/events", params={"asset_id": asset["id"], "limit": 1000,
                              "order_by": "timestamp"}, headers=self.headers, timeout=30).json()  # fmt: skip
        return events["asset_events"]

    def listened(self) -> dict[str, int]:
        """Per job, the asset events of a watcher that had just started listening (again)."""
        return {job: sum(1 for e in self.asset_events(job) if e["extra"]["payload"]["reason"] == "listening")
                for job in ("cancel", "refund")}  # fmt: skip

    def wait_asked_again(self, before: dict[str, int], timeout: float = 120) -> None:
        """Until each watcher, listening again, has asked for a run (one more "listening" event per job)."""
        poll_until(lambda: all(n > before[job] for job, n in self.listened().items()), timeout=timeout,
                   interval=0.5, what="a 'listening' event of each watcher")  # fmt: skip

    def start_triggerer(self) -> None:
        """Start the triggerer and wait until its watchers listen and their first events are stored."""
        before = self.listened()
        self.airflow.start("triggerer")
        self.wait_listening()
        self.wait_asked_again(before)

    def assert_exactly_once(self, orders: list[Order]) -> None:
        ledger = self.komoju.ledger()
        for job in ("cancel", "refund"):
            mine = [o for o in orders if o.job == job]
            assert outcome_problems(self.conn, job, mine, ledger) == []
            assert half_written(self.conn, job, SITES) == []


def _epoch(value: str) -> float:
    """An Airflow REST timestamp as seconds since the epoch."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def stack() -> Iterator[EventStack]:
    """Started once for the module (about a minute and a half here), stopped at its end; the cluster in a folder of
    its own (not pytest's: as root, `postgres` runs it and cannot enter pytest's)."""
    from komoju import migrations

    base = Path(tempfile.mkdtemp(prefix="komoju-rel-events-"))  # Airflow's home and the components' logs
    airflow = AirflowStack(
        home=base / "airflow",
        logs=base / "logs",
        port=free_port(),
        settings={
            "KOMOJU_CANCEL_SCHEDULE": "* * * * *",  # the sweep, every minute here (every 30 by default)
            "KOMOJU_TASK_RETRIES": "1",
            "KOMOJU_RETRY_DELAY_SECONDS": "1",
        },
    )
    with contextlib.ExitStack() as cleanup:
        pg = localpg.start_throwaway(Path(tempfile.mkdtemp(prefix="komoju-rel-events-pg-")))
        cleanup.callback(print, f"event stack logs (kept): {base / 'logs'}")
        cleanup.callback(shutil.rmtree, base / "airflow", ignore_errors=True)
        cleanup.callback(pg.stop)
        pg.create_database(name=DATABASE)
        conn = pg.connect(DATABASE)
        migrations.upgrade(conn)
        with conn.cursor() as cur:
            for site in SITES:
                insert_site(cur, site)
            insert_orders(cur, [dataclasses.replace(o, status="open") for o in ALL_ORDERS])
        conn.commit()
        komoju = cleanup.enter_context(
            EmulatorServer(scenario([o.payment for o in ALL_ORDERS], [KEY], latency_ms=150), mode="subprocess")
        )
        connections = {
            "komoju_default": komoju_connection(komoju.base_url, KEY),
            "komoju_postgres": pg.airflow_connection(DATABASE),
        }
        airflow.prepare(connections, unpause=("komoju_cancel_process", "komoju_refund_process"))
        cleanup.callback(airflow.stop)
        airflow.start()
        airflow.wait_serving()
        running = EventStack(pg, komoju, airflow, conn, airflow.headers())
        cleanup.callback(lambda: running.conn.close())
        running.wait_listening()
        running.wait_asked_again({"cancel": 0, "refund": 0})
        yield running


def _refund_runs(stack: EventStack) -> list[dict[str, Any]]:
    return stack.airflow.dag_runs("komoju_refund_process", stack.headers)


def _no_run_going(stack: EventStack, dag_id: str) -> None:
    """Until ``dag_id`` has no run queued or running, and no asset event waiting to make one."""
    poll_until(lambda: not stack.airflow.busy(dag_id, stack.headers), timeout=180, interval=0.5,
               what=f"no {dag_id} run queued, running or waiting to be made")  # fmt: skip


def test_triggerer_killed_and_restarted_while_orders_are_cancelled(stack):
    """SIGKILL of the triggerer while a refund run goes and orders are being cancelled, orders cancelled while it is
    down and right after it starts again: every order refunded exactly once; those cancelled while it was down by a
    run made after the restart (the watchers, listening again, ask for one), or by a cron sweep."""
    before, dead, after = TRIGGERER_ORDERS["before"], TRIGGERER_ORDERS["dead"], TRIGGERER_ORDERS["after"]
    stack.cancel(before[:4])
    stack.wait_final(before[:4])
    stack.cancel(before[4:])
    poll_until(lambda: any(r["state"] == "running" for r in _refund_runs(stack)), timeout=120, interval=0.1,
               what="the refund run of the second orders going")  # fmt: skip
    stack.airflow.kill("triggerer")  # SIGKILL to its process group: the supervisor and its trigger runner
    poll_until(lambda: stack.watchers() == 0, timeout=60, interval=0.2, what="the watchers' sessions gone")
    _no_run_going(stack, "komoju_refund_process")  # whatever it read, that run is over: only a new run can help now
    stack.cancel(dead)  # nobody listens: these notifications are lost
    restarted = time.time()
    stack.airflow.start("triggerer")
    stack.cancel(after)  # the new triggerer may or may not listen yet
    stack.wait_final(before + dead + after)
    stack.assert_exactly_once(before + dead + after)
    listening = [e for e in stack.asset_events("refund") if e["extra"]["payload"]["reason"] == "listening"
                 and _epoch(e["timestamp"]) >= restarted]  # fmt: skip
    assert listening, stack.asset_events("refund")
    runs = {r["dag_run_id"]: r for r in _refund_runs(stack)}
    for order in dead:
        run = runs[stack.sent_by(order)]
        assert run["run_type"] == "scheduled" or (
            run["run_type"] == "asset_triggered" and _epoch(run["run_after"]) >= restarted
        ), run


def test_a_notification_nobody_heard_waits_for_the_cron_sweep(stack):
    """The triggerer down, a cancelled order's notification is lost: the next scheduled run (every minute here)
    finds it, as every run looks at every eligible order."""
    stack.airflow.kill("triggerer")
    poll_until(lambda: stack.watchers() == 0, timeout=60, interval=0.2, what="the watchers' sessions gone")
    _no_run_going(stack, "komoju_cancel_process")
    cancelled_at = stack.cancel(SWEEP_ORDERS)
    try:
        stack.wait_final(SWEEP_ORDERS, timeout=150)
        for order in SWEEP_ORDERS:
            run_id = stack.sent_by(order)
            assert run_id.startswith("scheduled__"), run_id
        events = [e for e in stack.asset_events("cancel") if _epoch(e["timestamp"]) >= cancelled_at]
        assert events == [], "no watcher ran: no asset event"
        stack.assert_exactly_once(SWEEP_ORDERS)
    finally:
        stack.start_triggerer()


def test_the_watchers_reconnect_after_the_database_restarts(stack):
    """A fast restart of the status database cuts the watchers' sessions: they connect again after their back-off
    and each asks for a run, which refunds the orders cancelled before they listened again; a later notification
    still makes an asset event naming its sites, and an asset-triggered run refunds its orders."""
    reconnecting, later = RESTART_ORDERS["reconnecting"], RESTART_ORDERS["later"]
    _no_run_going(stack, "komoju_refund_process")
    _no_run_going(stack, "komoju_cancel_process")
    before = stack.listened()
    stack.conn.close()
    stack.pg.restart()
    stack.reconnect()
    stack.cancel(reconnecting)  # at once: the watchers are most likely still waiting out their back-off
    stack.wait_listening(timeout=120)
    stack.wait_asked_again(before)
    stack.wait_final(reconnecting)
    log = (stack.airflow.logs / "triggerer.log").read_text(errors="replace")
    assert log.count("Lost the connection listening on komoju_orders") >= 2, "both watchers saw the restart"
    _no_run_going(stack, "komoju_refund_process")
    later_at = stack.cancel(later)

    def notified() -> list[dict[str, Any]]:
        return [e["extra"]["payload"] for e in stack.asset_events("refund")
                if e["extra"]["payload"]["reason"] == "notified" and _epoch(e["timestamp"]) >= later_at]  # fmt: skip

    (payload, *_) = poll_until(notified, timeout=60, interval=0.5, what="an event of the later notifications")
    assert set(payload["site_ids"]) == {o.site_id for o in later}
    stack.wait_final(later)
    stack.assert_exactly_once(reconnecting + later)
    for order in later:  # (by the run of that event, or of one still queued when they were cancelled)
        assert stack.sent_by(order).startswith("asset_triggered__")


def test_no_payment_was_touched_twice_over_the_module(stack):
    """Over every test of the module (whichever ran): each cancelled order done exactly once at KOMOJU, and
    KOMOJU never acted on an order still open."""
    cancelled = {(s, o) for s, o in rows(stack.conn, "SELECT site_id, order_no FROM komoju.orders"
                                                     " WHERE status = 'cancelled'")}  # fmt: skip
    stack.assert_exactly_once([o for o in ALL_ORDERS if (o.site_id, o.order_no) in cancelled])
    still_open = {o.payment_id for o in ALL_ORDERS if (o.site_id, o.order_no) not in cancelled}
    assert [e for e in stack.komoju.ledger() if e["type"] == "effect" and e["payment_id"] in still_open] == []
