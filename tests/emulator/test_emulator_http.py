"""The emulator through a real server and ``requests``: auth, endpoints, idempotency, faults, ledger, CLI."""

from __future__ import annotations

import base64
import json
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from emulator_kit import (
    CANCELLED,
    CAPTURED,
    GLOBAL_CAPTURED,
    GLOBAL_KEY,
    JP_FORBIDDEN_KEY,
    JP_KEY,
    KONBINI,
    PENDING,
    TIMEOUT,
    assert_error,
    cancel_url,
    keyed,
    last_request,
    refund_url,
)

from emulator.testing import BASIC_SCENARIO, PROJECT_ROOT, EmulatorServer, poll_until

PAYMENT_FIELDS = {
    "id", "resource", "status", "amount", "tax", "customer", "payment_deadline", "payment_details",
    "payment_method_fee", "total", "currency", "description", "captured_at", "external_order_num", "metadata",
    "created_at", "amount_refunded", "locale", "session", "customer_family_name", "customer_given_name", "mcc",
    "statement_descriptor", "refunds", "refund_requests",
}  # fmt: skip
REFUND_FIELDS = {"id", "resource", "amount", "currency", "payment", "description", "created_at", "chargeback"}

SessionFactory = Callable[[str | None], requests.Session]


# Fixtures live here, not in a tests/emulator/conftest.py: a second conftest module would replace
# sys.modules["conftest"], which other test modules import ROOT from.


@pytest.fixture(scope="module")
def emu_server() -> Iterator[EmulatorServer]:
    """One emulator (thread mode) for this module."""
    with EmulatorServer(BASIC_SCENARIO) as server:
        yield server


@pytest.fixture
def emu(emu_server: EmulatorServer) -> EmulatorServer:
    """The shared emulator, reset to the basic scenario before the test."""
    emu_server.reset()
    return emu_server


@pytest.fixture
def komoju_session(emu: EmulatorServer) -> Iterator[SessionFactory]:
    """Factory: a ``requests.Session`` authenticating with a secret key (None: no auth at all)."""
    sessions: list[requests.Session] = []

    def make(secret_key: str | None) -> requests.Session:
        session = requests.Session()
        if secret_key is not None:
            session.auth = (secret_key, "")
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def jp(komoju_session: SessionFactory) -> requests.Session:
    return komoju_session(JP_KEY)


# -- auth and ownership --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret_key", "status", "code"),
    [(None, 401, "unauthorized"), ("sk_test_typo", 401, "unauthorized"), (JP_FORBIDDEN_KEY, 403, "forbidden")],
)
def test_auth_failures(
    emu: EmulatorServer, komoju_session: SessionFactory, secret_key: str | None, status: int, code: str
) -> None:
    session = komoju_session(secret_key)
    assert_error(session.get(f"{emu.api_url}/payment_methods", timeout=TIMEOUT), status, code)
    assert_error(session.post(cancel_url(emu, PENDING), timeout=TIMEOUT), status, code)
    assert emu.payment(PENDING)["status"] == "pending"
    assert emu.effects() == []


def test_password_style_auth_is_not_a_key(emu: EmulatorServer) -> None:
    response = requests.get(f"{emu.api_url}/payment_methods", auth=("", JP_KEY), timeout=TIMEOUT)
    assert_error(response, 401, "unauthorized")


def test_another_merchants_payment_is_404(emu: EmulatorServer, komoju_session: SessionFactory) -> None:
    other = komoju_session(GLOBAL_KEY)
    assert_error(other.get(f"{emu.api_url}/payments/{CAPTURED}", timeout=TIMEOUT), 404, "not_found")
    assert_error(other.post(refund_url(emu, CAPTURED), timeout=TIMEOUT), 404, "not_found")
    assert emu.payment(CAPTURED)["status"] == "captured"
    own = other.get(f"{emu.api_url}/payments/{GLOBAL_CAPTURED}", timeout=TIMEOUT)
    assert (own.status_code, own.json()["currency"]) == (200, "USD")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/payments/" + "z" * 25),
        ("GET", "/api/v1/customers"),
        ("POST", f"/api/v1/payments/{CAPTURED}/capture"),
        ("GET", f"/api/v1/payments/{CAPTURED}/cancel"),
        ("GET", "/elsewhere"),
    ],
)
def test_unknown_things_are_json_404(emu: EmulatorServer, jp: requests.Session, method: str, path: str) -> None:
    assert_error(jp.request(method, f"{emu.base_url}{path}", timeout=TIMEOUT), 404, "not_found")


