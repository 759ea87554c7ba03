"""Tests of KomojuHook: connection rules, the exact requests sent, error mapping, retries and secret hygiene."""

from __future__ import annotations

import base64
import email.utils
import http.server
import json
import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

import komoju
from komoju import hooks as hooks_module
from komoju.hooks import KomojuAPIError, KomojuHook, parse_retry_after
from komoju.text import sanitise

SECRET = "sk_test_x"
BASE = "https://komoju.com/api/v1"
PAYMENT_ID = "0123456789abcdefghijklmno"
KEY = "komoju-airflow:shop1:1001:1"
METHODS = [
    {"type_slug": "credit_card", "currency": "JPY", "name_en": "Credit Card", "subtypes": ["visa"]},
    {"type_slug": "konbini", "currency": "JPY", "name_en": "Konbini"},
]
PAYMENT = {"id": PAYMENT_ID, "resource": "payment", "status": "cancelled", "amount": 1000, "currency": "JPY"}


def basic_header(key: str) -> str:
    """The Authorization header value requests builds for ``key`` with an empty password."""
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def error_body(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """A KOMOJU error body."""
    return {"error": {"code": code, "message": message, "param": param, "details": {}}}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Define an Airflow connection through its ``AIRFLOW_CONN_<ID>`` env var (JSON form)."""

    def set_conn(conn_id: str = "komoju_default", **fields: Any) -> None:
        conn = {"conn_type": "komoju", "password": SECRET, **fields}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    set_conn()
    return set_conn


@pytest.fixture
def waits() -> list[float]:
    """The back-off waits the hook asked for (it never really sleeps in these tests)."""
    return []


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_hook(set_conn: Callable[..., None], waits: list[float], clock: FakeClock) -> Callable[..., KomojuHook]:
    """Build hooks that record their waits (on a fake clock), use no jitter, and log through stdlib logging."""

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.sleep(seconds)

    def make(conn_id: str = "komoju_default", **kwargs: Any) -> KomojuHook:
        hook = KomojuHook(conn_id, **kwargs)
        hook._sleep = sleep
        hook._clock = clock
        hook._jitter = lambda: 0.0
        hook._log = logging.getLogger("komoju.hooks.under_test")
        return hook

    return make


@pytest.fixture
def hook(make_hook: Callable[..., KomojuHook]) -> KomojuHook:
    """A hook on the default connection with default settings."""
    return make_hook()


# ----------------------------------------------------------------------------- identity and settings


def test_class_attributes() -> None:
    assert KomojuHook.conn_name_attr == "komoju_conn_id"
    assert KomojuHook.default_conn_name == "komoju_default"
    assert KomojuHook.conn_type == "komoju"
    assert KomojuHook.hook_name == "KOMOJU"
    assert KomojuHook().komoju_conn_id == "komoju_default"


def test_init_reads_nothing() -> None:
    hook = KomojuHook("no_such_connection", read_timeout=3)
    assert hook.komoju_conn_id == "no_such_connection"
    assert hook._settings is None
    assert hook._session is None


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://komoju.com/api/v1"),
        ("", None, "https://komoju.com/api/v1"),
        ("komoju.com", None, "https://komoju.com/api/v1"),
        ("sandbox.example", None, "https://sandbox.example/api/v1"),
        ("sandbox.example", 8443, "https://sandbox.example:8443/api/v1"),
        ("http://127.0.0.1:8123", None, "http://127.0.0.1:8123/api/v1"),
        ("https://x.example/", None, "https://x.example/api/v1"),
        ("https://x.example:8443/", 9443, "https://x.example:9443/api/v1"),
        ("http://127.0.0.1:8123", 9000, "http://127.0.0.1:9000/api/v1"),
        ("http://127.1.2.3", None, "http://127.1.2.3/api/v1"),
        ("http://localhost:8123/", None, "http://localhost:8123/api/v1"),
        ("http://[::1]:8123", None, "http://[::1]:8123/api/v1"),
        ("https://proxy.example/komoju/", None, "https://proxy.example/komoju/api/v1"),
        ("https://komoju.com/api/v1/", None, "https://komoju.com/api/v1"),
    ],
)
def test_base_url_rules(
    set_conn: Callable[..., None],
    make_hook: Callable[..., KomojuHook],
    host: str | None,
    port: int | None,
    expected: str,
) -> None:
    fields: dict[str, Any] = {}
    if host is not None:
        fields["host"] = host
    if port is not None:
        fields["port"] = port
    set_conn(**fields)
    assert make_hook().base_url == expected


@pytest.mark.parametrize(
    "host",
    ["http://komoju.com", "http://10.0.0.1:8123", "http://localhost.evil.example", "http://128.0.0.1", "http://[::2]"],
)
def test_plain_http_refused_off_loopback(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], host: str
) -> None:
    set_conn(host=host)
    with pytest.raises(ValueError, match=r"connection 'komoju_default'.*only allowed for loopback"):
        make_hook().base_url  # noqa: B018


@pytest.mark.parametrize(
    ("host", "match"),
    [
        ("https://sk_live_leaky@komoju.com", "must not contain credentials"),
        ("ftp://komoju.com", "host must be empty, a host name or an http"),
        ("https://komoju.com/?debug=1", "query or fragment"),
    ],
)
def test_bad_host_refused(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], host: str, match: str
) -> None:
    set_conn(host=host)
    with pytest.raises(ValueError, match=match) as info:
        make_hook().base_url  # noqa: B018
    assert "sk_live_leaky" not in str(info.value)


@pytest.mark.parametrize("password", [None, "", "   "])
def test_missing_secret_key_fails_fast(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], requests_mock: Any, password: str | None
) -> None:
    set_conn("shop_b", password=password)
    with pytest.raises(ValueError, match=r"connection 'shop_b'.*secret key.*password field"):
        make_hook("shop_b").list_payment_methods()
    assert requests_mock.call_count == 0


def test_settings_from_extra_and_kwargs(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], requests_mock: Any
) -> None:
    set_conn(
        extra={"connect_timeout": "2", "read_timeout": 12, "max_retries": 1, "pool_maxsize": 4, "backoff_base": 0.1}
    )
    hook = make_hook(read_timeout=7)
    settings = hook.settings
    assert (settings.connect_timeout, settings.read_timeout) == (2.0, 7.0)
    assert (settings.max_retries, settings.pool_maxsize, settings.backoff_base) == (1, 4, 0.1)
    assert (settings.backoff_max, settings.max_retry_wait, settings.api_version) == (30.0, 60.0, None)
    requests_mock.get(f"{BASE}/payment_methods", status_code=503, json=error_body("service_unavailable", "x"))
    with pytest.raises(KomojuAPIError):
        hook.list_payment_methods()
    assert requests_mock.call_count == 2
    assert requests_mock.request_history[0].timeout == (2.0, 7.0)


def test_default_settings(hook: KomojuHook) -> None:
    settings = hook.settings
    assert settings.secret_key == SECRET
    assert SECRET not in repr(settings)
    assert (settings.connect_timeout, settings.read_timeout, settings.max_retries) == (5.0, 30.0, 3)
    assert (settings.backoff_base, settings.backoff_max, settings.max_retry_wait) == (0.5, 30.0, 60.0)
    assert (settings.api_version, settings.pool_maxsize) == (None, 8)
    assert (settings.max_concurrency, settings.rate_limit) == (8, None)
    assert hook.throttle.interval == 0.0


def test_environment_is_read_once_per_session(
    make_hook: Callable[..., KomojuHook], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/komoju-test/ca.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = make_hook().get_conn()
    assert session.trust_env is False, "requests must not re-read the environment on every call"
    assert session.verify == "/etc/komoju-test/ca.pem", "a CA bundle from the environment is still used"
    assert session.proxies["https"] == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", "komoju.com")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    session = make_hook().get_conn()
    assert "https" not in session.proxies, "NO_PROXY naming KOMOJU's host bypasses the proxy"
    assert session.verify is True, "an empty CURL_CA_BUNDLE never turns verification off"


def test_concurrency_and_rate_limit_from_extra(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook]
) -> None:
    set_conn(extra={"max_concurrency": "12", "rate_limit": "20"})
    hook = make_hook()
    assert (hook.settings.max_concurrency, hook.settings.rate_limit) == (12, 20.0)
    assert hook.throttle.interval == pytest.approx(0.05)
    assert hook.get_conn().get_adapter(BASE)._pool_maxsize == 12, "the pool is sized to the concurrency"
    assert make_hook(max_concurrency=3).settings.max_concurrency == 3, "the keyword argument wins"


def test_pending_limit_from_extra(set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook]) -> None:
    assert make_hook().settings.pending_limit_days == 7.0
    set_conn(extra={"pending_limit_days": "2.5"})
    assert make_hook().settings.pending_limit_days == 2.5


@pytest.mark.parametrize(
    "extra",
    [
        {"read_timeout": "soon"},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"connect_timeout": 0},
        {"pool_maxsize": 0},
        {"max_concurrency": 0},
        {"max_concurrency": "eight"},
        {"rate_limit": 0},
        {"rate_limit": -2},
        {"pending_limit_days": 0},
        {"pending_limit_days": "a week"},
    ],
)
def test_invalid_extra_refused(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], extra: dict[str, Any]
) -> None:
    set_conn(extra=extra)
    with pytest.raises(ValueError, match=rf"connection 'komoju_default': {next(iter(extra))} must be"):
        make_hook().settings  # noqa: B018


# ----------------------------------------------------------------------------- the session and the exact requests


def test_get_conn_builds_a_configured_session(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    set_conn(extra={"pool_maxsize": 16})
    hook = make_hook()
    session = hook.get_conn()
    assert isinstance(session, requests.Session)
    assert session.auth == (SECRET, "")
    assert session.verify is True
    assert session.headers["Accept"] == "application/json"
    assert session.headers["Content-Type"] == "application/json"
    assert (
        session.headers["User-Agent"] == f"komoju-airflow/{komoju.__version__} (python-requests/{requests.__version__})"
    )
    assert "X-KOMOJU-API-VERSION" not in session.headers
    assert session.get_adapter("https://komoju.com/api/v1")._pool_maxsize == 16
    assert hook.get_conn() is not session, "get_conn() returns a new session each time"
    assert hook.session is hook.session, "the hook keeps one session for its own calls"


def test_list_payment_methods_request(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payment_methods", json=METHODS)
    assert hook.list_payment_methods() == METHODS
    assert requests_mock.call_count == 1
    sent = requests_mock.request_history[0]
    assert sent.method == "GET"
    assert sent.url == f"{BASE}/payment_methods"
    assert sent.headers["Authorization"] == basic_header(SECRET)
    assert sent.headers["Authorization"] == "Basic c2tfdGVzdF94Og=="
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"] == f"komoju-airflow/{komoju.__version__} (python-requests/{requests.__version__})"
    assert "X-KOMOJU-IDEMPOTENCY" not in sent.headers
    assert "X-KOMOJU-API-VERSION" not in sent.headers
    assert sent.timeout == (5.0, 30.0)
    assert sent.verify not in (False, None, ""), "TLS verification on (True or a CA bundle path)"
    assert sent.body is None


def test_get_payment_quotes_the_id(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payments/a%2F..%2Fb%3Fx%3D1", json=PAYMENT)
    assert hook.get_payment("a/../b?x=1") == PAYMENT
    assert requests_mock.request_history[0].path == "/api/v1/payments/a%2f..%2fb%3fx%3d1"


def test_cancel_payment_request(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/cancel", json=PAYMENT)
    assert hook.cancel_payment(PAYMENT_ID, KEY) == PAYMENT
    sent = requests_mock.request_history[0]
    assert sent.method == "POST"
    assert sent.url == f"{BASE}/payments/{PAYMENT_ID}/cancel"
    assert sent.headers["X-KOMOJU-IDEMPOTENCY"] == KEY
    assert sent.headers["Authorization"] == basic_header(SECRET)
    assert sent.body is None


@pytest.mark.parametrize(
    ("kwargs", "expected_body"),
    [
        ({}, {}),
        ({"amount": 500}, {"amount": 500}),
        ({"description": "返品 order 1001"}, {"description": "返品 order 1001"}),
        ({"amount": 1, "description": "partial"}, {"amount": 1, "description": "partial"}),
    ],
)
def test_refund_payment_body(
    hook: KomojuHook, requests_mock: Any, kwargs: dict[str, Any], expected_body: dict[str, Any]
) -> None:
    refunded = {**PAYMENT, "status": "refunded"}
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/refund", json=refunded)
    assert hook.refund_payment(PAYMENT_ID, KEY, **kwargs) == refunded
    sent = requests_mock.request_history[0]
    assert sent.method == "POST"
    assert sent.headers["X-KOMOJU-IDEMPOTENCY"] == KEY
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == expected_body


@pytest.mark.parametrize("amount", [0, -100, True, 1.5, "100"])
def test_refund_amount_validated(hook: KomojuHook, requests_mock: Any, amount: Any) -> None:
    with pytest.raises(ValueError, match="amount must be a positive integer"):
        hook.refund_payment(PAYMENT_ID, KEY, amount=amount)
    assert requests_mock.call_count == 0


def test_api_version_header_from_extra(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], requests_mock: Any
) -> None:
    set_conn(extra={"api_version": "2025-01-28"})
    requests_mock.get(f"{BASE}/payment_methods", json=[])
    make_hook().list_payment_methods()
    assert requests_mock.request_history[0].headers["X-KOMOJU-API-VERSION"] == "2025-01-28"


def test_api_version_kwarg_wins(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], requests_mock: Any
) -> None:
    set_conn(extra={"api_version": "2025-01-28"})
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/cancel", json=PAYMENT)
    make_hook(api_version="2024-07-15").cancel_payment(PAYMENT_ID, KEY)
    assert requests_mock.request_history[0].headers["X-KOMOJU-API-VERSION"] == "2024-07-15"


def test_api_version_validated(set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook]) -> None:
    set_conn(extra={"api_version": "latest\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="api_version must look like YYYY-MM-DD"):
        make_hook().settings  # noqa: B018


@pytest.mark.parametrize("key", ["", "a" * 101, "has space", "tab\tkey", "キー", "new\nline", None])
def test_idempotency_key_validated(hook: KomojuHook, requests_mock: Any, key: Any) -> None:
    with pytest.raises(ValueError, match="idempotency key must be 1 to 100 printable ASCII"):
        hook.cancel_payment(PAYMENT_ID, key)
    with pytest.raises(ValueError, match="idempotency key must be 1 to 100 printable ASCII"):
        hook.refund_payment(PAYMENT_ID, key)
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("key", ["a" * 100, "!", "~{}:/|"])
def test_idempotency_key_limits_accepted(hook: KomojuHook, requests_mock: Any, key: str) -> None:
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/cancel", json=PAYMENT)
    hook.cancel_payment(PAYMENT_ID, key)
    assert requests_mock.request_history[0].headers["X-KOMOJU-IDEMPOTENCY"] == key


@pytest.mark.parametrize("payment_id", ["", "   ", None])
def test_empty_payment_id_refused(hook: KomojuHook, requests_mock: Any, payment_id: Any) -> None:
    for call in (
        lambda: hook.get_payment(payment_id),
        lambda: hook.cancel_payment(payment_id, KEY),
        lambda: hook.refund_payment(payment_id, KEY),
    ):
        with pytest.raises(ValueError, match="payment id must be a non-empty string"):
            call()
    assert requests_mock.call_count == 0


# ----------------------------------------------------------------------------- error mapping


ERROR_CASES = [
    # (HTTP status, KOMOJU code, transient)
    (400, "bad_request", False),
    (401, "unauthorized", False),
    (402, "request_failed", False),
    (403, "forbidden", False),
    (404, "not_found", False),
    (422, "unprocessable_entity", False),
    (500, "internal_server_error", True),
    (502, "bad_gateway", True),
    (503, "service_unavailable", True),
    (504, "gateway_timeout", True),
    (409, "conflict", True),
    (429, "too_many_requests", True),
]


@pytest.mark.parametrize(("status", "code", "transient"), ERROR_CASES)
def test_documented_error_codes_on_get(
    hook: KomojuHook, requests_mock: Any, waits: list[float], status: int, code: str, transient: bool
) -> None:
    requests_mock.get(
        f"{BASE}/payments/{PAYMENT_ID}", status_code=status, json=error_body(code, f"Message for {code}", "id")
    )
    with pytest.raises(KomojuAPIError) as info:
        hook.get_payment(PAYMENT_ID)
    error = info.value
    assert (error.status, error.code, error.param, error.transient) == (status, code, "id", transient)
    assert error.message == f"Message for {code}"
    assert (error.method, error.path, error.conn_id) == ("GET", f"/payments/{PAYMENT_ID}", "komoju_default")
    assert error.auth_failure is (status in (401, 403))
    text = str(error)
    assert f"GET /payments/{PAYMENT_ID}" in text
    assert f"HTTP {status}" in text
    assert f"'{code}'" in text
    assert f"Message for {code}" in text
    assert ("secret key of connection 'komoju_default' was refused" in text) is (status in (401, 403))
    # Transient failures are retried up to max_retries (3), final ones are not.
    assert requests_mock.call_count == (4 if transient else 1)
    assert waits == ([0.5, 1.0, 2.0] if transient else [])
    assert error.attempts == requests_mock.call_count


@pytest.mark.parametrize(
    ("action", "code"),
    [("cancel", "not_cancellable"), ("refund", "not_refundable")],
)
def test_not_cancellable_and_not_refundable_are_final(
    hook: KomojuHook, requests_mock: Any, waits: list[float], action: str, code: str
) -> None:
    message = f"The payment cannot be {action}ed in its current state."
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/{action}", status_code=422, json=error_body(code, message))
    call = hook.cancel_payment if action == "cancel" else hook.refund_payment
    with pytest.raises(KomojuAPIError) as info:
        call(PAYMENT_ID, KEY)
    error = info.value
    assert (error.status, error.code, error.message, error.transient) == (422, code, message, False)
    assert (error.method, error.path) == ("POST", f"/payments/{PAYMENT_ID}/{action}")
    assert error.param is None
    assert not error.auth_failure
    assert requests_mock.call_count == 1
    assert waits == []


def test_auth_failure_message_names_the_connection(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], requests_mock: Any
) -> None:
    set_conn("shop_jp")
    requests_mock.post(
        f"{BASE}/payments/{PAYMENT_ID}/cancel", status_code=401, json=error_body("unauthorized", "Bad key")
    )
    with pytest.raises(KomojuAPIError) as info:
        make_hook("shop_jp").cancel_payment(PAYMENT_ID, KEY)
    assert info.value.auth_failure
    assert info.value.conn_id == "shop_jp"
    assert str(info.value) == (
        f"KOMOJU call POST /payments/{PAYMENT_ID}/cancel (connection 'shop_jp') failed: HTTP 401,"
        " KOMOJU code 'unauthorized': Bad key. The secret key of connection 'shop_jp' was refused:"
        " check the secret key in the password field of that Airflow connection."
    )


def test_html_502_becomes_a_clear_transient_error(hook: KomojuHook, requests_mock: Any, waits: list[float]) -> None:
    html = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>nginx</body></html>"
    requests_mock.get(f"{BASE}/payment_methods", status_code=502, text=html, headers={"Content-Type": "text/html"})
    with pytest.raises(KomojuAPIError) as info:
        hook.list_payment_methods()
    error = info.value
    assert not isinstance(error, json.JSONDecodeError)
    assert (error.status, error.code, error.transient) == (502, None, True)
    assert "HTTP 502 with a non-JSON body (text/html)" in error.message
    assert "502 Bad Gateway 502 Bad Gateway nginx" in error.message
    assert "<" not in error.message
    assert requests_mock.call_count == 4
    assert waits == [0.5, 1.0, 2.0]


def test_non_json_final_status_is_not_retried(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", status_code=404, text="Not Found", headers={})
    with pytest.raises(KomojuAPIError) as info:
        hook.get_payment(PAYMENT_ID)
    assert (info.value.status, info.value.code, info.value.transient) == (404, None, False)
    assert "non-JSON body" in info.value.message
    assert requests_mock.call_count == 1


def test_non_json_200_is_transient_invalid_response(hook: KomojuHook, requests_mock: Any, waits: list[float]) -> None:
    requests_mock.get(
        f"{BASE}/payment_methods",
        [
            {"status_code": 200, "text": "<html>maintenance</html>", "headers": {"Content-Type": "text/html"}},
            {"status_code": 200, "json": METHODS},
        ],
    )
    assert hook.list_payment_methods() == METHODS
    assert requests_mock.call_count == 2
    assert waits == [0.5]


def test_non_json_200_exhausted(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/cancel", status_code=200, text='{"id": "trunc')
    with pytest.raises(KomojuAPIError) as info:
        hook.cancel_payment(PAYMENT_ID, KEY)
    error = info.value
    assert (error.status, error.code, error.transient, error.attempts) == (200, "invalid_response", True, 4)
    assert "non-JSON body" in error.message
    assert requests_mock.call_count == 4
    assert {r.headers["X-KOMOJU-IDEMPOTENCY"] for r in requests_mock.request_history} == {KEY}


@pytest.mark.parametrize(
    ("status", "body", "transient"),
    [(400, {"message": "odd"}, False), (404, [], False), (500, {"error": None}, True), (422, "text", False)],
)
def test_json_error_body_without_error_object(
    hook: KomojuHook, requests_mock: Any, status: int, body: Any, transient: bool
) -> None:
    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", status_code=status, json=body)
    with pytest.raises(KomojuAPIError) as info:
        hook.get_payment(PAYMENT_ID)
    error = info.value
    assert (error.status, error.code, error.transient) == (status, None, transient)
    assert error.message.startswith("KOMOJU answered without an error object: ")
    assert json.dumps(body) in error.message


def test_error_with_string_error_field(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", status_code=400, json={"error": "Invalid id"})
    with pytest.raises(KomojuAPIError) as info:
        hook.get_payment(PAYMENT_ID)
    assert (info.value.code, info.value.message) == (None, "Invalid id")


@pytest.mark.parametrize("body", [{"data": METHODS}, "credit_card", [1, 2], [{"type_slug": "x"}, None]])
def test_list_payment_methods_rejects_non_array(hook: KomojuHook, requests_mock: Any, body: Any) -> None:
    requests_mock.get(f"{BASE}/payment_methods", json=body)
    with pytest.raises(KomojuAPIError) as info:
        hook.list_payment_methods()
    error = info.value
    assert (error.status, error.code, error.transient) == (200, "invalid_response", False)
    assert "expected a JSON array of objects" in error.message
    assert requests_mock.call_count == 1


def test_get_payment_rejects_non_object(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", json=[PAYMENT])
    with pytest.raises(KomojuAPIError, match="expected a JSON object, got list"):
        hook.get_payment(PAYMENT_ID)


def test_redirect_is_not_followed(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payment_methods", status_code=302, headers={"Location": "http://evil.example/"})
    requests_mock.get("http://evil.example/", json=[])
    with pytest.raises(KomojuAPIError) as info:
        hook.list_payment_methods()
    assert (info.value.status, info.value.transient) == (302, False)
    assert requests_mock.call_count == 1


def test_komoju_message_sanitised_and_truncated(hook: KomojuHook, requests_mock: Any) -> None:
    message = "Line one\nLine\x1b[31m two\u202e " + "x" * 2000
    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", status_code=400, json=error_body("bad_request", message))
    with pytest.raises(KomojuAPIError) as info:
        hook.get_payment(PAYMENT_ID)
    error = info.value
    assert error.message.startswith("Line one Line [31m two x")
    assert len(error.message) == 500
    for char in ("\n", "\x1b", "\u202e"):
        assert char not in error.message
        assert char not in str(error)


def test_error_survives_pickling() -> None:
    error = KomojuAPIError(
        "Bad key", status=401, code="unauthorized", method="GET", path="/payment_methods", conn_id="c", attempts=1
    )
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert (clone.status, clone.code, clone.conn_id, clone.auth_failure) == (401, "unauthorized", "c", True)
    assert str(clone) == str(error)


# ----------------------------------------------------------------------------- retries


def test_get_retries_with_exponential_backoff(hook: KomojuHook, requests_mock: Any, waits: list[float]) -> None:
    requests_mock.get(
        f"{BASE}/payment_methods",
        [
            {"status_code": 503, "json": error_body("service_unavailable", "maintenance")},
            {"status_code": 500, "json": error_body("internal_server_error", "oops")},
            {"status_code": 200, "json": METHODS},
        ],
    )
    assert hook.list_payment_methods() == METHODS
    assert requests_mock.call_count == 3
    assert waits == [0.5, 1.0]


def test_backoff_capped_and_retries_exhausted(
    make_hook: Callable[..., KomojuHook], requests_mock: Any, waits: list[float]
) -> None:
    hook = make_hook(max_retries=5, backoff_max=1.5)
    requests_mock.get(f"{BASE}/payment_methods", status_code=500, json=error_body("internal_server_error", "oops"))
    with pytest.raises(KomojuAPIError) as info:
        hook.list_payment_methods()
    assert waits == [0.5, 1.0, 1.5, 1.5, 1.5]
    assert requests_mock.call_count == 6
    error = info.value
    assert (error.transient, error.status, error.attempts) == (True, 500, 6)
    assert "failed after 6 attempts" in str(error)


def test_backoff_jitter_is_bounded(
    make_hook: Callable[..., KomojuHook], requests_mock: Any, waits: list[float]
) -> None:
    hook = make_hook(max_retries=4)
    hook._jitter = KomojuHook("unused")._jitter  # the real random jitter
    requests_mock.get(f"{BASE}/payment_methods", status_code=502, json=error_body("bad_gateway", "x"))
    with pytest.raises(KomojuAPIError):
        hook.list_payment_methods()
    assert len(waits) == 4
    for retry, wait in enumerate(waits):
        base = 0.5 * 2**retry
        assert base <= wait <= base * 1.1


def test_retries_exhausted_raise_last_error(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(
        f"{BASE}/payments/{PAYMENT_ID}",
        [
            {"status_code": 503, "json": error_body("service_unavailable", "first")},
            {"exc": requests.exceptions.ConnectTimeout},
            {"status_code": 502, "json": error_body("bad_gateway", "third")},
            {"status_code": 504, "json": error_body("gateway_timeout", "last")},
        ],
    )
    with pytest.raises(KomojuAPIError) as info:
        hook.get_payment(PAYMENT_ID)
    error = info.value
    assert (error.status, error.code, error.message, error.transient) == (504, "gateway_timeout", "last", True)
    assert requests_mock.call_count == 1 + 3


def test_post_with_key_retried_with_same_key_and_body(hook: KomojuHook, requests_mock: Any, waits: list[float]) -> None:
    requests_mock.post(
        f"{BASE}/payments/{PAYMENT_ID}/refund",
        [
            {"status_code": 503, "json": error_body("service_unavailable", "maintenance")},
            {"exc": requests.exceptions.ReadTimeout},
            {"exc": requests.exceptions.ChunkedEncodingError},
            {"status_code": 200, "json": PAYMENT},
        ],
    )
    assert hook.refund_payment(PAYMENT_ID, KEY, amount=300, description="late") == PAYMENT
    assert requests_mock.call_count == 4
    assert waits == [0.5, 1.0, 2.0]
    history = requests_mock.request_history
    assert [r.headers["X-KOMOJU-IDEMPOTENCY"] for r in history] == [KEY] * 4
    assert [r.json() for r in history] == [{"amount": 300, "description": "late"}] * 4
    assert len({r.body for r in history}) == 1


@pytest.mark.parametrize(
    "outcome",
    [
        {"status_code": 503, "json": {"error": {"code": "service_unavailable", "message": "down"}}},
        {"status_code": 409, "json": {"error": {"code": "conflict", "message": "in progress"}}},
        {"exc": requests.exceptions.ReadTimeout},
        {"exc": requests.exceptions.ConnectTimeout},
        {"status_code": 200, "text": "not json"},
    ],
)
def test_post_without_key_sent_exactly_once(
    hook: KomojuHook, requests_mock: Any, waits: list[float], outcome: dict[str, Any]
) -> None:
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/cancel", [outcome, {"status_code": 200, "json": PAYMENT}])
    with pytest.raises(KomojuAPIError) as info:
        hook._request("POST", f"/payments/{PAYMENT_ID}/cancel")
    assert info.value.transient is True
    assert requests_mock.call_count == 1
    assert waits == []
    assert "X-KOMOJU-IDEMPOTENCY" not in requests_mock.request_history[0].headers


def test_private_path_validates_keys(hook: KomojuHook, requests_mock: Any) -> None:
    with pytest.raises(ValueError, match="idempotency key"):
        hook._request("POST", f"/payments/{PAYMENT_ID}/cancel", idempotency_key="")
    assert requests_mock.call_count == 0


def test_409_then_200(hook: KomojuHook, requests_mock: Any, waits: list[float]) -> None:
    requests_mock.post(
        f"{BASE}/payments/{PAYMENT_ID}/cancel",
        [
            {"status_code": 409, "json": error_body("conflict", "A request with this key is in progress")},
            {"status_code": 200, "json": PAYMENT},
        ],
    )
    assert hook.cancel_payment(PAYMENT_ID, KEY) == PAYMENT
    assert requests_mock.call_count == 2
    assert waits == [0.5]
    assert [r.headers["X-KOMOJU-IDEMPOTENCY"] for r in requests_mock.request_history] == [KEY, KEY]


@pytest.mark.parametrize(("status", "retry_after", "expected"), [(429, "7", 7.0), (503, "2.5", 2.5), (429, "0", 0.0)])
def test_retry_after_seconds(
    hook: KomojuHook, requests_mock: Any, waits: list[float], status: int, retry_after: str, expected: float
) -> None:
    requests_mock.get(
        f"{BASE}/payment_methods",
        [
            {
                "status_code": status,
                "json": error_body("too_many_requests", "slow down"),
                "headers": {"Retry-After": retry_after},
            },
            {"status_code": 200, "json": METHODS},
        ],
    )
    assert hook.list_payment_methods() == METHODS
    assert waits == [expected]


def test_429_holds_every_thread_of_the_hook(
    hook: KomojuHook, requests_mock: Any, waits: list[float], clock: FakeClock
) -> None:
    requests_mock.get(
        f"{BASE}/payment_methods",
        [
            {"status_code": 429, "json": error_body("too_many_requests", "slow"), "headers": {"Retry-After": "7"}},
            {"status_code": 200, "json": METHODS},
        ],
    )
    started = clock.now
    assert hook.list_payment_methods() == METHODS
    assert hook.throttle._held_until == started + 7, "a 429 pauses the hook's shared throttle"
    assert waits == [7.0], "the thread that got the 429 waits once, not twice"


def test_503_does_not_hold_other_threads(hook: KomojuHook, requests_mock: Any, clock: FakeClock) -> None:
    requests_mock.get(
        f"{BASE}/payment_methods",
        [{"status_code": 503, "json": error_body("service_unavailable", "x")}, {"status_code": 200, "json": METHODS}],
    )
    hook.list_payment_methods()
    assert hook.throttle._held_until == float("-inf")


def test_rate_limit_spaces_requests(
    set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook], requests_mock: Any, waits: list[float]
) -> None:
    set_conn(extra={"rate_limit": 4})
    hook = make_hook()
    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", json=PAYMENT)
    for _ in range(4):
        hook.get_payment(PAYMENT_ID)
    assert waits == [0.25, 0.25, 0.25], "the first request goes at once, then one every 1/rate seconds"


def test_throttle_rate_and_holds(clock: FakeClock) -> None:
    throttle = hooks_module.Throttle(2, clock=clock, sleep=clock.sleep)
    assert throttle.wait() == 0.0
    assert throttle.wait() == 0.5
    throttle.hold(3)
    assert throttle.wait() == 3.0, "a hold delays the next start beyond the rate's spacing"
    throttle.hold(1)
    throttle.hold(0.5)
    assert throttle.wait() == 1.0, "holds only extend"
    unlimited = hooks_module.Throttle(None, clock=clock, sleep=clock.sleep)
    assert [unlimited.wait() for _ in range(3)] == [0.0, 0.0, 0.0]
    unlimited.hold(2)
    assert unlimited.wait() == 2.0


def test_throttle_is_shared_by_threads() -> None:
    rate, per_thread, threads = 100.0, 5, 4
    throttle = hooks_module.Throttle(rate)
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(per_thread):
            throttle.wait()
            with lock:
                starts.append(time.monotonic())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    begun = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert len(starts) == per_thread * threads
    # The n-th start of all threads together comes at least (n - 1) / rate after the first could.
    assert max(starts) - begun >= (per_thread * threads - 1) / rate


def test_retry_after_http_date(hook: KomojuHook, requests_mock: Any, waits: list[float]) -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    requests_mock.get(
        f"{BASE}/payment_methods",
        [
            {"status_code": 429, "text": "", "headers": {"Retry-After": when}},
            {"status_code": 200, "json": METHODS},
        ],
    )
    assert hook.list_payment_methods() == METHODS
    assert len(waits) == 1
    assert 18.0 <= waits[0] <= 20.0


@pytest.mark.parametrize(
    ("kwargs", "retry_after", "expected"),
    [
        ({}, "3600", 60.0),
        ({"max_retry_wait": 10}, "3600", 10.0),
        ({}, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: retry now
        ({}, "soon", 0.5),  # unreadable: ordinary back-off
    ],
)
def test_retry_after_capped_or_ignored(
    make_hook: Callable[..., KomojuHook],
    requests_mock: Any,
    waits: list[float],
    kwargs: dict[str, Any],
    retry_after: str,
    expected: float,
) -> None:
    requests_mock.post(
        f"{BASE}/payments/{PAYMENT_ID}/cancel",
        [
            {
                "status_code": 503,
                "json": error_body("service_unavailable", "x"),
                "headers": {"Retry-After": retry_after},
            },
            {"status_code": 200, "json": PAYMENT},
        ],
    )
    make_hook(**kwargs).cancel_payment(PAYMENT_ID, KEY)
    assert waits == [expected]


def test_backoff_wait_capped_by_max_retry_wait(
    make_hook: Callable[..., KomojuHook], requests_mock: Any, waits: list[float]
) -> None:
    hook = make_hook(backoff_base=10, backoff_max=100, max_retry_wait=25)
    requests_mock.get(f"{BASE}/payment_methods", status_code=500, json=error_body("internal_server_error", "x"))
    with pytest.raises(KomojuAPIError):
        hook.list_payment_methods()
    assert waits == [10.0, 20.0, 25.0]


@pytest.mark.parametrize(
    ("exc", "what"),
    [
        (requests.exceptions.ReadTimeout, "read timeout"),
        (requests.exceptions.ConnectTimeout, "connect timeout"),
        (requests.exceptions.ConnectionError, "connection error"),
        (requests.exceptions.ChunkedEncodingError, "incomplete response body"),
    ],
)
def test_network_failures_are_transient_and_retried(
    hook: KomojuHook, requests_mock: Any, waits: list[float], exc: type[Exception], what: str
) -> None:
    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", [{"exc": exc}, {"status_code": 200, "json": PAYMENT}])
    assert hook.get_payment(PAYMENT_ID) == PAYMENT
    assert requests_mock.call_count == 2
    assert waits == [0.5]

    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", exc=exc("boom"))
    with pytest.raises(KomojuAPIError) as info:
        hook.get_payment(PAYMENT_ID)
    error = info.value
    assert (error.status, error.code, error.transient, error.attempts) == (None, None, True, 4)
    assert error.message.startswith(f"{what} ({exc.__name__}: boom")
    assert "no HTTP answer" in str(error)


def test_other_request_errors_are_final(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payment_methods", exc=requests.exceptions.InvalidHeader("bad header"))
    with pytest.raises(KomojuAPIError) as info:
        hook.list_payment_methods()
    assert (info.value.transient, info.value.message) == (False, "request error (InvalidHeader: bad header)")
    assert requests_mock.call_count == 1


def test_session_shared_between_calls(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payment_methods", json=METHODS)
    requests_mock.get(f"{BASE}/payments/{PAYMENT_ID}", json=PAYMENT)
    hook.list_payment_methods()
    session = hook._session
    hook.get_payment(PAYMENT_ID)
    assert session is not None
    assert hook._session is session
    hook.close()
    assert hook._session is None


def test_calls_from_threads_share_one_session(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payment_methods", json=METHODS)
    sessions: list[requests.Session] = []

    def call() -> None:
        hook.list_payment_methods()
        sessions.append(hook.session)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sessions) == 8
    assert len({id(s) for s in sessions}) == 1
    assert requests_mock.call_count == 8


# ----------------------------------------------------------------------------- test_connection


def test_test_connection_ok(hook: KomojuHook, requests_mock: Any) -> None:
    requests_mock.get(f"{BASE}/payment_methods", json=METHODS)
    assert hook.test_connection() == (True, f"Connected to KOMOJU at {BASE}: 2 payment methods available.")


def test_test_connection_refused_key(hook: KomojuHook, requests_mock: Any, waits: list[float]) -> None:
    requests_mock.get(f"{BASE}/payment_methods", status_code=401, json=error_body("unauthorized", "Bad key"))
    ok, message = hook.test_connection()
    assert ok is False
    assert "HTTP 401" in message
    assert "secret key of connection 'komoju_default' was refused" in message


def test_test_connection_does_not_retry(hook: KomojuHook, requests_mock: Any, waits: list[float]) -> None:
    requests_mock.get(f"{BASE}/payment_methods", status_code=503, json=error_body("service_unavailable", "down"))
    ok, message = hook.test_connection()
    assert ok is False
    assert "HTTP 503" in message
    assert requests_mock.call_count == 1
    assert waits == []


def test_test_connection_never_raises(set_conn: Callable[..., None], make_hook: Callable[..., KomojuHook]) -> None:
    set_conn(password="")
    ok, message = make_hook().test_connection()
    assert ok is False
    assert "password field" in message
    ok, message = make_hook("connection_that_does_not_exist").test_connection()
    assert ok is False
    assert "connection_that_does_not_exist" in message


# ----------------------------------------------------------------------------- helpers


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("-5") == 0.0
    for unreadable in (None, "", "later", "nan", "inf"):
        assert parse_retry_after(unreadable) is None


def test_sanitise_redacts_secrets() -> None:
    token = base64.b64encode(b"sk_test_abc123:").decode()
    text = sanitise(f"key sk_test_abc123 header Basic {token} other sk_live_ZZZZ9999", ("sk_test_abc123", token))
    assert text == "key *** header Basic *** other sk_***"


# ----------------------------------------------------------------------------- secrets never leak

LEAKY_SECRET = "sk_test_L3akyS3cretValue0123"
LEAKY_TOKEN = base64.b64encode(f"{LEAKY_SECRET}:".encode()).decode()


@pytest.fixture
def leaky_hook(
    set_conn: Callable[..., None],
    make_hook: Callable[..., KomojuHook],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> KomojuHook:
    """A hook whose key KOMOJU echoes back; Airflow's masker is disabled so only the hook's care is tested."""
    monkeypatch.setattr(hooks_module, "mask_secret", lambda *args, **kwargs: None)
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "komoju"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    set_conn(password=LEAKY_SECRET)
    return make_hook(max_retries=1)


def assert_no_secret(*texts: str) -> None:
    """Neither the key nor its Basic-auth token appears in any text."""
    for text in texts:
        assert LEAKY_SECRET not in text
        assert LEAKY_TOKEN not in text
        assert "L3akyS3cret" not in text


def test_secret_absent_from_logs_and_errors(
    leaky_hook: KomojuHook, requests_mock: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    echo = f"Invalid key {LEAKY_SECRET} (Authorization: Basic {LEAKY_TOKEN})"
    url = f"{BASE}/payments/{PAYMENT_ID}"
    scenarios: list[dict[str, Any]] = [
        {"status_code": 401, "json": error_body("unauthorized", echo, LEAKY_SECRET)},
        {"status_code": 403, "json": error_body(LEAKY_SECRET, echo)},
        {"status_code": 422, "json": {"unexpected": echo}},
        {"status_code": 502, "text": f"<html><body>{echo}</body></html>", "headers": {"Content-Type": "text/html"}},
        {"status_code": 200, "text": f"<p>{echo}</p>"},
        {"status_code": 429, "json": error_body("too_many_requests", echo)},
        {"status_code": 409, "json": error_body("conflict", echo)},
        {
            "exc": requests.exceptions.ConnectionError(
                f"Max retries exceeded; headers={{'Authorization': 'Basic {LEAKY_TOKEN}'}}"
            )
        },
        {"exc": requests.exceptions.ReadTimeout(f"Read timed out for {LEAKY_SECRET}")},
        {"exc": requests.exceptions.ConnectTimeout(f"https://{LEAKY_SECRET}:@komoju.com timed out")},
        {"exc": requests.exceptions.ChunkedEncodingError(echo)},
        {"exc": requests.exceptions.InvalidURL(echo)},
    ]
    texts: list[str] = []
    for scenario in scenarios:
        requests_mock.get(url, [scenario])
        requests_mock.post(f"{url}/refund", [scenario])
        for call in (lambda: leaky_hook.get_payment(PAYMENT_ID), lambda: leaky_hook.refund_payment(PAYMENT_ID, KEY)):
            with pytest.raises(KomojuAPIError) as info:
                call()
            error = info.value
            texts += [str(error), repr(error), error.message, str(error.code), str(error.param), str(error.args)]
    requests_mock.get(f"{BASE}/payment_methods", status_code=401, json=error_body("unauthorized", echo))
    texts.append(leaky_hook.test_connection()[1])

    assert len(caplog.records) > 20, "the hook logs each attempt"
    assert any("HTTP 401" in r.getMessage() for r in caplog.records)
    captured = capfd.readouterr()
    assert_no_secret(*texts, caplog.text, *(r.getMessage() for r in caplog.records), captured.out, captured.err)
    assert any("***" in text for text in texts), "the echoed key was redacted, not dropped silently"


class _FlakyKomoju(http.server.BaseHTTPRequestHandler):
    """A loopback KOMOJU stand-in: 503 on the first call, then the payment methods; checks the auth header."""

    calls = 0
    authorizations: list[str | None] = []  # noqa: RUF012 - shared across handler instances on purpose

    def do_GET(self) -> None:
        type(self).calls += 1
        type(self).authorizations.append(self.headers.get("Authorization"))
        if self.path == "/api/v1/slow":
            time.sleep(0.5)
        status, body = (503, error_body("service_unavailable", "busy")) if self.calls == 1 else (200, METHODS)
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (read-timeout test)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


@pytest.fixture
def loopback_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1, so urllib3 and requests log for real."""
    _FlakyKomoju.calls = 0
    _FlakyKomoju.authorizations = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyKomoju)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_real_transport_retries_and_never_logs_the_key(
    leaky_hook: KomojuHook,
    set_conn: Callable[..., None],
    make_hook: Callable[..., KomojuHook],
    loopback_server: str,
    caplog: pytest.LogCaptureFixture,
    waits: list[float],
) -> None:
    set_conn(host=loopback_server, password=LEAKY_SECRET)
    hook = make_hook(max_retries=1)
    assert hook.list_payment_methods() == METHODS
    assert _FlakyKomoju.calls == 2
    assert waits == [0.0]  # Retry-After: 0
    assert _FlakyKomoju.authorizations == [basic_header(LEAKY_SECRET)] * 2

    slow = make_hook(read_timeout=0.1, max_retries=0)
    with pytest.raises(KomojuAPIError) as timeout:
        slow._request("GET", "/slow")
    assert (timeout.value.transient, timeout.value.status) == (True, None)
    assert timeout.value.message.startswith("read timeout (ReadTimeout")

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    set_conn("closed", host=f"http://127.0.0.1:{closed_port}", password=LEAKY_SECRET)
    refused = make_hook("closed", max_retries=0)
    with pytest.raises(KomojuAPIError) as connection_error:
        refused.list_payment_methods()
    assert connection_error.value.transient is True
    assert connection_error.value.message.startswith("connection error (ConnectionError")

    assert any(r.name.startswith("urllib3") for r in caplog.records), "urllib3 debug logging was captured"
    assert_no_secret(caplog.text, str(timeout.value), str(connection_error.value))


