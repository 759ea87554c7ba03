"""KOMOJU faults (SPEC §4.4, §5; issue 5, item 3).

The emulator fails a seeded random share of every request (POST and GET) in every way it knows: 500, 503, an
HTML 502 from a proxy, a timeout longer than the hook's read timeout (answered late, applied or not), a dropped
connection (reset or a truncated body, applied or not), 429 with Retry-After, 409, and 500 after applying. The
DAG is run again (a new run) until every order is final, at most ``max_attempts`` runs: each order must end in
its right status, with exactly one effective cancel/refund at KOMOJU, never two at any moment, no attempt left
open, and each final failure e-mailed once.

The hook runs with quick retries (``backoff_base`` 0.01 s, ``max_retry_wait`` 0.5 s, ``read_timeout`` 2 s,
``max_retries`` 3); the emulator's timeout fault answers after 2.5 s.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from reliability_kit import (
    DAG_IDS,
    SEED,
    SITE_TASKS,
    Order,
    already_done_order,
    assert_site_finished,
    done_order,
    insert_orders,
    insert_site,
    job_statuses,
    komoju_connection,
    outcome_problems,
    payment,
    pid,
    rejected_order,
    rows,
    scenario,
    unknown_payment_order,
)

from emulator.faults import parse_rule
from emulator.testing import EmulatorServer

pytestmark = pytest.mark.reliability

KEY = "sk_test_reliability_faults_key"
MAX_ATTEMPTS = 3
# With errors stored under their key, an error answer to an attempt's first send is replayed to every retry of the
# run: the order loses that run's try by the idempotency protocol itself (the next run starts a new key). At a 30%
# fault rate some order would, by chance, meet such an answer in 3 runs in a row: those trials get 5.
MAX_ATTEMPTS_ERRORS_REPLAYED = 5
FAULT_RATE = 0.3  # share of requests that meet a fault
FAULTS = (
    {"kind": "error_500"},
    {"kind": "error_503"},
    {"kind": "html_502"},
    {"kind": "timeout", "seconds": 2.5},
    {"kind": "timeout", "seconds": 2.5, "apply": True},
    {"kind": "drop"},
    {"kind": "drop", "apply": True},
    {"kind": "drop", "mode": "truncate"},
    {"kind": "drop", "mode": "truncate", "apply": True},
    {"kind": "rate_limit", "retry_after": 1},
    {"kind": "conflict"},
    {"kind": "applied_500"},
)
# Each trial under both readings of KOMOJU's idempotency page: an error answer stored under its key and replayed to
# a resend of it, or not stored (the resend is executed for real).
TRIALS = [
    (job, seed, replay)
    for job, seeds in (("refund", (SEED, SEED + 1)), ("cancel", (SEED + 100, SEED + 101)))
    for seed, replay in zip(seeds, (True, False), strict=True)
]
FIRED: Counter[str] = Counter()  # fault firings over the module's trials, by kind and options
REPLACED_ATTEMPTS = """
    SELECT order_no, attempt_no, http_status, outcome FROM komoju.attempt AS a
    WHERE site_id = %s AND EXISTS (SELECT 1 FROM komoju.attempt AS b WHERE b.site_id = a.site_id AND b.job = a.job
                                   AND b.order_no = a.order_no AND b.attempt_no > a.attempt_no)
"""  # attempts of the site followed by another attempt of the same order


def fault_label(rule: dict) -> str:
    """The fault's kind and its behaviour options, defaults included (as the emulator reports its rules)."""
    full = parse_rule({k: v for k, v in rule.items() if k != "fired"}).to_json()
    options = [f"{k}={full[k]}" for k in ("apply", "mode") if k in full]
    return " ".join([full["kind"], *options])