# -- read endpoints ------------------------------------------------------------------------------------


def test_payment_methods_shape(emu: EmulatorServer, jp: requests.Session, komoju_session: SessionFactory) -> None:
    methods = jp.get(f"{emu.api_url}/payment_methods", timeout=TIMEOUT).json()
    assert isinstance(methods, list)
    assert [(m["type_slug"], m["currency"]) for m in methods] == [
        ("credit_card", "JPY"),
        ("konbini", "JPY"),
        ("paypay", "JPY"),
        ("credit_card", "USD"),
    ]
    card_jpy = methods[0]
    assert {"type_slug", "name_en", "name_ja", "name_ko", "currency", "subtypes"} <= set(card_jpy)
    assert (card_jpy["name_ja"], card_jpy["subtypes"]) == ("クレジットカード", ["visa", "master", "jcb"])
    assert methods[1]["payment_method_fee"] == 190
    other = komoju_session(GLOBAL_KEY).get(f"{emu.api_url}/payment_methods", timeout=TIMEOUT).json()
    assert [(m["type_slug"], m["currency"]) for m in other] == [("credit_card", "USD"), ("credit_card", "EUR")]


def test_payment_object_shape(emu: EmulatorServer, jp: requests.Session) -> None:
    payment = jp.get(f"{emu.api_url}/payments/jppartial0000000000000001", timeout=TIMEOUT).json()
    assert set(payment) == PAYMENT_FIELDS
    assert re.fullmatch(r"[a-z0-9]{25}", payment["id"])
    assert (payment["resource"], payment["status"], payment["total"], payment["amount_refunded"]) == (
        "payment",
        "captured",
        11000,
        3000,
    )
    assert payment["payment_details"]["type"] == "credit_card"
    assert (payment["locale"], payment["statement_descriptor"], payment["customer"]) == ("en", {}, None)
    assert re.fullmatch(r"[a-z0-9]{25}", payment["session"])
    [refund] = payment["refunds"]
    assert set(refund) == REFUND_FIELDS
    assert (refund["resource"], refund["amount"], refund["payment"]) == ("refund", 3000, payment["id"])


def test_list_payments_over_http(emu: EmulatorServer, jp: requests.Session) -> None:
    response = jp.get(f"{emu.api_url}/payments", params={"status": "captured", "per_page": 2}, timeout=TIMEOUT)
    page = response.json()
    assert {k: page[k] for k in ("resource", "total", "page", "per_page", "last_page")} == {
        "resource": "list",
        "total": 3,
        "page": 1,
        "per_page": 2,
        "last_page": 2,
    }
    assert [p["status"] for p in page["data"]] == ["captured", "captured"]
    default = jp.get(f"{emu.api_url}/payments", timeout=TIMEOUT).json()
    assert (default["per_page"], default["total"], len(default["data"])) == (10, 9, 9)
    bad = jp.get(f"{emu.api_url}/payments", params={"per_page": "lots"}, timeout=TIMEOUT)
    assert_error(bad, 422, "invalid_parameter", "per_page")


# -- cancel and refund ---------------------------------------------------------------------------------


def test_cancel_happy_path(emu: EmulatorServer, jp: requests.Session) -> None:
    response = jp.post(cancel_url(emu, PENDING), timeout=TIMEOUT)
    assert (response.status_code, response.json()["status"], response.json()["id"]) == (200, "cancelled", PENDING)
    assert jp.get(f"{emu.api_url}/payments/{PENDING}", timeout=TIMEOUT).json()["status"] == "cancelled"
    [effect] = emu.effects(PENDING)
    assert (effect["action"], effect["from_status"], effect["to_status"]) == ("cancel", "pending", "cancelled")


