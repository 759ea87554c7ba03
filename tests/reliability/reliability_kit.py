"""What the reliability tests share: `airflow dags test` subprocesses that can be gated and killed, orders and
payments built per trial, and the checks every scenario ends with (final statuses, exactly one effect at KOMOJU
per order, no half-written order, every final failure e-mailed once).

Nothing here waits by sleeping: every wait polls with a deadline (:func:`devtools.ports.poll_until`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit import html_body, payment, pid, table_rows

from devtools import PROJECT_ROOT
from devtools.demo import airflow_environment
from devtools.ports import poll_until
from devtools.smtp_sink import ReceivedMail, SmtpSink

# A fixed seed by default, so a failure can be replayed; KOMOJU_RELIABILITY_SEED picks another schedule.
SEED = int(os.environ.get("KOMOJU_RELIABILITY_SEED", "20261128"))
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
HOSTED = "KOMOJU_HOSTED_PAGE"
APPLICATION_NAME = "komoju-airflow"  # komoju.db.APPLICATION_NAME: how the jobs' Postgres sessions are named
# Quick retries inside the hook: a persistent 5xx costs well under a second per order; a timeout fault must be
# longer than read_timeout to be seen as one.
FAST_HOOK_EXTRA = {"backoff_base": 0.01, "max_retry_wait": 0.5, "read_timeout": 2, "max_retries": 3}
DAG_IDS = {"cancel": "komoju_cancel_process", "refund": "komoju_refund_process"}
SITE_TASKS = {"cancel": "cancel_site", "refund": "refund_site"}
DONE = {"cancel": "Cancelled", "refund": "Refunded"}
OUTCOME_OF_STATUS = {"Cancelled": "succeeded", "Refunded": "succeeded", "Rejected": "rejected", "Failed": "failed"}


def komoju_connection(base_url: str, secret_key: str, **extra: Any) -> dict[str, Any]:
    """A ``komoju`` Airflow connection (JSON form of ``AIRFLOW_CONN_*``) with quick hook retries."""
    return {"conn_type": "komoju", "host": base_url, "password": secret_key, "extra": {**FAST_HOOK_EXTRA, **extra}}


# ---------------------------------------------------------------------------------------------------------------
# Orders and payments
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """One order of a scenario and what the job must make of it.

    ``payment``: the payment KOMOJU holds (None: unknown to KOMOJU). ``expect``: the order's status after the job
    (None: never touched). ``effect``: the amount of the one cancel/refund KOMOJU must apply (None: no effect).
    ``final``: a final failure that must be e-mailed once. ``called``: KOMOJU hears of the order.
    """

    site_id: str
    order_no: str
    job: str
    payment_id: str | None
    amount: str | None = "1000"
    currency: str | None = "JPY"
    payment: dict[str, Any] | None = None
    status: str = "cancelled"
    payment_method: str | None = HOSTED
    expect: str | None = None
    effect: int | None = None
    final: bool = False
    called: bool = True

    @property
    def payment_status(self) -> str:
        return "not_paid" if self.job == "cancel" else "paid"


def done_order(site_id: str, job: str, order_no: str, label: str, amount: int) -> Order:
    """An order whose payment KOMOJU must cancel/refund once."""
    status = "pending" if job == "cancel" else "captured"
    return Order(site_id, order_no, job, pid(label), str(amount), "JPY", payment(label, status, amount),
                 expect=DONE[job], effect=amount)  # fmt: skip


def already_done_order(site_id: str, job: str, order_no: str, label: str) -> Order:
    """KOMOJU refuses (not cancellable/refundable) but shows the payment done already: the goal is reached."""
    status = "cancelled" if job == "cancel" else "refunded"
    return Order(site_id, order_no, job, pid(label), "700", "JPY", payment(label, status, 700), expect=DONE[job])


def rejected_order(site_id: str, job: str, order_no: str, label: str) -> Order:
    """KOMOJU refuses for good (captured payment for cancel, konbini for refund): Rejected, e-mailed."""
    pay = payment(label, "captured", 1500) if job == "cancel" else payment(label, "captured", 1500,
                                                                            payment_type="konbini")  # fmt: skip
    return Order(site_id, order_no, job, pid(label), "1500", "JPY", pay, expect="Rejected", final=True)


def unknown_payment_order(site_id: str, job: str, order_no: str, label: str) -> Order:
    """A well-formed payment id KOMOJU does not know: 404, Failed for good, e-mailed."""
    return Order(site_id, order_no, job, pid(label), "800", "JPY", None, expect="Failed", final=True)


def bad_row_order(site_id: str, job: str, order_no: str) -> Order:
    """A row the job must refuse without calling KOMOJU (bad payment id / unknown currency): Failed, e-mailed."""
    if job == "cancel":
        return Order(site_id, order_no, job, "not a payment id!", expect="Failed", final=True, called=False)
    return Order(site_id, order_no, job, pid(f"{order_no.lower().replace('-', '')}"), "900", "XYZ",
                 expect="Failed", final=True, called=False)  # fmt: skip


def insert_site(cur: Any, site_id: str, *, name: str | None = None, emails: Iterable[str] = (), locale: str = "en",
                conn_id: str = "komoju_default", email_enabled: bool = True) -> None:  # fmt: skip
    cur.execute(
        "INSERT INTO komoju.site (site_id, name, komoju_conn_id, notify_emails, email_locale, email_enabled)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (site_id, name, conn_id, list(emails), locale, email_enabled),
    )


def insert_orders(cur: Any, orders: Iterable[Order]) -> None:
    for o in orders:
        cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id,"
            " total_gross_price, currency) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (o.site_id, o.order_no, o.status, o.payment_status, o.payment_method, o.payment_id, o.amount, o.currency),
        )


def scenario(payments: Iterable[dict[str, Any]], secret_keys: Iterable[str], *, seed: int = 1,
             latency_ms: float = 0, jitter_ms: float = 0, faults: list | None = None) -> dict[str, Any]:  # fmt: skip
    """An emulator scenario: one merchant holding every payment, reachable with each of ``secret_keys``."""
    return {
        "description": "komoju-airflow reliability suite",
        "seed": seed,
        "settings": {"latency_ms": latency_ms, "jitter_ms": jitter_ms},
        "faults": faults or [],
        "merchants": [{"id": "merchant-rel", "keys": list(secret_keys), "payments": list(payments)}],
    }


# ---------------------------------------------------------------------------------------------------------------
# Reading back and checking
# ---------------------------------------------------------------------------------------------------------------


def rows(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one read and end its transaction (so the next read sees what others committed since)."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        found = cur.fetchall()
    conn.commit()
    return found


def job_statuses(conn: Any, job: str, site_ids: Iterable[str]) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """``{(site_id, order_no): (status, response)}`` of the job's columns."""
    column = {"cancel": "komoju_cancel", "refund": "komoju_refund"}[job]
    found = rows(
        conn,
        f"SELECT site_id, order_no, {column}_status, {column}_response FROM komoju.orders"  # noqa: S608 (fixed names)
        " WHERE site_id = ANY(%s)",
        (list(site_ids),),
    )
    return {(s, o): (status, response) for s, o, status, response in found}


