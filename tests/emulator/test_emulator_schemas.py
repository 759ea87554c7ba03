"""Every JSON body the emulator answers, validated against KOMOJU's published models.

The JSON Schemas in ``schemas/`` were written by hand from the model documentation of KOMOJU's official SDKs
(komoju/komoju-node-sdk ``docs/Models/*.md`` with the nullability of its ``models/*.ts``, cross-checked with
komoju/komoju-ruby-sdk ``docs/*.md``); each file's ``$comment`` names what it was written from. A field the SDK
requires must be present with the documented type; fields the SDK does not know are allowed.

The emulator is driven through a real HTTP server, through every kind of answer: payment GET and list, cancel
and refund done at once, accepted (202), deferred and through a cash refund's redirect URL, each error the API
gives, each fault kind that answers, replays, and the payment-method list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from emulator_kit import (
    AUTHORIZED,
    CANCELLED,
    CAPTURED,
    GLOBAL_KEY,
    JP_FORBIDDEN_KEY,
    JP_KEY,
    KONBINI,
    PARTIAL,
    PENDING,
    TIMEOUT,
    assert_html,
    cancel_url,
    keyed,
    payment_url,
    refund_url,
)
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from emulator.testing import BASIC_SCENARIO, EmulatorServer

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_ID = "urn:komoju-sdk:{}"
SDK_REPOSITORIES = ("komoju/komoju-node-sdk", "komoju/komoju-ruby-sdk")
JP_PAYMENTS = [
    "jppending0000000000000001", "jpauthorized0000000000001", "jpcaptured000000000000001",
    "jpkonbini0000000000000001", "jppartial0000000000000001", "jpcancelled00000000000001",
    "jpexpired0000000000000001", "jprefunded000000000000001", "jpfailed00000000000000001",
]  # fmt: skip
# Answer readings: the settings under which cancels and refunds are checked.
READINGS = {
    "usual": {},
    "accepted_202": {"success_status": 202},
    "deferred_refund": {"refund_completion": "deferred"},
    "cash_redirect": {"cash_refunds": "redirect_url", "complete_after_gets": 0},
}
# Fault kinds that answer with KOMOJU's JSON error (html_502, html_403: a page; drop: nothing).
JSON_FAULTS = [
    {"kind": "error_500"},
    {"kind": "error_503"},
    {"kind": "timeout", "seconds": 0.05},
    {"kind": "rate_limit"},
    {"kind": "conflict"},
    {"kind": "applied_500"},
    {"kind": "forbidden_403"},
    {"kind": "processor_502"},
    {"kind": "processor_502", "code": "card_declined"},
    {"kind": "payment_required_402"},
]

FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def is_date_time(value: object) -> bool:
    """ISO 8601 with a time (what KOMOJU's ``Date`` fields hold)."""
    return not isinstance(value, str) or ("T" in value and datetime.fromisoformat(value) is not None)


@FORMATS.checks("uri")
def is_absolute_url(value: object) -> bool:
    """An absolute URL with a scheme and a host."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def load_schemas() -> dict[str, dict[str, Any]]:
    """Every schema file, by file name without ``.json``."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(SCHEMA_DIR.glob("*.json"))}


SCHEMAS = load_schemas()
REGISTRY = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS.values()
)  # fmt: skip


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A draft 2020-12 validator that resolves the other models and checks formats."""
    return Draft202012Validator(schema, registry=REGISTRY, format_checker=FORMATS)


VALIDATORS = {
    "payment": validator(SCHEMAS["payment"]),
    "payment_list": validator(SCHEMAS["payment_list"]),
    "payment_methods": validator({"type": "array", "items": {"$ref": SCHEMA_ID.format("available-payment-method")}}),
    "error": validator(SCHEMAS["api_error"]),
    "refund_request_body": validator(SCHEMAS["refund_payment_request"]),
}


def problems(model: str, body: Any) -> list[str]:
    """Where ``body`` breaks the model: one line per violation, with its JSON path."""
    found = sorted(VALIDATORS[model].iter_errors(body), key=lambda error: list(error.absolute_path))
    return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}" for error in found]


def assert_model(model: str, response: requests.Response) -> dict[str, Any]:
    """The answer is JSON matching ``model``; returns the body."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert problems(model, body) == [], f"{response.request.method} {response.url} -> {response.status_code}"
    return body


def assert_error_model(response: requests.Response, status: int) -> dict[str, Any]:
    """An error answer with ``status`` whose body is KOMOJU's APIError."""
    assert response.status_code == status, response.text
    return assert_model("error", response)["error"]


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
def session_for() -> Iterator[Callable[[str | None], requests.Session]]:
    """Factory: a session authenticating with a secret key (None: none)."""
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
def jp(session_for: Callable[[str | None], requests.Session]) -> requests.Session:
    """A session authenticating as the Japanese shop."""
    return session_for(JP_KEY)