@pytest.mark.parametrize("payment_id", [CAPTURED, CANCELLED])
def test_cancel_refused(emu: EmulatorServer, jp: requests.Session, payment_id: str) -> None:
    assert_error(jp.post(cancel_url(emu, payment_id), timeout=TIMEOUT), 422, "not_cancellable")
    assert emu.effects() == []


def test_error_statuses_follow_the_settings(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(not_cancellable_status=400, not_refundable_status=409)
    assert_error(jp.post(cancel_url(emu, CAPTURED), timeout=TIMEOUT), 400, "not_cancellable")
    assert_error(jp.post(refund_url(emu, PENDING), timeout=TIMEOUT), 409, "not_refundable")


def test_full_refund_without_body(emu: EmulatorServer, jp: requests.Session) -> None:
    response = jp.post(refund_url(emu, CAPTURED), timeout=TIMEOUT)
    payment = response.json()
    assert (response.status_code, payment["status"], payment["amount_refunded"]) == (200, "refunded", 5500)
    assert [refund["amount"] for refund in payment["refunds"]] == [5500]


def test_partial_refund_with_json_body(emu: EmulatorServer, jp: requests.Session) -> None:
    response = jp.post(refund_url(emu, CAPTURED), json={"amount": 1500, "description": "late"}, timeout=TIMEOUT)
    payment = response.json()
    assert (response.status_code, payment["status"], payment["amount_refunded"]) == (200, "captured", 1500)
    assert [(r["amount"], r["description"]) for r in payment["refunds"]] == [(1500, "late")]


@pytest.mark.parametrize(
    ("payment_id", "body", "status", "code", "param"),
    [
        (KONBINI, None, 422, "not_refundable", None),
        (PENDING, None, 422, "not_refundable", None),
        (CAPTURED, {"amount": 5501}, 422, "invalid_parameter", "amount"),
        (CAPTURED, {"amount": "100"}, 422, "invalid_parameter", "amount"),
        (CAPTURED, {"amount": 0}, 422, "invalid_parameter", "amount"),
    ],
)
def test_refund_refused(
    emu: EmulatorServer,
    jp: requests.Session,
    payment_id: str,
    body: dict[str, Any] | None,
    status: int,
    code: str,
    param: str | None,
) -> None:
    assert_error(jp.post(refund_url(emu, payment_id), json=body, timeout=TIMEOUT), status, code, param)
    assert emu.effects() == []


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_body_is_400(emu: EmulatorServer, jp: requests.Session, raw: bytes) -> None:
    response = jp.post(
        refund_url(emu, CAPTURED), data=raw, headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    assert_error(response, 400, "bad_request")
    assert emu.effects() == []


# -- idempotency over HTTP -----------------------------------------------------------------------------


def test_idempotent_replay(emu: EmulatorServer, jp: requests.Session) -> None:
    first = jp.post(refund_url(emu, CAPTURED), json={"amount": 1000}, headers=keyed("order-1:1"), timeout=TIMEOUT)
    again = jp.post(refund_url(emu, CAPTURED), json={"amount": 1000}, headers=keyed("order-1:1"), timeout=TIMEOUT)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert [(e["idempotency_key"], e["replayed"]) for e in emu.requests_log()] == [
        ("order-1:1", False),
        ("order-1:1", True),
    ]
    [effect] = emu.effects(CAPTURED)
    assert (effect["amount"], effect["idempotency_key"]) == (1000, "order-1:1")
    assert emu.payment(CAPTURED)["amount_refunded"] == 1000


def test_same_key_other_body_is_422(emu: EmulatorServer, jp: requests.Session) -> None:
    jp.post(refund_url(emu, CAPTURED), json={"amount": 1000}, headers=keyed("k"), timeout=TIMEOUT)
    other = jp.post(refund_url(emu, CAPTURED), json={"amount": 2000}, headers=keyed("k"), timeout=TIMEOUT)
    assert_error(other, 422, "unprocessable_entity", "X-KOMOJU-IDEMPOTENCY")
    assert len(emu.effects()) == 1


@pytest.mark.parametrize("key", ["x" * 101, ""])
def test_bad_idempotency_key_is_400(emu: EmulatorServer, jp: requests.Session, key: str) -> None:
    response = jp.post(cancel_url(emu, PENDING), headers=keyed(key), timeout=TIMEOUT)
    assert_error(response, 400, "bad_request", "X-KOMOJU-IDEMPOTENCY")
    assert emu.payment(PENDING)["status"] == "pending"


def test_key_of_100_characters_is_fine(emu: EmulatorServer, jp: requests.Session) -> None:
    response = jp.post(cancel_url(emu, PENDING), headers=keyed("k" * 100), timeout=TIMEOUT)
    assert response.status_code == 200
    assert last_request(emu)["idempotency_key"] == "k" * 100


def test_keys_expire_after_24h_on_the_emulator_clock(emu: EmulatorServer, jp: requests.Session) -> None:
    def refund() -> requests.Response:
        return jp.post(refund_url(emu, CAPTURED), json={"amount": 1000}, headers=keyed("day-1"), timeout=TIMEOUT)

    refund()
    emu.advance_clock(24 * 3600 - 60)
    assert (refund().status_code, last_request(emu)["replayed"]) == (200, True)
    emu.advance_clock(60)
    assert (refund().status_code, last_request(emu)["replayed"]) == (200, False)
    assert [e["amount"] for e in emu.effects(CAPTURED)] == [1000, 1000]


def test_keys_are_per_merchant_over_http(
    emu: EmulatorServer, jp: requests.Session, komoju_session: SessionFactory
) -> None:
    assert jp.post(refund_url(emu, CAPTURED), headers=keyed("same"), timeout=TIMEOUT).status_code == 200
    other = komoju_session(GLOBAL_KEY).post(refund_url(emu, GLOBAL_CAPTURED), headers=keyed("same"), timeout=TIMEOUT)
    assert (other.status_code, other.json()["id"]) == (200, GLOBAL_CAPTURED)
    assert {e["merchant_id"] for e in emu.effects()} == {"shop-jp", "shop-global"}


def test_retry_while_the_first_is_in_flight_gets_409(emu: EmulatorServer, komoju_session: SessionFactory) -> None:
    emu.set_faults([{"kind": "timeout", "seconds": 1.5, "apply": True, "times": 1, "match": {"payment_id": PENDING}}])
    answers: dict[str, requests.Response] = {}

    def first() -> None:
        answers["first"] = komoju_session(JP_KEY).post(cancel_url(emu, PENDING), headers=keyed("slow"), timeout=10)

    worker = threading.Thread(target=first)
    worker.start()
    assert poll_until(emu.in_flight, what="first request in flight") == [
        {"merchant_id": "shop-jp", "idempotency_key": "slow"}
    ]
    retry = komoju_session(JP_KEY).post(cancel_url(emu, PENDING), headers=keyed("slow"), timeout=TIMEOUT)
    worker.join(10)
    assert_error(retry, 409, "conflict")
    assert (answers["first"].status_code, answers["first"].json()["status"]) == (200, "cancelled")
    later = komoju_session(JP_KEY).post(cancel_url(emu, PENDING), headers=keyed("slow"), timeout=TIMEOUT)
    assert (later.status_code, later.json()) == (200, answers["first"].json())
    assert len(emu.effects(PENDING)) == 1
    assert [(e["status"], e["replayed"]) for e in emu.requests_log()] == [(409, False), (200, False), (200, True)]


# -- latency -------------------------------------------------------------------------------------------


def test_latency_applies_and_concurrent_requests_overlap(emu: EmulatorServer, komoju_session: SessionFactory) -> None:
    emu.set_settings(latency_ms=300)
    sessions = [komoju_session(JP_KEY) for _ in range(8)]
    elapsed: list[float] = []

    def fetch(session: requests.Session) -> None:
        started = time.monotonic()
        assert session.get(f"{emu.api_url}/payments/{CAPTURED}", timeout=TIMEOUT).status_code == 200
        elapsed.append(time.monotonic() - started)

    started = time.monotonic()
    workers = [threading.Thread(target=fetch, args=(session,)) for session in sessions]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(TIMEOUT)
    wall = time.monotonic() - started
    assert len(elapsed) == 8
    assert min(elapsed) >= 0.29
    assert wall < 1.2  # one after the other would take 2.4 s


# -- faults --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "status", "code"),
    [
        ({"kind": "error_500"}, 500, "internal_server_error"),
        ({"kind": "error_503"}, 503, "service_unavailable"),
        ({"kind": "conflict"}, 409, "conflict"),
        ({"kind": "rate_limit"}, 429, "too_many_requests"),
    ],
)
def test_unapplied_error_faults_do_nothing_and_a_retry_executes(
    emu: EmulatorServer, jp: requests.Session, rule: dict[str, Any], status: int, code: str
) -> None:
    emu.set_faults([{**rule, "times": 1}])
    assert_error(jp.post(cancel_url(emu, PENDING), headers=keyed("c1"), timeout=TIMEOUT), status, code)
    assert emu.effects() == []
    assert emu.payment(PENDING)["status"] == "pending"
    retry = jp.post(cancel_url(emu, PENDING), headers=keyed("c1"), timeout=TIMEOUT)
    assert (retry.status_code, retry.json()["status"]) == (200, "cancelled")
    assert [(e["status"], e["fault"], e["replayed"]) for e in emu.requests_log()] == [
        (status, rule["kind"], False),
        (200, None, False),
    ]
    assert len(emu.effects(PENDING)) == 1


def test_rate_limit_sends_retry_after(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "rate_limit", "retry_after": 3}])
    response = jp.get(f"{emu.api_url}/payment_methods", timeout=TIMEOUT)
    assert_error(response, 429, "too_many_requests")
    assert response.headers["Retry-After"] == "3"


