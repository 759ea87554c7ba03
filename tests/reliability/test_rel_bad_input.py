"""Bad input catalogue (SPEC §6, §7; issue 5, item 5).

Each bad input gets a clear error (the order ``Failed`` with a reason that says what is wrong, e-mailed once) or a
clean skip (the order untouched), and no other order is affected:

- malformed rows: payment ids missing, blank, too long, with newlines, paths, SQL or non-ASCII; currencies unknown,
  missing, lower-case or HTML; negative and NaN amounts; order numbers with control characters, bidi overrides,
  tabs, newlines, emoji, HTML, SQL, Jinja, 500 characters; a site whose id and name hold SQL, HTML and CR/LF;
- KOMOJU answers that are not JSON, JSON of the wrong shape, errors without an error object, a 200 KB error message
  (stored truncated to 1000 characters), control characters and bidi overrides in KOMOJU's reason, HTML and SQL
  in its error code, an HTML 500 page, a body that is not UTF-8, a redirect, a payment check that answers HTML,
  429 with an absurd Retry-After (a tiny server of the test's own answers them: the emulator cannot);
- ``site_ids`` that is not a list of ids (and other params of the wrong type or range): the run is refused before
  any task, nothing touched; ``site_ids`` holding SQL: the run fails at ``resolve_sites`` naming it.
"""

from __future__ import annotations

import json
import re

import pytest
from reliability_kit import (
    DAG_IDS,
    DONE,
    SITE_TASKS,
    OddAnswer,
    OddKomoju,
    Order,
    check_mails,
    done_order,
    half_written,
    insert_orders,
    insert_site,
    job_statuses,
    komoju_connection,
    mailed_rows,
    outcome_problems,
    payment,
    pid,
    rejected_order,
    rows,
    scenario,
)
from testkit import html_body

from emulator.testing import EmulatorServer

pytestmark = pytest.mark.reliability

KEY = "sk_test_reliability_badinput_key"
ODD_KEY = "sk_test_reliability_odd_key"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
RESPONSE_MAX_CHARS = 1000  # komoju.outcomes.RESPONSE_MAX_CHARS: KOMOJU's reason as stored and e-mailed


