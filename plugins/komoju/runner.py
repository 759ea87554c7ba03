"""What the KOMOJU operators do when their task runs: sync one site's payment methods, and one site's run of
the cancel or refund job, exactly once per order.

Kept apart from :mod:`komoju.operators`, which Airflow imports each time it parses the DAG files: this module
and what it imports (the hook and requests, the store and psycopg2, the decisions) load only in a running task.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg2
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from komoju import db, store
from komoju.errors import KomojuAPIError
from komoju.hooks import KomojuHook
from komoju.outcomes import RESPONSE_MAX_CHARS, CallResult, Decision, Job, decide
from komoju.planning import Action, Plan, key_still_kept, plan
from komoju.text import sanitise

DRY_RUN_SAMPLE = 20


def _site_or_fail(conn: Any, site_id: str) -> store.Site:
    try:
        (site,) = store.resolve_scope(conn, [site_id])
    except store.ScopeError as exc:
        raise AirflowFailException(str(exc)) from exc
    return site


def _auth_failure(site: store.Site, conn_id: str, error: KomojuAPIError) -> AirflowFailException:
    return AirflowFailException(
        f"Site '{site.site_id}': KOMOJU refused the secret key of Airflow connection '{conn_id}' "
        f"(HTTP {error.status} {error.code or ''}). No order of this site was changed. Fix the secret key in that "
        "connection (password field), then clear this task to run the site again."
    )


def sync_payment_methods(operator: Any) -> dict[str, Any]:
    """The body of ``KomojuSyncPaymentMethodsOperator.execute``."""
    conn = db.connect(operator.postgres_conn_id)
    try:
        site = _site_or_fail(conn, operator.site_id)
        hook = KomojuHook(site.komoju_conn_id)
        try:
            items = hook.list_payment_methods()
        except KomojuAPIError as error:
            if error.auth_failure:
                raise _auth_failure(site, site.komoju_conn_id, error) from None
            raise AirflowException(
                f"Site '{site.site_id}': could not read payment methods from KOMOJU: {error} "
                "Nothing was changed; Airflow retries this site."
            ) from None
        finally:
            hook.close()
        counts = store.sync_payment_methods(conn, site.site_id, items)
    finally:
        conn.close()
    operator.log.info(
        "Site %s: %d payment methods added, %d refreshed, %d no longer offered by KOMOJU, %d unusable ignored",
        site.site_id,
        counts.added,
        counts.refreshed,
        counts.vanished,
        counts.ignored,
    )
    return {"site_id": site.site_id, **counts.__dict__}


@dataclass(frozen=True)
class _Outcome:
    """What happened to one planned call.

    ``decision`` is None when KOMOJU gave no usable answer: ``sent`` False means nothing reached KOMOJU or it
    refused the key before looking (the try is taken back); ``sent`` True means the outcome is unknown (the
    attempt stays open and its key is resent later).
    """

    plan: Plan
    decision: Decision | None
    result: CallResult | None
    sent: bool = True


@dataclass
class _Batch:
    """One batch of a site's orders: the order locks it holds, the orders to work on, their calls once sent."""

    locked: list[str]
    orders: list[store.EligibleOrder]
    calls: list[Future[_Outcome]] = field(default_factory=list)
    payments: set[str] = field(default_factory=set)  # the payment ids of those calls


class _StopSignal:
    """Shared by the call threads: stop sending once the site must stop (auth failure, transient streak)."""

    def __init__(self, streak_limit: int) -> None:
        self._lock = threading.Lock()
        self._streak = 0
        self.streak_limit = streak_limit
        self.auth_error: KomojuAPIError | None = None
        self.last_transient: str | None = None
        self.event = threading.Event()

    def record(self, decision: Decision, result: CallResult, error: KomojuAPIError | None) -> None:
        with self._lock:
            if decision.abort_site:
                self.auth_error = error
                self.event.set()
            elif decision.transient:
                self._streak += 1
                self.last_transient = result.describe()
                if self._streak >= self.streak_limit:
                    self.event.set()
            else:
                self._streak = 0

    @property
    def streak_tripped(self) -> bool:
        return self.event.is_set() and self.auth_error is None