def test_html_502_is_an_html_page(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "html_502", "match": {"method": "POST"}}])
    response = jp.post(refund_url(emu, CAPTURED), headers=keyed("r"), timeout=TIMEOUT)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()
    assert emu.effects() == []
    assert jp.get(f"{emu.api_url}/payments/{CAPTURED}", timeout=TIMEOUT).status_code == 200  # GET not matched


def test_applied_500_is_stored_so_the_retry_succeeds(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "applied_500", "times": 1}])
    assert_error(jp.post(refund_url(emu, CAPTURED), headers=keyed("a"), timeout=TIMEOUT), 500, "internal_server_error")
    assert emu.payment(CAPTURED)["status"] == "refunded"
    retry = jp.post(refund_url(emu, CAPTURED), headers=keyed("a"), timeout=TIMEOUT)
    assert (retry.status_code, retry.json()["status"], retry.json()["amount_refunded"]) == (200, "refunded", 5500)
    assert last_request(emu)["replayed"] is True
    assert len(emu.effects(CAPTURED)) == 1


def test_drop_reset_raises_connection_error(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "drop", "times": 1}])
    with pytest.raises(requests.ConnectionError) as excinfo:
        jp.post(cancel_url(emu, PENDING), headers=keyed("d"), timeout=TIMEOUT)
    assert type(excinfo.value) is requests.ConnectionError
    assert emu.effects() == []
    retry = jp.post(cancel_url(emu, PENDING), headers=keyed("d"), timeout=TIMEOUT)
    assert (retry.status_code, retry.json()["status"], last_request(emu)["replayed"]) == (200, "cancelled", False)
    assert [(e["status"], e["fault"]) for e in emu.requests_log()] == [(None, "drop"), (200, None)]


