"""Acceptance: what goes wrong, end to end (SPEC §3, §4.4, §4.5, §5, §6; issue 3's "Done when").

One site's KOMOJU refusing the key or down throughout fails only that site's mapped instance, and the site
finishes once KOMOJU is fixed; unknown or inactive ``site_ids`` stop the run before anything is touched; a
failed e-mail send loses nothing; bad rows never stop a run; a transient failure is retried next run until its
attempts run out.

"Retrying that site alone" is done here by triggering the DAG again with ``site_ids`` = [that site] once the
emulator or the connection is fixed (``dag.test()`` cannot clear one instance of a finished run).
"""

from __future__ import annotations

import os

import pytest
from scenario import (
    Case,
    Site,
    effects_by_payment,
    emulator_scenario,
    orders_table,
    payment,
    pid,
    query,
    row_problems,
    setup_database,
)
from testkit import html_body, table_rows

from emulator.testing import EmulatorServer

TASK_TRIES = int(os.environ["KOMOJU_TASK_RETRIES"]) + 1  # set by the root conftest before the DAGs are parsed

SITE_A = Site("site-a", "Site A", "komoju_default", "merchant-a", "sk_test_e2e_site_a", ("a-ops@example.com",),
              locale="en")  # fmt: skip
SITE_B = Site("site-b", "Site B", "komoju_site_b", "merchant-b", "sk_test_e2e_site_b", ("b-ops@example.com",),
              locale="en")  # fmt: skip
SITE_C = Site("site-c", "Site C", "komoju_site_c", "merchant-c", "sk_test_e2e_site_c", ("c-ops@example.com",),
              locale="ja")  # fmt: skip
THREE_SITES = (SITE_A, SITE_B, SITE_C)
WRONG_KEY = "sk_test_e2e_not_a_key_of_anyone"


def pending_orders(site: Site, count: int, tag: str) -> list[Case]:
    """``count`` cancellable orders of ``site``; the cancel job must cancel each exactly once."""
    return [
        Case("cancel", site, f"{tag.upper()}-{n:02d}", "1000", "JPY", payment=payment(f"{tag}{n:02d}", "pending", 1000),
             expect="Cancelled", response_has=("cancelled",), effect=1000)
        for n in range(1, count + 1)
    ]  # fmt: skip


def log_lines(output: str, *words: str) -> list[str]:
    """The lines of captured output that contain every one of ``words``."""
    return [line for line in output.splitlines() if all(word in line for word in words)]


@pytest.fixture
def connect(set_komoju_connection):
    """``connect(server, sites)``: every site's connection points at ``server`` with the site's own key."""

    def define(server: EmulatorServer, sites: tuple[Site, ...]) -> None:
        for site in sites:
            set_komoju_connection(site.conn_id, server.base_url, site.secret_key)

    return define


# ---------------------------------------------------------------------------------------------------------------
# One site's KOMOJU failing
# ---------------------------------------------------------------------------------------------------------------


def test_key_refused_fails_only_that_site_then_rerun_of_that_site_finishes(
    db, smtp_sink, run_dag, connect, set_komoju_connection, capfd
):
    cases = (*pending_orders(SITE_A, 3, "ka"), *pending_orders(SITE_B, 3, "kb"), *pending_orders(SITE_C, 3, "kc"))
    with EmulatorServer(emulator_scenario(cases, THREE_SITES)) as komoju:
        connect(komoju, THREE_SITES)
        set_komoju_connection(SITE_B.conn_id, komoju.base_url, WRONG_KEY)  # KOMOJU answers 401
        setup_database(db, cases, THREE_SITES)
        before = orders_table(db)

        first = run_dag("komoju_cancel_process")

        sites = first.per_site("cancel_site")
        assert {k: v.state for k, v in sites.items()} == {"site-a": "success", "site-b": "failed", "site-c": "success"}
        assert sites["site-b"].try_number == 1  # a refused key is not retried: retrying cannot fix it
        after = orders_table(db)
        b_cases = [c for c in cases if c.site == SITE_B]
        others = [c for c in cases if c.site != SITE_B]
        assert row_problems("cancel", tuple(others), before, after) == []
        assert {c.key: after[c.key] for c in b_cases} == {c.key: before[c.key] for c in b_cases}
        ledger = komoju.ledger()
        assert effects_by_payment(ledger) == {c.stored_payment_id: [("cancel", 1000)] for c in others}
        refused = [e for e in ledger if e["type"] == "request" and e["merchant_id"] is None]
        assert refused
        assert {e["status"] for e in refused} == {401}
        assert [e for e in ledger if e.get("merchant_id") == SITE_B.merchant] == []
        output = capfd.readouterr().out
        assert log_lines(output, "site-b", "komoju_site_b"), "no message names the site and its connection"
        assert WRONG_KEY not in output
        assert SITE_A.secret_key not in output

        set_komoju_connection(SITE_B.conn_id, komoju.base_url, SITE_B.secret_key)  # the operator fixes the key
        second = run_dag("komoju_cancel_process", site_ids=["site-b"])

        assert second.state == "success"
        assert second.states("cancel_site") == {"site-b": "success"}
        assert row_problems("cancel", cases, before, orders_table(db)) == []
        assert effects_by_payment(komoju.ledger()) == {c.stored_payment_id: [("cancel", 1000)] for c in cases}
        later = komoju.requests_log(since=ledger[-1]["seq"])
        assert {e["payment_id"] for e in later} == {c.stored_payment_id for c in b_cases}


