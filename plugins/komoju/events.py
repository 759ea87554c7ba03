"""Event-driven runs (issue 16): orders becoming eligible, announced by PostgreSQL, start the cancel and refund DAGs.

Migration 0007's trigger on ``komoju.orders`` notifies the channel ``komoju_orders`` (payload ``{"site_id", "job"}``)
when an order becomes eligible. :class:`OrderEventTrigger`, run by Airflow's triggerer as an asset watcher, listens
on that channel of the ``komoju_postgres`` database and fires one event per burst of notifications for its job;
the event updates the job's asset (:func:`order_asset`), and the DAG, scheduled on that asset or its cron
(``AssetOrTimeSchedule``, see ``komoju.dag_support``), runs. The cron stays: a notification lost while nothing
listened only waits for the next sweep.

This module is imported when Airflow parses the DAG files: it declares the assets and the trigger and does no I/O;
psycopg (the async driver) is imported by the trigger when it runs in the triggerer.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from komoju import db

log = logging.getLogger(__name__)

JOBS = ("cancel", "refund")
CHANNEL = "komoju_orders"  # notified by migration 0007; listened to by include/sql/queries/orders_listen.sql
APPLICATION_NAME = "komoju-airflow-watcher"  # the listening sessions' name in pg_stat_activity
CLASSPATH = "komoju.events.OrderEventTrigger"  # importable by the triggerer: plugins/ is on its sys.path

GATHER_SECONDS = 0.2  # after a first notification, how long to gather the rest of its transaction's
QUIET_SECONDS = 5.0  # at most one event per job this often; notifications in between wait for the next one
PING_SECONDS = 30.0  # a round trip on a quiet listening connection this often (finds one that died silently)
PING_TIMEOUT_SECONDS = 10.0
STABLE_SECONDS = 60.0  # a connection that lived this long resets the back-off
MAX_SITES_IN_EVENT = 20  # site ids named in one event's payload (the rest are counted)
# TCP keepalives on the listening connection unless the connection's extra sets them: a peer gone without a word
# is noticed within about a minute even between pings.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
CONNECT_TIMEOUT_SECONDS = 10


def order_asset(job: str) -> Asset:
    """The asset of ``job``'s eligible orders (``x-komoju://orders/<job>``), watched by an :class:`OrderEventTrigger`
    filtered to that job. Its events are what the job's DAG is scheduled on, beside its cron."""
    if job not in JOBS:
        raise ValueError(f"job must be one of {JOBS}, got {job!r}")
    return Asset(
        name=f"komoju_orders_{job}",
        uri=f"x-komoju://orders/{job}",  # x-: a scheme of our own, which Airflow leaves as it is
        group="komoju",
        watchers=[AssetWatcher(name=f"komoju_orders_{job}_watcher", trigger=OrderEventTrigger(job=job))],
    )