def test_drop_truncate_after_applying(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "drop", "mode": "truncate", "apply": True, "times": 1}])
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        jp.post(refund_url(emu, CAPTURED), headers=keyed("t"), timeout=TIMEOUT)
    assert len(emu.effects(CAPTURED)) == 1
    retry = jp.post(refund_url(emu, CAPTURED), headers=keyed("t"), timeout=TIMEOUT)
    assert (retry.status_code, retry.json()["status"], last_request(emu)["replayed"]) == (200, "refunded", True)
    assert len(emu.effects(CAPTURED)) == 1


def test_drop_on_a_get(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "drop", "match": {"method": "GET"}, "times": 1}])
    with pytest.raises(requests.ConnectionError):
        jp.get(f"{emu.api_url}/payments/{CAPTURED}", timeout=TIMEOUT)
    assert jp.get(f"{emu.api_url}/payments/{CAPTURED}", timeout=TIMEOUT).status_code == 200


def test_timeout_not_applied(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "timeout", "seconds": 0.6, "times": 1}])
    with pytest.raises(requests.exceptions.ReadTimeout):
        jp.post(cancel_url(emu, PENDING), headers=keyed("to"), timeout=0.2)
    [entry] = poll_until(lambda: [e for e in emu.requests_log() if e["fault"] == "timeout"], what="timed-out answer")
    assert entry["status"] == 504
    assert emu.effects() == []
    retry = jp.post(cancel_url(emu, PENDING), headers=keyed("to"), timeout=TIMEOUT)
    assert (retry.status_code, last_request(emu)["replayed"]) == (200, False)
    assert len(emu.effects(PENDING)) == 1