def _komoju_tables(conn) -> dict[str, int]:
    """Row counts of every komoju table (to see that SQL in data never ran)."""
    names = [n for (n,) in rows(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'komoju' ORDER BY 1")]
    return {n: rows(conn, f'SELECT count(*) FROM komoju."{n}"')[0][0] for n in names}  # noqa: S608 (catalogue names)


# ---------------------------------------------------------------------------------------------------------------
# Malformed rows and odd text in every field
# ---------------------------------------------------------------------------------------------------------------

ROWS_SITE = "<b>rows</b>'; DROP TABLE komoju.site; --"
ROWS_SITE_NAME = "<script>alert('site')</script> 東京\r\nBcc: evil@example.com"
ROWS_RECIPIENT = "ops-rows@example.com"
WEIRD_ORDER_NOS = (
    "注文\u202e10-RO",  # a right-to-left override
    "tab\there",
    "new\nline",
    "<script>alert(1)</script>",
    "'; DROP TABLE komoju.orders; --",
    "{{ 7 * 7 }}",
    "🛒-01",
    "L" * 500,
)


def row_catalogue(job: str) -> list[Order]:
    site = ROWS_SITE

    def bad_id(no: str, payment_id: str | None, *, untouched: bool = False) -> Order:
        if untouched:  # no payment id at all: not the job's order, skipped and counted
            return Order(site, no, job, payment_id, called=False)
        return Order(site, no, job, payment_id, expect="Failed", final=True, called=False)

    orders = [
        bad_id("ID-NULL", None, untouched=True),
        bad_id("ID-EMPTY", "", untouched=True),
        bad_id("ID-BLANK", "   "),
        bad_id("ID-LONG", "a" * 101),
        bad_id("ID-NEWLINE", "abc\ndef"),
        bad_id("ID-PATH", "../payment_methods"),
        bad_id("ID-SQL", "x' OR '1'='1'; DROP TABLE komoju.orders; --"),
        bad_id("ID-WIDE", "\uff50\uff41\uff59\uff11\uff12\uff13"),  # full-width "pay123"
    ]
    # amounts and currencies: a refund moves money and refuses them; a cancel does not need them
    for n, (amount, currency) in enumerate(
        [("1000", "XYZ"), ("1000", None), ("1000", "jpy"), ("1000", "<b>JPY</b>"), ("-1", "JPY"), ("NaN", "JPY")]
    ):
        label = f"bi{job[0]}m{n}"
        status = "pending" if job == "cancel" else "captured"
        if job == "refund":
            orders.append(Order(site, f"MONEY-{n}", job, pid(label), amount, currency, payment(label, status, 1000),
                                expect="Failed", final=True, called=False))  # fmt: skip
        else:
            orders.append(Order(site, f"MONEY-{n}", job, pid(label), amount, currency, payment(label, status, 1000),
                                expect="Cancelled", effect=1000))  # fmt: skip
    for n, order_no in enumerate(WEIRD_ORDER_NOS):
        orders.append(done_order(site, job, order_no, f"bi{job[0]}w{n}", 100 + n))
    orders.append(rejected_order(site, job, "<img src=x onerror=alert(1)>", f"bi{job[0]}rej"))
    # not the job's orders: never touched, KOMOJU never hears of them
    status = "pending" if job == "cancel" else "captured"
    for n, (order_status, method) in enumerate([("completed", "KOMOJU_HOSTED_PAGE"), ("cancelled", None)]):
        label = f"bi{job[0]}x{n}"
        orders.append(Order(site, f"NOT-{n}", job, pid(label), payment=payment(label, status, 500),
                            status=order_status, payment_method=method, called=False))  # fmt: skip
    return orders


@pytest.mark.parametrize("job", ["cancel", "refund"])
def test_malformed_rows_and_odd_text_get_a_clear_error_or_a_clean_skip(job, db, smtp_sink, run_dag, monkeypatch):
    orders = row_catalogue(job)
    prior = {"cancel": "komoju_cancel", "refund": "komoju_refund"}[job]
    with db.cursor() as cur:
        insert_site(cur, ROWS_SITE, name=ROWS_SITE_NAME, emails=[ROWS_RECIPIENT], locale="en")
        insert_orders(cur, orders)
        # an earlier run's status and reason holding HTML: replaced by the job's own
        cur.execute(f"UPDATE komoju.orders SET {prior}_status = 'Failed', {prior}_response = '<b>old</b>'"  # noqa: S608
                    " WHERE order_no = %s", (WEIRD_ORDER_NOS[0],))  # fmt: skip
    db.commit()
    tables_before = _komoju_tables(db)
    with EmulatorServer(scenario([o.payment for o in orders if o.payment], [KEY])) as komoju:
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(komoju.base_url, KEY)))

        run = run_dag(DAG_IDS[job], site_ids=[ROWS_SITE])

        assert run.state == "success"
        assert run.per_site(SITE_TASKS[job])[ROWS_SITE].state == "success"
        ledger = komoju.ledger()
        assert outcome_problems(db, job, orders, ledger) == []
        assert half_written(db, job, [ROWS_SITE]) == []
        statuses = job_statuses(db, job, [ROWS_SITE])
        for order in orders:
            status, response = statuses[(ROWS_SITE, order.order_no)]
            if order.expect == "Failed" and not order.called:  # refused without a call: the reason says why
                assert ("payment id" in response) or ("currency" in response) or ("total_gross_price" in response), (
                    order.order_no,
                    response,
                )
            if status is not None:
                assert not _CONTROL.search(response or ""), (order.order_no, response)
        # the idempotency keys stay ASCII and short, whatever the order numbers hold
        keys = [k for (k,) in rows(db, "SELECT idempotency_key FROM komoju.attempt")]
        assert keys
        assert all(re.fullmatch(r"[!-~]{1,100}", k) for k in keys), keys
        # SQL in the data never ran: same tables, same orders and sites
        after = _komoju_tables(db)
        assert {t: after[t] for t in ("orders", "site")} == {t: tables_before[t] for t in ("orders", "site")}
        # the e-mail: one, to the contact only, one-line subject, every value escaped
        finals = {o.order_no for o in orders if o.final}
        mails = check_mails(smtp_sink.messages, ROWS_RECIPIENT, finals)
        assert mails.problems == []
        assert mails.duplicates == 0
        (mail,) = smtp_sink.messages
        assert list(mail.rcpt_tos) == [ROWS_RECIPIENT]
        assert "\n" not in str(mail.message["Subject"])
        assert mail.message["Bcc"] is None
        body = html_body(mail)
        for raw in ("<script", "<img", "<b>JPY", "<b>rows"):
            assert raw not in body, raw
        assert "&lt;img src=x onerror=alert(1)&gt;" in body
        assert "&lt;script&gt;alert(&#x27;site&#x27;)&lt;/script&gt;" in body