def fault_rules(seed: int, targets: list[str]) -> list[dict]:
    """One fault of each kind, once, on the first POST about each of ``targets`` (so every kind surely fires),
    then every kind at random on every request, in a seeded order, together failing FAULT_RATE of requests."""
    kinds = [dict(rule) for rule in FAULTS]
    rng = random.Random(seed)
    rng.shuffle(kinds)
    once = [{**rule, "match": {"method": "POST", "payment_id": target}, "times": 1}
            for rule, target in zip(kinds, targets, strict=False)]  # fmt: skip
    rng.shuffle(kinds)
    each = 1 - (1 - FAULT_RATE) ** (1 / len(kinds))
    return once + [{**rule, "rate": round(each, 4)} for rule in kinds]


def site_orders(job: str, site_id: str, tag: str) -> list[Order]:
    orders = [done_order(site_id, job, f"{tag}-{n:02d}", f"{tag.lower()}d{n}", 1000 + n) for n in range(1, 17)]
    orders += [
        already_done_order(site_id, job, f"{tag}-A", f"{tag.lower()}a"),
        rejected_order(site_id, job, f"{tag}-R", f"{tag.lower()}r"),
        unknown_payment_order(site_id, job, f"{tag}-N", f"{tag.lower()}n"),
    ]
    if job == "refund":  # refunded in part before: the job refunds the rest, once
        label = f"{tag.lower()}p"
        orders.append(Order(site_id, f"{tag}-P", job, pid(label), "5000", "JPY",
                            payment(label, "captured", 5000, amount_refunded=2000), expect="Refunded",
                            effect=3000))  # fmt: skip
    else:  # expired: not cancellable, KOMOJU shows it expired -> Rejected
        label = f"{tag.lower()}e"
        orders.append(Order(site_id, f"{tag}-E", job, pid(label), "600", "JPY", payment(label, "expired", 600),
                            expect="Rejected", final=True))  # fmt: skip
    return orders


@pytest.mark.parametrize(
    ("job", "seed", "replay_errors"),
    TRIALS,
    ids=[f"{job}-seed{seed}-{'errors replayed' if replay else 'errors not stored'}" for job, seed, replay in TRIALS],
)
def test_random_faults_every_order_right_within_max_attempts_runs_exactly_once(
    job, seed, replay_errors, db, smtp_sink, run_dag, monkeypatch
):
    site_id, tag, recipient = f"faults-{job}", f"F{seed % 1000:03d}", f"ops-faults-{job}@example.com"
    orders = site_orders(job, site_id, tag)
    with db.cursor() as cur:
        insert_site(cur, site_id, name="Faulty KOMOJU", emails=[recipient])
        insert_orders(cur, orders)
    db.commit()
    rules = fault_rules(seed, [o.payment_id for o in orders if o.effect])
    komoju_scenario = scenario([o.payment for o in orders if o.payment], [KEY], seed=seed, latency_ms=20,
                               jitter_ms=30, faults=rules)  # fmt: skip
    with EmulatorServer(komoju_scenario) as komoju:
        komoju.set_settings(replay_errors=replay_errors)
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", json.dumps(komoju_connection(komoju.base_url, KEY)))
        expected = {(o.site_id, o.order_no): o.expect for o in orders}
        runs = 0
        max_attempts = MAX_ATTEMPTS_ERRORS_REPLAYED if replay_errors else MAX_ATTEMPTS
        while runs < max_attempts:
            runs += 1
            run_dag(DAG_IDS[job], site_ids=[site_id], max_attempts=max_attempts)
            effects = Counter(e["payment_id"] for e in komoju.ledger() if e["type"] == "effect")
            assert [p for p, n in effects.items() if n > 1] == [], f"run {runs}: a payment was changed twice"
            statuses = {k: status for k, (status, _) in job_statuses(db, job, [site_id]).items()}
            still_open = rows(db, "SELECT 1 FROM komoju.attempt WHERE site_id = %s AND finished_at IS NULL",
                              (site_id,))  # fmt: skip
            if statuses == expected and not still_open:
                break
        fired = Counter()
        for rule in komoju._control("GET", "faults")["rules"]:
            fired[fault_label(rule)] += rule["fired"]
        FIRED.update(fired)
        print(f"{job} seed {seed}: final after {runs} run(s); faults fired: {dict(sorted(fired.items()))}")

        ledger = komoju.ledger()
        assert_site_finished(db, job, site_id, orders, ledger, smtp_sink.messages, recipient, f"after {runs} runs")
        # every POST carried its order's stored key; an order got a new key only after KOMOJU answered the one
        # before with an error (resending it could only replay that error), never after a lost answer
        keys = rows(db, "SELECT komoju_payment_id, idempotency_key FROM komoju.attempt WHERE site_id = %s",
                    (site_id,))  # fmt: skip
        posted = {(e["payment_id"], e["idempotency_key"]) for e in ledger if e["type"] == "request"
                  and e["method"] == "POST"}  # fmt: skip
        assert posted <= set(keys)
        replaced = rows(db, REPLACED_ATTEMPTS, (site_id,))
        assert [r for r in replaced if r[2] is None or r[3] != "failed"] == [], replaced
        print(f"{job} seed {seed}: {len(replaced)} order(s) got a new key after an error answer")


