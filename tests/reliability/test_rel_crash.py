"""Crash at every step (SPEC §5; issue 5, item 1).

Each trial runs the refund or cancel DAG for one small site with a real ``airflow dags test`` subprocess and
kills its whole process group with SIGKILL at a seeded point, while the KOMOJU emulator answers slowly (latency and
jitter), so that calls are in flight when it dies. A normal rerun (``dag.test()`` in this process) must then
finish the site: every order final as the scenario says, exactly one effective cancel/refund per order in the
emulator's ledger, no order half-written, every final failure e-mailed in exactly one e-mail (the one counted
exception: a send the SMTP server had received just before the crash, before the send was recorded, is sent again
as the same e-mail, same Message-ID).

Kill points (the trial number picks the kind, the seed the delay and the trial's shape):

- ``task_start``: when the site task starts, plus 0-150 ms (mostly before the idempotency keys are stored);
- ``keys_stored``: once the attempts (keys) are committed, plus 0-300 ms (keys stored, calls going out);
- ``first_effect``: once KOMOJU applied the first cancel/refund, plus 0-300 ms (between call and status write);
- ``random_time``: 0-2.5 s after the site task starts;
- ``statuses_written``: as soon as the statuses are written (before the e-mail is prepared);
- ``notification``: as soon as the failure e-mail is recorded (prepared, not yet sent);
- ``smtp_data``: inside the SMTP server, once it has received the e-mail and before it answers 250.

The seeded delays are deliberate sleeps that spread the kill instants; every wait for something to happen polls
with a deadline. Each `airflow dags test` needs ~15 s of CPU to start, so trials are pipelined: the subprocesses
of the next trials start ahead, each with its own Airflow home and its own komoju database, and wait at a gate
(a lock on ``komoju.site``, which their first task reads) until their trial's orders are written.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from reliability_kit import (
    DAG_IDS,
    SEED,
    SITE_TASKS,
    DagTestProcess,
    Gate,
    Order,
    RecordingSink,
    already_done_order,
    bad_row_order,
    check_mails,
    done_order,
    half_written,
    insert_orders,
    insert_site,
    job_backends,
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
from emulator.testing import EmulatorServer

pytestmark = pytest.mark.reliability

N_TRIALS = int(os.environ.get("KOMOJU_CRASH_TRIALS", "30"))
SLOTS = int(os.environ.get("KOMOJU_CRASH_SLOTS", "3"))  # subprocesses started ahead (each its own database)
KINDS = ("task_start", "keys_stored", "first_effect", "random_time", "statuses_written", "notification", "smtp_data")
DELAYS = {"task_start": 0.15, "keys_stored": 0.3, "first_effect": 0.3, "random_time": 2.5}  # upper bounds, s
LATENCY_MS, JITTER_MS = 250, 250
SECRET = "sk_test_reliability_crash_key"
START_TIMEOUT = 300.0  # a subprocess started ahead may still be starting when its trial begins (loaded machine)

# What the state showed right after the kill (the crash's place in the run).
BEFORE_KEYS = "before any key was stored"
KEYS_NOT_SENT = "keys stored, nothing sent yet"
SENT_NO_STATUS = "calls sent, no status written"
STATUS_NO_MAIL = "statuses written, e-mail not prepared"
MAIL_NOT_SENT = "e-mail prepared, not sent"
MAIL_ACCEPTED = "e-mail received by SMTP, send not recorded"
FINISHED = "run finished before the kill"
PHASES = (BEFORE_KEYS, KEYS_NOT_SENT, SENT_NO_STATUS, STATUS_NO_MAIL, MAIL_NOT_SENT, MAIL_ACCEPTED, FINISHED)


@dataclass(frozen=True)
class Trial:
    no: int
    job: str
    site_id: str
    recipient: str
    locale: str
    orders: tuple[Order, ...]
    kill: str
    delay: float
    concurrency: int

    @property
    def dag_id(self) -> str:
        return DAG_IDS[self.job]

    @property
    def conf(self) -> dict[str, Any]:
        return {"site_ids": [self.site_id], "max_concurrency": self.concurrency}

    @property
    def finals(self) -> set[str]:
        return {o.order_no for o in self.orders if o.final}

    @property
    def payment_ids(self) -> set[str]:
        return {o.payment_id for o in self.orders if o.payment_id}

    def describe(self) -> str:
        delay = f" + {self.delay * 1000:.0f} ms" if self.delay else ""
        return (f"trial {self.no} ({self.job}, site {self.site_id}, {len(self.orders)} orders, concurrency "
                f"{self.concurrency}, kill at {self.kill}{delay})")  # fmt: skip


def plan_trial(no: int, seed: int) -> Trial:
    """Trial ``no`` of the seeded schedule: a handful of orders of every kind, a kill point and a delay."""
    rng = random.Random(f"{seed}/{no}")
    job = ("refund", "cancel")[no % 2]
    site_id, tag = f"crash-{no:02d}", f"T{no:02d}"
    label = tag.lower()
    orders = [done_order(site_id, job, f"{tag}-{i:02d}", f"{label}d{i}", rng.choice((500, 1000, 2480, 9999)))
              for i in range(1, rng.randint(3, 5) + 1)]  # fmt: skip
    orders += [
        already_done_order(site_id, job, f"{tag}-A", f"{label}a"),
        rejected_order(site_id, job, f"{tag}-R", f"{label}r"),
        unknown_payment_order(site_id, job, f"{tag}-N", f"{label}n"),
        bad_row_order(site_id, job, f"{tag}-B"),
    ]
    kill = KINDS[no % len(KINDS)]
    return Trial(no, job, site_id, f"ops-{site_id}@example.com", rng.choice(("en", "ja")), tuple(orders), kill,
                 rng.uniform(0, DELAYS.get(kill, 0.0)), rng.choice((1, 2, 3)))  # fmt: skip


@dataclass
class Slot:
    """One pipeline slot: its komoju database and Airflow home, and the subprocess waiting in it."""

    index: int
    dbname: str
    home: Path
    gate: Gate | None = None
    process: DagTestProcess | None = None
    trial: Trial | None = None


@dataclass
class TrialRecord:
    trial: Trial
    phase: str
    killed_after: float | None
    effects_unrecorded: int  # orders whose cancel/refund KOMOJU had applied while their status was unwritten
    duplicates: int = 0
    passed: bool = False


@dataclass
class CrashLab:
    pg: Any
    emulator: EmulatorServer
    sink: RecordingSink
    slots: list[Slot]
    trials: list[Trial]
    logs: Path
    records: list[TrialRecord] = field(default_factory=list)

    def slot_of(self, trial: Trial) -> Slot:
        return self.slots[trial.no % len(self.slots)]

    def prestart(self, trial: Trial) -> None:
        """Start the trial's `airflow dags test` now; it waits at its slot's gate until the trial begins."""
        slot = self.slot_of(trial)
        if slot.trial is trial:
            return
        assert slot.process is None, f"slot {slot.index} still holds trial {slot.trial and slot.trial.no}"
        slot.gate = Gate(lambda: self.pg.connect(slot.dbname))
        env = subprocess_environment(
            slot.home,
            {
                "komoju_postgres": self.pg.airflow_connection(slot.dbname),
                "komoju_default": komoju_connection(self.emulator.base_url, SECRET),
                "smtp_default": self.sink.airflow_connection(),
            },
        )
        slot.process = DagTestProcess(trial.dag_id, trial.conf, env, self.logs / f"trial-{trial.no:02d}.log")
        slot.trial = trial

    def release(self, slot: Slot) -> None:
        if slot.process is not None:
            slot.process.kill()
        if slot.gate is not None:
            slot.gate.open()
        slot.process, slot.gate, slot.trial = None, None, None

    def close(self) -> None:
        self.sink.on_message = None
        for slot in self.slots:
            self.release(slot)


@pytest.fixture(scope="module")
def lab(pg_server, make_database, make_airflow_home, tmp_path_factory):
    trials = [plan_trial(no, SEED) for no in range(N_TRIALS)]
    payments = [o.payment for t in trials for o in t.orders if o.payment]
    komoju_scenario = scenario(payments, [SECRET], seed=SEED, latency_ms=LATENCY_MS, jitter_ms=JITTER_MS)
    with (
        EmulatorServer(komoju_scenario) as emulator,
        RecordingSink() as sink,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(emulator.base_url, SECRET)))
        env.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(sink.airflow_connection()))
        slots = [Slot(i, make_database(), make_airflow_home(f"crash-slot{i}")) for i in range(SLOTS)]
        crash_lab = CrashLab(pg_server, emulator, sink, slots, trials, tmp_path_factory.mktemp("crash-logs"))
        try:
            for trial in trials[:SLOTS]:
                crash_lab.prestart(trial)
            yield crash_lab
        finally:
            crash_lab.close()


def _wait_then_kill(lab: CrashLab, trial: Trial, slot: Slot, conn: Any, ledger_mark: int) -> float | None:
    """Wait for the trial's kill point, then SIGKILL the run; seconds from the gate's opening to the kill, or
    None when the run ended on its own first."""
    process = slot.process
    assert process is not None
    opened = time.monotonic()

    def until(probe: Callable[[], bool]) -> None:
        poll_until(lambda: probe() or not process.running, timeout=START_TIMEOUT, interval=0.005,
                   what=f"{trial.kill} in {trial.describe()}")  # fmt: skip

    payments = trial.payment_ids
    if trial.kill in ("task_start", "random_time"):
        process.wait_for_line(f"starting task_id={SITE_TASKS[trial.job]}", timeout=START_TIMEOUT)
    elif trial.kill == "keys_stored":
        until(lambda: bool(rows(conn, "SELECT 1 FROM komoju.attempt WHERE site_id = %s", (trial.site_id,))))
    elif trial.kill == "first_effect":
        until(lambda: any(e["type"] == "effect" and e["payment_id"] in payments
                          for e in lab.emulator.ledger(since=ledger_mark)))  # fmt: skip
    elif trial.kill == "statuses_written":
        column = f"komoju_{trial.job}_status"
        called = [o.order_no for o in trial.orders if o.called]
        until(lambda: bool(rows(conn, f"SELECT 1 FROM komoju.orders WHERE site_id = %s AND {column} IS NOT NULL"  # noqa: S608
                                " AND order_no = ANY(%s)", (trial.site_id, called))))  # fmt: skip
    elif trial.kill == "notification":
        until(lambda: bool(rows(conn, "SELECT 1 FROM komoju.notification WHERE site_id = %s", (trial.site_id,))))
    elif trial.kill == "smtp_data":
        until(lambda: process.killed)  # the sink's hook kills it
    if not process.running:
        process.kill()  # reap
        return (time.monotonic() - opened) if process.killed else None
    if trial.delay:
        time.sleep(trial.delay)  # the seeded spread of the kill instant, not a wait for anything
    process.kill()
    return (time.monotonic() - opened) if process.killed else None


def _phase(lab: CrashLab, trial: Trial, conn: Any, ledger_mark: int) -> tuple[str, int]:
    """Where the run was when it died, read from the database, KOMOJU's ledger and the SMTP sink."""
    site = trial.site_id
    attempts = rows(conn, "SELECT count(*) FROM komoju.attempt WHERE site_id = %s", (site,))[0][0]
    column = f"komoju_{trial.job}_status"
    written = {o for (o,) in rows(conn, f"SELECT order_no FROM komoju.orders WHERE site_id = %s AND {column} IS NOT"  # noqa: S608
                                         " NULL", (site,))}  # fmt: skip
    written &= {o.order_no for o in trial.orders if o.called}  # bad rows are refused (and written) before any key
    ledger = [e for e in lab.emulator.ledger(since=ledger_mark) if e.get("payment_id") in trial.payment_ids]
    applied = {e["payment_id"] for e in ledger if e["type"] == "effect"}
    unrecorded = sum(1 for o in trial.orders if o.payment_id in applied and o.order_no not in written)
    notifications = rows(conn, "SELECT sent_at FROM komoju.notification WHERE site_id = %s", (site,))
    mails = [m for m in lab.sink.messages if trial.recipient in m.rcpt_tos]
    if not attempts and not written:
        return BEFORE_KEYS, unrecorded
    if not ledger and not written:
        return KEYS_NOT_SENT, unrecorded
    if not written:
        return SENT_NO_STATUS, unrecorded
    if not notifications:
        return STATUS_NO_MAIL, unrecorded
    if not mails:
        return MAIL_NOT_SENT, unrecorded
    if any(sent_at is None for (sent_at,) in notifications):
        return MAIL_ACCEPTED, unrecorded
    return FINISHED, unrecorded