def _down_throughout(cases: list[Case]) -> list[dict]:
    """Fault rules making KOMOJU answer 503 to every call about these cases' payments."""
    return [{"kind": "error_503", "match": {"payment_id": c.stored_payment_id}} for c in cases]


def test_komoju_down_for_one_site_fails_only_that_site_then_rerun_of_that_site_finishes(
    db, smtp_sink, run_dag, connect
):
    """Six orders on site B, so that its run of transient failures (5 in a row) stops it and fails its task.

    ``max_attempts`` is raised to 5 so that the task's own retries cannot use the orders' attempts up (see
    ``test_komoju_down_throughout_one_run_does_not_give_orders_up_with_default_params`` for the defaults)."""
    b_cases = pending_orders(SITE_B, 6, "db")
    cases = (*pending_orders(SITE_A, 2, "da"), *b_cases, *pending_orders(SITE_C, 2, "dc"))
    with EmulatorServer(emulator_scenario(cases, THREE_SITES)) as komoju:
        connect(komoju, THREE_SITES)
        setup_database(db, cases, THREE_SITES)
        komoju.set_faults(_down_throughout(b_cases))
        before = orders_table(db)

        first = run_dag("komoju_cancel_process", max_attempts=5)

        sites = first.per_site("cancel_site")
        assert {k: v.state for k, v in sites.items()} == {"site-a": "success", "site-b": "failed", "site-c": "success"}
        assert sites["site-b"].try_number == TASK_TRIES  # failed after Airflow's retries
        assert sites["site-a"].try_number == sites["site-c"].try_number == 1
        after = orders_table(db)
        others = tuple(c for c in cases if c.site != SITE_B)
        assert row_problems("cancel", others, before, after) == []
        for case in b_cases:  # untouched, or Failed and to be tried again: never given up on
            assert after[case.key]["komoju_cancel_status"] in (None, "Failed"), after[case.key]
        assert query(db, "SELECT count(*) FROM komoju.final_failure WHERE site_id = 'site-b'") == [(0,)]
        assert [m for m in smtp_sink.messages if "b-ops@example.com" in m.rcpt_tos] == []
        ledger = komoju.ledger()
        assert effects_by_payment(ledger) == {c.stored_payment_id: [("cancel", 1000)] for c in others}
        posts = [e for e in ledger if e["type"] == "request" and e["method"] == "POST"]
        assert all(e["idempotency_key"] for e in posts)

        komoju.set_faults([])  # KOMOJU is back
        second = run_dag("komoju_cancel_process", site_ids=["site-b"], max_attempts=5)

        assert second.state == "success"
        assert second.states("cancel_site") == {"site-b": "success"}
        assert row_problems("cancel", tuple(cases), before, orders_table(db)) == []
        assert effects_by_payment(komoju.ledger()) == {c.stored_payment_id: [("cancel", 1000)] for c in cases}


