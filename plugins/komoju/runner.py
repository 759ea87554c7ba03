"""What the KOMOJU operators do when their task runs: sync one site's payment methods, and one site's run of
the cancel or refund job, exactly once per order.

Kept apart from :mod:`komoju.operators`, which Airflow imports each time it parses the DAG files: this module
and what it imports (the hook and requests, the store and psycopg2, the decisions) load only in a running task.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg2
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from komoju import db, metrics, store
from komoju.errors import KomojuAPIError
from komoju.hooks import KomojuHook, PaymentAnswer
from komoju.outcomes import (
    FAILED,
    PENDING,
    RESPONSE_MAX_CHARS,
    CallResult,
    Decision,
    Job,
    accepted_since,
    decide,
    decide_pending,
    pending_reason,
)
from komoju.planning import Action, Plan, after_settling, key_still_kept, plan
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
        hook = KomojuHook(site.komoju_conn_id, metrics_for=("payment_methods", site.site_id))
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
    first: bool = False  # the site's first batch of this run (if all its calls get KOMOJU's 403, the key is refused)
    calls: list[Future[_Outcome]] = field(default_factory=list)
    payments: set[str] = field(default_factory=set)  # the payment ids of those calls


class _StopSignal:
    """Shared by the call threads: stop sending once the site must stop (auth failure, transient streak)."""

    def __init__(self, streak_limit: int) -> None:
        self._lock = threading.Lock()
        self._streak = 0
        self.streak_limit = streak_limit
        self.auth_error: CallResult | None = None  # KOMOJU's answer refusing the key
        self.last_transient: str | None = None
        self.event = threading.Event()

    def refuse(self, answer: CallResult) -> None:
        """KOMOJU refused the site's key: stop sending."""
        with self._lock:
            if self.auth_error is None:
                self.auth_error = answer
            self.event.set()

    def record(self, decision: Decision, result: CallResult) -> None:
        if decision.abort_site:
            self.refuse(result)
            return
        with self._lock:
            if decision.transient:
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
        self.run_id: str | None = None

    def execute(self, *, max_attempts: int, concurrency: int | None, dry_run: bool, run_id: str) -> dict[str, Any]:
        self.run_id = run_id
        conn = db.connect(self.postgres_conn_id)
        try:
            site = _site_or_fail(conn, self.site_id)
            counts: Counter[str] = Counter()
            counts["without_payment_id"] = store.orders_without_payment_id(conn, self.job.value, site.site_id)
            if dry_run:
                summary = self._dry_run(conn, site, max_attempts, counts)
            else:
                try:
                    summary = self._run(conn, site, run_id, max_attempts, concurrency, counts)
                finally:
                    self._gauge_to_settle(conn, site)
        finally:
            conn.close()  # also releases any order lock still held
        self.log.info("Site %s, %s job: %s", self.site_id, self.job.value, summary)
        return summary

    def _gauge_to_settle(self, conn: Any, site: store.Site) -> None:
        """The ``komoju.orders.to_settle`` gauge of the site after its run (also when the run failed)."""
        if conn.closed:
            return
        try:
            conn.rollback()
            found = store.sites_work(conn, self.job.value, [site.site_id]).get(site.site_id)
            conn.rollback()
        except psycopg2.Error as exc:  # the orders are written; a gauge is not worth failing the task for
            self.log.warning("Site %s: could not count the orders to settle for the metrics: %s", site.site_id, exc)
            return
        if found is not None:
            metrics.gauge("komoju.orders.to_settle", self.job.value, site.site_id, found.to_settle)

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
        hook = KomojuHook(site.komoju_conn_id, max_concurrency=concurrency, metrics_for=(self.job.value, site.site_id))
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
                            self._finish(conn, site, held.pop(0), stop, counts)
                        if batch is None and not held:
                            break
                    while held:  # stopped: what was sent is written, what was not is taken back
                        self._finish(conn, site, held.pop(0), stop, counts)
                except BaseException:
                    stop.event.set()  # calls still queued are not sent
                    raise
                finally:
                    for batch in held:
                        _release(conn, self.job.value, site.site_id, batch.locked)
        finally:
            hook.close()
        if stop.auth_error is not None:
            every = " to every call of the site's first batch" if stop.auth_error.http_status == 403 else ""
            raise AirflowFailException(
                f"Site '{site.site_id}': KOMOJU refused the secret key of Airflow connection "
                f"'{site.komoju_conn_id}' (HTTP {stop.auth_error.http_status} {stop.auth_error.code or ''}{every}). "
                "The refused "
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
        is_first = True
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
            yield _Batch(locked, orders, first=is_first)
            is_first = False

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
        """Plan the batch's orders, look at the payments that must be looked at first, commit the new keys, then
        submit the calls."""
        now = _now()
        writes = _Writes(self.job, self.run_id)
        calls: list[Plan] = []
        look: list[Plan] = []
        payments: set[str] = set(busy_payments)
        for order in batch.orders:
            if order.payment_id in payments:  # two orders naming one payment: never both in flight
                counts["deferred_same_payment"] += 1
                continue
            payments.add(order.payment_id)
            _route(plan(self.job, site.site_id, order, max_attempts=max_attempts, now=now), calls, look, writes, counts)
        if look:
            calls.extend(self._look(hook, pool, site, look, max_attempts, now, stop, writes, counts))
        if writes.has_rows:  # looked-at attempts are closed before new attempts for the same orders start
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

    def _finish(self, conn: Any, site: store.Site, batch: _Batch, stop: _StopSignal, counts: Counter[str]) -> None:
        """Wait for the batch's calls, write their results in one transaction, release its orders.

        KOMOJU's 403 fails only the order it concerns, unless every call of the site's first batch got one: then
        it is the key that is refused, and the site stops as for a 401 (those orders are left untouched)."""
        outcomes = [call.result() for call in batch.calls]
        sent = [o for o in outcomes if o.sent]
        if batch.first and sent and all(o.decision is not None and o.decision.forbidden for o in sent):
            stop.refuse(sent[0].result)
        if stop.auth_error is not None:  # the key is refused: a 403 says nothing about its payment
            outcomes = [_not_sent(o) if o.decision is not None and o.decision.forbidden else o for o in outcomes]
        writes = _Writes(self.job, self.run_id)
        for outcome in outcomes:
            writes.add(outcome)
            counts[_count_name(outcome)] += 1
            if outcome.decision is not None and outcome.decision.final:
                counts["final_failures"] += 1
        if writes.has_rows:
            writes.commit(conn, site.site_id)
        _release(conn, self.job.value, site.site_id, batch.locked)
        batch.locked = []

    def _call(self, hook: KomojuHook, step: Plan, max_attempts: int, stop: _StopSignal) -> _Outcome:
        """One order's POST (and payment check before KOMOJU's refusal is taken as final); runs on the pool,
        touches no database."""
        if stop.event.is_set():
            return _Outcome(step, None, None, sent=False)
        if not step.new_attempt and not key_still_kept(step.order.open_started_at, _now()):
            return _Outcome(step, None, None, sent=False)  # the key aged meanwhile: settled by GET next run
        order = step.order
        try:
            result = _call_result(lambda: hook.payment_action(order.payment_id, self.job.value, step.idempotency_key))
            facts = {"attempt_no": step.try_no, "max_attempts": max_attempts, "payment_id": order.payment_id}
            decision = decide(self.job, result, **facts)
            if decision.check_payment:
                check = _call_result(lambda: hook.get_payment(order.payment_id))
                decision = decide(self.job, result, check=check, **facts)
        except Exception:  # the POST may have gone out: the attempt stays open and its key is resent later
            self.log.exception(
                "Site %s order %s: unexpected error around the KOMOJU call", self.site_id, order.order_no
            )
            return _Outcome(step, None, None, sent=True)
        stop.record(decision, result)
        if decision.abort_site:
            return _Outcome(step, None, result, sent=False)  # refused before KOMOJU looked: nothing happened
        return _Outcome(step, decision, result)

    def _look(
        self,
        hook: KomojuHook,
        pool: ThreadPoolExecutor,
        site: store.Site,
        steps: list[Plan],
        max_attempts: int,
        now: dt.datetime,
        stop: _StopSignal,
        writes: _Writes,
        counts: Counter[str],
    ) -> list[Plan]:
        """GET the payment of each open attempt that must not simply be resent: Pending ones (KOMOJU accepted
        them; only their payment is checked) and those of an earlier run (KOMOJU may have done them, or would
        only replay an error stored under the key). Returns the calls to make next (resent or new keys)."""
        limit = dt.timedelta(days=hook.settings.pending_limit_days)

        def check(step: Plan) -> CallResult:
            payment_id = step.order.open_payment_id or step.order.payment_id
            return _call_result(lambda: hook.get_payment(payment_id))

        calls: list[Plan] = []
        for step, seen in zip(steps, pool.map(check, steps), strict=True):
            order = step.order
            if seen.http_status == 401:
                stop.refuse(seen)
            if stop.event.is_set():
                break
            if step.action is Action.CHECK_PENDING:
                decision = decide_pending(self.job, seen, accepted_at=order.open_accepted_at, now=now, limit=limit)
                if decision is None:
                    counts["pending_unchecked"] += 1
                    self.log.warning(
                        "Site %s order %s: could not check pending payment %s (%s); checked again next run",
                        site.site_id, order.order_no, order.payment_id, seen.describe(),
                    )  # fmt: skip
                    continue
                writes.add(_Outcome(step, decision, seen))
                counts[_count_name(_Outcome(step, decision, seen))] += 1
                counts["final_failures"] += int(decision.final)
                continue
            follow = self._settle(step, seen, max_attempts, now, stop, writes, counts)
            if follow is not None:
                _route(follow, calls, [], writes, counts)  # no open attempt left to look at, or resent at once
        return calls

    def _settle(
        self,
        step: Plan,
        seen: CallResult,
        max_attempts: int,
        now: dt.datetime,
        stop: _StopSignal,
        writes: _Writes,
        counts: Counter[str],
    ) -> Plan | None:
        """An open attempt of an earlier run, after GET of its payment: done, Pending, or what to send next."""
        order = step.order
        old_payment = order.open_payment_id or order.payment_id
        if old_payment == order.payment_id and self.job.reached(seen):
            writes.add(_Outcome(step, Decision(self.job.done_status, f"payment {seen.payment_status} at KOMOJU"), seen))
            counts["succeeded"] += 1
            return None
        if old_payment == order.payment_id and accepted_since(self.job, seen, order.open_started_at):
            reason = pending_reason(self.job, seen, seen.newest_refund_at)
            writes.add(_Outcome(step, Decision(PENDING, reason, pending=True, redirect_url=seen.redirect_url), seen))
            counts["pending"] += 1
            return None
        if not seen.ok and seen.transient and old_payment == order.payment_id:
            # The payment cannot be seen now. A young key of this payment is resent as it was (KOMOJU does it at
            # most once, or replays its answer); anything else waits until the payment can be seen.
            blind = after_settling(
                self.job, self.site_id, replace(order, open_http_status=None), max_attempts=max_attempts, now=now
            )
            if blind.action is Action.CALL and not blind.new_attempt:
                return blind
            stop.record(Decision(FAILED, None, transient=True), seen)
            counts["deferred_unsettled"] += 1
            self.log.warning(
                "Site %s order %s: could not check payment %s of an unfinished attempt (%s); left for later",
                self.site_id, order.order_no, old_payment, seen.describe(),
            )  # fmt: skip
            return None
        follow = after_settling(self.job, self.site_id, order, max_attempts=max_attempts, now=now)
        if follow.action is Action.CALL and not follow.new_attempt:
            return follow  # no answer ever came for this key: resent as it is (KOMOJU does it at most once)
        shown = f"payment is {seen.payment_status}" if seen.ok else f"checking it failed: {seen.describe()}"
        if old_payment != order.payment_id:
            reason = f"the order's payment id changed to {order.payment_id}; {old_payment}: {shown}"
        elif order.open_http_status is not None:
            reason = (
                f"KOMOJU answered HTTP {order.open_http_status} to this key and the payment is not done ({shown}); "
                "a resend would only replay that answer, so a new attempt starts with a new key"
            )
        else:
            reason = f"no answer to this key while KOMOJU keeps it; {shown}"
        writes.close(step, "failed", reason)
        return follow


def _not_sent(outcome: _Outcome) -> _Outcome:
    return replace(outcome, decision=None, sent=False)


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


def _route(step: Plan, calls: list[Plan], look: list[Plan], writes: _Writes, counts: Counter[str]) -> None:
    """Send a plan where it goes: the calls, the payments to look at first, the final failures, or the next run."""
    if step.action is Action.CALL:
        calls.append(step)
    elif step.action in (Action.SETTLE_FIRST, Action.CHECK_PENDING):
        look.append(step)
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


class _Writes:
    """The results of one batch, written in one transaction (``run_id``: the DAG run, kept with final failures)."""

    def __init__(self, job: Job, run_id: str | None) -> None:
        self.job = job
        self.run_id = run_id
        self.closed: list[dict[str, Any]] = []
        self.kept_open: list[dict[str, Any]] = []
        self.taken_back: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []

    @property
    def has_rows(self) -> bool:
        return any((self.closed, self.kept_open, self.taken_back, self.pending, self.statuses, self.failures))

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
        if decision.pending:
            self._pending(step, decision, result)
            return
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

    def _pending(self, step: Plan, decision: Decision, result: CallResult) -> None:
        """KOMOJU accepted it, the payment does not show it done: the attempt stays open, marked Pending."""
        order = step.order
        self.pending.append(
            {
                "order_no": order.order_no,
                "attempt_no": step.attempt_no,
                "http_status": result.http_status if step.action is Action.CALL else None,  # a GET's 200 says less
                "response": decision.response,
                "redirect_url": decision.redirect_url,
            }
        )
        self.statuses.append({"order_no": order.order_no, "status": PENDING, "response": decision.response})
        if decision.redirect_url:  # e-mailed once per attempt (the store keeps the first)
            self.links.append(
                {
                    "order_no": order.order_no,
                    "attempt_no": step.attempt_no,
                    "payment_id": order.payment_id,
                    "redirect_url": decision.redirect_url,
                    "amount": None if order.amount is None else str(order.amount),
                    "currency": order.currency,
                }
            )

    def close(self, step: Plan, outcome: str, response: str) -> None:
        """Close an open attempt without a new answer to its key (the last one it got stays recorded)."""
        self.closed.append(
            {
                "order_no": step.order.order_no,
                "attempt_no": step.attempt_no,
                "outcome": outcome,
                "http_status": None,
                "error_code": None,
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

    def outcomes(self) -> Counter[str]:
        """The orders whose status this batch writes, by the outcome the ``komoju.orders.*`` counters name."""
        final = {failure["order_no"] for failure in self.failures}
        found: Counter[str] = Counter()
        for row in self.statuses:
            status = row["status"]
            if status == self.job.done_status:
                found["done"] += 1
            elif status == PENDING:
                found["pending"] += 1
            elif status == "Rejected":
                found["rejected"] += 1
            else:
                found["given_up" if row["order_no"] in final else "failed"] += 1
        return found

    def commit(self, conn: Any, site_id: str) -> None:
        store.write_results(
            conn,
            self.job.value,
            site_id,
            run_id=self.run_id,
            closed=self.closed,
            kept_open=self.kept_open,
            taken_back=self.taken_back,
            pending=self.pending,
            statuses=self.statuses,
            failures=self.failures,
            links=self.links,
        )
        metrics.orders(self.job.value, site_id, self.outcomes())  # what was written, once it is committed


def _call_result(call: Callable[[], Any]) -> CallResult:
    """Run one hook call (a :class:`PaymentAnswer`, or a GET's Payment) and describe its answer; KOMOJU's errors
    become results, not exceptions."""
    try:
        answer = call()
    except KomojuAPIError as error:
        return CallResult(
            ok=False,
            http_status=error.status,
            code=error.code,
            message=error.message,
            transient=error.transient,
            json_error=error.json_error,
        )
    if isinstance(answer, PaymentAnswer):
        return CallResult.from_payment(answer.http_status, answer.payment)
    return CallResult.from_payment(200, answer)


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
    if decision.pending:
        return "pending"
    return "rejected" if decision.status == "Rejected" else "failed"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
