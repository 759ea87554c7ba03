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
    from komoju import migrations

    base = Path(tempfile.mkdtemp(prefix="komoju-rel-events-"))  # not pytest's: `postgres` runs the cluster (root)
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
        pg = localpg.start_throwaway(base / "pg")
        cleanup.callback(print, f"event stack logs (kept): {base / 'logs'}")
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
        yield running


def _refund_runs(stack: EventStack) -> list[dict[str, Any]]:
    return stack.airflow.dag_runs("komoju_refund_process", stack.headers)


def test_triggerer_killed_and_restarted_while_orders_are_cancelled(stack):
    """SIGKILL of the triggerer while a refund run goes and orders keep being cancelled: every order refunded
    exactly once; those cancelled while it was dead by a run the restarted watchers asked for (or a sweep)."""
    before, dead, after = TRIGGERER_ORDERS["before"], TRIGGERER_ORDERS["dead"], TRIGGERER_ORDERS["after"]
    stack.cancel(before[:4])
    poll_until(lambda: any(r["state"] == "running" for r in _refund_runs(stack)), timeout=120, interval=0.2,
               what="a refund run going")  # fmt: skip
    stack.cancel(before[4:])
    stack.airflow.kill("triggerer")  # SIGKILL to its process group: the supervisor and its trigger runner
    poll_until(lambda: stack.watchers() == 0, timeout=60, interval=0.2, what="the watchers' sessions gone")
    stack.cancel(dead)  # nobody listens: these notifications are lost
    restarted = time.time()
    stack.airflow.start("triggerer")
    stack.cancel(after)  # the new triggerer may or may not listen yet
    stack.wait_final(before + dead + after)
    stack.assert_exactly_once(before + dead + after)
    listening = [e for e in stack.asset_events("refund") if e["extra"]["payload"]["reason"] == "listening"]
    assert any(_epoch(e["timestamp"]) >= restarted - 2 for e in listening), listening
    runs = {r["dag_run_id"]: r for r in _refund_runs(stack)}
    for order in dead:
        assert runs[stack.sent_by(order)]["run_type"] in ("asset_triggered", "scheduled")


def test_a_notification_nobody_heard_waits_for_the_cron_sweep(stack):
    """The triggerer down, a cancelled order's notification is lost: the next scheduled run (every minute here)
    finds it, as every run looks at every eligible order."""
    stack.airflow.kill("triggerer")
    poll_until(lambda: stack.watchers() == 0, timeout=60, interval=0.2, what="the watchers' sessions gone")
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
        stack.airflow.start("triggerer")
        stack.wait_listening()


def test_the_watchers_reconnect_after_the_database_restarts(stack):
    """A fast restart of the status database cuts the watchers' sessions: they connect again after their back-off;
    orders cancelled before they listen again are refunded (listening again asks for a run), and a later
    notification still makes an asset-triggered run that names its site."""
    reconnecting, later = RESTART_ORDERS["reconnecting"], RESTART_ORDERS["later"]
    poll_until(lambda: not any(r["state"] in ("queued", "running") for r in _refund_runs(stack)), timeout=120,
               interval=0.5, what="no refund run going")  # fmt: skip
    stack.conn.close()
    stack.pg.restart()
    stack.reconnect()
    stack.cancel(reconnecting)  # at once: the watchers are most likely still waiting out their back-off
    stack.wait_listening(timeout=120)
    relistened = time.time()
    later_at = stack.cancel(later)
    stack.wait_final(reconnecting + later)
    stack.assert_exactly_once(reconnecting + later)
    events = stack.asset_events("refund")
    assert any(e["extra"]["payload"]["reason"] == "listening" and _epoch(e["timestamp"]) >= relistened - 60
               for e in events), events  # fmt: skip
    notified = [e for e in events if e["extra"]["payload"]["reason"] == "notified"
                and _epoch(e["timestamp"]) >= later_at - 1]  # fmt: skip
    assert notified, events
    assert set(notified[0]["extra"]["payload"]["site_ids"]) <= set(SITES)
    log = (stack.airflow.logs / "triggerer.log").read_text(errors="replace")
    assert "Lost the connection listening on komoju_orders" in log
    runs = {r["dag_run_id"]: r for r in _refund_runs(stack)}
    assert any(r["run_type"] == "asset_triggered" and _epoch(r["run_after"]) >= later_at - 1 for r in runs.values())


def test_no_payment_was_touched_twice_over_the_module(stack):
    """Over every test of the module (whichever ran): each cancelled order done exactly once at KOMOJU, and
    KOMOJU never acted on an order still open."""
    cancelled = {(s, o) for s, o in rows(stack.conn, "SELECT site_id, order_no FROM komoju.orders"
                                                     " WHERE status = 'cancelled'")}  # fmt: skip
    stack.assert_exactly_once([o for o in ALL_ORDERS if (o.site_id, o.order_no) in cancelled])
    still_open = {o.payment_id for o in ALL_ORDERS if (o.site_id, o.order_no) not in cancelled}
    assert [e for e in stack.komoju.ledger() if e["type"] == "effect" and e["payment_id"] in still_open] == []
