"""The emulator's in-memory model, without HTTP: KOMOJU's state machine, idempotency, scenarios, fault dice."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from emulator.faults import FaultInjector, parse_rule, parse_rules
from emulator.scenario import build_state, with_overrides
from emulator.state import (
    IDEMPOTENCY_TTL_SECONDS,
    PAYMENT_ID_RE,
    ApiError,
    Clock,
    EmulatorState,
    Payment,
    ScenarioError,
    request_fingerprint,
    validate_idempotency_key,
)
from emulator.testing import BASIC_SCENARIO

JP = "shop-jp"
GLOBAL = "shop-global"
PAYMENT_BY_STATUS = {
    "pending": "jppending0000000000000001",
    "authorized": "jpauthorized0000000000001",
    "captured": "jpcaptured000000000000001",
    "cancelled": "jpcancelled00000000000001",
    "expired": "jpexpired0000000000000001",
    "refunded": "jprefunded000000000000001",
    "failed": "jpfailed00000000000000001",
}
CAPTURED = PAYMENT_BY_STATUS["captured"]  # total 5500 JPY
KONBINI = "jpkonbini0000000000000001"
PARTIAL = "jppartial0000000000000001"  # total 11000 JPY, 3000 already refunded
GLOBAL_CAPTURED = "glcaptured000000000000001"  # total 1999 USD


@pytest.fixture
def basic_scenario() -> dict[str, Any]:
    """A fresh copy of ``emulator/scenarios/basic.json``."""
    return json.loads(BASIC_SCENARIO.read_text(encoding="utf-8"))


@pytest.fixture
def state(basic_scenario: dict[str, Any]) -> EmulatorState:
    return build_state(basic_scenario)[0]


def error_of(excinfo: pytest.ExceptionInfo[ApiError]) -> tuple[int, str, str | None]:
    return excinfo.value.status, excinfo.value.code, excinfo.value.param


# -- cancel --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "authorized"])
def test_cancel_allowed_from_pending_and_authorized(state: EmulatorState, status: str) -> None:
    payment_id = PAYMENT_BY_STATUS[status]
    payment = state.cancel(JP, payment_id)
    assert payment.status == "cancelled"
    assert state.payments[payment_id].status == "cancelled"
    [effect] = state.ledger.effects(payment_id)
    assert (effect["action"], effect["from_status"], effect["to_status"]) == ("cancel", status, "cancelled")
    assert effect["amount"] == payment.total
    assert effect["merchant_id"] == JP


@pytest.mark.parametrize("status", ["captured", "cancelled", "expired", "refunded", "failed"])
def test_cancel_refused_from_every_other_status(state: EmulatorState, status: str) -> None:
    payment_id = PAYMENT_BY_STATUS[status]
    with pytest.raises(ApiError) as excinfo:
        state.cancel(JP, payment_id)
    assert error_of(excinfo) == (422, "not_cancellable", None)
    assert status in excinfo.value.message
    assert state.payments[payment_id].status == status
    assert state.ledger.effects() == []


def test_not_cancellable_status_is_a_setting(state: EmulatorState) -> None:
    state.settings.update({"not_cancellable_status": 400, "not_refundable_status": 409})
    with pytest.raises(ApiError) as cancel_error:
        state.cancel(JP, CAPTURED)
    with pytest.raises(ApiError) as refund_error:
        state.refund(JP, PAYMENT_BY_STATUS["pending"], {})
    assert error_of(cancel_error) == (400, "not_cancellable", None)
    assert error_of(refund_error) == (409, "not_refundable", None)


# -- refund --------------------------------------------------------------------------------------------


def test_full_refund_without_amount_refunds_everything(state: EmulatorState) -> None:
    payment = state.refund(JP, CAPTURED, {})
    assert (payment.status, payment.amount_refunded, payment.refundable) == ("refunded", 5500, 0)
    [refund] = payment.to_json()["refunds"]
    assert refund["amount"] == 5500
    assert refund["resource"] == "refund"
    assert refund["payment"] == CAPTURED
    assert refund["currency"] == "JPY"
    assert refund["chargeback"] is False
    assert PAYMENT_ID_RE.match(refund["id"])
    [effect] = state.ledger.effects(CAPTURED)
    assert (effect["action"], effect["from_status"], effect["to_status"], effect["amount"]) == (
        "refund",
        "captured",
        "refunded",
        5500,
    )


def test_partial_then_full_refund(state: EmulatorState) -> None:
    first = state.refund(JP, CAPTURED, {"amount": 2000, "description": "damaged box"})
    assert (first.status, first.amount_refunded) == ("captured", 2000)
    assert first.refunds[0].description == "damaged box"
    rest = state.refund(JP, CAPTURED, {})
    assert (rest.status, rest.amount_refunded) == ("refunded", 5500)
    assert [refund.amount for refund in rest.refunds] == [2000, 3500]
    assert [(e["from_status"], e["to_status"], e["amount"]) for e in state.ledger.effects(CAPTURED)] == [
        ("captured", "captured", 2000),
        ("captured", "refunded", 3500),
    ]
    with pytest.raises(ApiError) as excinfo:
        state.refund(JP, CAPTURED, {})
    assert error_of(excinfo) == (422, "not_refundable", None)


def test_refund_of_a_partly_refunded_payment_is_limited_to_what_is_left(state: EmulatorState) -> None:
    with pytest.raises(ApiError) as excinfo:
        state.refund(JP, PARTIAL, {"amount": 8001})
    assert error_of(excinfo) == (422, "invalid_parameter", "amount")
    assert "8000" in excinfo.value.message
    payment = state.refund(JP, PARTIAL, {"amount": 8000})
    assert (payment.status, payment.amount_refunded, len(payment.refunds)) == ("refunded", 11000, 2)


@pytest.mark.parametrize("status", ["pending", "authorized", "cancelled", "expired", "refunded", "failed"])
def test_refund_refused_unless_captured(state: EmulatorState, status: str) -> None:
    payment_id = PAYMENT_BY_STATUS[status]
    before = state.payments[payment_id].to_json()
    with pytest.raises(ApiError) as excinfo:
        state.refund(JP, payment_id, {})
    assert error_of(excinfo) == (422, "not_refundable", None)
    assert state.payments[payment_id].to_json() == before
    assert state.ledger.effects() == []


def test_konbini_refund_refused_even_when_captured(state: EmulatorState) -> None:
    assert state.payments[KONBINI].status == "captured"
    with pytest.raises(ApiError) as excinfo:
        state.refund(JP, KONBINI, {"amount": 100})
    assert error_of(excinfo) == (422, "not_refundable", None)
    assert "konbini" in excinfo.value.message
    assert state.payments[KONBINI].amount_refunded == 0


@pytest.mark.parametrize("amount", [0, -1, 1.5, 100.0, "100", True, [100]])
def test_refund_amount_must_be_a_positive_integer(state: EmulatorState, amount: Any) -> None:
    with pytest.raises(ApiError) as excinfo:
        state.refund(JP, CAPTURED, {"amount": amount})
    assert error_of(excinfo) == (422, "invalid_parameter", "amount")
    assert state.payments[CAPTURED].amount_refunded == 0


def test_refund_amount_above_the_total_is_refused(state: EmulatorState) -> None:
    with pytest.raises(ApiError) as excinfo:
        state.refund(JP, CAPTURED, {"amount": 5501})
    assert error_of(excinfo) == (422, "invalid_parameter", "amount")
    assert state.payments[CAPTURED].status == "captured"


def test_refund_description_must_be_text(state: EmulatorState) -> None:
    with pytest.raises(ApiError) as excinfo:
        state.refund(JP, CAPTURED, {"description": 42})
    assert error_of(excinfo) == (422, "invalid_parameter", "description")


# -- ownership and auth --------------------------------------------------------------------------------


def test_another_merchants_payment_is_not_found(state: EmulatorState) -> None:
    for call in (lambda: state.cancel(GLOBAL, CAPTURED), lambda: state.payment_for(JP, GLOBAL_CAPTURED)):
        with pytest.raises(ApiError) as excinfo:
            call()
        assert error_of(excinfo) == (404, "not_found", None)
    assert state.payments[CAPTURED].status == "captured"


@pytest.mark.parametrize(
    ("secret_key", "expected"),
    [
        (None, (401, "unauthorized", None)),
        ("", (401, "unauthorized", None)),
        ("sk_test_nobody", (401, "unauthorized", None)),
        ("sk_test_shopjp_noaccess", (403, "forbidden", None)),
    ],
)
def test_authenticate_refuses_missing_unknown_and_forbidden_keys(
    state: EmulatorState, secret_key: str | None, expected: tuple[int, str, None]
) -> None:
    with pytest.raises(ApiError) as excinfo:
        state.authenticate(secret_key)
    assert error_of(excinfo) == expected
    assert "sk_test" not in excinfo.value.message  # never echo a key


def test_authenticate_finds_the_merchant_of_a_key(state: EmulatorState) -> None:
    assert state.authenticate("sk_test_shopjp_main").id == JP
    assert state.authenticate("sk_test_global_main").id == GLOBAL


# -- listing -------------------------------------------------------------------------------------------


def test_list_payments_pages_newest_first(state: EmulatorState) -> None:
    page = state.list_payments(JP, {})
    assert (page["resource"], page["total"], page["page"], page["per_page"], page["last_page"]) == (
        "list",
        9,
        1,
        10,
        1,
    )
    assert page["data"][0]["id"] == PAYMENT_BY_STATUS["failed"]  # created last
    third = state.list_payments(JP, {"per_page": "4", "page": "3"})
    assert (third["last_page"], [p["id"] for p in third["data"]]) == (3, [PAYMENT_BY_STATUS["pending"]])


def test_list_payments_filters(state: EmulatorState) -> None:
    captured = state.list_payments(JP, {"status": "captured"})
    assert {p["id"] for p in captured["data"]} == {CAPTURED, KONBINI, PARTIAL}
    assert state.list_payments(GLOBAL, {"currency": "EUR"})["total"] == 1
    by_order = state.list_payments(JP, {"external_order_num": "JP-0003"})
    assert [p["id"] for p in by_order["data"]] == [CAPTURED]
    window = state.list_payments(JP, {"start_time": "2025-01-10T09:10:00Z", "end_time": "2025-01-10T09:15:00Z"})
    assert {p["id"] for p in window["data"]} == {CAPTURED, KONBINI}


@pytest.mark.parametrize(("name", "value"), [("per_page", "0"), ("per_page", "101"), ("page", "x")])
def test_list_payments_refuses_bad_paging(state: EmulatorState, name: str, value: str) -> None:
    with pytest.raises(ApiError) as excinfo:
        state.list_payments(JP, {name: value})
    assert error_of(excinfo) == (422, "invalid_parameter", name)


# -- idempotency ---------------------------------------------------------------------------------------


def test_replay_returns_the_first_response_without_acting_again(state: EmulatorState) -> None:
    first, first_replayed = state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="r-1")
    again, again_replayed = state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="r-1")
    assert (first.status, first_replayed, again_replayed) == (200, False, True)
    assert again == first
    assert state.payments[CAPTURED].amount_refunded == 1000
    assert len(state.ledger.effects(CAPTURED)) == 1


@pytest.mark.parametrize("mode", ["operation_errors", True])
def test_an_error_answer_is_replayed_when_errors_are_stored(state: EmulatorState, mode: str | bool) -> None:
    state.settings.update({"replay_errors": mode})
    first, _ = state.perform(JP, "cancel", CAPTURED, idempotency_key="c-1")
    again, replayed = state.perform(JP, "cancel", CAPTURED, idempotency_key="c-1")
    assert first.status == 422
    assert first.body["error"]["code"] == "not_cancellable"
    assert (again, replayed) == (first, True)


def test_an_error_answer_releases_the_key_by_default(state: EmulatorState) -> None:
    first, _ = state.perform(JP, "refund", KONBINI, idempotency_key="k-1")
    assert (first.status, first.body["error"]["code"]) == (422, "not_refundable")
    state.settings.update({"cash_refunds": "redirect_url"})  # what changed at KOMOJU meanwhile
    again, replayed = state.perform(JP, "refund", KONBINI, idempotency_key="k-1")
    assert (again.status, replayed) == (200, False)  # executed for real, not the stored refusal
    assert len(state.ledger.effects(KONBINI)) == 1


def test_without_a_key_every_call_acts(state: EmulatorState) -> None:
    state.perform(JP, "refund", CAPTURED, {"amount": 1000})
    _, replayed = state.perform(JP, "refund", CAPTURED, {"amount": 1000})
    assert replayed is False
    assert state.payments[CAPTURED].amount_refunded == 2000


@pytest.mark.parametrize(
    ("action", "payment_id", "body"),
    [
        ("refund", CAPTURED, {"amount": 999}),  # different body
        ("refund", CAPTURED, None),  # body left out
        ("refund", PARTIAL, {"amount": 1000}),  # different path
    ],
)
def test_same_key_for_a_different_request_is_unprocessable(
    state: EmulatorState, action: str, payment_id: str, body: dict[str, Any] | None
) -> None:
    state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="k")
    answer, replayed = state.perform(JP, action, payment_id, body, idempotency_key="k")
    assert (answer.status, answer.body["error"]["code"], replayed) == (422, "unprocessable_entity", False)
    assert answer.body["error"]["param"] == "X-KOMOJU-IDEMPOTENCY"
    assert len(state.ledger.effects()) == 1


def test_fingerprint_ignores_json_key_order_only() -> None:
    path = "/api/v1/payments/x/refund"
    same = request_fingerprint("POST", path, {"amount": 1, "description": "d"})
    assert same == request_fingerprint("post", path, {"description": "d", "amount": 1})
    assert same != request_fingerprint("POST", path, {"amount": 1})


def test_idempotency_ttl_is_a_setting_read_at_every_lookup(state: EmulatorState) -> None:
    state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="k")
    state.clock.advance(120)
    assert state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="k")[1] is True
    state.settings.update({"idempotency_ttl_seconds": 120})  # the stored key is now too old
    assert state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="k")[1] is False
    assert len(state.ledger.effects(CAPTURED)) == 2


def test_keys_are_forgotten_after_24_hours_on_the_emulator_clock(state: EmulatorState) -> None:
    state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="old")
    state.clock.advance(IDEMPOTENCY_TTL_SECONDS - 1)
    _, replayed = state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="old")
    assert replayed is True
    state.clock.advance(1)
    answer, replayed = state.perform(JP, "refund", CAPTURED, {"amount": 1000}, idempotency_key="old")
    assert (answer.status, replayed) == (200, False)
    assert state.payments[CAPTURED].amount_refunded == 2000
    assert len(state.ledger.effects(CAPTURED)) == 2


def test_the_clock_only_moves_forward() -> None:
    clock = Clock()
    before = clock.now()
    clock.advance(3600)
    assert clock.now() - before >= 3600
    with pytest.raises(ScenarioError):
        clock.advance(-1)


@pytest.mark.parametrize("key", ["a", "x" * 100, "order-42:attempt-1 ~!", " "])
def test_accepted_idempotency_keys(key: str) -> None:
    assert validate_idempotency_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 101, "caf\u00e9", "tab\there", "line\n", "\u30ad\u30fc"])
def test_refused_idempotency_keys(state: EmulatorState, key: str) -> None:
    with pytest.raises(ApiError) as excinfo:
        state.perform(JP, "cancel", PAYMENT_BY_STATUS["pending"], idempotency_key=key)
    assert error_of(excinfo) == (400, "bad_request", "X-KOMOJU-IDEMPOTENCY")
    assert state.payments[PAYMENT_BY_STATUS["pending"]].status == "pending"


def test_keys_are_scoped_per_merchant(state: EmulatorState) -> None:
    jp, _ = state.perform(JP, "refund", CAPTURED, None, idempotency_key="shared")
    other, replayed = state.perform(GLOBAL, "refund", GLOBAL_CAPTURED, None, idempotency_key="shared")
    assert (jp.status, other.status, replayed) == (200, 200, False)
    assert {e["payment_id"] for e in state.ledger.effects()} == {CAPTURED, GLOBAL_CAPTURED}


def test_in_flight_key_gets_409_until_completed_or_released(state: EmulatorState) -> None:
    store = state.idempotency
    fingerprint = request_fingerprint("POST", "/p", None)
    first = store.begin(JP, "k", fingerprint)
    assert first.kind == "new"
    assert store.in_flight() == [{"merchant_id": JP, "idempotency_key": "k"}]
    busy = store.begin(JP, "k", fingerprint)
    assert (busy.kind, busy.response.status, busy.response.body["error"]["code"]) == ("in_flight", 409, "conflict")
    assert first.record is not None
    store.release(first.record)  # nothing was done: the retry runs for real
    second = store.begin(JP, "k", fingerprint)
    assert second.kind == "new"
    assert second.record is not None
    store.complete(second.record, busy.response)
    assert store.begin(JP, "k", fingerprint).kind == "replay"
    assert store.in_flight() == []


# -- scenario and payment specs -------------------------------------------------------------------------


def test_payment_defaults(state: EmulatorState) -> None:
    [payment] = state.add_payments(GLOBAL, [{}])
    data = payment.to_json()
    assert PAYMENT_ID_RE.match(data["id"])
    assert (data["status"], data["amount"], data["total"], data["currency"]) == ("captured", 1000, 1000, "JPY")
    assert data["payment_details"] == {
        "type": "credit_card", "brand": "visa", "last_four_digits": "1111", "month": 12, "year": 2030,
        "email": "customer@example.com",
    }  # fmt: skip
    assert (data["description"], data["locale"], data["session"]) == (None, "en", payment.session)
    assert data["captured_at"] == data["created_at"]
    assert (data["amount_refunded"], data["refunds"], data["refund_requests"]) == (0, [], [])


@pytest.mark.parametrize(
    "spec",
    [
        {"id": "TOO-SHORT"},
        {"status": "paid"},
        {"amount": -5},
        {"currency": "yen"},
        {"colour": "red"},
        {"status": "captured", "amount": 100, "amount_refunded": 100},
        {"status": "pending", "amount_refunded": 10},
        {"created_at": "yesterday"},
    ],
)
def test_bad_payment_specs_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ScenarioError):
        Payment.from_spec(JP, spec, Clock(), random.Random(0))


def test_add_payments_is_all_or_nothing(state: EmulatorState) -> None:
    count = len(state.payments)
    with pytest.raises(ScenarioError, match="duplicate"):
        state.add_payments(JP, [{"id": "a" * 25}, {"id": "a" * 25}])
    with pytest.raises(ScenarioError, match="unknown merchant"):
        state.add_payments("nobody", [{}])
    assert len(state.payments) == count


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown field"),
        ({"merchants": []}, "non-empty merchants"),
        ({"settings": {"latency": 5}}, "unknown setting"),
        ({"settings": {"not_refundable_status": 500}}, "4xx"),
        ({"settings": {"success_status": 201}}, "success_status"),
        ({"settings": {"replay_errors": "sometimes"}}, "replay_errors"),
        ({"merchants": [{"id": "m", "keys": ["k"], "payments": [{"locale": "fr"}]}]}, "locale"),
        ({"faults": [{"kind": "explode"}]}, "kind"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_bad_scenarios_are_refused(basic_scenario: dict[str, Any], change: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        build_state({**basic_scenario, **change})


def test_a_secret_key_belongs_to_one_merchant(basic_scenario: dict[str, Any]) -> None:
    basic_scenario["merchants"][1]["keys"].append("sk_test_shopjp_main")
    with pytest.raises(ScenarioError, match="reuses a secret key"):
        build_state(basic_scenario)


def test_payment_method_identity_is_slug_and_currency(basic_scenario: dict[str, Any]) -> None:
    methods = basic_scenario["merchants"][0]["payment_methods"]
    methods.append(dict(methods[0]))
    with pytest.raises(ScenarioError, match="listed twice"):
        build_state(basic_scenario)


def test_overrides_apply_seed_and_latency(basic_scenario: dict[str, Any]) -> None:
    state, _ = build_state(with_overrides(basic_scenario, seed=9, latency_ms=20))
    assert state.settings.latency_ms == 20
    assert basic_scenario["settings"]["latency_ms"] == 0  # the original is left alone


# -- fault dice ----------------------------------------------------------------------------------------


def test_fault_rules_validate_kind_options_and_match() -> None:
    rule = parse_rule({"kind": "timeout", "seconds": 0.5, "apply": True, "match": {"method": "post"}})
    assert (rule.options, rule.applies_operation) == ({"seconds": 0.5, "apply": True}, True)
    assert parse_rule({"kind": "applied_500"}).applies_operation is True
    assert parse_rule({"kind": "drop"}).options == {"apply": False, "mode": "reset"}
    for bad in (
        {"kind": "error_500", "seconds": 1},
        {"kind": "drop", "mode": "explode"},
        {"kind": "rate_limit", "retry_after": -1},
        {"kind": "error_500", "rate": 1.5},
        {"kind": "error_500", "match": {"url": "/x"}},
        {"kind": "error_500", "times": -1},
    ):
        with pytest.raises(ScenarioError):
            parse_rule(bad)


def test_fault_match_times_and_order() -> None:
    injector = FaultInjector(
        parse_rules(
            [
                {"kind": "error_503", "match": {"payment_id": CAPTURED, "method": "POST"}, "times": 1},
                {"kind": "error_500", "match": {"path_contains": "/refund"}},
            ]
        )
    )
    refund_path = f"/api/v1/payments/{CAPTURED}/refund"
    assert injector.pick("GET", f"/api/v1/payments/{CAPTURED}", CAPTURED) is None
    assert injector.pick("post", refund_path, CAPTURED).kind == "error_503"
    assert injector.pick("POST", refund_path, CAPTURED).kind == "error_500"  # the first rule is used up
    assert injector.pick("POST", f"/api/v1/payments/{CAPTURED}/cancel", CAPTURED) is None
    assert [rule.fired for rule in injector.rules] == [1, 1]


def test_seeded_fault_dice_repeat_and_differ_by_seed() -> None:
    def sequence(seed: int) -> list[bool]:
        injector = FaultInjector(parse_rules([{"kind": "error_500", "rate": 0.5}]), seed)
        return [injector.pick("GET", "/api/v1/payments", None) is not None for _ in range(40)]

    first = sequence(7)
    assert first == sequence(7)
    assert first != sequence(8)
    assert 5 < sum(first) < 35  # both outcomes happen


# -- accepted but not done --------------------------------------------------------------------------------


def test_scenario_settings_switch_the_readings(basic_scenario: dict[str, Any]) -> None:
    readings = {
        "success_status": 202, "refund_completion": "deferred", "cash_refunds": "redirect_url",
        "complete_after_gets": 0, "complete_after_seconds": 30.5, "replay_errors": True,
        "idempotency_ttl_seconds": 60,
    }  # fmt: skip
    state, _ = build_state({**basic_scenario, "settings": readings})
    assert {name: state.settings.to_json()[name] for name in readings} == readings


def test_202_cancel_is_an_effect_now_and_a_completion_later(state: EmulatorState) -> None:
    state.settings.update({"success_status": 202, "complete_after_gets": 2})
    answer, _ = state.perform(JP, "cancel", PAYMENT_BY_STATUS["authorized"], idempotency_key="c")
    assert (answer.status, answer.body["status"]) == (202, "authorized")
    [effect] = state.ledger.effects()
    assert (effect["pending"], effect["from_status"], effect["to_status"]) == (True, "authorized", "authorized")
    assert state.show_payment(JP, PAYMENT_BY_STATUS["authorized"])["status"] == "authorized"
    assert state.show_payment(JP, PAYMENT_BY_STATUS["authorized"])["status"] == "cancelled"
    [completion] = state.ledger.completions()
    assert (completion["effect_seq"], completion["trigger"], completion["amount"]) == (effect["seq"], "get", 2750)
    assert len(state.ledger.effects()) == 1  # a completion is no second effect


def test_deferred_refund_moves_money_only_when_it_completes(state: EmulatorState) -> None:
    state.settings.update({"refund_completion": "deferred", "complete_after_gets": 0})
    payment = state.refund(JP, PARTIAL, {"amount": 8000, "description": "late"})
    assert (payment.status, payment.amount_refunded, [r.amount for r in payment.refunds]) == (
        "captured",
        3000,
        [3000, 8000],
    )
    assert payment.refunds[-1].description == "late"
    assert state.settle_due() == []  # no time limit: only the control endpoint completes it
    [completion] = state.complete_now(PARTIAL)
    assert (completion["trigger"], completion["to_status"], payment.amount_refunded) == ("control", "refunded", 11000)
    with pytest.raises(ScenarioError, match="unknown payment"):
        state.complete_now("z" * 25)


def test_time_completes_pending_operations_of_every_payment(state: EmulatorState) -> None:
    state.settings.update({"success_status": 202, "complete_after_seconds": 10})
    state.cancel(JP, PAYMENT_BY_STATUS["pending"])
    state.refund(GLOBAL, GLOBAL_CAPTURED, {})
    state.clock.advance(9)
    assert state.settle_due() == []
    state.clock.advance(1)
    done = state.settle_due()
    assert [(c["payment_id"], c["to_status"], c["trigger"]) for c in done] == [
        (PAYMENT_BY_STATUS["pending"], "cancelled", "clock"),
        (GLOBAL_CAPTURED, "refunded", "clock"),
    ]
    assert state.payments[GLOBAL_CAPTURED].amount_refunded == 1999


def test_cash_refund_redirect_url_names_the_emulator(state: EmulatorState) -> None:
    state.settings.update({"cash_refunds": "redirect_url"})
    state.public_url = "http://127.0.0.1:9999"
    payment = state.refund(JP, KONBINI, {"amount": 100})
    refund = payment.refunds[-1]
    assert refund.to_json()["redirect_url"] == f"http://127.0.0.1:9999/customer/refunds/{refund.id}"
    assert (payment.status, payment.amount_refunded, len(payment.pending)) == ("captured", 0, 1)


def test_refund_description_is_always_text(state: EmulatorState) -> None:
    assert state.refund(JP, CAPTURED, {"amount": 100}).to_json()["refunds"][0]["description"] == ""