class SiteOrdersRun:
    """One site's run of the cancel or refund job, for ``_KomojuOrdersOperator.execute``.

    For every batch of eligible orders (keyset order): take each order's advisory lock (orders held by a
    concurrent run are skipped), re-read them (skipping any a concurrent run just worked on), commit each new
    attempt's idempotency key (or one more try of an open attempt, resent with its own key), call KOMOJU on a
    bounded thread pool, and write attempts, statuses and final failures in one transaction. The next batch is
    prepared while the calls of the one before are in flight.
    """

    def __init__(self, operator: Any) -> None:
        self.job = Job(operator.job)
        self.site_id: str = operator.site_id
        self.batch_size: int = operator.batch_size
        self.transient_streak: int = operator.transient_streak
        self.postgres_conn_id: str = operator.postgres_conn_id
        self.log = operator.log

    def execute(self, *, max_attempts: int, concurrency: int | None, dry_run: bool, run_id: str) -> dict[str, Any]:
        conn = db.connect(self.postgres_conn_id)
        try:
            site = _site_or_fail(conn, self.site_id)
            counts: Counter[str] = Counter()
            counts["without_payment_id"] = store.orders_without_payment_id(conn, self.job.value, site.site_id)
            if dry_run:
                summary = self._dry_run(conn, site, max_attempts, counts)
            else:
                summary = self._run(conn, site, run_id, max_attempts, concurrency, counts)
        finally:
            conn.close()  # also releases any order lock still held
        self.log.info("Site %s, %s job: %s", self.site_id, self.job.value, summary)
        return summary

    def _summary(self, site: store.Site, counts: Counter[str], **extra: Any) -> dict[str, Any]:
        return {"site_id": site.site_id, "job": self.job.value, **dict(sorted(counts.items())), **extra}

    # ------------------------------------------------------------------------------------------ dry run

    def _dry_run(self, conn: Any, site: store.Site, max_attempts: int, counts: Counter[str]) -> dict[str, Any]:
        sample: list[str] = []
        now = _now()
        after: str | None = None
        while batch := store.eligible_orders(conn, self.job.value, site.site_id, after=after, limit=self.batch_size):
            after = batch[-1].order_no
            for order in batch:
                step = plan(self.job, site.site_id, order, max_attempts=max_attempts, now=now)
                counts[f"would_{step.action.value}"] += 1
                self.log.info(
                    "[dry run] site %s order %s: would %s (attempt %d, try %d)%s",
                    site.site_id,
                    order.order_no,
                    step.action.value,
                    step.attempt_no,
                    step.try_no,
                    f": {step.reason}" if step.reason else "",
                )
                if len(sample) < DRY_RUN_SAMPLE:
                    sample.append(order.order_no)
        conn.rollback()
        return self._summary(site, counts, dry_run=True, sample_orders=sample)

    # ------------------------------------------------------------------------------------------ real run

    def _run(
        self,
        conn: Any,
        site: store.Site,
        run_id: str,
        max_attempts: int,
        concurrency: int | None,
        counts: Counter[str],
    ) -> dict[str, Any]:
        hook = KomojuHook(site.komoju_conn_id, max_concurrency=concurrency)
        concurrency = hook.settings.max_concurrency  # the parameter, else the connection's extra, else 8
        stop = _StopSignal(self.transient_streak)
        batches = self._batches(conn, site, run_id, counts, first=2 * concurrency)
        held: list[_Batch] = []  # at most two: one whose calls are in flight, the next one being prepared
        try:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"komoju-{site.site_id}") as pool:
                try:
                    # Pipelined: while one batch's calls are in flight, the next batch is read, locked and its
                    # keys committed, so the calls never wait for the database between batches.
                    while not stop.event.is_set():
                        batch = next(batches, None)
                        if batch is not None:
                            busy = held[-1].payments if held else set()  # the batch whose calls are in flight
                            held.append(batch)
                            self._start(conn, hook, pool, site, run_id, batch, busy, max_attempts, stop, counts)
                        if len(held) == 2 or (batch is None and held):
                            self._finish(conn, site, held.pop(0), counts)
                        if batch is None and not held:
                            break
                    while held:  # stopped: what was sent is written, what was not is taken back
                        self._finish(conn, site, held.pop(0), counts)
                except BaseException:
                    stop.event.set()  # calls still queued are not sent
                    raise
                finally:
                    for batch in held:
                        _release(conn, self.job.value, site.site_id, batch.locked)
        finally:
            hook.close()
        if stop.auth_error is not None:
            raise AirflowFailException(
                f"Site '{site.site_id}': KOMOJU refused the secret key of Airflow connection "
                f"'{site.komoju_conn_id}' (HTTP {stop.auth_error.status} {stop.auth_error.code or ''}). The refused "
                f"calls changed nothing; {counts['succeeded']} order(s) were finished earlier in this run. Fix the "
                "secret key in that connection (password field), then clear this task to run the site again."
            )
        if stop.streak_tripped:
            raise AirflowException(
                f"Site '{site.site_id}': {stop.streak_limit} KOMOJU calls in a row failed transiently (last: "
                f"{stop.last_transient}). Stopped early: {counts['succeeded']} order(s) done in this try, the others "
                "left for the retry (calls not sent are not counted against their attempts). Airflow retries this "
                f"site; if it keeps failing, check KOMOJU's status and the connection '{site.komoju_conn_id}'."
            )
        return self._summary(site, counts, dry_run=False)

    def _batches(
        self, conn: Any, site: store.Site, run_id: str, counts: Counter[str], *, first: int
    ) -> Iterator[_Batch]:
        """The site's eligible orders in keyset batches, each locked and re-read under its locks; batches whose
        orders are all held or just handled by a concurrent run are skipped. The first batch holds at most
        ``first`` orders, so that the calls start while the next, full batch is prepared."""
        after: str | None = None
        limit = min(first, self.batch_size)
        while True:
            batch = store.eligible_orders(conn, self.job.value, site.site_id, after=after, limit=limit, run_id=run_id)
            limit = self.batch_size
            conn.rollback()
            if not batch:
                return
            after = batch[-1].order_no
            locked = store.lock_orders(conn, self.job.value, site.site_id, [o.order_no for o in batch])
            counts["skipped_held_by_another_run"] += len(batch) - len(locked)
            if not locked:
                continue
            try:
                # Re-read under the locks: a concurrent run may have worked on some of them meanwhile.
                fresh = store.eligible_orders(
                    conn, self.job.value, site.site_id, order_nos=locked, limit=len(locked), run_id=run_id
                )
                conn.rollback()
            except BaseException:
                _release(conn, self.job.value, site.site_id, locked)
                raise
            orders = _untouched_since(batch, fresh)
            counts["skipped_handled_by_another_run"] += len(locked) - len(orders)
            yield _Batch(locked, orders)

    def _start(
        self,
        conn: Any,
        hook: KomojuHook,
        pool: ThreadPoolExecutor,
        site: store.Site,
        run_id: str,
        batch: _Batch,
        busy_payments: set[str],
        max_attempts: int,
        stop: _StopSignal,
        counts: Counter[str],
    ) -> None:
        """Plan the batch's orders, settle what must be settled, commit the new keys, then submit the calls."""
        now = _now()
        writes = _Writes(self.job)
        calls: list[Plan] = []
        settle: list[Plan] = []
        payments: set[str] = set(busy_payments)
        for order in batch.orders:
            if order.payment_id in payments:  # two orders naming one payment: never both in flight
                counts["deferred_same_payment"] += 1
                continue
            payments.add(order.payment_id)
            _route(
                plan(self.job, site.site_id, order, max_attempts=max_attempts, now=now), calls, settle, writes, counts
            )
        calls.extend(self._settle(hook, site, settle, max_attempts, now, stop, writes, counts))
        if writes.pending:  # settled attempts are closed before new attempts for the same orders start
            writes.commit(conn, site.site_id)
        if stop.event.is_set() or not calls:
            return
        store.start_attempts(
            conn,
            self.job.value,
            site.site_id,
            run_id,
            new=[
                {
                    "order_no": s.order.order_no,
                    "attempt_no": s.attempt_no,
                    "payment_id": s.order.payment_id,
                    "idempotency_key": s.idempotency_key,
                }
                for s in calls
                if s.new_attempt
            ],
            resent=[{"order_no": s.order.order_no, "attempt_no": s.attempt_no} for s in calls if not s.new_attempt],
        )
        batch.payments = {step.order.payment_id for step in calls}
        batch.calls = [pool.submit(self._call, hook, step, max_attempts, stop) for step in calls]

    def _finish(self, conn: Any, site: store.Site, batch: _Batch, counts: Counter[str]) -> None:
        """Wait for the batch's calls, write their results in one transaction, release its orders."""
        writes = _Writes(self.job)
        for call in batch.calls:
            outcome = call.result()
            writes.add(outcome)
            counts[_count_name(outcome)] += 1
            if outcome.decision is not None and outcome.decision.final:
                counts["final_failures"] += 1
        if writes.pending:
            writes.commit(conn, site.site_id)
        _release(conn, self.job.value, site.site_id, batch.locked)
        batch.locked = []

    def _call(self, hook: KomojuHook, step: Plan, max_attempts: int, stop: _StopSignal) -> _Outcome:
        """One order's POST (and payment check when KOMOJU refuses); runs on the pool, touches no database."""
        if stop.event.is_set():
            return _Outcome(step, None, None, sent=False)
        if not step.new_attempt and not key_still_kept(step.order.open_started_at, _now()):
            return _Outcome(step, None, None, sent=False)  # the key aged meanwhile: settled by GET next run
        order = step.order
        action = hook.cancel_payment if self.job is Job.CANCEL else hook.refund_payment
        try:
            result, error = _call_result(lambda: action(order.payment_id, step.idempotency_key))
            decision = decide(self.job, result, attempt_no=step.try_no, max_attempts=max_attempts)
            if decision.check_payment:
                check, _ = _call_result(lambda: hook.get_payment(order.payment_id))
                decision = decide(self.job, result, attempt_no=step.try_no, max_attempts=max_attempts, check=check)
        except Exception:  # the POST may have gone out: the attempt stays open and its key is resent later
            self.log.exception(
                "Site %s order %s: unexpected error around the KOMOJU call", self.site_id, order.order_no
            )
            return _Outcome(step, None, None, sent=True)
        stop.record(decision, result, error)
        if decision.abort_site:
            return _Outcome(step, None, result, sent=False)  # refused before KOMOJU looked: nothing happened
        return _Outcome(step, decision, result)

    def _settle(
        self,
        hook: KomojuHook,
        site: store.Site,
        steps: list[Plan],
        max_attempts: int,
        now: dt.datetime,
        stop: _StopSignal,
        writes: _Writes,
        counts: Counter[str],
    ) -> list[Plan]:
        """Open attempts that must not be resent (key too old, payment id changed, tries used up): look at the
        payment first. Returns the new calls to make. Rare (crashes, long outages), so done one by one."""
        calls = []
        for step in steps:
            if stop.event.is_set():
                break
            order = step.order
            old_payment = order.open_payment_id or order.payment_id
            check, error = _call_result(lambda pid=old_payment: hook.get_payment(pid))
            if check.http_status in (401, 403):
                stop.record(Decision(None, None, abort_site=True), check, error)
                break
            if old_payment != order.payment_id:
                seen = check.payment_status if check.ok else check.describe()
                writes.close(
                    step,
                    "failed",
                    check,
                    f"the order's payment id changed to {order.payment_id}; {old_payment} is {seen} at KOMOJU",
                )
            elif check.ok and check.payment_status == self.job.payment_status_reached:
                writes.add(
                    _Outcome(step, Decision(self.job.done_status, f"payment {check.payment_status} at KOMOJU"), check)
                )
                counts["succeeded"] += 1
                continue
            elif check.ok or not check.transient:
                seen = f"payment is {check.payment_status}" if check.ok else f"checking it failed: {check.describe()}"
                writes.close(step, "failed", check, f"no result recorded for this key within KOMOJU's 24 h; {seen}")
            else:
                stop.record(Decision("Failed", None, transient=True), check, error)
                counts["deferred_unsettled"] += 1
                self.log.warning(
                    "Site %s order %s: could not check payment %s of an unfinished attempt (%s); left for later",
                    site.site_id,
                    order.order_no,
                    old_payment,
                    check.describe(),
                )
                continue
            fresh = plan(self.job, site.site_id, _without_open_attempt(order), max_attempts=max_attempts, now=now)
            _route(fresh, calls, [], writes, counts)  # no open attempt left: never settles again
        return calls


