"""The readings of KOMOJU's documentation the emulator can switch between, through a real server and ``requests``:
202 and deferred refunds completed later, cash refunds through a redirect URL, which error answers are replayed
under an idempotency key, the refusal faults, a short key lifetime, and what the ledger tells of each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from emulator_kit import (
    AUTHORIZED,
    CAPTURED,
    JP_KEY,
    KONBINI,
    PENDING,
    TIMEOUT,
    assert_error,
    assert_html,
    cancel_url,
    keyed,
    last_request,
    payment_url,
    refund_url,
)

from emulator.testing import BASIC_SCENARIO, EmulatorServer

DEFAULT_SETTINGS = {
    "latency_ms": 0,
    "jitter_ms": 0,
    "not_cancellable_status": 422,
    "not_refundable_status": 422,
    "success_status": 200,
    "refund_completion": "immediate",
    "cash_refunds": "not_refundable",
    "complete_after_gets": 1,
    "complete_after_seconds": None,
    "replay_errors": False,
    "idempotency_ttl_seconds": 86400,
}
# Fault kinds that answer without doing anything, with the status and error code (None: an HTML page).
REFUSAL_FAULTS = [
    ({"kind": "error_500"}, 500, "internal_server_error"),
    ({"kind": "error_503"}, 503, "service_unavailable"),
    ({"kind": "html_502"}, 502, None),
    ({"kind": "timeout", "seconds": 0.05}, 504, "gateway_timeout"),
    ({"kind": "forbidden_403"}, 403, "forbidden"),
    ({"kind": "html_403"}, 403, None),
    ({"kind": "processor_502"}, 502, "insufficient_funds"),
    ({"kind": "processor_502", "code": "card_declined"}, 502, "card_declined"),
    ({"kind": "payment_required_402"}, 402, "request_failed"),
]


@pytest.fixture(scope="module")
def emu_server() -> Iterator[EmulatorServer]:
    """One emulator (thread mode) for this module."""
    with EmulatorServer(BASIC_SCENARIO) as server:
        yield server


@pytest.fixture
def emu(emu_server: EmulatorServer) -> EmulatorServer:
    """The shared emulator, reset to the basic scenario (default settings) before the test."""
    emu_server.reset()
    return emu_server


@pytest.fixture
def jp(emu: EmulatorServer) -> Iterator[requests.Session]:
    """A session authenticating as the Japanese shop."""
    with requests.Session() as session:
        session.auth = (JP_KEY, "")
        yield session


def get_payment(emu: EmulatorServer, jp: requests.Session, payment_id: str) -> dict[str, Any]:
    """``GET /payments/{id}`` through the API (it counts for ``complete_after_gets``)."""
    response = jp.get(payment_url(emu, payment_id), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def shown(emu: EmulatorServer, payment_id: str) -> tuple[str, int, int]:
    """(status, amount_refunded, pending operations) as the control endpoint shows them (not an API GET)."""
    payment = emu.payment(payment_id)
    return payment["status"], payment["amount_refunded"], len(payment["pending_operations"])


def assert_fault_answer(response: requests.Response, status: int, code: str | None) -> None:
    """A refusal fault's answer: KOMOJU's JSON error, or an HTML page when ``code`` is None."""
    if code is None:
        assert_html(response, status)
    else:
        assert_error(response, status, code)


# -- settings ------------------------------------------------------------------------------------------


def test_default_settings_are_the_usual_answers(emu: EmulatorServer) -> None:
    assert emu.set_settings() == DEFAULT_SETTINGS


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("success_status", 201),
        ("success_status", "202"),
        ("refund_completion", "later"),
        ("cash_refunds", "refund_request"),
        ("complete_after_gets", -1),
        ("complete_after_gets", 1.5),
        ("complete_after_seconds", -1),
        ("complete_after_seconds", "60"),
        ("replay_errors", "yes"),
        ("replay_errors", 1),
        ("idempotency_ttl_seconds", 0),
        ("idempotency_ttl_seconds", None),
    ],
)
def test_bad_settings_are_refused(emu: EmulatorServer, name: str, value: Any) -> None:
    with pytest.raises(RuntimeError, match=f"400.*{name}"):
        emu.set_settings(**{name: value})
    assert emu.set_settings() == DEFAULT_SETTINGS  # nothing changed


# -- 202: accepted, done later ---------------------------------------------------------------------------


def test_202_cancel_shows_the_payment_unchanged_and_a_get_completes_it(
    emu: EmulatorServer, jp: requests.Session
) -> None:
    emu.set_settings(success_status=202)
    response = jp.post(cancel_url(emu, PENDING), headers=keyed("c1"), timeout=TIMEOUT)
    assert (response.status_code, response.json()["status"]) == (202, "pending")
    [effect] = emu.effects(PENDING)
    assert (effect["action"], effect["from_status"], effect["to_status"], effect["pending"]) == (
        "cancel",
        "pending",
        "pending",
        True,
    )
    assert shown(emu, PENDING) == ("pending", 0, 1)
    assert emu.completions() == []
    assert get_payment(emu, jp, PENDING)["status"] == "cancelled"  # the first GET (complete_after_gets 1)
    [completion] = emu.completions(PENDING)
    assert {k: completion[k] for k in ("action", "from_status", "to_status", "amount", "trigger")} == {
        "action": "cancel",
        "from_status": "pending",
        "to_status": "cancelled",
        "amount": 1100,
        "trigger": "get",
    }
    assert (completion["effect_seq"], completion["idempotency_key"]) == (effect["seq"], "c1")
    assert shown(emu, PENDING) == ("cancelled", 0, 0)


def test_202_refund_lists_the_refund_but_moves_no_money_yet(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(success_status=202)
    response = jp.post(refund_url(emu, CAPTURED), json={"amount": 2000}, timeout=TIMEOUT)
    payment = response.json()
    assert (response.status_code, payment["status"], payment["amount_refunded"]) == (202, "captured", 0)
    [refund] = payment["refunds"]
    assert refund["amount"] == 2000
    [effect] = emu.effects(CAPTURED)
    assert (effect["pending"], effect["refund_id"], effect["amount"]) == (True, refund["id"], 2000)
    after = get_payment(emu, jp, CAPTURED)
    assert (after["status"], after["amount_refunded"]) == ("captured", 2000)  # partial: still captured
    [completion] = emu.completions(CAPTURED)
    assert (completion["action"], completion["refund_id"], completion["to_status"]) == (
        "refund",
        refund["id"],
        "captured",
    )


def test_complete_after_gets_counts_the_gets_of_that_payment(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(success_status=202, complete_after_gets=3)
    jp.post(cancel_url(emu, PENDING), timeout=TIMEOUT)
    jp.post(cancel_url(emu, AUTHORIZED), timeout=TIMEOUT)
    assert [get_payment(emu, jp, PENDING)["status"] for _ in range(2)] == ["pending", "pending"]
    get_payment(emu, jp, AUTHORIZED)  # another payment's GET does not count for this one
    jp.get(f"{emu.api_url}/payments", timeout=TIMEOUT)  # nor does the list
    assert get_payment(emu, jp, PENDING)["status"] == "cancelled"  # the third GET shows it done
    assert shown(emu, AUTHORIZED) == ("authorized", 0, 1)
    assert [c["payment_id"] for c in emu.completions()] == [PENDING]


def test_complete_after_gets_zero_never_completes_by_gets(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(success_status=202, complete_after_gets=0)
    jp.post(cancel_url(emu, PENDING), timeout=TIMEOUT)
    assert {get_payment(emu, jp, PENDING)["status"] for _ in range(5)} == {"pending"}
    [completion] = emu.complete(PENDING)
    assert (completion["trigger"], completion["to_status"]) == ("control", "cancelled")
    assert get_payment(emu, jp, PENDING)["status"] == "cancelled"
    assert emu.complete(PENDING) == []  # nothing left to complete


def test_complete_after_seconds_on_the_emulator_clock(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(success_status=202, complete_after_gets=0, complete_after_seconds=60)
    jp.post(refund_url(emu, CAPTURED), timeout=TIMEOUT)
    emu.advance_clock(59)
    assert shown(emu, CAPTURED) == ("captured", 0, 1)
    emu.advance_clock(1)
    assert shown(emu, CAPTURED) == ("refunded", 5500, 0)
    [completion] = emu.completions(CAPTURED)
    assert (completion["trigger"], completion["from_status"], completion["to_status"]) == (
        "clock",
        "captured",
        "refunded",
    )


def test_gets_or_seconds_whichever_comes_first(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(success_status=202, complete_after_gets=2, complete_after_seconds=60)
    jp.post(cancel_url(emu, PENDING), timeout=TIMEOUT)
    jp.post(cancel_url(emu, AUTHORIZED), timeout=TIMEOUT)
    get_payment(emu, jp, PENDING)
    emu.advance_clock(60)
    assert get_payment(emu, jp, AUTHORIZED)["status"] == "cancelled"
    assert [(c["payment_id"], c["trigger"]) for c in emu.completions()] == [(PENDING, "clock"), (AUTHORIZED, "clock")]


def test_complete_endpoint_refuses_an_unknown_payment(emu: EmulatorServer) -> None:
    with pytest.raises(RuntimeError, match="404"):
        emu.complete("z" * 25)


# -- deferred refunds ----------------------------------------------------------------------------------------


def test_deferred_refund_answers_200_and_completes_later(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(refund_completion="deferred")
    response = jp.post(refund_url(emu, CAPTURED), headers=keyed("r1"), timeout=TIMEOUT)
    payment = response.json()
    assert (response.status_code, payment["status"], payment["amount_refunded"]) == (200, "captured", 0)
    assert [r["amount"] for r in payment["refunds"]] == [5500]
    [effect] = emu.effects(CAPTURED)
    assert (effect["pending"], effect["to_status"], effect["idempotency_key"]) == (True, "captured", "r1")
    done = get_payment(emu, jp, CAPTURED)
    assert (done["status"], done["amount_refunded"]) == ("refunded", 5500)
    assert [(c["action"], c["to_status"], c["trigger"]) for c in emu.completions()] == [("refund", "refunded", "get")]


def test_deferred_refund_leaves_cancels_immediate(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(refund_completion="deferred")
    response = jp.post(cancel_url(emu, PENDING), timeout=TIMEOUT)
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    assert [e["pending"] for e in emu.effects(PENDING)] == [False]


def test_a_second_refund_while_one_is_pending_is_a_second_effect(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(refund_completion="deferred", complete_after_gets=0)
    first = jp.post(refund_url(emu, CAPTURED), headers=keyed("order-1:1"), timeout=TIMEOUT)
    second = jp.post(refund_url(emu, CAPTURED), headers=keyed("order-1:2"), timeout=TIMEOUT)
    assert (first.status_code, second.status_code) == (200, 200)
    assert [(e["amount"], e["idempotency_key"], e["pending"]) for e in emu.effects(CAPTURED)] == [
        (5500, "order-1:1", True),
        (5500, "order-1:2", True),
    ]
    assert emu.post_counts() == {CAPTURED: 2}
    assert len(emu.complete(CAPTURED)) == 2
    assert shown(emu, CAPTURED) == ("refunded", 11000, 0)  # twice the total: the double refund shows


def test_a_second_cancel_while_one_is_pending_is_a_second_effect(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(success_status=202, complete_after_gets=0)
    for key in ("c:1", "c:2"):
        assert jp.post(cancel_url(emu, PENDING), headers=keyed(key), timeout=TIMEOUT).status_code == 202
    assert [e["idempotency_key"] for e in emu.effects(PENDING)] == ["c:1", "c:2"]
    assert [(c["from_status"], c["to_status"]) for c in emu.complete(PENDING)] == [
        ("pending", "cancelled"),
        ("cancelled", "cancelled"),
    ]


def test_a_replayed_deferred_refund_is_no_second_effect(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(refund_completion="deferred", complete_after_gets=0)
    first = jp.post(refund_url(emu, CAPTURED), headers=keyed("same"), timeout=TIMEOUT)
    again = jp.post(refund_url(emu, CAPTURED), headers=keyed("same"), timeout=TIMEOUT)
    assert (again.json(), last_request(emu)["replayed"]) == (first.json(), True)
    assert len(emu.effects(CAPTURED)) == 1
    assert emu.post_counts() == {CAPTURED: 2}


# -- cash refunds ---------------------------------------------------------------------------------------------


def test_cash_refund_by_default_is_not_refundable(emu: EmulatorServer, jp: requests.Session) -> None:
    assert_error(jp.post(refund_url(emu, KONBINI), timeout=TIMEOUT), 422, "not_refundable")


def test_cash_refund_with_a_redirect_url_completes_through_the_control_endpoint(
    emu: EmulatorServer, jp: requests.Session
) -> None:
    emu.set_settings(cash_refunds="redirect_url", complete_after_gets=0)
    response = jp.post(refund_url(emu, KONBINI), headers=keyed("k1"), timeout=TIMEOUT)
    payment = response.json()
    assert (response.status_code, payment["status"], payment["amount_refunded"]) == (200, "captured", 0)
    [refund] = payment["refunds"]
    assert refund["redirect_url"] == f"{emu.base_url}/customer/refunds/{refund['id']}"
    page = requests.get(refund["redirect_url"], timeout=TIMEOUT)
    assert_html(page, 200)
    assert refund["id"] in page.text
    assert get_payment(emu, jp, KONBINI)["status"] == "captured"  # waits for the customer, not for GETs
    [completion] = emu.complete(KONBINI)
    assert (completion["trigger"], completion["refund_id"], completion["amount"]) == ("control", refund["id"], 3490)
    done = get_payment(emu, jp, KONBINI)
    assert (done["status"], done["amount_refunded"]) == ("refunded", 3490)
    assert [e["pending"] for e in emu.effects(KONBINI)] == [True]


def test_redirect_url_is_only_for_cash_payments(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(cash_refunds="redirect_url")
    payment = jp.post(refund_url(emu, CAPTURED), timeout=TIMEOUT).json()
    assert (payment["status"], payment["amount_refunded"]) == ("refunded", 5500)  # a card refund: done at once
    assert "redirect_url" not in payment["refunds"][0]
    missing = requests.get(f"{emu.base_url}/customer/refunds/{payment['refunds'][0]['id']}", timeout=TIMEOUT)
    assert_html(missing, 404)


# -- which error answers are replayed -----------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "status", "code"), REFUSAL_FAULTS)
def test_refusal_faults_do_nothing(
    emu: EmulatorServer, jp: requests.Session, rule: dict[str, Any], status: int, code: str | None
) -> None:
    emu.set_faults([{**rule, "match": {"payment_id": CAPTURED}}])
    assert_fault_answer(jp.post(refund_url(emu, CAPTURED), timeout=TIMEOUT), status, code)
    assert_fault_answer(jp.get(payment_url(emu, CAPTURED), timeout=TIMEOUT), status, code)
    assert jp.post(cancel_url(emu, PENDING), timeout=TIMEOUT).status_code == 200  # another payment
    assert shown(emu, CAPTURED) == ("captured", 0, 0)
    assert [e["payment_id"] for e in emu.effects()] == [PENDING]
    assert [e["fault"] for e in emu.requests_log()] == [rule["kind"], rule["kind"], None]


def test_forbidden_403_uses_komoju_message(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_faults([{"kind": "forbidden_403"}])
    response = jp.post(cancel_url(emu, PENDING), timeout=TIMEOUT)
    assert response.json()["error"]["message"] == "The API key doesn't have permission to access the specified resource"


@pytest.mark.parametrize(("rule", "status", "code"), REFUSAL_FAULTS)
def test_replay_errors_true_replays_a_fault_until_the_key_expires(
    emu: EmulatorServer, jp: requests.Session, rule: dict[str, Any], status: int, code: str | None
) -> None:
    emu.set_settings(replay_errors=True, idempotency_ttl_seconds=3600)
    emu.set_faults([{**rule, "times": 1}])
    first = jp.post(refund_url(emu, CAPTURED), headers=keyed("r1"), timeout=TIMEOUT)
    assert_fault_answer(first, status, code)
    again = jp.post(refund_url(emu, CAPTURED), headers=keyed("r1"), timeout=TIMEOUT)
    assert_fault_answer(again, status, code)
    assert (again.text, again.headers["content-type"]) == (first.text, first.headers["content-type"])
    assert emu.effects() == []
    emu.advance_clock(3600)
    fresh = jp.post(refund_url(emu, CAPTURED), headers=keyed("r1"), timeout=TIMEOUT)
    assert (fresh.status_code, fresh.json()["status"]) == (200, "refunded")
    assert [(e["status"], e["fault"], e["replayed"]) for e in emu.requests_log()] == [
        (status, rule["kind"], False),
        (status, None, True),
        (200, None, False),
    ]
    assert len(emu.effects(CAPTURED)) == 1


@pytest.mark.parametrize("mode", [False, "operation_errors"])
@pytest.mark.parametrize(("rule", "status", "code"), REFUSAL_FAULTS)
def test_fault_answers_are_not_stored_otherwise(
    emu: EmulatorServer,
    jp: requests.Session,
    mode: bool | str,
    rule: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    emu.set_settings(replay_errors=mode)
    emu.set_faults([{**rule, "times": 1}])
    assert_fault_answer(jp.post(refund_url(emu, CAPTURED), headers=keyed("r1"), timeout=TIMEOUT), status, code)
    retry = jp.post(refund_url(emu, CAPTURED), headers=keyed("r1"), timeout=TIMEOUT)
    assert (retry.status_code, last_request(emu)["replayed"]) == (200, False)
    assert len(emu.effects(CAPTURED)) == 1


@pytest.mark.parametrize(
    ("rule", "status", "code"),
    [({"kind": "rate_limit"}, 429, "too_many_requests"), ({"kind": "conflict"}, 409, "conflict")],
)
def test_429_and_409_are_never_stored(
    emu: EmulatorServer, jp: requests.Session, rule: dict[str, Any], status: int, code: str
) -> None:
    emu.set_settings(replay_errors=True)
    emu.set_faults([{**rule, "times": 1}])
    assert_error(jp.post(cancel_url(emu, PENDING), headers=keyed("c1"), timeout=TIMEOUT), status, code)
    retry = jp.post(cancel_url(emu, PENDING), headers=keyed("c1"), timeout=TIMEOUT)
    assert (retry.status_code, last_request(emu)["replayed"]) == (200, False)


@pytest.mark.parametrize(("mode", "replayed"), [(True, True), ("operation_errors", True), (False, False)])
def test_operation_errors_are_stored_as_replay_errors_says(
    emu: EmulatorServer, jp: requests.Session, mode: bool | str, replayed: bool
) -> None:
    emu.set_settings(replay_errors=mode)
    assert_error(jp.post(refund_url(emu, KONBINI), headers=keyed("k1"), timeout=TIMEOUT), 422, "not_refundable")
    emu.set_settings(cash_refunds="redirect_url")  # the payment became refundable meanwhile
    retry = jp.post(refund_url(emu, KONBINI), headers=keyed("k1"), timeout=TIMEOUT)
    assert (retry.status_code, last_request(emu)["replayed"]) == ((422, True) if replayed else (200, False))
    assert len(emu.effects(KONBINI)) == (0 if replayed else 1)


def test_applied_500_is_stored_in_every_mode(emu: EmulatorServer, jp: requests.Session) -> None:
    for mode, key in ((False, "a"), (True, "b")):
        emu.reset()
        emu.set_settings(replay_errors=mode)
        emu.set_faults([{"kind": "applied_500", "times": 1}])
        assert_error(
            jp.post(cancel_url(emu, PENDING), headers=keyed(key), timeout=TIMEOUT), 500, "internal_server_error"
        )
        retry = jp.post(cancel_url(emu, PENDING), headers=keyed(key), timeout=TIMEOUT)
        assert (retry.status_code, retry.json()["status"], last_request(emu)["replayed"]) == (200, "cancelled", True)
        assert len(emu.effects(PENDING)) == 1


def test_bad_refusal_fault_options_are_refused(emu: EmulatorServer) -> None:
    for rule in ({"kind": "processor_502", "code": "Not A Code"}, {"kind": "forbidden_403", "code": "x"}):
        with pytest.raises(RuntimeError, match="400"):
            emu.set_faults([rule])


# -- key lifetime -----------------------------------------------------------------------------------------------


def test_a_short_ttl_forgets_a_key_early(emu: EmulatorServer, jp: requests.Session) -> None:
    emu.set_settings(idempotency_ttl_seconds=600)

    def refund() -> requests.Response:
        return jp.post(refund_url(emu, CAPTURED), json={"amount": 1000}, headers=keyed("short"), timeout=TIMEOUT)

    refund()
    emu.advance_clock(599)
    assert (refund().status_code, last_request(emu)["replayed"]) == (200, True)
    emu.advance_clock(1)
    assert (refund().status_code, last_request(emu)["replayed"]) == (200, False)
    assert [e["amount"] for e in emu.effects(CAPTURED)] == [1000, 1000]
    assert emu.post_counts() == {CAPTURED: 3}