@pytest.mark.parametrize("no", range(N_TRIALS))
def test_crash_then_rerun_finishes_every_order_exactly_once(no, lab, pg_server, run_dag, monkeypatch):
    trial = lab.trials[no]
    for ahead in lab.trials[no : no + SLOTS]:
        lab.prestart(ahead)
    slot = lab.slot_of(trial)
    assert slot.gate is not None
    assert slot.process is not None
    conn = pg_server.connect(slot.dbname)
    try:
        with slot.gate.conn.cursor() as cur:
            insert_site(cur, trial.site_id, name=f"Crash site {no}", emails=[trial.recipient], locale=trial.locale)
            insert_orders(cur, trial.orders)
        ledger_mark = max((e["seq"] for e in lab.emulator.ledger()), default=0)
        if trial.kill == "smtp_data":
            process = slot.process

            def kill_on_receipt(rcpt_tos: tuple[str, ...], message: Any) -> None:
                if trial.recipient in rcpt_tos and process.running:  # before the server answers 250 to the DATA:
                    os.killpg(process.proc.pid, signal.SIGKILL)  # the send is never recorded
                    process.killed = True

            lab.sink.on_message = kill_on_receipt
        slot.gate.open()
        try:
            killed_after = _wait_then_kill(lab, trial, slot, conn, ledger_mark)
        finally:
            lab.sink.on_message = None
        phase, unrecorded = _phase(lab, trial, conn, ledger_mark)
        record = TrialRecord(trial, phase, killed_after, unrecorded)
        lab.records.append(record)
        print(f"{trial.describe()}: killed after {killed_after and round(killed_after, 2)} s, {phase}, "
              f"{unrecorded} order(s) applied at KOMOJU with no status written")  # fmt: skip

        # the dead run's sessions are gone (its order locks with them) and KOMOJU has finished what it received
        poll_until(lambda: not job_backends(conn, slot.dbname), timeout=30, what="the killed run's sessions ending")
        poll_until(lambda: not lab.emulator.in_flight(), timeout=30, what="KOMOJU finishing in-flight calls")
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_POSTGRES", json.dumps(pg_server.airflow_connection(slot.dbname)))

        rerun = run_dag(trial.dag_id, site_ids=[trial.site_id])

        context = f"{trial.describe()}, crashed at: {phase}; subprocess log: {slot.process.log_path}"
        assert rerun.state == "success", context
        assert rerun.per_site(SITE_TASKS[trial.job])[trial.site_id].state == "success", context
        ledger = lab.emulator.ledger(since=ledger_mark)
        assert outcome_problems(conn, trial.job, trial.orders, ledger) == [], context
        for order in trial.orders:
            if order.effect is not None:
                assert lab.emulator.payment(order.payment_id)["status"] in ("cancelled", "refunded"), context
        assert half_written(conn, trial.job, [trial.site_id]) == [], context
        recorded = {o for (o,) in rows(conn, "SELECT order_no FROM komoju.final_failure WHERE site_id = %s",
                                       (trial.site_id,))}  # fmt: skip
        assert recorded == trial.finals, context
        assert unsent_failures(conn, trial.job, [trial.site_id]) == [], context
        mails = check_mails(lab.sink.messages, trial.recipient, trial.finals)
        assert mails.problems == [], context
        record.duplicates = mails.duplicates
        if phase == MAIL_ACCEPTED:  # the documented limit: received, not recorded as sent -> sent again, the same
            assert mails.duplicates == 1, f"{context}: expected the one resend of the same e-mail (Message-ID)"
        else:
            assert mails.duplicates == 0, f"{context}: an e-mail was received twice outside the documented case"
        record.passed = True
    finally:
        conn.close()
        lab.release(slot)
        following = no + SLOTS
        if following < len(lab.trials):
            lab.prestart(lab.trials[following])