# ---------------------------------------------------------------------------------------------------------------
# KOMOJU answering oddly
# ---------------------------------------------------------------------------------------------------------------

ODD_SITE, NORMAL_SITE = "odd-site", "normal-site"
ODD_RECIPIENT = "ops-odd@example.com"
HUGE_MESSAGE = "Refund impossible: " + "very long reason " * 12_000
CONTROL_MESSAGE = (
    "bell\x07 escape\x1b[31m nul-ish\x00 \u202eesrever\u202c 返金できません 🙅 <script>alert(1)</script>\r\nX: y"
)
HTML_PAGE = "<html><head><style>body{}</style></head><body>" + "<div><p>Service Unavailable</p></div>" * 1500


def odd_cases(job: str) -> dict[str, tuple[OddAnswer, OddAnswer | None, str, tuple[str, ...]]]:
    """payment label -> (POST answer, GET answer, expected status, words the stored response must hold)."""
    refusal = "not_cancellable" if job == "cancel" else "not_refundable"
    reached = "cancelled" if job == "cancel" else "refunded"
    return {
        "oddtext": (OddAnswer(200, b"OK", "text/plain"), None, "Failed", ("non-JSON",)),
        "oddlist": (OddAnswer.json(200, []), None, "Failed", ("JSON object",)),
        # accepted, but the payment does not say it is done: Pending (followed up by GET), never taken as done
        "oddnostatus": (OddAnswer.json(200, {"id": pid("oddnostatus")}), None, "Pending", ("accepted", "None")),
        "oddempty": (OddAnswer.json(422, {}), None, "Failed", ("422", "without an error object")),
        "oddhuge": (OddAnswer.json(400, {"error": {"code": "invalid_parameter", "message": HUGE_MESSAGE}}), None,
                    "Failed", ("400", "invalid_parameter", "Refund impossible")),
        "oddctrl": (OddAnswer.json(400, {"error": {"code": "bad_request", "message": CONTROL_MESSAGE}}), None,
                    "Failed", ("返金できません", "esrever")),
        "oddcode": (OddAnswer.json(422, {"error": {"code": "<b>x</b>'; DROP TABLE komoju.orders; --",
                                                   "message": "<img src=x onerror=alert(1)>"}}), None,
                    "Failed", ("DROP TABLE", "<img")),
        "oddhtml": (OddAnswer(500, HTML_PAGE.encode(), "text/html"), None, "Failed", ("500", "non-JSON")),
        "oddbytes": (OddAnswer(400, b"\xff\xfe\x00{\x81\"error\"", "application/json"), None, "Failed",
                     ("400", "non-JSON")),
        "oddredirect": (OddAnswer(302, b"", "text/plain", (("Location", "http://evil.example/steal"),)), None,
                        "Failed", ("302",)),
        "oddretry": (OddAnswer(429, b'{"error": {"code": "too_many_requests", "message": "slow down"}}',
                               headers=(("Retry-After", "999999"),)), None, "Failed", ("429",)),
        "oddcheck": (OddAnswer.json(422, {"error": {"code": refusal, "message": "cannot"}}),
                     OddAnswer(200, b"<html>maintenance</html>", "text/html"), "Failed",
                     (refusal, "checking the payment failed")),
        "oddok": (OddAnswer.json(200, {"id": pid("oddok"), "status": reached}), None, DONE[job], (reached,)),
    }  # fmt: skip