def _release(conn: Any, job: str, site_id: str, order_nos: list[str]) -> None:
    """Release the batch's order locks, also after an error; a connection that died took its locks with it, and
    must not hide the error that killed it."""
    if conn.closed:
        return
    try:
        conn.rollback()
        store.release_orders(conn, job, site_id, order_nos)
    except psycopg2.Error:
        if not conn.closed:
            raise


def _route(step: Plan, calls: list[Plan], settle: list[Plan], writes: _Writes, counts: Counter[str]) -> None:
    """Send a plan where it goes: the calls, the attempts to settle first, the final failures, or the next run."""
    if step.action is Action.CALL:
        calls.append(step)
    elif step.action is Action.SETTLE_FIRST:
        settle.append(step)
    elif step.action is Action.NEXT_RUN:
        counts["tried_earlier_in_this_run"] += 1
    else:
        writes.give_up(step)
        counts["invalid" if step.action is Action.INVALID else "gave_up"] += 1
        counts["final_failures"] += 1


def _untouched_since(batch: list[store.EligibleOrder], fresh: list[store.EligibleOrder]) -> list[store.EligibleOrder]:
    """The re-read orders no concurrent run worked on between the batch read and the lock."""
    before = {order.order_no: order.progress for order in batch}
    return [order for order in fresh if before.get(order.order_no) == order.progress]