def effects_by_payment(entries: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """``{payment id: [amount of each applied cancel/refund]}`` from emulator ledger entries."""
    found: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        if entry["type"] == "effect":
            found[entry["payment_id"]].append(entry["amount"])
    return dict(found)


def outcome_problems(conn: Any, job: str, orders: Iterable[Order], ledger: list[dict[str, Any]]) -> list[str]:
    """Every way the orders differ from what the job must have made of them: status, effects at KOMOJU (exactly
    one per order that needs one, none otherwise), calls to KOMOJU about orders it must never hear of."""
    orders = list(orders)
    problems = []
    statuses = job_statuses(conn, job, {o.site_id for o in orders})
    effects = effects_by_payment(ledger)
    asked = {e["payment_id"] for e in ledger if e["type"] == "request"}
    for o in orders:
        status, response = statuses[(o.site_id, o.order_no)]
        if status != o.expect:
            problems.append(f"{o.site_id}/{o.order_no}: status {status!r} ({response!r}), expected {o.expect!r}")
        got = effects.get(o.payment_id or "", [])
        want = [o.effect] if o.effect is not None else []
        if got != want:
            problems.append(f"{o.site_id}/{o.order_no}: effects at KOMOJU {got}, expected {want}")
        if not o.called and o.payment_id in asked:
            problems.append(f"{o.site_id}/{o.order_no}: KOMOJU was called about an order it must never hear of")
    return problems


def half_written(conn: Any, job: str, site_ids: Iterable[str]) -> list[str]:
    """Orders whose status and attempt history disagree: an attempt left open (but for a Pending order's, which KOMOJU
    accepted), a Pending order without that attempt, a status without its closed attempt (or of another outcome), a
    closed attempt whose order has no status, a final failure without its status."""
    site_ids = list(site_ids)
    column = {"cancel": "komoju_cancel_status", "refund": "komoju_refund_status"}[job]
    problems = []
    open_attempts = rows(
        conn,
        f"SELECT a.site_id, a.order_no, a.attempt_no, a.accepted_at IS NOT NULL, o.{column}"  # noqa: S608 (fixed column)
        " FROM komoju.attempt AS a LEFT JOIN komoju.orders AS o ON o.site_id = a.site_id AND o.order_no = a.order_no"
        " WHERE a.job = %s AND a.site_id = ANY(%s) AND a.finished_at IS NULL",
        (job, site_ids),
    )
    problems += [
        f"{s}/{o}: attempt {n} left open" for s, o, n, accepted, status in open_attempts
        if not (accepted and status == "Pending")
    ]  # fmt: skip
    pending = {(s, o) for s, o, _, accepted, status in open_attempts if accepted and status == "Pending"}
    last = rows(
        conn,
        f"SELECT o.site_id, o.order_no, o.{column}, a.outcome, f.status"  # noqa: S608 (fixed column names)
        " FROM komoju.orders AS o"
        " LEFT JOIN LATERAL (SELECT outcome FROM komoju.attempt AS a WHERE a.job = %(job)s AND a.site_id = o.site_id"
        "   AND a.order_no = o.order_no ORDER BY attempt_no DESC LIMIT 1) AS a ON true"
        " LEFT JOIN LATERAL (SELECT status FROM komoju.final_failure AS f WHERE f.job = %(job)s"
        "   AND f.site_id = o.site_id AND f.order_no = o.order_no ORDER BY attempt_no DESC LIMIT 1) AS f ON true"
        " WHERE o.site_id = ANY(%(sites)s)",
        {"job": job, "sites": site_ids},
    )
    for site_id, order_no, status, outcome, failure in last:
        where = f"{site_id}/{order_no}"
        if status == "Pending":
            if (site_id, order_no) not in pending:
                problems.append(f"{where}: Pending without an open attempt KOMOJU accepted")
            continue
        if outcome is not None and status is None:
            problems.append(f"{where}: attempt closed ({outcome}) but no status written")
        if status is not None and outcome is None and failure is None:
            problems.append(f"{where}: status {status} written without any attempt or final failure")
        allowed = {OUTCOME_OF_STATUS.get(status), *(("transient",) if status == "Failed" else ())}
        if status is not None and outcome is not None and outcome not in allowed:
            problems.append(f"{where}: status {status} but its last attempt's outcome is {outcome}")
        if failure is not None and status != failure:
            problems.append(f"{where}: final failure {failure} recorded but the status is {status}")
    return problems


def mailed_rows(mail: ReceivedMail) -> list[list[str]]:
    """The table rows of a failure e-mail: [order number, amount, status, reason]."""
    return table_rows(html_body(mail))


def mailed_orders(mail: ReceivedMail) -> tuple[str, ...]:
    return tuple(sorted(row[0] for row in mailed_rows(mail)))


@dataclass
class MailCheck:
    """The e-mails one recipient received, checked against the final failures they must carry."""

    problems: list[str] = field(default_factory=list)
    duplicates: int = 0  # extra copies of one e-mail (same Message-ID, same orders)
    mails: int = 0


def check_mails(messages: Iterable[ReceivedMail], recipient: str, finals: Iterable[str]) -> MailCheck:
    """Each final failure in exactly one e-mail (one Message-ID); a Message-ID received more than once must be
    the very same e-mail (same orders) — the counted exception of a send accepted just before a crash."""
    check = MailCheck()
    by_id: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for mail in messages:
        if recipient not in mail.rcpt_tos:
            continue
        check.mails += 1
        by_id[str(mail.message["Message-ID"])].append(mailed_orders(mail))
    for message_id, copies in by_id.items():
        if len(set(copies)) != 1:
            check.problems.append(f"Message-ID {message_id} received with different orders: {copies}")
        check.duplicates += len(copies) - 1
    carried = Counter(order for copies in by_id.values() for order in copies[0])
    finals = set(finals)
    for order in sorted(finals):
        if carried[order] == 0:
            check.problems.append(f"final failure {order} missing from the e-mails to {recipient}")
        elif carried[order] > 1:
            check.problems.append(f"final failure {order} sent in {carried[order]} different e-mails")
    check.problems += [f"order {o} e-mailed but not a final failure" for o in sorted(set(carried) - finals)]
    return check


def assert_site_finished(
    conn: Any, job: str, site_id: str, orders: list[Order], ledger: list[dict[str, Any]],
    messages: Iterable[ReceivedMail], recipient: str, context: str = "",
) -> None:  # fmt: skip
    """The end state every single-site scenario checks: each order as expected with exactly one effect, none
    half-written, the final failures recorded and each e-mailed once to ``recipient``."""
    problems = outcome_problems(conn, job, orders, ledger)
    assert problems == [], f"{context}: {problems}"
    assert half_written(conn, job, [site_id]) == []
    finals = {o.order_no for o in orders if o.final}
    recorded = {o for (o,) in rows(conn, "SELECT order_no FROM komoju.final_failure WHERE site_id = %s",
                                   (site_id,))}  # fmt: skip
    assert recorded == finals
    assert unsent_failures(conn, job, [site_id]) == []
    mails = check_mails(messages, recipient, finals)
    assert mails.problems == []
    assert mails.duplicates == 0


def unsent_failures(conn: Any, job: str, site_ids: Iterable[str]) -> list[tuple[str, str]]:
    """Final failures of sites with e-mails on that were not (recorded as) e-mailed."""
    return rows(
        conn,
        "SELECT f.site_id, f.order_no FROM komoju.final_failure AS f"
        " JOIN komoju.site AS s ON s.site_id = f.site_id"
        " LEFT JOIN komoju.notification AS n ON n.notification_id = f.notification_id"
        " WHERE f.job = %s AND f.site_id = ANY(%s) AND s.email_enabled AND s.notify_emails <> '{}'"
        " AND n.sent_at IS NULL",
        (job, list(site_ids)),
    )


def job_backends(conn: Any, dbname: str) -> list[int]:
    """Process ids of the jobs' Postgres sessions on ``dbname`` (other than ours)."""
    return [
        pid_
        for (pid_,) in rows(
            conn,
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            (dbname, APPLICATION_NAME),
        )
    ]


# ---------------------------------------------------------------------------------------------------------------
# `airflow dags test` in a subprocess
# ---------------------------------------------------------------------------------------------------------------


def subprocess_environment(home: Path, connections: dict[str, dict[str, Any]], **extra: str) -> dict[str, str]:
    """The environment of an `airflow dags test` with its own Airflow home and these connections (by id)."""
    env = airflow_environment(home)  # the caller's AIRFLOW_* and KOMOJU_* settings are left out
    env.pop("PYTHONPYCACHEPREFIX", None)  # use the installed bytecode: a fresh cache would cost every start
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "KOMOJU_TASK_RETRIES": "1",
            "KOMOJU_RETRY_DELAY_SECONDS": "0.2",
            "KOMOJU_BATCH_SIZE": "2",  # batches of 2: crashes also land while two batches are in the pipeline
            **extra,
        }
    )
    for conn_id, conn in connections.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return env