def test_crash_trials_reached_every_step(lab):
    """The schedule really crashed the runs where it matters: before the keys, between KOMOJU's answer and the
    status write, and during the e-mail (prepared, and received by SMTP)."""
    records = lab.records
    phases = Counter(r.phase for r in records)
    print(f"\ncrash trials: {len(records)} (seed {SEED}), passed {sum(r.passed for r in records)}")
    for phase in PHASES:
        print(f"  {phase:<45} {phases[phase]}")
    print(f"  orders applied at KOMOJU while their status was unwritten: {sum(r.effects_unrecorded for r in records)}"
          f" (in {sum(1 for r in records if r.effects_unrecorded)} trials)")  # fmt: skip
    print(f"  e-mails received twice (same Message-ID): {sum(r.duplicates for r in records)}")
    assert len(records) == N_TRIALS
    assert all(r.passed for r in records)
    if len(KINDS) * 2 > N_TRIALS:
        pytest.skip("too few trials to require every step")
    assert sum(1 for r in records if r.killed_after is not None) >= 0.8 * N_TRIALS, phases
    for phase in (BEFORE_KEYS, SENT_NO_STATUS, MAIL_NOT_SENT, MAIL_ACCEPTED):
        assert phases[phase] >= 1, f"no trial crashed at '{phase}': {phases}"
    assert sum(1 for r in records if r.effects_unrecorded) >= 2, "too few crashes between KOMOJU's answer and the write"
