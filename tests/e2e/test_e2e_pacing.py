"""Acceptance: how hard a site's run presses KOMOJU (issue 6): the concurrency comes from the DAG param, else
the site's connection extra ``max_concurrency``, else 8; an optional ``rate_limit`` extra spaces the requests of
all the site's threads. Measured on the emulator: its peak of requests served at once, and its ledger times."""

from __future__ import annotations

import os
from datetime import datetime

from scenario import Case, Site, effects_by_payment, emulator_scenario, insert_orders, payment, setup_database

from emulator.testing import EmulatorServer

SITE = Site("site-p", "Site P", "komoju_default", "merchant-p", "sk_test_e2e_site_p", ("p-ops@example.com",),
            locale="en")  # fmt: skip


def pending(count: int, tag: str) -> list[Case]:
    return [
        Case("cancel", SITE, f"{tag.upper()}-{n:02d}", "1000", "JPY", payment=payment(f"{tag}{n:02d}", "pending", 1000),
             expect="Cancelled", response_has=("cancelled",), effect=1000)
        for n in range(1, count + 1)
    ]  # fmt: skip


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_concurrency_from_connection_extra_then_param(db, smtp_sink, run_dag, set_komoju_connection):
    first, second = pending(12, "pa"), pending(12, "pb")
    cases = (*first, *second)
    with EmulatorServer(emulator_scenario(cases, (SITE,))) as komoju:
        komoju.set_settings(latency_ms=150)
        set_komoju_connection(SITE.conn_id, komoju.base_url, SITE.secret_key, max_concurrency=2)
        setup_database(db, tuple(first), (SITE,))

        run = run_dag("komoju_cancel_process")  # max_concurrency param left empty: the connection's 2

        assert run.states("cancel_site") == {SITE.site_id: "success"}
        assert komoju.health()["peak_active_requests"] == 2, "two calls in flight at once, never more"

        insert_orders(db, tuple(second))  # 12 more orders; the param now wins over the extra
        run = run_dag("komoju_cancel_process", max_concurrency=6)

        assert run.states("cancel_site") == {SITE.site_id: "success"}
        assert 2 < komoju.health()["peak_active_requests"] <= 6
        assert effects_by_payment(komoju.ledger()) == {c.stored_payment_id: [("cancel", 1000)] for c in cases}


def test_next_batch_is_sent_while_the_last_is_in_flight(db, smtp_sink, run_dag, set_komoju_connection):
    """Batches of 3 (KOMOJU_BATCH_SIZE in the tests' environment) and 6 calls at a time: more than 3 calls in
    flight at once can only come from two batches overlapping; every order still gets exactly one cancel."""
    assert os.environ["KOMOJU_BATCH_SIZE"] == "3"
    cases = tuple(pending(12, "pp"))
    with EmulatorServer(emulator_scenario(cases, (SITE,))) as komoju:
        komoju.set_settings(latency_ms=200)
        set_komoju_connection(SITE.conn_id, komoju.base_url, SITE.secret_key)
        setup_database(db, cases, (SITE,))

        run = run_dag("komoju_cancel_process", max_concurrency=6)

        assert run.states("cancel_site") == {SITE.site_id: "success"}
        assert komoju.health()["peak_active_requests"] > 3, "the batches were not pipelined"
        assert effects_by_payment(komoju.ledger()) == {c.stored_payment_id: [("cancel", 1000)] for c in cases}


def test_rate_limit_extra_spaces_every_threads_requests(db, smtp_sink, run_dag, set_komoju_connection):
    cases = tuple(pending(11, "pr"))
    with EmulatorServer(emulator_scenario(cases, (SITE,))) as komoju:
        set_komoju_connection(SITE.conn_id, komoju.base_url, SITE.secret_key, rate_limit=10)
        setup_database(db, cases, (SITE,))

        run = run_dag("komoju_cancel_process")  # 8 threads, but 10 requests per second in all

        assert run.states("cancel_site") == {SITE.site_id: "success"}
        posts = [e for e in komoju.requests_log() if e["method"] == "POST"]
        assert len(posts) == 11
        span = _seconds(posts[-1]["time"]) - _seconds(posts[0]["time"])
        assert span >= 0.8, f"11 requests at 10/s start 1 s apart from first to last; the ledger spans {span:.2f} s"
        assert komoju.health()["peak_active_requests"] <= 2