def test_logs_through_airflow_logger(
    set_conn: Callable[..., None], requests_mock: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    hook = KomojuHook()  # the real Airflow (structlog) logger
    hook._sleep = lambda seconds: None
    requests_mock.get(
        f"{BASE}/payment_methods",
        [{"status_code": 503, "json": error_body("service_unavailable", "busy")}, {"status_code": 200, "json": []}],
    )
    assert hook.list_payment_methods() == []
    out = capfd.readouterr().out
    assert "KOMOJU GET /payment_methods: HTTP 503" in out
    assert "(attempt 1 of 4)" in out
    assert "retrying in" in out
    assert "KOMOJU GET /payment_methods: HTTP 200" in out
    assert SECRET not in out


# ----------------------------------------------------------------------------- what KOMOJU's answers are


@pytest.mark.parametrize(("action", "status"), [("cancel", 200), ("refund", 202)])
def test_payment_action_returns_komojus_status_with_the_payment(
    hook: KomojuHook, requests_mock: Any, action: str, status: int
) -> None:
    payment = {**PAYMENT, "status": "captured"}
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/{action}", status_code=status, json=payment)
    answer = hook.payment_action(PAYMENT_ID, action, KEY)
    assert (answer.http_status, answer.payment) == (status, payment)
    sent = requests_mock.last_request
    assert sent.headers["X-KOMOJU-IDEMPOTENCY"] == KEY
    assert sent.body == (b"{}" if action == "refund" else None), "a full refund sends the body refund_payment sends"
    with pytest.raises(ValueError, match="Unknown payment action 'capture'"):
        hook.payment_action(PAYMENT_ID, "capture", KEY)


def test_a_json_403_is_komojus_refusal_an_html_403_a_firewalls(
    hook: KomojuHook, requests_mock: Any, waits: list[float]
) -> None:
    url = f"{BASE}/payments/{PAYMENT_ID}/refund"
    requests_mock.post(url, status_code=403, json=error_body("forbidden", "no access"))
    with pytest.raises(KomojuAPIError) as komojus:
        hook.refund_payment(PAYMENT_ID, KEY)
    assert (komojus.value.json_error, komojus.value.transient, komojus.value.auth_failure) == (True, False, True)
    assert requests_mock.call_count == 1
    requests_mock.post(
        url, status_code=403, text="<html><h1>403 Forbidden</h1></html>", headers={"Content-Type": "text/html"}
    )
    with pytest.raises(KomojuAPIError) as firewalls:
        hook.refund_payment(PAYMENT_ID, KEY)
    error = firewalls.value
    assert (error.json_error, error.transient, error.auth_failure) == (False, True, False)
    assert "non-JSON body (text/html): 403 Forbidden" in error.message
    assert requests_mock.call_count == 1 + 4, "a firewall's 403 is retried like an outage"


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [
        (502, "insufficient_funds", False),  # the payment processor said no
        (502, "card_declined", False),
        (500, "request_failed", False),
        (402, "request_failed", False),
        (502, "bad_gateway", True),
        (503, "service_unavailable", True),
        (500, "something_new", True),  # an unknown code on a 5xx: an outage until KOMOJU says otherwise
    ],
)
def test_5xx_refusals_are_not_retried_with_the_same_key(
    hook: KomojuHook, requests_mock: Any, waits: list[float], status: int, code: str, transient: bool
) -> None:
    requests_mock.post(f"{BASE}/payments/{PAYMENT_ID}/refund", status_code=status, json=error_body(code, "no"))
    with pytest.raises(KomojuAPIError) as info:
        hook.refund_payment(PAYMENT_ID, KEY)
    assert (info.value.status, info.value.code, info.value.transient, info.value.json_error) == (
        status,
        code,
        transient,
        True,
    )
    assert requests_mock.call_count == (4 if transient else 1)