def test_komoju_down_throughout_one_run_does_not_give_orders_up_with_default_params(db, smtp_sink, run_dag, connect):
    if TASK_TRIES < 3:  # the DAGs' default max_attempts; production default retries 3 = 4 tries
        pytest.skip("needs at least as many task tries as the default max_attempts to show the bug")
    b_cases = pending_orders(SITE_B, 6, "xb")
    cases = (*pending_orders(SITE_A, 1, "xa"), *b_cases)
    sites = (SITE_A, SITE_B)
    with EmulatorServer(emulator_scenario(cases, sites)) as komoju:
        connect(komoju, sites)
        setup_database(db, cases, sites)
        komoju.set_faults(_down_throughout(b_cases))
        before = orders_table(db)

        first = run_dag("komoju_cancel_process")

        assert first.states("cancel_site") == {"site-a": "success", "site-b": "failed"}
        assert [m for m in smtp_sink.messages if "b-ops@example.com" in m.rcpt_tos] == []
        assert query(db, "SELECT count(*) FROM komoju.final_failure WHERE site_id = 'site-b'") == [(0,)]

        komoju.set_faults([])
        second = run_dag("komoju_cancel_process", site_ids=["site-b"])

        assert second.states("cancel_site") == {"site-b": "success"}
        assert row_problems("cancel", tuple(cases), before, orders_table(db)) == []
        assert effects_by_payment(komoju.ledger()) == {c.stored_payment_id: [("cancel", 1000)] for c in cases}


def test_transient_failure_is_tried_again_next_run_until_its_attempts_run_out(db, smtp_sink, run_dag, connect):
    """SPEC §4.4: a transient error that persists through the run's retries leaves the order Failed, tried
    again next run; after ``max_attempts`` runs it is final and e-mailed once."""
    site = SITE_A
    flaky = Case("cancel", site, "TR-01", "1000", "JPY", payment=payment("tr01flaky", "pending", 1000))
    down = Case("cancel", site, "TR-02", "2000", "JPY", payment=payment("tr02down", "pending", 2000))
    good = Case("cancel", site, "TR-03", "1000", "JPY", payment=payment("tr03", "pending", 1000))
    cases = (flaky, down, good)
    with EmulatorServer(emulator_scenario(cases, (site,))) as komoju:
        connect(komoju, (site,))
        setup_database(db, cases, (site,))
        komoju.set_faults(
            [
                # every send of the first run's call (1 + max_retries = 4, see FAST_HOOK_EXTRA), then never again
                {"kind": "error_503", "match": {"payment_id": flaky.stored_payment_id}, "times": 4},
                {"kind": "error_503", "match": {"payment_id": down.stored_payment_id}},
            ]
        )
        keys_per_run, statuses, mails = [], [], []
        for _ in range(4):
            seq = (komoju.ledger() or [{"seq": 0}])[-1]["seq"]
            run = run_dag("komoju_cancel_process", site_ids=[site.site_id])
            assert run.states("cancel_site") == {site.site_id: "success"}
            posts = [e for e in komoju.requests_log(since=seq) if e["method"] == "POST"]
            keys_per_run.append(
                {
                    payment_id: {p["idempotency_key"] for p in posts if p["payment_id"] == payment_id}
                    for payment_id in {p["payment_id"] for p in posts}
                }
            )
            rows = orders_table(db)
            statuses.append({c.order_no: rows[c.key]["komoju_cancel_status"] for c in cases})
            mails.append(len(smtp_sink.messages))
        effects = effects_by_payment(komoju.ledger())

    assert statuses == [
        {"TR-01": "Failed", "TR-02": "Failed", "TR-03": "Cancelled"},
        {"TR-01": "Cancelled", "TR-02": "Failed", "TR-03": "Cancelled"},
        {"TR-01": "Cancelled", "TR-02": "Failed", "TR-03": "Cancelled"},
        {"TR-01": "Cancelled", "TR-02": "Failed", "TR-03": "Cancelled"},
    ]
    down_id, flaky_id = down.stored_payment_id, flaky.stored_payment_id
    # sent in each of the first three runs, never after; within a run every retry carries one and the same key
    assert [len(run.get(down_id, ())) for run in keys_per_run] == [1, 1, 1, 0]
    assert [len(run.get(flaky_id, ())) for run in keys_per_run] == [1, 1, 0, 0]
    assert all(key for run in keys_per_run for keys in run.values() for key in keys)
    assert effects == {flaky_id: [("cancel", 1000)], good.stored_payment_id: [("cancel", 1000)]}
    # given up on only after the third attempt, and e-mailed once
    assert mails == [0, 0, 1, 1]
    (mail,) = smtp_sink.messages
    assert mail.rcpt_tos == site.emails
    rows = table_rows(html_body(mail))
    assert len(rows) == 1
    assert "TR-02" in rows[0]
    assert "503" in " ".join(rows[0])