class DagTestProcess:
    """``airflow dags test DAG -c CONF`` in its own process group, its output read as it comes (and saved).

    ``kill()`` sends SIGKILL to the whole group: the run dies at whatever instruction it was executing.
    """

    def __init__(self, dag_id: str, conf: dict[str, Any], env: dict[str, str], log_path: Path) -> None:
        self.dag_id = dag_id
        self.log_path = log_path
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.killed = False
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [AIRFLOW_BIN, "dags", "test", dag_id, "-c", json.dumps(conf)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that the kill reaches anything it started
        )
        self._reader = threading.Thread(target=self._read, name=f"dags-test-{self.proc.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("wb") as log:
            for raw in self.proc.stdout:
                log.write(raw)
                log.flush()
                with self._lock:
                    self._lines.append(raw.decode("utf-8", errors="replace"))

    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def saw(self, text: str) -> bool:
        with self._lock:
            return any(text in line for line in self._lines)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for_line(self, text: str, timeout: float) -> None:
        """Until a line contains ``text``; fails early, with the output, if the process ends without it."""

        def probe() -> bool:
            if self.saw(text):
                return True
            if not self.running:
                self._reader.join(5)
                if self.saw(text):
                    return True
                raise AssertionError(f"`dags test` ended (exit {self.proc.returncode}) before {text!r}:\n"
                                     f"{self.tail()}")  # fmt: skip
            return False

        poll_until(probe, timeout=timeout, what=f"{text!r} in the output of `airflow dags test {self.dag_id}`",
                   interval=0.005)  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the process group (if the run is still going) and reap it."""
        if self.running:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.killed = True
            except ProcessLookupError:
                pass
        self.proc.wait(30)
        self._reader.join(10)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def tail(self, lines: int = 60) -> str:
        return "".join(self.output().splitlines(keepends=True)[-lines:])


class Gate:
    """Holds back every `airflow dags test` of one database at its first read of ``komoju.site`` (the
    ``resolve_sites`` task), so that its slow start-up can happen ahead of time, or so that several start
    together: an ACCESS EXCLUSIVE lock on ``komoju.site`` held in an open transaction until :meth:`open`.

    The gate's own connection (``conn``) may write sites and orders before opening: they appear at once.
    """

    def __init__(self, connect: Callable[[], Any]) -> None:
        self.conn = connect()
        self._watch = connect()
        self._watch.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLE komoju.site IN ACCESS EXCLUSIVE MODE")
            cur.execute("SELECT 'komoju.site'::regclass::oid")
            (self._site_oid,) = cur.fetchone()

    def waiting(self) -> int:
        """How many sessions are blocked at the gate right now."""
        with self._watch.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = %s AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (self._site_oid,),
            )
            return cur.fetchone()[0]

    def open(self) -> None:
        """Commit what the gate's connection wrote and let every waiting run through."""
        if self.conn.closed:
            return
        self.conn.commit()
        self.conn.close()
        self._watch.close()

    close = open


class RecordingSink(SmtpSink):
    """The SMTP sink, calling ``on_message(rcpt_tos, message)`` once a message is received, before the server
    answers 250 to it (the client is still waiting for its reply)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_message: Callable[[tuple[str, ...], Any], None] | None = None

    def _keep(self, mail_from, rcpt_tos, message, raw) -> None:  # type: ignore[no-untyped-def]
        super()._keep(mail_from, rcpt_tos, message, raw)
        hook = self.on_message
        if hook is not None:
            hook(tuple(rcpt_tos), message)


# ---------------------------------------------------------------------------------------------------------------
# A KOMOJU that answers oddly
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OddAnswer:
    """What the odd KOMOJU answers about one payment: status, content type, raw body, extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, value: Any) -> OddAnswer:
        return cls(status, json.dumps(value).encode())


class OddKomoju:
    """A tiny HTTP server standing in for KOMOJU, for bodies the emulator cannot produce: ``answers`` maps a
    payment id to its answer for ``POST .../{cancel,refund}``, ``get_answers`` to its ``GET /payments/{id}``.
    An answer may be a callable ``(request headers) -> OddAnswer`` (to echo what the client sent). Every request
    is recorded (method, path, headers)."""

    def __init__(self, answers: dict[str, Any], get_answers: dict[str, Any] | None = None) -> None:
        import http.server

        self.answers, self.get_answers = answers, get_answers or {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        odd = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                odd.requests.append((method, self.path, dict(self.headers)))
                parts = self.path.split("/")  # /api/v1/payments/{id}[/action] or /api/v1/payment_methods
                table = odd.answers if method == "POST" else odd.get_answers
                answer = table.get(parts[4] if len(parts) > 4 else parts[-1], OddAnswer.json(404, {"error": {
                    "code": "not_found", "message": "unknown"}}))  # fmt: skip
                if callable(answer):
                    answer = answer(dict(self.headers))
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            def do_POST(self) -> None:
                self._answer("POST")

            def do_GET(self) -> None:
                self._answer("GET")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="odd-komoju", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OddKomoju:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
