"""Airflow hook for the KOMOJU payments REST API (payment methods, payments, cancel, refund).

Every call goes through one private path, :meth:`KomojuHook._request`, which applies one response check and
one retry policy: transient failures (connection errors, timeouts, incomplete or non-JSON bodies, 5xx, 429,
409) are retried with exponential back-off; a POST is retried only when it carries an idempotency key, so
KOMOJU replays the first result instead of acting twice. Every failure surfaces as :class:`KomojuAPIError`.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from requests.adapters import HTTPAdapter

from komoju import __version__, metrics
from komoju.errors import KomojuAPIError
from komoju.text import sanitise

DEFAULT_HOST = "komoju.com"
API_PREFIX = "/api/v1"
IDEMPOTENCY_HEADER = "X-KOMOJU-IDEMPOTENCY"
API_VERSION_HEADER = "X-KOMOJU-API-VERSION"
MAX_IDEMPOTENCY_KEY_LENGTH = 100
MAX_EXCERPT_LENGTH = 200
JITTER_FRACTION = 0.1  # back-off waits grow by at most 10% so parallel workers do not retry in lockstep

_IDEMPOTENCY_KEY_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}")
_API_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_HTML_TAG_RE = re.compile(r"<[^>]{0,500}>")

_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5.0,
    "read_timeout": 30.0,
    "max_retries": 3,
    "backoff_base": 0.5,
    "backoff_max": 30.0,
    "max_retry_wait": 60.0,
    "api_version": None,
    "pool_maxsize": 8,
    "max_concurrency": 8,
    "rate_limit": None,
    "pending_limit_days": 7.0,
}
_INT_SETTINGS = frozenset({"max_retries", "pool_maxsize", "max_concurrency"})
_AT_LEAST_ONE = frozenset({"pool_maxsize", "max_concurrency"})
_POSITIVE = frozenset({"connect_timeout", "read_timeout", "rate_limit", "pending_limit_days"})
_RETRIABLE_WITHOUT_KEY = frozenset({"GET", "HEAD"})
# Codes that name a refusal of the request (KOMOJU's error list), also when they come with a 5xx: a 502 is "the
# upstream payment processor returned an error", which may be a definitive no (insufficient_funds). Any other code
# on a 5xx (internal_server_error, bad_gateway, service_unavailable, gateway_timeout, ...) is an outage.
REFUSAL_CODES = frozenset(
    {
        "request_failed", "insufficient_funds", "card_declined", "fraudulent", "not_cancellable", "not_refundable",
        "not_capturable",
    }
)  # fmt: skip


@dataclass(frozen=True)
class KomojuSettings:
    """Everything the hook needs from its Airflow connection, resolved once."""

    base_url: str
    secret_key: str = field(repr=False)
    connect_timeout: float
    read_timeout: float
    max_retries: int
    backoff_base: float
    backoff_max: float
    max_retry_wait: float
    api_version: str | None
    pool_maxsize: int
    max_concurrency: int
    rate_limit: float | None
    pending_limit_days: float  # how long KOMOJU may leave an accepted cancel/refund unfinished before it is a failure


class KomojuHook(BaseHook):
    """
    Talks to the KOMOJU REST API with the secret key held in an Airflow connection.

    The connection's **password** holds the secret key; its host is empty (``https://komoju.com``), a bare
    name, or a full URL (``http://`` only for loopback hosts); the port field, when set, wins. Timeouts,
    retries, back-off, ``api_version`` and ``pool_maxsize`` come from keyword arguments, else from the
    connection's extra, else from defaults. One session is built lazily and may be shared by threads; its
    pool holds ``max(pool_maxsize, max_concurrency)`` connections. All threads share one :class:`Throttle`: at
    most ``rate_limit`` requests per second (extra; unset: no limit), and after a ``429`` no thread sends
    anything until its ``Retry-After`` (or back-off) has passed.

    Every HTTP attempt is counted, when ``metrics_for`` names the job and site the calls are made for, in
    Airflow's metrics layer (:mod:`komoju.metrics`): ``komoju.calls.<class>`` and the ``komoju.call_latency`` timer.

    :param komoju_conn_id: the Airflow connection holding the KOMOJU secret key.
    :param metrics_for: ``(job, site_id)`` to count the calls for; None: no metrics.
    """

    conn_name_attr = "komoju_conn_id"
    default_conn_name = "komoju_default"
    conn_type = "komoju"
    hook_name = "KOMOJU"

    _SETTING_NAMES: ClassVar[tuple[str, ...]] = tuple(_DEFAULTS)

    def __init__(
        self,
        komoju_conn_id: str = default_conn_name,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_retry_wait: float | None = None,
        api_version: str | None = None,
        pool_maxsize: int | None = None,
        max_concurrency: int | None = None,
        rate_limit: float | None = None,
        pending_limit_days: float | None = None,
        metrics_for: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.komoju_conn_id = komoju_conn_id
        self.metrics_for = metrics_for
        self._overrides: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_max": backoff_max,
            "max_retry_wait": max_retry_wait,
            "api_version": api_version,
            "pool_maxsize": pool_maxsize,
            "max_concurrency": max_concurrency,
            "rate_limit": rate_limit,
            "pending_limit_days": pending_limit_days,
        }
        # Instance attributes so tests can observe the waits without sleeping.
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic
        self._jitter: Callable[[], float] = random.random
        self._lock = threading.RLock()
        self._settings: KomojuSettings | None = None
        self._session: requests.Session | None = None
        self._throttle: Throttle | None = None

    # ----------------------------------------------------------------- connection and session

    @property
    def settings(self) -> KomojuSettings:
        """The resolved connection settings (reads the Airflow connection on first use)."""
        if self._settings is not None:
            return self._settings
        with self._lock:
            if self._settings is None:
                self._settings = self._load_settings()
            return self._settings

    @property
    def base_url(self) -> str:
        """The API base URL, ending in ``/api/v1``."""
        return self.settings.base_url

    def _load_settings(self) -> KomojuSettings:
        """Read the Airflow connection and merge keyword arguments, extra and defaults."""
        conn = self.get_connection(self.komoju_conn_id)
        secret_key = (conn.password or "").strip()
        if not secret_key:
            raise ValueError(
                f"Airflow connection '{self.komoju_conn_id}' has no KOMOJU secret key: put the secret key"
                " (sk_live_... or sk_test_...) in the password field of that connection."
            )
        mask_secret(secret_key)
        mask_secret(_basic_token(secret_key))
        extra = conn.extra_dejson or {}
        values = {name: self._setting(name, extra) for name in self._SETTING_NAMES}
        return KomojuSettings(
            base_url=build_base_url(conn.host, conn.port, conn_id=self.komoju_conn_id),
            secret_key=secret_key,
            **values,
        )

    def _setting(self, name: str, extra: dict[str, Any]) -> Any:
        """One setting: keyword argument, else connection extra, else default; validated."""
        value = self._overrides[name]
        if value is None:
            value = extra.get(name)
        if value is None or value == "":
            return _DEFAULTS[name]
        if name == "api_version":
            value = str(value).strip()
            if not _API_VERSION_RE.fullmatch(value):
                raise ValueError(
                    f"Airflow connection '{self.komoju_conn_id}': api_version must look like YYYY-MM-DD,"
                    f" got {sanitise(value, limit=40)!r}."
                )
            return value
        return _number_setting(name, value, self.komoju_conn_id)

    def get_conn(self) -> requests.Session:
        """Return a new ``requests.Session`` configured for KOMOJU (auth, JSON headers, pool size, TLS)."""
        settings = self.settings
        session = requests.Session()
        session.auth = (settings.secret_key, "")
        # The environment (HTTPS_PROXY/NO_PROXY, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE) is read once, here, as requests
        # would read it on every call: that per-call lookup was a tenth of the job's CPU at 8 calls in flight.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(settings.base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle and settings.base_url.startswith("https://"):  # (a path costs a stat() per call)
            session.verify = ca_bundle
        else:
            session.verify = True
        session.headers.update(
            {
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": f"komoju-airflow/{__version__} (python-requests/{requests.__version__})",
            }
        )
        if settings.api_version:
            session.headers[API_VERSION_HEADER] = settings.api_version
        pool_size = max(settings.pool_maxsize, settings.max_concurrency)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @property
    def session(self) -> requests.Session:
        """The hook's own session, built on first use and shared by all its calls."""
        if self._session is not None:
            return self._session
        with self._lock:
            if self._session is None:
                self._session = self.get_conn()
            return self._session

    @property
    def throttle(self) -> Throttle:
        """The pacing shared by every thread using this hook (rate limit and 429 pauses)."""
        if self._throttle is not None:
            return self._throttle
        with self._lock:
            if self._throttle is None:
                self._throttle = Throttle(
                    self.settings.rate_limit, clock=lambda: self._clock(), sleep=lambda seconds: self._sleep(seconds)
                )
            return self._throttle

    def close(self) -> None:
        """Close the hook's session and its pooled connections."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    # ----------------------------------------------------------------- public API

    def list_payment_methods(self) -> list[dict[str, Any]]:
        """Return the payment methods enabled on the merchant's KOMOJU account (``GET /payment_methods``)."""
        return self._expect_list(self._request("GET", "/payment_methods"), "GET", "/payment_methods")

    def get_payment(self, payment_id: str) -> dict[str, Any]:
        """Return the Payment object (``GET /payments/{id}``)."""
        path = _payment_path(payment_id)
        return self._expect_object(self._request("GET", path), "GET", path)

    def cancel_payment(self, payment_id: str, idempotency_key: str) -> dict[str, Any]:
        """Cancel a pending or authorized payment; return the Payment (``POST /payments/{id}/cancel``)."""
        return self.payment_action(payment_id, "cancel", idempotency_key).payment

    def payment_action(self, payment_id: str, action: str, idempotency_key: str) -> PaymentAnswer:
        """``POST /payments/{id}/cancel`` or ``/refund`` (in full), with KOMOJU's HTTP status and the Payment it
        returned: a 2xx means KOMOJU accepted the request, not that the payment shows it done (a ``202``, or a
        refund still processing); the caller reads the payment."""
        if action not in ("cancel", "refund"):
            raise ValueError(f"Unknown payment action {action!r}: expected 'cancel' or 'refund'.")
        path = _payment_path(payment_id, action)
        _check_idempotency_key(idempotency_key)  # required here: None would mean "send once, never retry"
        body = {} if action == "refund" else None
        status, payload = self._request("POST", path, body=body, idempotency_key=idempotency_key, with_status=True)
        return PaymentAnswer(status, self._expect_object(payload, "POST", path))

    def refund_payment(
        self,
        payment_id: str,
        idempotency_key: str,
        amount: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Refund a captured payment, fully when ``amount`` is None; return the Payment."""
        path = _payment_path(payment_id, "refund")
        _check_idempotency_key(idempotency_key)
        body: dict[str, Any] = {}
        if amount is not None:
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise ValueError(f"Refund amount must be a positive integer, got {amount!r}.")
            body["amount"] = amount
        if description is not None:
            if not isinstance(description, str):
                raise ValueError("Refund description must be a string.")
            body["description"] = description
        payload = self._request("POST", path, body=body, idempotency_key=idempotency_key)
        return self._expect_object(payload, "POST", path)

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection with ``GET /payment_methods`` (no retries); never raises."""
        try:
            methods = self._expect_list(
                self._request("GET", "/payment_methods", max_retries=0), "GET", "/payment_methods"
            )
        except Exception as exc:  # the UI wants a message, not a traceback
            return False, sanitise(str(exc), self._secrets(), limit=1000) or type(exc).__name__
        return True, f"Connected to KOMOJU at {self.base_url}: {len(methods)} payment methods available."

    # ----------------------------------------------------------------- the one request path

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
        with_status: bool = False,
    ) -> Any:
        """Send one API call, retrying what is safe and fixable; return the decoded JSON body (with the HTTP
        status, as ``(status, body)``, when ``with_status``)."""
        method = method.upper()
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
        settings = self.settings
        retries = settings.max_retries if max_retries is None else max_retries
        if method not in _RETRIABLE_WITHOUT_KEY and idempotency_key is None:
            retries = 0  # a POST without a key may have taken effect: never send it twice
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key is not None else {}
        # bytes, so http.client sends headers and body in one segment (a str body goes in a second send())
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(method, path, data, headers, attempt, retries + 1)
                payload = self._check_response(method, path, response)
                return (response.status_code, payload) if with_status else payload
            except KomojuAPIError as error:
                error.attempts = attempt
                if not error.transient or attempt > retries:
                    raise
                wait = self._retry_wait(attempt - 1, error)
                if error.status == 429:  # KOMOJU asks us to slow down: every thread of this hook pauses
                    self.throttle.hold(wait)
                self.log.warning(
                    "KOMOJU %s %s failed (attempt %d of %d): %s; retrying in %.2f s",
                    method,
                    path,
                    attempt,
                    retries + 1,
                    error.message,
                    wait,
                )
                self._sleep(wait)

    def _send(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str], attempt: int, total: int
    ) -> requests.Response:
        """Send one attempt; turn transport failures into KomojuAPIError."""
        settings = self.settings
        self.throttle.wait()
        started = time.monotonic()
        session = self.session
        try:
            # Prepared here rather than by session.request(), which re-merges the session's settings (and ran a
            # fifth of the job's Python per call): the same headers, auth and body, fewer steps.
            request = requests.PreparedRequest()
            request.prepare(
                method=method,
                url=settings.base_url + path,
                headers={**session.headers, **headers},
                data=data,
                auth=session.auth,
            )
            response = session.send(
                request, timeout=(settings.connect_timeout, settings.read_timeout), allow_redirects=False
            )
        except requests.RequestException as exc:
            elapsed_ms = (time.monotonic() - started) * 1000
            self._count_call(None, elapsed_ms)
            self.log.info(
                "KOMOJU %s %s: %s after %.0f ms (attempt %d of %d)",
                method,
                path,
                type(exc).__name__,
                elapsed_ms,
                attempt,
                total,
            )
            raise self._transport_error(method, path, exc) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        self._count_call(response.status_code, elapsed_ms)
        routine = 200 <= response.status_code < 300 and attempt == 1  # thousands per run: the database records them
        self.log.log(
            logging.DEBUG if routine else logging.INFO,
            "KOMOJU %s %s: HTTP %d in %.0f ms (attempt %d of %d)",
            method,
            path,
            response.status_code,
            elapsed_ms,
            attempt,
            total,
        )
        return response

    def _count_call(self, http_status: int | None, elapsed_ms: float) -> None:
        """One HTTP attempt in the metrics: its class, and its latency when KOMOJU answered (a transport error's time
        is the timeout or the failure, not KOMOJU's)."""
        if self.metrics_for is None:
            return
        job, site_id = self.metrics_for
        metrics.incr(f"komoju.calls.{metrics.call_class(http_status)}", job, site_id)
        if http_status is not None:
            metrics.timing("komoju.call_latency", job, site_id, elapsed_ms)

    def _check_response(self, method: str, path: str, response: requests.Response) -> Any:
        """Return the JSON body of a 2xx answer; raise KomojuAPIError for anything else."""
        status = response.status_code
        retry_after = response.headers.get("Retry-After")
        try:
            payload = response.json()
        except ValueError:
            raise self._error(
                method,
                path,
                _non_json_message(response, self._secrets()),
                status=status,
                code="invalid_response" if 200 <= status < 300 else None,
                # A non-JSON 403 comes from a firewall or proxy in front of KOMOJU, not from KOMOJU's key check.
                transient=200 <= status < 300 or status == 403 or is_transient_status(status),
                retry_after=retry_after,
            ) from None
        if 200 <= status < 300:
            return payload
        code, message, param = _error_details(payload)
        json_error = message is not None  # KOMOJU's {"error": {...}} object
        if message is None:
            message = f"KOMOJU answered without an error object: {_json_excerpt(payload)}"
        raise self._error(
            method,
            path,
            message,
            status=status,
            code=code,
            param=param,
            transient=is_transient_status(status) and not is_refusal(status, code),
            retry_after=retry_after,
            json_error=json_error,
        )

    def _transport_error(self, method: str, path: str, exc: requests.RequestException) -> KomojuAPIError:
        """Describe a requests exception without its URL credentials or headers."""
        if isinstance(exc, requests.Timeout):
            what = "connect timeout" if isinstance(exc, requests.ConnectTimeout) else "read timeout"
            transient = True
        elif isinstance(exc, requests.ConnectionError):
            what, transient = "connection error", True
        elif isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
            what, transient = "incomplete response body", True
        else:
            what, transient = "request error", False
        detail = sanitise(str(exc), self._secrets(), limit=MAX_EXCERPT_LENGTH)
        message = f"{what} ({type(exc).__name__}: {detail})" if detail else f"{what} ({type(exc).__name__})"
        return self._error(method, path, message, transient=transient)

    def _error(
        self, method: str, path: str, message: str, *, retry_after: str | None = None, **fields: Any
    ) -> KomojuAPIError:
        """Build a KomojuAPIError with a sanitised message and the parsed Retry-After."""
        return KomojuAPIError(
            sanitise(message, self._secrets()) or "no message",
            method=method,
            path=path,
            conn_id=self.komoju_conn_id,
            retry_after=parse_retry_after(retry_after),
            **fields,
        )

    def _retry_wait(self, retry_number: int, error: KomojuAPIError) -> float:
        """Seconds to wait before retry ``retry_number`` (0-based): Retry-After, else capped back-off."""
        settings = self.settings
        if error.retry_after is not None:
            wait = error.retry_after
        else:
            backoff = settings.backoff_base * 2**retry_number * (1 + JITTER_FRACTION * self._jitter())
            wait = min(settings.backoff_max, backoff)
        return max(0.0, min(settings.max_retry_wait, wait))

    def _secrets(self) -> tuple[str, ...]:
        """The strings that must never appear in a message (empty until the connection is read)."""
        settings = self._settings
        if settings is None:
            return ()
        return (settings.secret_key, _basic_token(settings.secret_key))

    def _expect_list(self, payload: Any, method: str, path: str) -> list[dict[str, Any]]:
        """Check the body is a JSON array of objects."""
        if not isinstance(payload, list) or not all(isinstance(item, dict) for item in payload):
            raise self._invalid_shape(method, path, "a JSON array of objects", payload)
        return payload

    def _expect_object(self, payload: Any, method: str, path: str) -> dict[str, Any]:
        """Check the body is a JSON object."""
        if not isinstance(payload, dict):
            raise self._invalid_shape(method, path, "a JSON object", payload)
        return payload

    def _invalid_shape(self, method: str, path: str, expected: str, payload: Any) -> KomojuAPIError:
        """A well-formed answer of the wrong shape: a contract mismatch that retrying will not fix."""
        message = f"expected {expected}, got {type(payload).__name__}: {_json_excerpt(payload)}"
        return self._error(method, path, message, status=200, code="invalid_response", transient=False)