@dataclass(frozen=True)
class Backoff:
    """Capped exponential back-off with jitter: after the n-th failure in a row, wait between half and all of
    ``min(cap, first * 2**(n-1))`` seconds (never zero, so a server refusing at once is not hammered; spread, so
    that watchers cut off together do not come back together)."""

    first: float = 1.0
    cap: float = 60.0

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.first * 2 ** max(0, failures - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Notice:
    """What one notification says: which job (None: any) and which site (None: not said). ``listening``: not a
    notification but the watcher (re)starting to listen, when notifications sent before may have been missed."""

    job: str | None = None
    site_id: str | None = None
    listening: bool = False

    def concerns(self, job: str) -> bool:
        return self.job is None or self.job == job


def parse_payload(payload: str) -> Notice:
    """A notification's payload read leniently: ``{"site_id": ..., "job": ...}``; anything else (an integrator's
    own trigger sending something else, an unknown job) concerns every job."""
    try:
        data = json.loads(payload)
    except ValueError:
        return Notice()
    if not isinstance(data, dict):
        return Notice()
    job = data.get("job") if data.get("job") in JOBS else None
    site_id = data.get("site_id") if isinstance(data.get("site_id"), str) else None
    return Notice(job, site_id)


@dataclass
class Burst:
    """The notices gathered for one event."""

    site_ids: set[str] = field(default_factory=set)
    notifications: int = 0
    listening: bool = False
    since: float = 0.0  # monotonic time of the first notice

    def __bool__(self) -> bool:
        return self.notifications > 0 or self.listening

    def add(self, notice: Notice, now: float) -> None:
        if not self:
            self.since = now
        if notice.listening:
            self.listening = True
            return
        self.notifications += 1
        if notice.site_id is not None:
            self.site_ids.add(notice.site_id)

    def payload(self, job: str) -> dict[str, Any]:
        """The event's payload (stored in the asset event's extra): small, and no secret."""
        named = sorted(self.site_ids)
        return {
            "job": job,
            # "listening": the watcher (re)started listening, and notifications sent before may have been missed
            "reason": "listening" if self.listening else "notified",
            "notifications": self.notifications,
            "site_ids": named[:MAX_SITES_IN_EVENT],
            "more_sites": max(0, len(named) - MAX_SITES_IN_EVENT),
        }


class OrderListener:
    """``LISTEN komoju_orders`` on the status database of Airflow connection ``conn_id`` (psycopg 3, async), kept
    open: a lost connection (database restart, terminated session, network cut) is opened again after a back-off,
    and each new start of listening is reported as a ``listening`` notice. Never raises but on cancellation."""

    def __init__(self, conn_id: str, backoff: Backoff | None = None) -> None:
        self.conn_id = conn_id
        self.backoff = backoff or Backoff()
        self.connections = 0  # successful (re)starts of listening
        self._conn: Any = None
        self._failures = 0
        self._next_attempt = 0.0  # monotonic
        self._connected_at = 0.0
        self._last_traffic = 0.0

    async def receive(self, timeout: float | None) -> list[Notice]:
        """The notices that arrive within ``timeout`` seconds (None: wait for some); an empty list at the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._conn is None:
                if await self._connect(deadline):
                    return [Notice(listening=True)]
                if deadline is not None and time.monotonic() >= deadline:
                    return []
                continue
            wait = PING_SECONDS - (time.monotonic() - self._last_traffic)
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            notices = await self._notices(max(0.0, wait))
            if notices:
                return notices
            if self._conn is not None and time.monotonic() - self._last_traffic >= PING_SECONDS:
                await self._ping()
            if deadline is not None and time.monotonic() >= deadline:
                return []

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await _close_quietly(conn)

    async def _notices(self, wait: float) -> list[Notice]:
        import psycopg

        try:
            # Never leave this loop early: notifications that came in one packet would be lost with the generator.
            received = [n async for n in self._conn.notifies(timeout=wait, stop_after=1)]
        except (psycopg.Error, OSError) as exc:
            await self._lost(exc)
            return []
        if received:
            self._last_traffic = time.monotonic()
        return [parse_payload(n.payload) for n in received]

    async def _ping(self) -> None:
        import psycopg

        from komoju.sql import query

        try:
            await asyncio.wait_for(self._conn.execute(query("orders_listen_ping")), PING_TIMEOUT_SECONDS)
            self._last_traffic = time.monotonic()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._lost(exc)

    async def _connect(self, deadline: float | None) -> bool:
        """Open the connection and LISTEN, once the back-off allows; False if the deadline comes first or it fails."""
        import psycopg

        from komoju.sql import query

        now = time.monotonic()
        if now < self._next_attempt:
            until = self._next_attempt if deadline is None else min(self._next_attempt, deadline)
            await asyncio.sleep(max(0.0, until - now))
            if time.monotonic() < self._next_attempt:
                return False
        try:
            kwargs = {**KEEPALIVES, "connect_timeout": CONNECT_TIMEOUT_SECONDS}
            kwargs.update(await db.aconnect_kwargs(self.conn_id, APPLICATION_NAME))
        except Exception as exc:  # a missing connection, a secrets backend down: all the same, try again later
            self._failed(f"Could not read the Airflow connection '{self.conn_id}' to listen for orders", exc)
            return False
        place = f"{db.where(kwargs)} (Airflow connection '{self.conn_id}')"
        try:
            conn = await psycopg.AsyncConnection.connect(**kwargs, autocommit=True)
        except (psycopg.Error, OSError) as exc:
            self._failed(f"Could not connect to the komoju status database {place} to listen for orders", exc)
            return False
        try:
            await conn.execute(query("orders_listen"))
        except (psycopg.Error, OSError) as exc:
            await _close_quietly(conn)
            self._failed(f"Could not LISTEN {CHANNEL} on the komoju status database {place}", exc)
            return False
        self._conn = conn
        self.connections += 1
        self._connected_at = self._last_traffic = time.monotonic()
        log.info("Listening on channel %s of the komoju status database %s.", CHANNEL, place)
        return True

    async def _lost(self, exc: BaseException) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)
        if time.monotonic() - self._connected_at >= STABLE_SECONDS:
            self._failures = 0
        self._failed(f"Lost the connection listening on {CHANNEL} (Airflow connection '{self.conn_id}')", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._failures += 1
        delay = self.backoff.delay(self._failures)
        self._next_attempt = time.monotonic() + delay
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("%s: %s. Trying again in %.1f s (failure %d in a row); until then the cron sweep still runs "
                    "the jobs.", what, reason, delay, self._failures)  # fmt: skip


async def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a connection being dropped: nothing to do about its close failing
        await asyncio.wait_for(conn.close(), PING_TIMEOUT_SECONDS)


class OrderEventTrigger(BaseEventTrigger):
    """Fires when orders become eligible for ``job``: one event per burst of notifications on ``komoju_orders``.

    The first notification after a quiet spell fires at once (after ``gather_seconds``, so the rest of its
    transaction comes along); later ones are gathered and fire together ``quiet_seconds`` after the previous event.
    A (re)start of listening fires too, since notifications sent before it may have been missed. Serialized as the
    job, the Airflow connection id and the two intervals: the connection (and its password) is read when it runs.
    """

    def __init__(
        self,
        *,
        job: str,
        conn_id: str = db.DEFAULT_CONN_ID,
        gather_seconds: float = GATHER_SECONDS,
        quiet_seconds: float = QUIET_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if job not in JOBS:
            raise ValueError(f"job must be one of {JOBS}, got {job!r}")
        self.job = job
        self.conn_id = conn_id
        self.gather_seconds = float(gather_seconds)
        self.quiet_seconds = float(quiet_seconds)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "job": self.job,
                "conn_id": self.conn_id,
                "gather_seconds": self.gather_seconds,
                "quiet_seconds": self.quiet_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The driver's first import takes a while: in a thread, so that the triggerer's other triggers go on.
        await asyncio.to_thread(importlib.import_module, "psycopg")
        listener = OrderListener(self.conn_id)
        burst, last_event = Burst(), float("-inf")
        try:
            while True:
                due = max(burst.since + self.gather_seconds, last_event + self.quiet_seconds) if burst else None
                timeout = None if due is None else max(0.0, due - time.monotonic())
                for notice in await listener.receive(timeout):
                    if notice.concerns(self.job):
                        burst.add(notice, time.monotonic())
                if burst and time.monotonic() >= max(burst.since + self.gather_seconds,
                                                     last_event + self.quiet_seconds):  # fmt: skip
                    payload = burst.payload(self.job)
                    log.info("Orders to %s: %s", self.job, payload)
                    yield TriggerEvent(payload)
                    burst, last_event = Burst(), time.monotonic()
        finally:
            await listener.close()