# ---------------------------------------------------------------------------------------------------------------
# Scope
# ---------------------------------------------------------------------------------------------------------------

INACTIVE = Site("site-off", "Closed site", "komoju_default", "merchant-a", "sk_test_e2e_site_a", ("off@example.com",),
                active=False)  # fmt: skip
SCOPE_SITES = (SITE_A, INACTIVE)
SCOPE_CASES = (
    Case("cancel", SITE_A, "SC-01", "1000", "JPY", payment=payment("sc01", "pending", 1000)),
    Case("refund", SITE_A, "SC-02", "1000", "JPY", payment=payment("sc02", "captured", 1000)),
    Case("cancel", INACTIVE, "SC-03", "1000", "JPY", payment=payment("sc03", "pending", 1000)),
    Case("refund", INACTIVE, "SC-04", "1000", "JPY", payment=payment("sc04", "captured", 1000)),
)
SITE_TASKS = {"komoju_update_payment_methods": "sync_site", "komoju_cancel_process": "cancel_site",
              "komoju_refund_process": "refund_site"}  # fmt: skip


@pytest.fixture
def scope_scenario(db, connect):
    scenario = emulator_scenario(SCOPE_CASES, SCOPE_SITES)
    scenario["merchants"][0]["payment_methods"] = [
        {"type_slug": "credit_card", "currency": "JPY", "name_en": "Card", "name_ja": "カード", "name_ko": "카드"}
    ]
    with EmulatorServer(scenario) as komoju:
        connect(komoju, (SITE_A,))
        setup_database(db, SCOPE_CASES, SCOPE_SITES)
        yield komoju


@pytest.mark.parametrize("dag_id", sorted(SITE_TASKS))
@pytest.mark.parametrize(
    ("site_ids", "named"),
    [(["no-such-site"], "no-such-site"), (["site-a", "site-off"], "site-off"), (["site-a", "ghost"], "ghost")],
    ids=["unknown", "inactive", "known-and-unknown"],
)
def test_unknown_or_inactive_site_ids_stop_the_run_at_resolve_sites(
    dag_id, site_ids, named, db, smtp_sink, scope_scenario, run_dag, capfd
):
    before = orders_table(db)

    run = run_dag(dag_id, site_ids=site_ids)

    assert run.task("resolve_sites").state == "failed"
    assert run.per_site(SITE_TASKS[dag_id]) == {}  # no site task ran, not even site-a's
    assert scope_scenario.ledger() == []  # not a single KOMOJU request
    assert orders_table(db) == before
    assert query(db, "SELECT count(*) FROM komoju.payment_method") == [(0,)]
    assert query(db, "SELECT count(*) FROM komoju.attempt") == [(0,)]
    assert smtp_sink.messages == []
    assert log_lines(capfd.readouterr().out, named, "site"), f"no message names {named!r}"


@pytest.mark.parametrize(
    "dag_id",
    ["komoju_update_payment_methods", "komoju_cancel_process", "komoju_refund_process"],
)
def test_unknown_site_id_fails_the_run(dag_id, db, smtp_sink, scope_scenario, run_dag):
    run = run_dag(dag_id, site_ids=["no-such-site"])

    assert run.task("resolve_sites").state == "failed"
    assert run.state == "failed"


# ---------------------------------------------------------------------------------------------------------------
# E-mail
# ---------------------------------------------------------------------------------------------------------------