# -- the schemas themselves ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_is_draft_2020_12_and_names_its_source(name: str) -> None:
    schema = SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:komoju-sdk:")
    assert any(repository in schema["$comment"] for repository in SDK_REPOSITORIES), schema["$comment"]
    assert "commit" in schema["$comment"]


@pytest.mark.parametrize(
    ("model", "body", "broken"),
    [
        ("payment", lambda p: p.pop("session"), "'session' is a required property"),
        ("payment", lambda p: p.update(locale=None), "None is not one of"),
        ("payment", lambda p: p.update(payment_details={"type": "credit_card"}), "'brand' is a required property"),
        ("payment", lambda p: p["refunds"].append({**p["refunds"][0], "description": None}), "None is not of type"),
        ("payment", lambda p: p.update(captured_at="yesterday"), "is not a 'date-time'"),
        ("payment", lambda p: p.update(currency="XYZ"), "'XYZ' is not one of"),
        ("error", lambda e: e["error"].pop("details"), "'details' is a required property"),
        ("payment_methods", lambda m: m[0].update(secure_token_supported=True), "True is not of type 'array'"),
    ],
)
def test_schemas_catch_what_the_sdk_forbids(
    emu: EmulatorServer, jp: requests.Session, model: str, body: Callable[[Any], Any], broken: str
) -> None:
    """A check that each schema constrains: a valid answer, broken on purpose, fails it."""
    if model == "payment":
        answer = jp.get(payment_url(emu, PARTIAL), timeout=TIMEOUT).json()
    elif model == "error":
        answer = jp.get(payment_url(emu, "z" * 25), timeout=TIMEOUT).json()
    else:
        answer = jp.get(f"{emu.api_url}/payment_methods", timeout=TIMEOUT).json()
    assert problems(model, answer) == []
    body(answer)
    assert any(broken in problem for problem in problems(model, answer)), problems(model, answer)


# -- reads ------------------------------------------------------------------------------------------------


def test_every_payment_shown_matches_the_payment_model(
    emu: EmulatorServer, jp: requests.Session, session_for: Callable[[str | None], requests.Session]
) -> None:
    for payment_id in JP_PAYMENTS:
        body = assert_model("payment", jp.get(payment_url(emu, payment_id), timeout=TIMEOUT))
        assert body["id"] == payment_id
    global_shop = session_for(GLOBAL_KEY)
    for payment in assert_model("payment_list", global_shop.get(f"{emu.api_url}/payments", timeout=TIMEOUT))["data"]:
        assert_model("payment", global_shop.get(payment_url(emu, payment["id"]), timeout=TIMEOUT))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"per_page": "2", "page": "2"},
        {"status": "captured"},
        {"status": "refunded", "currency": "JPY"},
        {"start_time": "2025-01-10T09:10:00Z", "end_time": "2025-01-10T09:15:00Z"},
        {"external_order_num": "no-such-order"},
        {"page": "99"},
    ],
)
def test_payment_lists_match_the_payment_list_model(
    emu: EmulatorServer, jp: requests.Session, params: dict[str, str]
) -> None:
    page = assert_model("payment_list", jp.get(f"{emu.api_url}/payments", params=params, timeout=TIMEOUT))
    assert datetime.fromisoformat(page["start_time"]) <= datetime.fromisoformat(page["end_time"])
    if "start_time" in params:
        assert (page["start_time"], page["end_time"]) == (params["start_time"], params["end_time"])


def test_payment_methods_match_the_available_payment_method_model(
    emu: EmulatorServer, session_for: Callable[[str | None], requests.Session]
) -> None:
    for key in (JP_KEY, GLOBAL_KEY):
        methods = assert_model(
            "payment_methods", session_for(key).get(f"{emu.api_url}/payment_methods", timeout=TIMEOUT)
        )
        assert methods


def test_added_payments_of_every_scenario_kind_match(emu: EmulatorServer, jp: requests.Session) -> None:
    specs = [
        {"status": "authorized", "payment_type": "konbini", "payment_details": {"store": "lawson"}},
        {"status": "captured", "payment_type": "paypay", "description": "a mug", "locale": "ja"},
        {"status": "captured", "payment_type": "bank_transfer", "currency": "JPY", "metadata": {"order": "7"}},
        {"status": "refunded", "currency": "USD", "amount": 300, "tax": 30, "payment_method_fee": 10},
        {"status": "expired", "payment_type": "pay_easy", "external_order_num": None},
    ]
    for payment in emu.add_payments("shop-jp", specs):
        assert_model("payment", jp.get(payment_url(emu, payment["id"]), timeout=TIMEOUT))