def _without_open_attempt(order: store.EligibleOrder) -> store.EligibleOrder:
    return replace(order, open_attempt_no=None, open_idempotency_key=None, open_payment_id=None, open_started_at=None)


class _Writes:
    """The results of one batch, written in one transaction."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.closed: list[dict[str, Any]] = []
        self.kept_open: list[dict[str, Any]] = []
        self.taken_back: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []

    @property
    def pending(self) -> bool:
        return any((self.closed, self.kept_open, self.taken_back, self.statuses, self.failures))

    def add(self, outcome: _Outcome) -> None:
        step, decision, result = outcome.plan, outcome.decision, outcome.result
        if decision is None:
            if not outcome.sent:
                self.taken_back.append(
                    {
                        "order_no": step.order.order_no,
                        "attempt_no": step.attempt_no,
                        "new": step.new_attempt,
                        "counted": step.counts_try,  # a resend within the run that counted has nothing to give back
                    }
                )
            return  # unknown outcome: the attempt stays open, untouched
        assert result is not None, "a decision comes with the answer it was made from"
        row = {
            "order_no": step.order.order_no,
            "attempt_no": step.attempt_no,
            "http_status": result.http_status,
            "error_code": result.code,
            "response": decision.response,
        }
        if decision.transient and not decision.final:
            self.kept_open.append(row)  # KOMOJU may still act on this key: it is resent, never replaced
        else:
            self.closed.append({**row, "outcome": _attempt_outcome(decision)})
        self.statuses.append(
            {"order_no": step.order.order_no, "status": decision.status, "response": decision.response}
        )
        if decision.final:
            self._failure(step, decision.status or "Failed", decision.response or "")

    def close(self, step: Plan, outcome: str, result: CallResult, response: str) -> None:
        self.closed.append(
            {
                "order_no": step.order.order_no,
                "attempt_no": step.attempt_no,
                "outcome": outcome,
                "http_status": result.http_status,
                "error_code": result.code,
                "response": sanitise(response, limit=RESPONSE_MAX_CHARS),
            }
        )

    def give_up(self, step: Plan) -> None:
        reason = step.reason or "given up"
        self.statuses.append({"order_no": step.order.order_no, "status": "Failed", "response": reason})
        self._failure(step, "Failed", reason)

    def _failure(self, step: Plan, status: str, reason: str) -> None:
        order = step.order
        self.failures.append(
            {
                "order_no": order.order_no,
                "attempt_no": step.attempt_no,
                "payment_id": order.payment_id,
                "status": status,
                "reason": reason,
                "amount": None if order.amount is None else str(order.amount),
                "currency": order.currency,
            }
        )

    def commit(self, conn: Any, site_id: str) -> None:
        store.write_results(
            conn,
            self.job.value,
            site_id,
            closed=self.closed,
            kept_open=self.kept_open,
            taken_back=self.taken_back,
            statuses=self.statuses,
            failures=self.failures,
        )


def _call_result(call) -> tuple[CallResult, KomojuAPIError | None]:
    """Run one hook call and describe its answer; KOMOJU errors become results, not exceptions."""
    try:
        payment = call()
    except KomojuAPIError as error:
        result = CallResult(
            ok=False,
            http_status=error.status,
            code=error.code,
            message=error.message,
            transient=error.transient,
        )
        return result, error
    return CallResult(ok=True, http_status=200, payment_status=payment.get("status")), None


def _attempt_outcome(decision: Decision) -> str:
    if decision.succeeded:
        return "succeeded"
    if decision.status == "Rejected":
        return "rejected"
    return "transient" if decision.transient else "failed"


def _count_name(outcome: _Outcome) -> str:
    decision = outcome.decision
    if decision is None:
        return "not_sent" if not outcome.sent else "outcome_unknown"
    if decision.succeeded:
        return "succeeded"
    return "rejected" if decision.status == "Rejected" else "failed"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