def test_smtp_down_loses_no_failure_and_the_next_run_sends_each_once(db, smtp_switch, smtp_sink, run_dag, connect):
    site = SITE_B
    rejected = Case("cancel", site, "SM-01", "1200", "JPY", payment=payment("sm01", "captured", 1200),
                    expect="Rejected", final=True)  # fmt: skip
    unknown = Case("cancel", site, "SM-02", "12.50", "USD", payment_id=pid("sm02unknown"), expect="Failed",
                   final=True)  # fmt: skip
    good = Case("cancel", site, "SM-03", "1000", "JPY", payment=payment("sm03", "pending", 1000),
                expect="Cancelled", effect=1000)  # fmt: skip
    later = Case("cancel", site, "SM-04", "800", "JPY", payment=payment("sm04", "expired", 800),
                 expect="Rejected", final=True)  # fmt: skip
    with EmulatorServer(emulator_scenario((rejected, unknown, good, later), (site,))) as komoju:
        connect(komoju, (site,))
        setup_database(db, (rejected, unknown, good), (site,))
        smtp_switch(False)

        first = run_dag("komoju_cancel_process")

        assert first.states("cancel_site") == {site.site_id: "success"}
        email_task = first.per_site("send_failure_email")[site.site_id]
        assert email_task.state == "failed"
        assert email_task.try_number == TASK_TRIES
        assert smtp_sink.messages == []
        recorded = query(
            db,
            "SELECT f.order_no, n.sent_at FROM komoju.final_failure AS f"
            " LEFT JOIN komoju.notification AS n USING (notification_id) ORDER BY f.order_no",
        )
        assert recorded == [("SM-01", None), ("SM-02", None)]  # recorded, not sent

        setup_database(db, (later,), ())  # a new failure arrives meanwhile
        smtp_switch(True)
        seq = komoju.ledger()[-1]["seq"]
        second = run_dag("komoju_cancel_process")

        assert second.state == "success"
        assert {(t.label, t.state) for t in second.mapped("send_failure_email")} == {(site.site_id, "success")}
        mails = smtp_sink.messages
        assert mails  # the old failures in one e-mail with the new one, or resent on their own: both keep SPEC 4.4
        assert {m.rcpt_tos for m in mails} == {site.emails}
        rows = [row for mail in mails for row in table_rows(html_body(mail))]
        assert len(rows) == 3
        assert sorted(cell for row in rows for cell in row if cell.startswith("SM-")) == ["SM-01", "SM-02", "SM-04"]
        # only the new order was sent to KOMOJU
        assert {e["payment_id"] for e in komoju.requests_log(since=seq)} == {later.stored_payment_id}

        third = run_dag("komoju_cancel_process")

        assert third.state == "success"
        assert len(smtp_sink.messages) == len(mails)
        assert third.mapped("send_failure_email") == []
        unsent = query(
            db,
            "SELECT f.order_no FROM komoju.final_failure AS f"
            " LEFT JOIN komoju.notification AS n USING (notification_id) WHERE n.sent_at IS NULL",
        )
        assert unsent == []


# ---------------------------------------------------------------------------------------------------------------
# Bad rows
# ---------------------------------------------------------------------------------------------------------------

BAD = Site("bad-rows", "Bad <rows> & co", "komoju_default", "merchant-bad", "sk_test_e2e_bad_rows",
           ("bad-ops@example.com",), locale="en")  # fmt: skip