def test_timeout_applied_after_the_client_gave_up(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "timeout", "seconds": 0.6, "apply": True, "times": 1}])
    with pytest.raises(requests.exceptions.ReadTimeout):
        jp.post(refund_url(emu, CAPTURED), headers=keyed("ta"), timeout=0.2)
    [effect] = poll_until(lambda: emu.effects(CAPTURED), what="refund applied")
    assert effect["idempotency_key"] == "ta"
    poll_until(lambda: not emu.in_flight(), what="key completed")
    retry = jp.post(refund_url(emu, CAPTURED), headers=keyed("ta"), timeout=TIMEOUT)
    assert (retry.status_code, retry.json()["status"], last_request(emu)["replayed"]) == (200, "refunded", True)
    assert len(emu.effects(CAPTURED)) == 1


def test_fault_match_targets_one_payment(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "error_500", "match": {"payment_id": CAPTURED}}])
    assert jp.get(f"{emu.api_url}/payments/{PENDING}", timeout=TIMEOUT).status_code == 200
    assert jp.get(f"{emu.api_url}/payments/{CAPTURED}", timeout=TIMEOUT).status_code == 500
    assert jp.get(f"{emu.api_url}/payments/{CAPTURED}", timeout=TIMEOUT).status_code == 500  # unlimited times


def test_seeded_rate_gives_the_same_sequence(emu: EmulatorServer, jp: requests.Session) -> None:
    def statuses(seed: int) -> list[int]:
        emu.set_faults([{"kind": "error_500", "rate": 0.5}], seed=seed)
        return [jp.get(f"{emu.api_url}/payment_methods", timeout=TIMEOUT).status_code for _ in range(20)]

    first = statuses(11)
    assert first == statuses(11)
    assert set(first) == {200, 500}
    assert first != statuses(12)


def test_bad_fault_rules_are_refused(emu: EmulatorServer) -> None:
    with pytest.raises(RuntimeError, match="400"):
        emu.set_faults([{"kind": "explode"}])


# -- ledger and control endpoints -----------------------------------------------------------------------


def test_ledger_requests_carry_the_wall_clock_time_they_arrived(emu: EmulatorServer,
                                                                 komoju_session: SessionFactory) -> None:  # fmt: skip
    """``received_at``: seconds since the epoch on this machine, when the request arrived (before the answer's
    latency), whatever the emulator's own clock says (benchmarks time requests against their own writes)."""
    emu.set_settings(latency_ms=300)
    emu.advance_clock(3600)
    before = time.time()
    komoju_session(JP_KEY).post(cancel_url(emu, PENDING), headers=keyed("arrival"), timeout=TIMEOUT)
    after = time.time()
    entry = last_request(emu)
    assert before <= entry["received_at"] <= before + 0.25 < after
    assert after - before >= 0.3