def test_every_fault_kind_fired():
    """The random schedule above really exercised every kind of fault."""
    print("\nfault firings over the seeded trials: " + ", ".join(f"{k} {n}" for k, n in sorted(FIRED.items())))
    if not FIRED:
        pytest.skip("the fault trials did not run")
    assert {fault_label(rule) for rule in FAULTS} <= {k for k, n in FIRED.items() if n}


def test_a_try_refused_before_komoju_looked_is_not_counted(db, smtp_sink, run_dag, monkeypatch):
    """A run whose key KOMOJU refuses (401) changes no order (SPEC §4.2) and the resent call it did not get to
    make is not counted against the order's attempts (the operator's own promise): with max_attempts 2, an order
    that met one transient failure, then a run with a refused key, still gets its second real try."""
    site_id, job = "refused-then-fixed", "refund"
    order = done_order(site_id, job, "RF-01", "rf01", 1200)
    with db.cursor() as cur:
        insert_site(cur, site_id, emails=["ops-refused@example.com"])
        insert_orders(cur, [order])
    db.commit()
    down = [{"kind": "error_503", "match": {"payment_id": order.payment_id}, "times": 4}]  # one whole try
    with EmulatorServer(scenario([order.payment], [KEY], faults=down)) as komoju:
        good = json.dumps(komoju_connection(komoju.base_url, KEY))
        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", good)

        first = run_dag(DAG_IDS[job], site_ids=[site_id], max_attempts=2)
        assert first.per_site(SITE_TASKS[job])[site_id].state == "success"
        assert rows(db, "SELECT tries, finished_at IS NULL FROM komoju.attempt") == [(1, True)]

        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT",
                           json.dumps(komoju_connection(komoju.base_url, "sk_test_reliability_wrong_key")))  # fmt: skip
        refused = run_dag(DAG_IDS[job], site_ids=[site_id], max_attempts=2)
        assert refused.per_site(SITE_TASKS[job])[site_id].state == "failed"
        assert [e["status"] for e in komoju.requests_log() if e["merchant_id"] is None] == [401]
        tries_after_refusal = rows(db, "SELECT tries FROM komoju.attempt")

        monkeypatch.setenv("AIRFLOW_CONN_KOMOJU_DEFAULT", good)
        fixed = run_dag(DAG_IDS[job], site_ids=[site_id], max_attempts=2)

        statuses = job_statuses(db, job, [site_id])
        attempts = rows(db, "SELECT attempt_no, tries, outcome, response FROM komoju.attempt ORDER BY attempt_no")
        assert outcome_problems(db, job, [order], komoju.ledger()) == [], (
            f"attempt tries after the refused run: {tries_after_refusal} (1 expected); order {statuses}; "
            f"attempts {attempts}; e-mails {[m.message['Subject'] for m in smtp_sink.messages]}"
        )
        assert fixed.state == "success"
        assert smtp_sink.messages == []