@pytest.mark.parametrize("job", ["cancel", "refund"])
def test_odd_komoju_answers_fail_their_order_clearly_and_touch_no_other(job, db, smtp_sink, run_dag, monkeypatch):
    cases = odd_cases(job)
    odd_orders = [Order(ODD_SITE, f"ODD-{label}", job, pid(label), expect=expect, final=expect == "Failed")
                  for label, (_, _, expect, _) in cases.items()]  # fmt: skip
    normal = [done_order(NORMAL_SITE, job, f"NORMAL-{n}", f"normal{job[0]}{n}", 700 + n) for n in range(3)]
    with db.cursor() as cur:
        insert_site(cur, ODD_SITE, emails=[ODD_RECIPIENT], conn_id="komoju_odd")
        insert_site(cur, NORMAL_SITE, emails=["ops-normal@example.com"])
        insert_orders(cur, [*odd_orders, *normal])
    db.commit()
    tables_before = _komoju_tables(db)
    answers = {pid(label): post for label, (post, _, _, _) in cases.items()}
    checks = {pid(label): get for label, (_, get, _, _) in cases.items() if get is not None}
    with (
        OddKomoju(answers, checks) as odd,
        EmulatorServer(scenario([o.payment for o in normal], [KEY])) as komoju,
    ):
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_ODD", json.dumps(komoju_connection(odd.base_url, ODD_KEY)))
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(komoju.base_url, KEY)))

        # max_attempts 1: every failure is final at once, so that its e-mail is checked too
        run = run_dag(DAG_IDS[job], site_ids=[ODD_SITE, NORMAL_SITE], max_attempts=1)

        assert run.state == "success"
        assert run.per_site(SITE_TASKS[job])[ODD_SITE].state == "success"
        assert run.per_site(SITE_TASKS[job])[NORMAL_SITE].state == "success"
        # the other site is not affected at all
        assert outcome_problems(db, job, normal, komoju.ledger()) == []
        assert half_written(db, job, [ODD_SITE, NORMAL_SITE]) == []
        statuses = job_statuses(db, job, [ODD_SITE])
        problems = []
        for label, (_, _, expect, words) in cases.items():
            status, response = statuses[(ODD_SITE, f"ODD-{label}")]
            response = response or ""
            if status != expect:
                problems.append(f"{label}: status {status!r} ({response!r}), expected {expect!r}")
            problems += [f"{label}: response {response!r} lacks {w!r}" for w in words if w not in response]
            if len(response) > RESPONSE_MAX_CHARS or _CONTROL.search(response):
                problems.append(f"{label}: response not one clean line of at most 1000 characters: {response!r}")
        assert problems == []
        huge = statuses[(ODD_SITE, "ODD-oddhuge")][1]
        assert 200 < len(huge) <= RESPONSE_MAX_CHARS
        assert "…" in huge  # cut, with what the payment check found after it
        stored = rows(db, "SELECT max(length(response)), max(length(last_error)) FROM komoju.attempt")[0]
        assert all(n is None or n <= RESPONSE_MAX_CHARS for n in stored), stored
        assert [p for (p,) in rows(db, "SELECT reason FROM komoju.final_failure") if len(p) > RESPONSE_MAX_CHARS] == []
        # every POST carried a key; nothing was ever sent anywhere else (the redirect was not followed)
        posts = [headers for method, _, headers in odd.requests if method == "POST"]
        assert posts
        assert all(re.fullmatch(r"[!-~]{1,100}", h.get("X-KOMOJU-IDEMPOTENCY", "")) for h in posts)
        assert _komoju_tables(db)["orders"] == tables_before["orders"]
        # one e-mail, escaped, with each failed order once and its reason no longer than the stored one
        finals = {o.order_no for o in odd_orders if o.final}
        mails = check_mails(smtp_sink.messages, ODD_RECIPIENT, finals)
        assert mails.problems == []
        assert mails.duplicates == 0
        (mail,) = [m for m in smtp_sink.messages if ODD_RECIPIENT in m.rcpt_tos]
        body = html_body(mail)
        assert "<img" not in body
        assert "<b>x</b>" not in body
        assert "&lt;img src=x onerror=alert(1)&gt;" in body
        assert all(len(row[3]) <= RESPONSE_MAX_CHARS for row in mailed_rows(mail))


# ---------------------------------------------------------------------------------------------------------------
# Params of the wrong type
# ---------------------------------------------------------------------------------------------------------------

