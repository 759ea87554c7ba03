"""Acceptance (issue 13): done only when KOMOJU says so, under each reading of KOMOJU's docs the emulator offers.

- A request KOMOJU accepts without the payment showing it done (a ``202``, a refund still processing, a cash
  payment's refund waiting for the customer's bank account) leaves the order ``Pending``; later runs only GET the
  payment (never a second POST) until it shows the refund, or the pending limit passes (a final failure).
- KOMOJU's ``403`` for one payment fails only that order; every call of the first batch refused: the key.
- An error KOMOJU stores under an idempotency key and replays does not use up the order's attempts: the next run
  looks at the payment and starts a new attempt with a new key; exactly one refund reaches the payment.
"""

from __future__ import annotations

import pytest
from scenario import Case, Site, effects_by_payment, emulator_scenario, orders_table, query, setup_database
from testkit import html_body, payment, table_rows

from emulator.testing import EmulatorServer

SITE = Site("read-a", "Readings", "komoju_default", "merchant-read", "sk_test_e2e_readings", ("ops@example.com",),
            locale="en")  # fmt: skip

ACCEPTED_NOT_DONE = {  # reading -> (emulator settings, the payment's method)
    "202": ({"success_status": 202, "complete_after_gets": 0}, "credit_card"),
    "refund still processing": ({"refund_completion": "deferred", "complete_after_gets": 0}, "credit_card"),
    "cash refund with redirect_url": ({"cash_refunds": "redirect_url", "complete_after_gets": 0}, "konbini"),
}


def refund_case(no: str, label: str, amount: int, method: str = "credit_card") -> Case:
    return Case("refund", SITE, no, str(amount), "JPY",
                payment=payment(label, "captured", amount, payment_details={"type": method}),
                expect="Refunded", effect=amount)  # fmt: skip


def posts(komoju: EmulatorServer, payment_id: str, since: int = 0) -> list[dict]:
    return [e for e in komoju.requests_log(since) if e["method"] == "POST" and e["payment_id"] == payment_id]


def gets(komoju: EmulatorServer, payment_id: str, since: int = 0) -> list[dict]:
    return [e for e in komoju.requests_log(since) if e["method"] == "GET" and e["payment_id"] == payment_id]


def last_seq(komoju: EmulatorServer) -> int:
    return (komoju.ledger() or [{"seq": 0}])[-1]["seq"]


@pytest.fixture
def readings(db, set_komoju_connection):
    """``readings(cases, **extra)``: the cases in Postgres and a running emulator, the site's connection at it."""
    servers: list[EmulatorServer] = []

    def start(cases: tuple[Case, ...], **extra) -> EmulatorServer:
        server = EmulatorServer(emulator_scenario(cases, (SITE,)))
        server.start()
        servers.append(server)
        set_komoju_connection(SITE.conn_id, server.base_url, SITE.secret_key, **extra)
        setup_database(db, cases, (SITE,))
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("reading", list(ACCEPTED_NOT_DONE))
def test_accepted_but_not_done_is_pending_followed_by_get_only_then_refunded(reading, db, smtp_sink, run_dag, readings):
    settings, method = ACCEPTED_NOT_DONE[reading]
    order = refund_case("PD-01", "pd01", 1500, method)
    plain = refund_case("PD-02", "pd02", 800)  # an ordinary card refund beside it (202 reading: also pending)
    komoju = readings((order, plain))
    komoju.set_settings(**settings)
    pid = order.stored_payment_id

    first = run_dag("komoju_refund_process")
    assert first.state == "success"
    row = orders_table(db)[order.key]
    assert row["komoju_refund_status"] == "Pending"
    assert "KOMOJU accepted the refund" in row["komoju_refund_response"]
    assert len(posts(komoju, pid)) == 1
    (attempt,) = query(db, "SELECT accepted_at IS NOT NULL, finished_at FROM komoju.attempt WHERE order_no = 'PD-01'")
    assert attempt == (True, None), "the attempt stays open, marked as accepted"
    cash = method == "konbini"
    link = komoju.payment(pid)["refunds"][-1].get("redirect_url")
    assert (link is not None) is cash
    if cash:
        assert link in row["komoju_refund_response"]
        (mail,) = smtp_sink.messages  # the link goes to the site's contacts once, to forward to the customer
        assert "bank account" in str(mail.message["Subject"])
        assert [order.order_no, "1,500 JPY", link] in table_rows(html_body(mail))
    else:
        assert smtp_sink.messages == []

    seq = last_seq(komoju)
    second = run_dag("komoju_refund_process")
    assert second.state == "success"
    assert orders_table(db)[order.key]["komoju_refund_status"] == "Pending"
    assert posts(komoju, pid, seq) == [], "a pending refund is never POSTed again"
    assert len(gets(komoju, pid, seq)) == 1, "it is checked with one GET per run"
    assert len(smtp_sink.messages) == (1 if cash else 0), "the link is e-mailed once"

    komoju.complete(pid)  # the customer gave a bank account / KOMOJU finished processing
    seq = last_seq(komoju)
    run_dag("komoju_refund_process")
    done = orders_table(db)[order.key]
    assert done["komoju_refund_status"] == "Refunded"
    assert posts(komoju, pid, seq) == []
    assert effects_by_payment(komoju.ledger())[pid] == [("refund", 1500)], "exactly one refund reached the payment"
    assert komoju.payment(pid)["amount_refunded"] == 1500
    assert query(db, "SELECT count(*) FROM komoju.attempt WHERE order_no = 'PD-01' AND finished_at IS NULL") == [(0,)]
    assert query(db, "SELECT count(*) FROM komoju.final_failure") == [(0,)]