def test_ledger_never_contains_a_secret_key(emu: EmulatorServer, komoju_session: SessionFactory) -> None:
    keys = [JP_KEY, JP_FORBIDDEN_KEY, GLOBAL_KEY, "sk_test_typo_secret"]
    for key in keys:
        session = komoju_session(key)
        session.get(f"{emu.api_url}/payments/{CAPTURED}", timeout=TIMEOUT)
        session.post(cancel_url(emu, PENDING), headers=keyed("ledger-check"), timeout=TIMEOUT)
    ledger = emu.ledger()
    text = json.dumps(ledger)
    for key in keys:
        assert key not in text
        assert base64.b64encode(f"{key}:".encode()).decode() not in text
    requests_seen = [(e["merchant_id"], e["method"], e["status"]) for e in ledger if e["type"] == "request"]
    assert requests_seen == [
        ("shop-jp", "GET", 200),
        ("shop-jp", "POST", 200),
        (None, "GET", 403),
        (None, "POST", 403),
        ("shop-global", "GET", 404),
        ("shop-global", "POST", 404),
        (None, "GET", 401),
        (None, "POST", 401),
    ]
    assert [e["seq"] for e in ledger] == list(range(1, len(ledger) + 1))
    assert emu.ledger(since=len(ledger) - 1) == ledger[-1:]


def test_add_payments_and_reset(emu: EmulatorServer, komoju_session: SessionFactory) -> None:
    [added] = emu.add_payments("shop-global", [{"status": "authorized", "amount": 300, "currency": "USD"}])
    assert re.fullmatch(r"[a-z0-9]{25}", added["id"])
    session = komoju_session(GLOBAL_KEY)
    assert session.post(cancel_url(emu, added["id"]), timeout=TIMEOUT).json()["status"] == "cancelled"
    assert emu.payment(added["id"])["merchant_id"] == "shop-global"
    emu.set_settings(latency_ms=50)
    emu.reset()
    with pytest.raises(RuntimeError, match="404"):
        emu.payment(added["id"])
    assert emu.ledger() == []
    assert emu.set_settings()["latency_ms"] == 0


def test_health(emu: EmulatorServer) -> None:
    health = emu.health()
    assert (health["status"], health["in_flight"]) == ("ok", 0)


# -- running as a process --------------------------------------------------------------------------------


def test_subprocess_mode_serves_the_api() -> None:
    with EmulatorServer(BASIC_SCENARIO, mode="subprocess") as server:
        assert server.health()["status"] == "ok"
        response = requests.get(f"{server.api_url}/payments/{CAPTURED}", auth=(JP_KEY, ""), timeout=TIMEOUT)
        assert (response.status_code, response.json()["total"]) == (200, 5500)
        health_url = f"{server.base_url}/_emulator/health"
    with pytest.raises(requests.ConnectionError):
        requests.get(health_url, timeout=TIMEOUT)


def read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """One stdout line, or fail after ``timeout`` seconds."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "the emulator printed nothing"
    return process.stdout.readline().decode().rstrip("\n")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_announces_itself_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    command = [sys.executable, "-m", "emulator", "--port", "0", "--scenario", str(BASIC_SCENARIO),
               "--latency-ms", "5", "--seed", "3"]  # fmt: skip
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = read_line(process, 15)
        found = re.fullmatch(r"KOMOJU emulator listening on http://127\.0\.0\.1:(\d+)", line)
        assert found, line
        base_url = f"http://127.0.0.1:{found.group(1)}"
        assert requests.get(f"{base_url}/_emulator/health", timeout=TIMEOUT).json()["status"] == "ok"
        assert requests.get(f"{base_url}/_emulator/settings", timeout=TIMEOUT).json()["latency_ms"] == 5
        process.send_signal(stop_signal)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_cli_refuses_a_non_loopback_host() -> None:
    command = [sys.executable, "-m", "emulator", "--port", "0", "--scenario", str(BASIC_SCENARIO),
               "--host", "0.0.0.0"]  # fmt: skip  # noqa: S104 (the point: it must be refused)
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, timeout=30, check=False)
    assert result.returncode == 2
    assert b"refusing to listen on 0.0.0.0" in result.stderr
    assert result.stdout == b""