HTML_ORDER_BAD_ID = "<script>alert('x')</script>"
BAD_ROW_CASES = (
    # cancel: the payment id is all that matters
    Case("cancel", BAD, "BR-C01", "1000", "JPY", payment_id=None),
    Case("cancel", BAD, "BR-C02", "1000", "JPY", payment_id=""),
    Case("cancel", BAD, "BR-C03", "1000", "JPY", payment_id="   ", expect="Failed", response_has=("payment id",),
         final=True, no_call=True),
    Case("cancel", BAD, HTML_ORDER_BAD_ID, "1000", "JPY", payment_id="1' OR '1'='1", expect="Failed",
         response_has=("payment id",), final=True, no_call=True),
    Case("cancel", BAD, "BR-C05", "1000", "JPY", payment_id="../payment_methods", expect="Failed",
         response_has=("payment id",), final=True, no_call=True),
    Case("cancel", BAD, "<img src=x onerror=alert(1)>", "1000", "JPY", payment=payment("brc06", "pending", 1000),
         expect="Cancelled", response_has=("cancelled",), effect=1000),
    Case("cancel", BAD, "BR-C07'; DROP TABLE komoju.orders; --", "1000", "JPY",
         payment=payment("brc07", "pending", 1000), expect="Cancelled", effect=1000),
    Case("cancel", BAD, "注文-0008", None, None, payment=payment("brc08", "pending", 1000), expect="Cancelled",
         effect=1000),
    # refund: the amount and currency must make sense too
    Case("refund", BAD, "BR-R01", "1000", "JPY", payment_id=None),
    Case("refund", BAD, "BR-R02", "1000", "XYZ", payment=payment("brr02", "captured", 1000), expect="Failed",
         response_has=("currency", "XYZ"), final=True, no_call=True),
    Case("refund", BAD, "BR-R03", "1000", None, payment=payment("brr03", "captured", 1000), expect="Failed",
         response_has=("currency",), final=True, no_call=True),
    Case("refund", BAD, "BR-R04", "-1", "JPY", payment=payment("brr04", "captured", 1000), expect="Failed",
         response_has=("-1",), final=True, no_call=True),
    Case("refund", BAD, "BR-R05", "1000", "JPY", payment_id="'; DELETE FROM komoju.orders; --", expect="Failed",
         response_has=("payment id",), final=True, no_call=True),
    Case("refund", BAD, "BR-R06'; DELETE FROM komoju.orders; --", "1000", "JPY",
         payment=payment("brr06", "captured", 1000), expect="Refunded", effect=1000),
    Case("refund", BAD, "<i>BR-R07</i>", "12.50", "USD", payment=payment("brr07", "captured", 1250, "USD"),
         expect="Refunded", effect=1250),
)  # fmt: skip


@pytest.mark.parametrize("job", ["cancel", "refund"])
def test_bad_rows_do_not_stop_the_run(job, db, smtp_sink, run_dag, connect):
    dag_id, site_task = {"cancel": ("komoju_cancel_process", "cancel_site"),
                         "refund": ("komoju_refund_process", "refund_site")}[job]  # fmt: skip
    with EmulatorServer(emulator_scenario(BAD_ROW_CASES, (BAD,))) as komoju:
        connect(komoju, (BAD,))
        setup_database(db, BAD_ROW_CASES, (BAD,))
        before = orders_table(db)

        run = run_dag(dag_id)

        assert run.state == "success"
        assert run.states(site_task) == {BAD.site_id: "success"}
        after = orders_table(db)
        assert len(after) == len(BAD_ROW_CASES)
        assert row_problems(job, BAD_ROW_CASES, before, after) == []
        cases = [c for c in BAD_ROW_CASES if c.job == job]
        ledger = komoju.ledger()
        assert effects_by_payment(ledger) == {c.stored_payment_id: [(job, c.effect)] for c in cases if c.effect}
        assert {e["payment_id"] for e in ledger if e["type"] == "request"} == {c.stored_payment_id for c in cases
                                                                              if c.called}  # fmt: skip
        # the failed rows go out in the e-mail, each once, with its reason, escaped
        (mail,) = smtp_sink.messages
        body = html_body(mail)
        mailed = [c for c in cases if c.final]
        rows = table_rows(body)
        assert len(rows) == len(mailed)
        for case in mailed:
            (row,) = [r for r in rows if case.order_no in r]
            assert any(after[case.key][f"komoju_{job}_response"] in cell for cell in row), row
        if job == "cancel":
            assert "&lt;script&gt;alert(" in body
            assert "<script>" not in body


def test_site_ids_left_empty_in_the_form_means_every_active_site(db, smtp_sink, run_dag, connect):
    """Airflow's trigger form sends null for a cleared multi-select: the param admits it (the field is optional)
    and the run works on every active site, as with []."""
    cases = (*pending_orders(SITE_A, 1, "na"), *pending_orders(SITE_B, 1, "nb"))
    with EmulatorServer(emulator_scenario(cases, (SITE_A, SITE_B))) as komoju:
        connect(komoju, (SITE_A, SITE_B))
        setup_database(db, cases, (SITE_A, SITE_B))
        run = run_dag("komoju_cancel_process", site_ids=None)
        assert run.states("cancel_site") == {"site-a": "success", "site-b": "success"}
        assert effects_by_payment(komoju.ledger()) == {c.stored_payment_id: [("cancel", 1000)] for c in cases}