# --------------------------------------------------------------------- module helpers


def build_base_url(host: str | None, port: int | None, *, conn_id: str) -> str:
    """Turn a connection's host and port into the API base URL (``.../api/v1``); refuse plain HTTP off-host."""
    raw = (host or "").strip() or DEFAULT_HOST
    if "://" not in raw:
        raw = f"https://{raw}"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"Airflow connection '{conn_id}': host must be empty, a host name or an http(s) URL,"
            f" got {sanitise(raw, limit=100)!r}."
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"Airflow connection '{conn_id}': the host must not contain credentials; put the secret key"
            " in the password field."
        )
    if parts.query or parts.fragment:
        raise ValueError(f"Airflow connection '{conn_id}': the host URL must not have a query or fragment.")
    hostname = parts.hostname
    if scheme == "http" and not is_loopback(hostname):
        raise ValueError(
            f"Airflow connection '{conn_id}': plain http:// is only allowed for loopback hosts"
            f" (127.0.0.0/8, ::1, localhost), not {hostname!r}; use https://."
        )
    port = port or parts.port
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if port:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    if not path.endswith(API_PREFIX):
        path += API_PREFIX
    return f"{scheme}://{netloc}{path}"


def is_loopback(hostname: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if hostname.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def is_transient_status(status: int) -> bool:
    """HTTP statuses that retrying can fix: 5xx, 429 (rate limit), 409 (idempotent call still running)."""
    return status >= 500 or status in (409, 429)


def is_refusal(status: int, code: str | None) -> bool:
    """A KOMOJU error that refuses this request though its status looks like an outage: a 5xx whose code names a
    refusal (a 502 ``insufficient_funds`` from the payment processor). Not retried with the same key."""
    return status >= 500 and code in REFUSAL_CODES


@dataclass(frozen=True)
class PaymentAnswer:
    """KOMOJU's answer to a cancel or refund: its HTTP status (200, or 202 "accepted, not finished") and the
    Payment it returned."""

    http_status: int
    payment: dict[str, Any]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / infinity
        return None
    return max(0.0, seconds)


def _basic_token(secret_key: str) -> str:
    """The base64 token of the Basic auth header, redacted like the key itself."""
    return base64.b64encode(f"{secret_key}:".encode()).decode("ascii")


def _number_setting(name: str, value: Any, conn_id: str) -> float | int:
    """Coerce a numeric setting (extras from the UI may be strings) and refuse negatives."""
    wanted = int if name in _INT_SETTINGS else float
    try:
        if isinstance(value, bool):
            raise TypeError(name)
        number = wanted(value)
        if wanted is int and number != float(value):
            raise ValueError(name)
    except (TypeError, ValueError):
        shown = sanitise(str(value), limit=40)
        raise ValueError(
            f"Airflow connection '{conn_id}': {name} must be a {wanted.__name__}, got {shown!r}."
        ) from None
    minimum = 1 if name in _AT_LEAST_ONE else 0
    if number < minimum or (name in _POSITIVE and number == 0):
        raise ValueError(f"Airflow connection '{conn_id}': {name} must be positive, got {number}.")
    return number


class Throttle:
    """Paces requests shared by several threads: starts at least ``1 / rate`` seconds apart (``rate`` None: no
    spacing), and none while a hold (``hold(seconds)``, after a 429) lasts. Holds only ever extend."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start = float("-inf")
        self._held_until = float("-inf")

    def wait(self) -> float:
        """Block until this thread may send; return the seconds waited."""
        if not self.interval and self._held_until <= self._clock():  # no pacing now: no lock to take
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                start = max(self._next_start, self._held_until)
                if start <= now:
                    self._next_start = now + self.interval
                    return waited
            self._sleep(start - now)
            waited += start - now

    def hold(self, seconds: float) -> None:
        """No thread starts a request for ``seconds`` from now."""
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + max(0.0, seconds))


def _payment_path(payment_id: str, action: str | None = None) -> str:
    """``/payments/{id}[/action]`` with the id URL-quoted."""
    if not isinstance(payment_id, str) or not payment_id.strip():
        raise ValueError("A KOMOJU payment id must be a non-empty string.")
    path = f"/payments/{quote(payment_id, safe='')}"
    return f"{path}/{action}" if action else path


def _check_idempotency_key(key: str) -> None:
    """Refuse keys KOMOJU would reject: 1 to 100 printable ASCII characters, no spaces."""
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise ValueError(
            "An idempotency key must be 1 to 100 printable ASCII characters without spaces,"
            f" got {sanitise(repr(key), limit=120)}."
        )


def _error_details(payload: Any) -> tuple[str | None, str | None, str | None]:
    """``(code, message, param)`` from ``{"error": {...}}``; Nones when the body is not an error object."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):  # tolerate {"error": "message"}
        return None, error, None
    if not isinstance(error, dict):
        return None, None, None
    code, message, param = error.get("code"), error.get("message"), error.get("param")
    return (
        sanitise(str(code), limit=100) if code else None,
        str(message) if message else (f"KOMOJU error '{code}'" if code else None),
        sanitise(str(param), limit=100) if param else None,
    )


def _non_json_message(response: requests.Response, secrets: tuple[str, ...]) -> str:
    """Describe a body that is not JSON: status, content type, and a short de-tagged excerpt."""
    content_type = sanitise(response.headers.get("Content-Type") or "no content type", limit=80)
    raw = response.content[:4000].decode("utf-8", errors="replace")
    excerpt = sanitise(_HTML_TAG_RE.sub(" ", raw), secrets, limit=MAX_EXCERPT_LENGTH)
    text = f"KOMOJU answered HTTP {response.status_code} with a non-JSON body ({content_type})"
    return f"{text}: {excerpt}" if excerpt else f"{text}, empty"


def _json_excerpt(payload: Any) -> str:
    """A short rendering of a JSON value for messages."""
    return sanitise(json.dumps(payload, ensure_ascii=False, default=str), limit=MAX_EXCERPT_LENGTH)