BAD_CONFS = [
    {"site_ids": "tokyo"},
    {"site_ids": [1, 2]},
    {"site_ids": [""]},
    {"site_ids": ["tokyo", "tokyo"]},
    {"site_ids": {"tokyo": True}},
    {"max_attempts": 0},
    {"max_attempts": "three"},
    {"max_concurrency": 1000},
    {"dry_run": "maybe"},
]


@pytest.mark.parametrize("conf", BAD_CONFS, ids=[json.dumps(c) for c in BAD_CONFS])
@pytest.mark.parametrize("job", ["cancel", "refund"])
def test_params_of_the_wrong_type_are_refused_before_anything_runs(job, conf, db, run_dag, monkeypatch):
    from airflow.sdk.exceptions import ParamValidationError

    order = done_order("tokyo", job, "TK-01", f"tk{job[0]}01", 1000)
    with db.cursor() as cur:
        insert_site(cur, "tokyo")
        insert_orders(cur, [order])
    db.commit()
    with EmulatorServer(scenario([order.payment], [KEY])) as komoju:
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(komoju.base_url, KEY)))
        name = next(iter(conf))

        with pytest.raises(ParamValidationError, match=name):
            run_dag(DAG_IDS[job], **conf)

        assert komoju.ledger() == []
        assert job_statuses(db, job, ["tokyo"]) == {("tokyo", "TK-01"): (None, None)}
        assert rows(db, "SELECT count(*) FROM komoju.attempt") == [(0,)]


@pytest.mark.parametrize("job", ["cancel", "refund"])
def test_site_ids_holding_sql_fail_the_run_at_resolve_sites_and_touch_nothing(job, db, run_dag, monkeypatch):
    order = done_order("tokyo", job, "TK-01", f"tq{job[0]}01", 1000)
    with db.cursor() as cur:
        insert_site(cur, "tokyo")
        insert_orders(cur, [order])
    db.commit()
    with EmulatorServer(scenario([order.payment], [KEY])) as komoju:
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(komoju.base_url, KEY)))

        run = run_dag(DAG_IDS[job], site_ids=["tokyo' OR '1'='1", "x'); DELETE FROM komoju.orders; --"])

        assert run.state == "failed"
        assert run.task("resolve_sites").state == "failed"
        assert komoju.ledger() == []
        assert job_statuses(db, job, ["tokyo"]) == {("tokyo", "TK-01"): (None, None)}
        assert rows(db, "SELECT count(*) FROM komoju.orders") == [(1,)]


def test_a_contact_address_with_a_line_break_fails_its_send_clearly_and_loses_nothing(db, smtp_sink, run_dag,
                                                                                       monkeypatch):  # fmt: skip
    """A contact address holding CR/LF and a header (``komoju.site.notify_emails`` is integrator data) can never
    add a recipient: that site's send fails with an error, its failures stay recorded for a later send, and the
    other site's e-mail goes out."""
    job = "refund"
    injected, clean = "inject-site", "clean-site"
    orders = [rejected_order(injected, job, "IN-R", "injr"), rejected_order(clean, job, "CL-R", "clr")]
    with db.cursor() as cur:
        insert_site(cur, injected, emails=["ops-inject@example.com\r\nBcc: evil@example.com"])
        insert_site(cur, clean, emails=["ops-clean@example.com"])
        insert_orders(cur, orders)
    db.commit()
    with EmulatorServer(scenario([o.payment for o in orders], [KEY])) as komoju:
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(komoju.base_url, KEY)))

        run = run_dag(DAG_IDS[job], site_ids=[injected, clean])

        assert outcome_problems(db, job, orders, komoju.ledger()) == []
        sends = run.per_site("send_failure_email")
        assert sends[clean].state == "success"
        assert sends[injected].state == "failed"
        received = [(tuple(m.rcpt_tos), m.message["Bcc"]) for m in smtp_sink.messages]
        assert received == [(("ops-clean@example.com",), None)]
        assert rows(db, "SELECT f.site_id, n.sent_at IS NULL FROM komoju.final_failure AS f"
                        " JOIN komoju.notification AS n USING (notification_id) ORDER BY 1") == [
            (clean, False), (injected, True)]  # fmt: skip