def test_pending_past_the_limit_is_a_final_failure_e_mailed_once(db, smtp_sink, run_dag, readings):
    order = refund_case("PL-01", "pl01", 2000)
    komoju = readings((order,), pending_limit_days=0.000001)  # about 0.1 s: the next run is past it
    komoju.set_settings(refund_completion="deferred", complete_after_gets=0)

    run_dag("komoju_refund_process")
    assert orders_table(db)[order.key]["komoju_refund_status"] == "Pending"
    seq = last_seq(komoju)
    run_dag("komoju_refund_process")

    row = orders_table(db)[order.key]
    assert row["komoju_refund_status"] == "Failed"
    assert "KOMOJU accepted the refund on " in row["komoju_refund_response"]
    assert "it has not completed within" in row["komoju_refund_response"]
    assert posts(komoju, order.stored_payment_id, seq) == []
    (mail,) = smtp_sink.messages
    ((_, amount, status, reason),) = table_rows(html_body(mail))
    assert (amount, status) == ("2,000 JPY", "Failed")
    assert "has not completed" in reason
    run_dag("komoju_refund_process")
    assert len(smtp_sink.messages) == 1
    assert posts(komoju, order.stored_payment_id, seq) == [], "a refund KOMOJU accepted is never sent again"


def test_a_403_for_one_payment_fails_only_that_order(db, smtp_sink, run_dag, readings):
    cases = tuple(refund_case(f"FB-0{n}", f"fb0{n}", 1000 * n) for n in range(1, 5))
    forbidden = cases[1]
    komoju = readings(cases)
    komoju.set_faults([{"kind": "forbidden_403", "match": {"payment_id": forbidden.stored_payment_id}}])

    run = run_dag("komoju_refund_process")

    assert run.states("refund_site") == {SITE.site_id: "success"}
    rows = orders_table(db)
    assert {c.order_no: rows[c.key]["komoju_refund_status"] for c in cases} == {
        "FB-01": "Refunded",
        "FB-02": "Failed",
        "FB-03": "Refunded",
        "FB-04": "Refunded",
    }
    assert rows[forbidden.key]["komoju_refund_response"].startswith(
        f"this key may not access payment {forbidden.stored_payment_id} (HTTP 403 forbidden"
    )
    (mail,) = smtp_sink.messages
    assert [row[0] for row in table_rows(html_body(mail))] == ["FB-02"]
    assert forbidden.stored_payment_id not in effects_by_payment(komoju.ledger())


def test_every_call_of_the_first_batch_refused_with_403_is_a_refused_key(db, smtp_sink, run_dag, readings):
    cases = tuple(refund_case(f"FK-0{n}", f"fk0{n}", 1000) for n in range(1, 5))
    komoju = readings(cases)
    komoju.set_faults([{"kind": "forbidden_403", "match": {"method": "POST"}}])
    before = orders_table(db)

    run = run_dag("komoju_refund_process")

    assert run.states("refund_site") == {SITE.site_id: "failed"}
    assert orders_table(db) == before, "no order of the site is changed"
    assert query(db, "SELECT count(*) FROM komoju.attempt") == [(0,)], "the refused tries are taken back"
    assert query(db, "SELECT count(*) FROM komoju.final_failure") == [(0,)]
    assert smtp_sink.messages == []


@pytest.mark.parametrize("replay_errors", [True, False], ids=["errors replayed", "errors not stored"])
def test_a_stored_5xx_does_not_block_the_order_a_new_key_refunds_it_once(
    replay_errors, db, smtp_sink, run_dag, readings
):
    order = refund_case("RP-01", "rp01", 3000)
    komoju = readings((order,))
    komoju.set_settings(replay_errors=replay_errors)
    pid = order.stored_payment_id
    # Every send of the first run's call (1 + max_retries) meets a 503; with errors stored, resends of that key
    # would replay it for a day.
    komoju.set_faults([{"kind": "error_503", "match": {"method": "POST", "payment_id": pid}, "times": 1}])

    run_dag("komoju_refund_process")
    first_keys = {e["idempotency_key"] for e in posts(komoju, pid)}
    assert len(first_keys) == 1
    if replay_errors:  # the first answer was stored: every retry of the run was answered with it
        assert orders_table(db)[order.key]["komoju_refund_status"] == "Failed"
        assert all(e["status"] == 503 for e in posts(komoju, pid))
        seq = last_seq(komoju)
        run_dag("komoju_refund_process")
        later = posts(komoju, pid, seq)
        assert len(gets(komoju, pid, seq)) == 1, "the payment is looked at before anything is resent"
        assert {e["idempotency_key"] for e in later}.isdisjoint(first_keys), "a new attempt, a new key"
    assert orders_table(db)[order.key]["komoju_refund_status"] == "Refunded"
    assert effects_by_payment(komoju.ledger()) == {pid: [("refund", 3000)]}, "exactly one effective refund"
    assert smtp_sink.messages == []


def test_an_applied_refund_whose_answer_was_an_error_is_recorded_not_resent(db, smtp_sink, run_dag, readings):
    """KOMOJU did it but every send of the run was answered 500: the next run's GET shows it refunded."""
    order = refund_case("AP-01", "ap01", 2500)
    komoju = readings((order,))
    komoju.set_settings(replay_errors=True)
    pid = order.stored_payment_id
    komoju.set_faults([{"kind": "applied_500", "match": {"method": "POST", "payment_id": pid}, "times": 4}])

    run_dag("komoju_refund_process")
    assert orders_table(db)[order.key]["komoju_refund_status"] == "Failed"
    seq = last_seq(komoju)
    run_dag("komoju_refund_process")

    assert orders_table(db)[order.key]["komoju_refund_status"] == "Refunded"
    assert posts(komoju, pid, seq) == []
    assert effects_by_payment(komoju.ledger()) == {pid: [("refund", 2500)]}