# -- cancel and refund --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reading", sorted(READINGS))
def test_cancel_and_refund_answers_match_the_payment_model(
    emu: EmulatorServer, jp: requests.Session, reading: str
) -> None:
    emu.set_settings(**READINGS[reading])
    refunds = [(CAPTURED, None), (PARTIAL, {"amount": 1000, "description": "one cup broken"})]
    if reading == "cash_redirect":
        refunds.append((KONBINI, {"amount": 490}))
    answers = [jp.post(cancel_url(emu, payment_id), timeout=TIMEOUT) for payment_id in (PENDING, AUTHORIZED)]
    for payment_id, body in refunds:
        assert body is None or problems("refund_request_body", body) == []
        answers.append(jp.post(refund_url(emu, payment_id), json=body, headers=keyed(payment_id), timeout=TIMEOUT))
        answers.append(jp.post(refund_url(emu, payment_id), json=body, headers=keyed(payment_id), timeout=TIMEOUT))
    expected = 202 if reading == "accepted_202" else 200
    assert [answer.status_code for answer in answers] == [expected] * len(answers)
    for answer in answers:
        assert_model("payment", answer)
    for payment_id in (PENDING, AUTHORIZED, CAPTURED, PARTIAL, KONBINI):
        emu.complete(payment_id)
        assert_model("payment", jp.get(payment_url(emu, payment_id), timeout=TIMEOUT))
    assert emu.payment(CAPTURED)["status"] == "refunded"


# -- errors -------------------------------------------------------------------------------------------------


def test_every_api_error_matches_the_api_error_model(
    emu: EmulatorServer, jp: requests.Session, session_for: Callable[[str | None], requests.Session]
) -> None:
    api = emu.api_url
    nobody, forbidden = session_for(None), session_for(JP_FORBIDDEN_KEY)
    json_header = {"Content-Type": "application/json"}
    cases: list[tuple[requests.Response, int, str]] = [
        (nobody.get(f"{api}/payment_methods", timeout=TIMEOUT), 401, "unauthorized"),
        (forbidden.post(cancel_url(emu, PENDING), timeout=TIMEOUT), 403, "forbidden"),
        (jp.get(payment_url(emu, "z" * 25), timeout=TIMEOUT), 404, "not_found"),
        (jp.get(f"{api}/customers", timeout=TIMEOUT), 404, "not_found"),
        (jp.get(f"{emu.base_url}/elsewhere", timeout=TIMEOUT), 404, "not_found"),
        (jp.post(refund_url(emu, CAPTURED), data=b"{no", headers=json_header, timeout=TIMEOUT), 400, "bad_request"),
        (jp.post(cancel_url(emu, PENDING), headers=keyed(""), timeout=TIMEOUT), 400, "bad_request"),
        (jp.post(cancel_url(emu, CANCELLED), timeout=TIMEOUT), 422, "not_cancellable"),
        (jp.post(refund_url(emu, PENDING), timeout=TIMEOUT), 422, "not_refundable"),
        (jp.post(refund_url(emu, KONBINI), timeout=TIMEOUT), 422, "not_refundable"),
        (jp.post(refund_url(emu, CAPTURED), json={"amount": 99999}, timeout=TIMEOUT), 422, "invalid_parameter"),
        (jp.get(f"{api}/payments", params={"per_page": "0"}, timeout=TIMEOUT), 422, "invalid_parameter"),
    ]
    jp.post(refund_url(emu, CAPTURED), json={"amount": 1}, headers=keyed("k"), timeout=TIMEOUT)
    other_body = jp.post(refund_url(emu, CAPTURED), json={"amount": 2}, headers=keyed("k"), timeout=TIMEOUT)
    cases.append((other_body, 422, "unprocessable_entity"))
    for response, status, code in cases:
        assert assert_error_model(response, status)["code"] == code


@pytest.mark.parametrize("rule", JSON_FAULTS, ids=lambda rule: "-".join(map(str, rule.values())))
def test_every_fault_error_matches_the_api_error_model(
    emu: EmulatorServer, jp: requests.Session, rule: dict[str, Any]
) -> None:
    emu.set_settings(replay_errors=True)
    emu.set_faults([{**rule, "times": 2}])
    first = jp.post(cancel_url(emu, PENDING), headers=keyed("f1"), timeout=TIMEOUT)
    on_get = jp.get(payment_url(emu, CAPTURED), timeout=TIMEOUT)
    replayed = jp.post(cancel_url(emu, PENDING), headers=keyed("f1"), timeout=TIMEOUT)
    status = first.status_code
    assert status >= 400
    for response in (first, on_get):
        assert_error_model(response, status)
    assert_model("payment" if replayed.status_code < 400 else "error", replayed)


@pytest.mark.parametrize(("kind", "status"), [("html_502", 502), ("html_403", 403)])
def test_html_faults_are_pages_not_json(emu: EmulatorServer, jp: requests.Session, kind: str, status: int) -> None:
    emu.set_settings(replay_errors=True)
    emu.set_faults([{"kind": kind, "times": 1}])
    for _ in range(2):  # the page, then its replay
        response = jp.post(refund_url(emu, CAPTURED), headers=keyed("h1"), timeout=TIMEOUT)
        assert_html(response, status)
        with pytest.raises(requests.exceptions.JSONDecodeError):
            response.json()
