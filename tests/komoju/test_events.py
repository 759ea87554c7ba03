"""The asset watcher's trigger (``komoju.events``) against the real status database: an event per burst of
notifications for its job, a first event when it starts listening, reconnection with back-off after the session is
terminated or while the server cannot be reached, and no secret in its serialized form or its logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from devtools.ports import free_port, poll_until
from komoju import events
from komoju.events import Backoff, Burst, Notice, OrderEventTrigger, parse_payload

HOSTED = "KOMOJU_HOSTED_PAGE"
PASSWORD = "pw-CANARY-7f3a91"


# ---------------------------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------------------------


def test_backoff_grows_to_its_cap_with_jitter_and_never_waits_zero():
    backoff, rng = Backoff(first=1.0, cap=60.0), random.Random(3)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)]:
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4, "jittered"


@pytest.mark.parametrize(
    ("payload", "notice"),
    [
        ('{"site_id": "tokyo", "job": "refund"}', Notice("refund", "tokyo")),
        ('{"job": "cancel"}', Notice("cancel", None)),
        ('{"site_id": "tokyo", "job": "ship"}', Notice(None, "tokyo")),
        ('{"site_id": 7, "job": "cancel"}', Notice("cancel", None)),
        ("tokyo", Notice()),
        ("[1, 2]", Notice()),
        ("", Notice()),
    ],
)
def test_payloads_are_read_leniently_and_an_unknown_job_concerns_both(payload, notice):
    assert parse_payload(payload) == notice
    if notice.job is None:
        assert notice.concerns("cancel")
        assert notice.concerns("refund")
    else:
        assert notice.concerns(notice.job)
        assert not notice.concerns({"cancel": "refund", "refund": "cancel"}[notice.job])


def test_an_events_payload_is_small_whatever_the_burst():
    burst = Burst()
    for n in range(250):
        burst.add(Notice("refund", f"site{n:03d}"), now=1.0)
        burst.add(Notice("refund", f"site{n:03d}"), now=1.0)
    payload = burst.payload("refund")
    assert payload["notifications"] == 500
    assert payload["site_ids"] == [f"site{n:03d}" for n in range(events.MAX_SITES_IN_EVENT)]
    assert payload["more_sites"] == 250 - events.MAX_SITES_IN_EVENT
    assert len(json.dumps(payload)) < 1000


def test_serialized_kwargs_name_the_connection_never_its_secret(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_POSTGRES", json.dumps({"conn_type": "postgres", "password": PASSWORD}))
    classpath, kwargs = OrderEventTrigger(job="refund").serialize()
    assert classpath == "komoju.events.OrderEventTrigger"
    assert kwargs == {"job": "refund", "conn_id": "komoju_postgres", "gather_seconds": 0.2, "quiet_seconds": 5.0}
    assert PASSWORD not in repr(OrderEventTrigger(**kwargs))
    from airflow.sdk._shared.module_loading import import_string

    assert import_string(classpath) is OrderEventTrigger
    with pytest.raises(ValueError, match="job must be one of"):
        OrderEventTrigger(job="ship")


def test_the_assets_follow_airflows_rules_and_are_watched_per_job():
    for job in events.JOBS:
        asset = events.order_asset(job)
        assert (asset.name, asset.uri, asset.group) == (f"komoju_orders_{job}", f"x-komoju://orders/{job}", "komoju")
        (watcher,) = asset.watchers
        assert watcher.trigger.job == job
    with pytest.raises(ValueError, match="job must be one of"):
        events.order_asset("ship")


# ---------------------------------------------------------------------------------------------------------------
# The trigger listening on the test database
# ---------------------------------------------------------------------------------------------------------------


class Watch:
    """A trigger's ``run()`` going on in a thread of its own (as in the triggerer, never interrupted between events);
    ``next(timeout)`` is the payload of its next event, or None if none came within ``timeout`` s."""

    def __init__(self, trigger: OrderEventTrigger) -> None:
        self._events: queue.Queue = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._consume(trigger),),
                                        name=f"watch-{trigger.job}", daemon=True)  # fmt: skip
        self._thread.start()

    async def _consume(self, trigger: OrderEventTrigger) -> None:
        self._task = asyncio.current_task()
        try:
            async for event in trigger.run():
                self._events.put(event.payload)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # the trigger must never end by itself: the test sees it
            self._events.put(exc)

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            found = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(found, BaseException):
            raise AssertionError("the trigger ended with an error") from found
        return found

    def close(self) -> None:
        """Cancel the trigger as the triggerer does when it stops (its connection is closed on the way out)."""
        poll_until(lambda: self._task is not None, timeout=5, what="the trigger started")
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._task.cancel)
            self._thread.join(15)
        assert not self._thread.is_alive()


@pytest.fixture
def watch() -> Callable[..., Watch]:
    started: list[Watch] = []

    def start(job: str, **kwargs: Any) -> Watch:
        started.append(Watch(OrderEventTrigger(job=job, **{"quiet_seconds": 0.5, **kwargs})))
        return started[-1]

    yield start
    for running in started:
        running.close()


@pytest.fixture
def shop(db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id) VALUES ('s1'), ('s2')")
    db.commit()

    def cancel(*order_nos: str, site: str = "s1", paid: str = "paid") -> None:
        """Orders cancelled by the storefront, in one transaction."""
        with db.cursor() as cur:
            for order_no in order_nos:
                cur.execute(
                    "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method,"
                    " komoju_payment_id) VALUES (%s, %s, 'cancelled', %s, %s, %s)",
                    (site, order_no, paid, HOSTED, f"pay{order_no}"),
                )
        db.commit()

    return cancel


def watcher_sessions(db) -> list[int]:
    with db.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
            (events.APPLICATION_NAME,),
        )
        found = [pid for (pid,) in cur.fetchall()]
    db.commit()
    return found


def test_an_event_when_listening_starts_then_one_per_notified_burst_of_its_job(watch, shop):
    refunds, cancels = watch("refund"), watch("cancel")
    assert refunds.next(10) == {"job": "refund", "reason": "listening", "notifications": 0, "site_ids": [],
                                "more_sites": 0}  # fmt: skip
    assert cancels.next(10)["reason"] == "listening"
    shop("R1")
    assert refunds.next(10) == {"job": "refund", "reason": "notified", "notifications": 1, "site_ids": ["s1"],
                                "more_sites": 0}  # fmt: skip
    assert cancels.next(1.0) is None, "a refund's notification is not the cancel job's"
    shop("C1", "C2", site="s2", paid="not_paid")
    assert cancels.next(10)["site_ids"] == ["s2"]
    assert refunds.next(1.0) is None


def test_notifications_close_together_make_one_event(watch, shop):
    refunds = watch("refund", quiet_seconds=1.5)
    assert refunds.next(10)["reason"] == "listening"
    for n in range(5):  # five transactions in a row, two sites
        shop(f"A{n}", site="s1")
        shop(f"B{n}", site="s2")
    event = refunds.next(10)
    assert (event["notifications"], event["site_ids"]) == (10, ["s1", "s2"])
    assert refunds.next(2.0) is None


def test_the_watcher_listens_again_after_its_session_is_terminated(watch, shop, db):
    refunds = watch("refund")
    assert refunds.next(10)["reason"] == "listening"
    (session,) = watcher_sessions(db)
    with db.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (session,))
    db.commit()
    assert refunds.next(15)["reason"] == "listening", "the new session reports it may have missed notifications"
    assert watcher_sessions(db) not in ([], [session])
    shop("R1")
    assert refunds.next(10)["site_ids"] == ["s1"]


def test_an_unreachable_database_is_tried_again_with_back_off_and_no_password_is_logged(
    watch, shop, monkeypatch, caplog, komoju_database
):
    good = json.loads(os.environ["AIRFLOW_CONN_KOMOJU_POSTGRES"])
    monkeypatch.setenv(
        "AIRFLOW_CONN_KOMOJU_POSTGRES", json.dumps({**good, "port": free_port(), "password": PASSWORD})
    )  # nothing listens there
    caplog.set_level(logging.INFO, logger="komoju.events")
    refunds = watch("refund")
    assert refunds.next(2.5) is None
    failures = [r.getMessage() for r in caplog.records if "Could not connect" in r.getMessage()]
    assert len(failures) >= 2, failures
    assert "Trying again in" in failures[-1]
    assert "failure 2 in a row" in failures[1]
    monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_POSTGRES", json.dumps({**good, "password": PASSWORD}))  # the server is back
    assert refunds.next(15)["reason"] == "listening"
    shop("R1")
    assert refunds.next(10)["site_ids"] == ["s1"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Listening on channel komoju_orders" in logged
    assert PASSWORD not in logged
    assert PASSWORD not in caplog.text


def test_the_watcher_never_fires_for_the_jobs_own_writes(watch, shop, db):
    refunds = watch("refund")
    assert refunds.next(10)["reason"] == "listening"
    shop("R1")
    assert refunds.next(10)["notifications"] == 1
    for status in ("Pending", "Failed", "Refunded"):
        with db.cursor() as cur:
            cur.execute("UPDATE komoju.orders SET komoju_refund_status = %s WHERE order_no = 'R1'", (status,))
        db.commit()
    assert refunds.next(1.5) is None


def test_listening_sessions_are_gone_once_the_trigger_is_closed(watch, db):
    refunds = watch("refund")
    assert refunds.next(10)["reason"] == "listening"
    assert len(watcher_sessions(db)) == 1
    refunds.close()
    poll_until(lambda: watcher_sessions(db) == [], timeout=10, what="the watcher's session closed")
