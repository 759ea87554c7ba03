"""The emulator's in-memory model of KOMOJU: merchants, payments, idempotency keys and the ledger.

Nothing here knows about HTTP. Every operation either returns an :class:`ApiResponse` (what KOMOJU would
answer, status and JSON body) or raises :class:`ApiError`; ``app.py`` turns both into HTTP responses.

A cancel or refund is either done at once (KOMOJU's usual answer: 200 and the payment already cancelled or
refunded) or, depending on the :class:`Settings`, only *accepted*: the answer shows the payment as it was (a
refund's entry is already in ``refunds``) and a :class:`PendingOperation` completes it later, after enough
GETs of the payment, after some time on the emulator's clock, or when a test says so.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import random
import re
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PAYMENT_ID_RE = re.compile(r"^[a-z0-9]{25}$")
STATUSES = ("pending", "authorized", "captured", "cancelled", "expired", "refunded", "failed")
CANCELLABLE_STATUSES = frozenset({"pending", "authorized"})
# Cash payments: KOMOJU refunds them to a bank account the customer gives (KOMOJU's help page "How to Refund
# (Bank transfer/Konbini/Pay-easy)"), either by a manual /refund_request or through a refund's redirect_url.
NON_REFUNDABLE_TYPES = frozenset({"konbini", "bank_transfer", "pay_easy"})
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
LOCALES = ("ja", "en", "ko")
# KOMOJU's currencies and payment_details types, as its SDK's response models list them (komoju-node-sdk
# models/currency.ts and models/response-payment-details-all.ts): a scenario cannot make payments KOMOJU can't.
CURRENCIES = frozenset(
    {
        "JPY", "USD", "EUR", "TWD", "KRW", "PLN", "GBP", "HKD", "SGD", "NZD", "AUD", "IDR", "MYR", "PHP", "THB", "CNY",
        "BRL", "CHF", "CAD", "VND",
    }
)  # fmt: skip
PAYMENT_TYPES = frozenset(
    {
        "alipay", "alipay_hk", "au", "aupay", "bancontact", "bank_transfer", "bit_cash", "blik", "credit_card",
        "credit_card_brazil", "credit_card_korea", "credit_card_terminal", "culture_voucher", "cvs", "dana", "docomo",
        "doku_wallet", "dospara", "dragonpay", "enets", "epospay", "eps", "fpx", "gcash", "giropay", "happy_money",
        "ideal", "japan_mobile", "kakaopay", "konbini", "merpay", "mobile", "multibanco", "mybank", "narvesen",
        "naverpay", "net_cash", "ovo", "paidy", "pay_easy", "payco", "paypay", "paypost", "paysafe_card",
        "paysafe_cash", "paysera", "payu", "perlas", "pix", "poli", "przelewy24", "rakutenpay", "sepa_transfer",
        "sofortbanking", "softbank", "tng", "toss", "truemoney", "unionpay", "web_money", "wechatpay",
    }
)  # fmt: skip
SUCCESS_STATUSES = (200, 202)
REFUND_COMPLETIONS = ("immediate", "deferred")
CASH_REFUND_MODES = ("not_refundable", "redirect_url")
REPLAY_ERROR_MODES = (False, "operation_errors", True)
CUSTOMER_EMAIL = "customer@example.com"
IDEMPOTENCY_HEADER = "X-KOMOJU-IDEMPOTENCY"
MAX_IDEMPOTENCY_KEY_LENGTH = 100
_ID_ALPHABET = string.ascii_lowercase + string.digits
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))

PAYMENT_SPEC_FIELDS = frozenset(
    {
        "id", "status", "amount", "tax", "payment_method_fee", "currency", "payment_type", "payment_details",
        "captured_at", "amount_refunded", "external_order_num", "metadata", "created_at", "description", "locale",
    }
)  # fmt: skip
# What KOMOJU's response models require in payment_details for the types the scenarios use (komoju-node-sdk
# models/response-payment-details-*.ts); a scenario's own payment_details fields win.
PAYMENT_DETAILS_DEFAULTS: dict[str, dict[str, Any]] = {
    "credit_card": {"brand": "visa", "last_four_digits": "1111", "month": 12, "year": 2030, "email": CUSTOMER_EMAIL},
    "konbini": {"store": "seven-eleven", "email": CUSTOMER_EMAIL},
}


class ApiError(Exception):
    """An error KOMOJU would answer with: HTTP status plus the ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body in KOMOJU's error shape."""
        return {"error": {"code": self.code, "message": self.message, "param": self.param, "details": self.details}}

    def to_response(self) -> ApiResponse:
        """This error as a response that can be stored and replayed."""
        return ApiResponse(self.status, self.body(), self.headers)


@dataclass(frozen=True)
class ApiResponse:
    """A completed API answer: HTTP status, body (JSON-serialisable, or text for an HTML page), extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


def not_found(message: str = "The requested resource could not be found.") -> ApiError:
    """KOMOJU's 404."""
    return ApiError(404, "not_found", message)


def invalid_parameter(param: str, message: str, status: int = 422) -> ApiError:
    """A request parameter KOMOJU would refuse."""
    return ApiError(status, "invalid_parameter", message, param=param)


class ScenarioError(ValueError):
    """A scenario, payment spec, fault rule or setting that cannot be used."""


class Clock:
    """Wall-clock time plus an offset that tests can advance."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch on the emulator's clock."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never backwards)."""
        if seconds < 0:
            raise ScenarioError("the clock only moves forward")
        self._offset += seconds

    def iso(self, timestamp: float | None = None, *, precise: bool = False) -> str:
        """``timestamp`` (default: now) as KOMOJU's ISO 8601 UTC text (with milliseconds if ``precise``)."""
        moment = datetime.fromtimestamp(self.now() if timestamp is None else timestamp, UTC)
        if precise:
            return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(rng: random.Random) -> str:
    """A KOMOJU-style id: 25 lowercase alphanumerics."""
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(25))


def derived_id(source: str, purpose: str) -> str:
    """A KOMOJU-style id derived from another one (stable, and without using up the seeded generator)."""
    number = int.from_bytes(hashlib.sha256(f"{purpose}:{source}".encode()).digest(), "big")
    digits = []
    for _ in range(25):
        number, digit = divmod(number, len(_ID_ALPHABET))
        digits.append(_ID_ALPHABET[digit])
    return "".join(digits)


def payment_details_for(payment_type: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``payment_details`` as KOMOJU answers it: the required fields of the type, then the scenario's own."""
    defaults = PAYMENT_DETAILS_DEFAULTS.get(payment_type, {"email": CUSTOMER_EMAIL})
    return {"type": payment_type, **defaults, **given}


def _require_int(spec: Mapping[str, Any], name: str, default: int) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(f"payment field {name!r} must be a non-negative integer, got {value!r}")
    return value


@dataclass
class Refund:
    """One entry of a payment's ``refunds`` list."""

    id: str
    amount: int
    currency: str
    payment_id: str
    description: str  # a string in KOMOJU's Refund model (not nullable): empty when none was given
    created_at: str
    chargeback: bool = False
    redirect_url: str | None = None  # cash payments: where the customer gives a bank account

    def to_json(self) -> dict[str, Any]:
        """The refund as KOMOJU serialises it (``redirect_url`` only on a cash payment's refund)."""
        data = {
            "id": self.id,
            "resource": "refund",
            "amount": self.amount,
            "currency": self.currency,
            "payment": self.payment_id,
            "description": self.description,
            "created_at": self.created_at,
            "chargeback": self.chargeback,
        }
        if self.redirect_url is not None:
            data["redirect_url"] = self.redirect_url
        return data


@dataclass
class PendingOperation:
    """A cancel or refund KOMOJU accepted but has not done yet; it completes after GETs, time, or on demand."""

    action: str
    amount: int
    accepted_at: float
    effect_seq: int
    idempotency_key: str | None
    refund_id: str | None = None
    gets: int = 0  # GETs of the payment since it was accepted

    def to_json(self) -> dict[str, Any]:
        """The operation as the control endpoints show it."""
        return {
            "action": self.action,
            "amount": self.amount,
            "refund_id": self.refund_id,
            "idempotency_key": self.idempotency_key,
            "effect_seq": self.effect_seq,
            "gets": self.gets,
        }


@dataclass
class Payment:
    """A KOMOJU payment owned by one merchant."""

    id: str
    merchant_id: str
    status: str
    amount: int
    tax: int
    payment_method_fee: int
    currency: str
    payment_details: dict[str, Any]
    created_at: str
    captured_at: str | None = None
    amount_refunded: int = 0
    refunds: list[Refund] = field(default_factory=list)
    refund_requests: list[Any] = field(default_factory=list)
    external_order_num: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    locale: str = "en"
    pending: list[PendingOperation] = field(default_factory=list)

    @property
    def session(self) -> str:
        """The id of the session that created the payment (the emulator has no sessions: derived from the id)."""
        return derived_id(self.id, "session")

    @property
    def total(self) -> int:
        """What the customer paid: amount + tax + payment method fee."""
        return self.amount + self.tax + self.payment_method_fee

    @property
    def refundable(self) -> int:
        """What is left to refund."""
        return self.total - self.amount_refunded

    @property
    def payment_type(self) -> str:
        """``payment_details.type``, e.g. ``credit_card`` or ``konbini``."""
        return str(self.payment_details.get("type", ""))

    def to_json(self) -> dict[str, Any]:
        """The Payment object as KOMOJU serialises it (every field KOMOJU's Payment model requires)."""
        return {
            "id": self.id,
            "resource": "payment",
            "status": self.status,
            "amount": self.amount,
            "tax": self.tax,
            "customer": None,
            "payment_deadline": None,
            "payment_details": copy.deepcopy(self.payment_details),
            "payment_method_fee": self.payment_method_fee,
            "total": self.total,
            "currency": self.currency,
            "description": self.description,
            "captured_at": self.captured_at,
            "external_order_num": self.external_order_num,
            "metadata": copy.deepcopy(self.metadata),
            "created_at": self.created_at,
            "amount_refunded": self.amount_refunded,
            "locale": self.locale,
            "session": self.session,
            "customer_family_name": None,
            "customer_given_name": None,
            "mcc": None,
            "statement_descriptor": {},
            "refunds": [refund.to_json() for refund in self.refunds],
            "refund_requests": copy.deepcopy(self.refund_requests),
        }

    @classmethod
    def from_spec(cls, merchant_id: str, spec: Mapping[str, Any], clock: Clock, rng: random.Random) -> Payment:
        """Build a payment from a scenario entry, filling sensible defaults (a captured 1000 JPY card payment)."""
        unknown = set(spec) - PAYMENT_SPEC_FIELDS
        if unknown:
            raise ScenarioError(f"unknown payment field(s) {sorted(unknown)}; allowed: {sorted(PAYMENT_SPEC_FIELDS)}")
        payment_id = spec.get("id") or new_id(rng)
        if not isinstance(payment_id, str) or not PAYMENT_ID_RE.match(payment_id):
            raise ScenarioError(f"payment id {payment_id!r} is not 25 lowercase letters and digits")
        status = spec.get("status", "captured")
        if status not in STATUSES:
            raise ScenarioError(f"payment {payment_id}: status {status!r} is not one of {STATUSES}")
        currency = spec.get("currency", "JPY")
        if currency not in CURRENCIES:
            raise ScenarioError(f"payment {payment_id}: currency {currency!r} is not one of KOMOJU's currencies")
        given = dict(spec.get("payment_details") or {})
        payment_type = given.pop("type", spec.get("payment_type", "credit_card"))
        if payment_type not in PAYMENT_TYPES:
            raise ScenarioError(f"payment {payment_id}: payment type {payment_type!r} is not one of KOMOJU's types")
        details = payment_details_for(payment_type, given)
        locale = spec.get("locale", "en")
        if locale not in LOCALES:
            raise ScenarioError(f"payment {payment_id}: locale {locale!r} is not one of {LOCALES}")
        description = spec.get("description")
        if description is not None and not isinstance(description, str):
            raise ScenarioError(f"payment {payment_id}: description must be a string or null")
        created_at = spec.get("created_at") or clock.iso()
        try:
            datetime.fromisoformat(created_at)
        except (TypeError, ValueError):
            raise ScenarioError(f"payment {payment_id}: created_at {created_at!r} is not ISO 8601") from None
        payment = cls(
            id=payment_id,
            merchant_id=merchant_id,
            status=status,
            amount=_require_int(spec, "amount", 1000),
            tax=_require_int(spec, "tax", 0),
            payment_method_fee=_require_int(spec, "payment_method_fee", 0),
            currency=currency,
            payment_details=details,
            created_at=created_at,
            captured_at=spec.get("captured_at", created_at if status in ("captured", "refunded") else None),
            external_order_num=spec.get("external_order_num"),
            metadata=dict(spec.get("metadata") or {}),
            description=description,
            locale=locale,
        )
        refunded = _require_int(spec, "amount_refunded", payment.total if status == "refunded" else 0)
        fits = (
            refunded == payment.total > 0
            if status == "refunded"
            else refunded == 0 or (status == "captured" and refunded < payment.total)
        )
        if not fits:
            raise ScenarioError(f"payment {payment_id}: amount_refunded {refunded} does not fit status {status}")
        if refunded:
            payment.amount_refunded = refunded
            payment.refunds.append(Refund(new_id(rng), refunded, currency, payment_id, "", created_at))
        return payment


@dataclass
class Merchant:
    """A KOMOJU merchant account: its secret keys (key -> forbidden?) and enabled payment methods."""

    id: str
    keys: dict[str, bool]
    payment_methods: list[dict[str, Any]]


class Ledger:
    """Everything that happened, in order: one entry per API request, one ``effect`` per cancel or refund KOMOJU
    accepted (done at once, or ``pending`` until it completes), and one ``completion`` per pending one done."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: list[dict[str, Any]] = []

    def _append(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"seq": len(self._entries) + 1, "time": self._clock.iso(precise=True), **entry}
        self._entries.append(entry)
        return entry

    def record_request(
        self,
        *,
        merchant_id: str | None,
        method: str,
        path: str,
        payment_id: str | None,
        idempotency_key: str | None,
        status: int | None,
        fault: str | None,
        replayed: bool,
        received_at: float | None = None,
    ) -> dict[str, Any]:
        """Record one API request (``status`` is None when no response reached the wire). ``received_at``: when
        it arrived, in seconds since the epoch on this machine's wall clock (not the emulator's clock, which tests
        move), so that a benchmark can time it against its own writes; ``time`` is when it was answered."""
        return self._append(
            {
                "type": "request",
                "received_at": received_at,
                "merchant_id": merchant_id,
                "method": method,
                "path": path,
                "payment_id": payment_id,
                "idempotency_key": idempotency_key,
                "status": status,
                "fault": fault,
                "replayed": replayed,
            }
        )

    def record_effect(
        self,
        *,
        merchant_id: str,
        payment_id: str,
        action: str,
        from_status: str,
        to_status: str,
        amount: int,
        idempotency_key: str | None,
        pending: bool = False,
        refund_id: str | None = None,
    ) -> dict[str, Any]:
        """Record one cancel or refund KOMOJU accepted: done at once, or ``pending`` (status not changed yet)."""
        return self._append(
            {
                "type": "effect",
                "merchant_id": merchant_id,
                "payment_id": payment_id,
                "action": action,
                "from_status": from_status,
                "to_status": to_status,
                "amount": amount,
                "idempotency_key": idempotency_key,
                "pending": pending,
                "refund_id": refund_id,
            }
        )

    def record_completion(
        self, payment: Payment, operation: PendingOperation, from_status: str, trigger: str
    ) -> dict[str, Any]:
        """Record that a pending cancel or refund was done (``trigger``: get, clock or control)."""
        return self._append(
            {
                "type": "completion",
                "merchant_id": payment.merchant_id,
                "payment_id": payment.id,
                "action": operation.action,
                "from_status": from_status,
                "to_status": payment.status,
                "amount": operation.amount,
                "idempotency_key": operation.idempotency_key,
                "refund_id": operation.refund_id,
                "effect_seq": operation.effect_seq,
                "trigger": trigger,
            }
        )

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        """Entries with ``seq`` greater than ``since``."""
        return [dict(entry) for entry in self._entries[max(since, 0) :]]

    def of_type(self, entry_type: str, payment_id: str | None = None) -> list[dict[str, Any]]:
        """Entries of one type (``request``, ``effect``, ``completion``), optionally for one payment."""
        return [
            dict(entry)
            for entry in self._entries
            if entry["type"] == entry_type and (payment_id is None or entry["payment_id"] == payment_id)
        ]

    def effects(self, payment_id: str | None = None) -> list[dict[str, Any]]:
        """The cancels and refunds KOMOJU accepted (done or pending), optionally for one payment."""
        return self.of_type("effect", payment_id)

    def completions(self, payment_id: str | None = None) -> list[dict[str, Any]]:
        """The pending cancels and refunds that were done later, optionally for one payment."""
        return self.of_type("completion", payment_id)


def validate_idempotency_key(key: str) -> str:
    """Return ``key`` if KOMOJU accepts it (1..100 printable ASCII characters), else raise 400."""
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not set(key) <= _PRINTABLE_ASCII:
        raise ApiError(
            400,
            "bad_request",
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters.",
            param=IDEMPOTENCY_HEADER,
        )
    return key


def request_fingerprint(method: str, path: str, body: Any) -> str:
    """What must be identical for a retry to count as the same request."""
    canonical_body = "" if body is None else json.dumps(body, sort_keys=True, separators=(",", ":"))
    return f"{method.upper()} {path}\n{canonical_body}"


@dataclass
class IdempotencyRecord:
    """A key's first request: its fingerprint, when it was first used, and its response once completed."""

    merchant_id: str
    key: str
    fingerprint: str
    first_used_at: float
    response: ApiResponse | None = None  # None while the first request is still being processed


@dataclass(frozen=True)
class IdempotencyOutcome:
    """What to do with a keyed request: ``new`` (go ahead, then complete/release ``record``),
    ``replay``, ``in_flight`` or ``mismatch`` (answer ``response`` as is)."""

    kind: str
    record: IdempotencyRecord | None = None
    response: ApiResponse | None = None


class IdempotencyStore:
    """KOMOJU's idempotency keys, scoped per merchant and honoured for a TTL (24 h) on the emulator's clock.

    ``ttl_seconds`` is read at every lookup, so that a changed setting applies to the keys already stored.
    """

    def __init__(self, clock: Clock, ttl_seconds: Callable[[], float] = lambda: IDEMPOTENCY_TTL_SECONDS) -> None:
        self._clock = clock
        self._ttl_seconds = ttl_seconds
        self._records: dict[tuple[str, str], IdempotencyRecord] = {}

    def _live(self, merchant_id: str, key: str) -> IdempotencyRecord | None:
        record = self._records.get((merchant_id, key))
        if record is not None and self._clock.now() - record.first_used_at >= self._ttl_seconds():
            del self._records[(merchant_id, key)]  # expired: forgotten, the key starts afresh
            return None
        return record

    def begin(self, merchant_id: str, key: str, fingerprint: str) -> IdempotencyOutcome:
        """Look the key up and, when it is new, reserve it as in flight."""
        record = self._live(merchant_id, key)
        if record is None:
            record = IdempotencyRecord(merchant_id, key, fingerprint, self._clock.now())
            self._records[(merchant_id, key)] = record
            return IdempotencyOutcome("new", record=record)
        if record.fingerprint != fingerprint:
            error = ApiError(
                422,
                "unprocessable_entity",
                "This idempotency key was already used for a different request.",
                param=IDEMPOTENCY_HEADER,
            )
            return IdempotencyOutcome("mismatch", response=error.to_response())
        if record.response is None:
            error = ApiError(
                409, "conflict", "A request with the same idempotency key is still being processed. Retry later."
            )
            return IdempotencyOutcome("in_flight", response=error.to_response())
        return IdempotencyOutcome("replay", response=record.response)

    def complete(self, record: IdempotencyRecord, response: ApiResponse) -> None:
        """Store the first request's completed response (unless the key expired meanwhile)."""
        if self._records.get((record.merchant_id, record.key)) is record:
            record.response = response

    def release(self, record: IdempotencyRecord) -> None:
        """Forget a reservation whose request did nothing, so that a retry executes for real."""
        if self._records.get((record.merchant_id, record.key)) is record and record.response is None:
            del self._records[(record.merchant_id, record.key)]

    def in_flight(self) -> list[dict[str, str]]:
        """Keys whose first request is still being processed."""
        return [
            {"merchant_id": r.merchant_id, "idempotency_key": r.key}
            for r in self._records.values()
            if r.response is None
        ]


def _parse_time(param: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_parameter(param, f"{param} must be an ISO 8601 time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _created(payment: Payment) -> datetime:
    moment = datetime.fromisoformat(payment.created_at)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive_int_param(params: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise invalid_parameter(name, f"{name} must be an integer between 1 and {maximum}.")
    return int(raw)


def _check_number(name: str, value: Any, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (positive and value == 0):
        raise ScenarioError(f"{name} must be a {'positive' if positive else 'non-negative'} number, got {value!r}")


def _check_client_error_status(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 499:
        raise ScenarioError(f"{name} must be a 4xx HTTP status, got {value!r}")


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(f"{name} must be a non-negative integer, got {value!r}")


def _check_choice(options: tuple[Any, ...]) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not any(type(value) is type(option) and value == option for option in options):  # True is not 1
            raise ScenarioError(f"{name} must be one of {list(options)}, got {value!r}")

    return check


def _check_optional_seconds(name: str, value: Any) -> None:
    if value is not None:
        _check_number(name, value)


_SETTING_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "latency_ms": _check_number,
    "jitter_ms": _check_number,
    "not_cancellable_status": _check_client_error_status,
    "not_refundable_status": _check_client_error_status,
    "success_status": _check_choice(SUCCESS_STATUSES),
    "refund_completion": _check_choice(REFUND_COMPLETIONS),
    "cash_refunds": _check_choice(CASH_REFUND_MODES),
    "complete_after_gets": _check_count,
    "complete_after_seconds": _check_optional_seconds,
    "replay_errors": _check_choice(REPLAY_ERROR_MODES),
    "idempotency_ttl_seconds": lambda name, value: _check_number(name, value, positive=True),
}


@dataclass
class Settings:
    """Behaviour switches that a scenario or ``PUT /_emulator/settings`` may change (defaults: KOMOJU's usual
    answers, as the emulator always gave them). ``emulator/__init__.py`` describes each one."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    not_cancellable_status: int = 422
    not_refundable_status: int = 422
    success_status: int = 200  # 202: cancels and refunds are accepted, not done
    refund_completion: str = "immediate"  # deferred: a refund answers 200 but is done later
    cash_refunds: str = "not_refundable"  # redirect_url: a cash payment's refund waits for the customer
    complete_after_gets: int = 1  # GETs of the payment that complete a pending operation (0: never)
    complete_after_seconds: float | None = None  # seconds on the emulator's clock (None: never)
    replay_errors: bool | str = False  # which error answers are stored under the idempotency key
    idempotency_ttl_seconds: float = IDEMPOTENCY_TTL_SECONDS

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON."""
        return dataclasses.asdict(self)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update, validating every value first."""
        unknown = set(changes) - set(_SETTING_CHECKS)
        if unknown:
            raise ScenarioError(f"unknown setting(s) {sorted(unknown)}; allowed: {sorted(_SETTING_CHECKS)}")
        for name, value in changes.items():
            _SETTING_CHECKS[name](name, value)
        for name, value in changes.items():
            setattr(self, name, value)

    def defers(self, action: str, payment: Payment) -> bool:
        """Whether a cancel/refund of ``payment`` is only accepted now and done later."""
        if self.success_status == 202:
            return True
        return action == "refund" and (self.refund_completion == "deferred" or self.refunds_by_redirect(payment))

    def refunds_by_redirect(self, payment: Payment) -> bool:
        """Whether a refund of ``payment`` goes through a ``redirect_url`` the customer must visit."""
        return payment.payment_type in NON_REFUNDABLE_TYPES and self.cash_refunds == "redirect_url"

    def stores_error(self, source: str) -> bool:
        """Whether an error answer is stored under its idempotency key; ``source`` is ``operation`` (the
        cancel/refund refused it) or ``fault`` (an injected error)."""
        return self.replay_errors is True or (self.replay_errors == "operation_errors" and source == "operation")


class EmulatorState:
    """All of one emulator's data and the KOMOJU rules that change it."""

    def __init__(self, *, clock: Clock | None = None, seed: int | None = None) -> None:
        self.clock = clock or Clock()
        self.ids = random.Random(seed)
        self.settings = Settings()
        self.merchants: dict[str, Merchant] = {}
        self.payments: dict[str, Payment] = {}
        self.idempotency = IdempotencyStore(self.clock, lambda: self.settings.idempotency_ttl_seconds)
        self.ledger = Ledger(self.clock)
        self.public_url = "http://127.0.0.1"  # the emulator's own address, for refund redirect URLs (app.py sets it)
        self._merchant_by_key: dict[str, Merchant] = {}
        self._waiting: dict[str, Payment] = {}  # payments with pending operations

    # -- setup -------------------------------------------------------------------------------------

    def add_merchant(self, merchant: Merchant) -> None:
        """Register a merchant; ids and secret keys must be unique."""
        if merchant.id in self.merchants:
            raise ScenarioError(f"duplicate merchant id {merchant.id!r}")
        for key in merchant.keys:
            if key in self._merchant_by_key:
                raise ScenarioError(f"merchant {merchant.id!r} reuses a secret key of another merchant")
        self.merchants[merchant.id] = merchant
        self._merchant_by_key.update(dict.fromkeys(merchant.keys, merchant))

    def add_payments(self, merchant_id: str, specs: Iterable[Mapping[str, Any]]) -> list[Payment]:
        """Create payments for a merchant from specs (see :meth:`Payment.from_spec`); all or nothing."""
        if merchant_id not in self.merchants:
            raise ScenarioError(f"unknown merchant {merchant_id!r}")
        created: list[Payment] = []
        for spec in specs:
            if not isinstance(spec, Mapping):
                raise ScenarioError(f"a payment must be a JSON object, got {spec!r}")
            payment = Payment.from_spec(merchant_id, spec, self.clock, self.ids)
            if payment.id in self.payments or any(p.id == payment.id for p in created):
                raise ScenarioError(f"duplicate payment id {payment.id!r}")
            created.append(payment)
        self.payments.update((payment.id, payment) for payment in created)
        return created

    # -- reads -------------------------------------------------------------------------------------

    def authenticate(self, secret_key: str | None) -> Merchant:
        """The merchant owning ``secret_key``; 401 when missing or unknown, 403 when the key is forbidden."""
        merchant = self._merchant_by_key.get(secret_key or "")
        if merchant is None:
            raise ApiError(401, "unauthorized", "Authentication failed: the secret key is missing or unknown.")
        if merchant.keys[secret_key or ""]:
            raise ApiError(403, "forbidden", "This secret key is not allowed to perform this request.")
        return merchant

    def payment_for(self, merchant_id: str, payment_id: str) -> Payment:
        """A payment of this merchant; another merchant's payment is as unknown as a missing one."""
        payment = self.payments.get(payment_id)
        if payment is None or payment.merchant_id != merchant_id:
            raise not_found(f"Payment {payment_id} was not found.")
        return payment

    def show_payment(self, merchant_id: str, payment_id: str) -> dict[str, Any]:
        """``GET /payments/{id}``: counts as a GET for the payment's pending operations, which may complete it
        before the answer is built."""
        payment = self.payment_for(merchant_id, payment_id)
        for operation in payment.pending:
            operation.gets += 1
        self._settle(payment)
        return payment.to_json()

    def payment_methods(self, merchant_id: str) -> list[dict[str, Any]]:
        """The merchant's enabled payment methods, as ``GET /payment_methods`` returns them."""
        return copy.deepcopy(self.merchants[merchant_id].payment_methods)

    def list_payments(self, merchant_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /payments``: newest first, filtered and paginated."""
        page = _positive_int_param(params, "page", 1, 1_000_000)
        per_page = _positive_int_param(params, "per_page", 10, 100)
        start = _parse_time("start_time", params["start_time"]) if "start_time" in params else None
        end = _parse_time("end_time", params["end_time"]) if "end_time" in params else None
        selected = []
        for payment in self.payments.values():
            created = _created(payment)
            if (
                payment.merchant_id == merchant_id
                and params.get("status", payment.status) == payment.status
                and params.get("currency", payment.currency) == payment.currency
                and params.get("external_order_num", payment.external_order_num) == payment.external_order_num
                and (start is None or created >= start)
                and (end is None or created <= end)
            ):
                selected.append(payment)
        selected.sort(key=_created, reverse=True)  # stable: equal times keep insertion order
        first = (page - 1) * per_page
        oldest = _created(selected[-1]).timestamp() if selected else self.clock.now()
        return {
            "resource": "list",
            "total": len(selected),
            "page": page,
            "per_page": per_page,
            "last_page": max(1, -(-len(selected) // per_page)),
            "start_time": self.clock.iso(start.timestamp() if start else min(oldest, self.clock.now())),
            "end_time": self.clock.iso(end.timestamp() if end else None),
            "data": [payment.to_json() for payment in selected[first : first + per_page]],
        }

    # -- writes ------------------------------------------------------------------------------------

    def cancel(self, merchant_id: str, payment_id: str, *, idempotency_key: str | None = None) -> Payment:
        """``POST /payments/{id}/cancel``: pending/authorized -> cancelled, anything else ``not_cancellable``.

        With ``success_status`` 202 the cancel is only accepted: the status stays until the operation completes.
        """
        payment = self.payment_for(merchant_id, payment_id)
        if payment.status not in CANCELLABLE_STATUSES:
            raise ApiError(
                self.settings.not_cancellable_status,
                "not_cancellable",
                f"The payment cannot be cancelled because its status is {payment.status}.",
            )
        if self.settings.defers("cancel", payment):
            self._accept(payment, "cancel", payment.total, idempotency_key)
        else:
            self._change_status(payment, "cancel", "cancelled", payment.total, idempotency_key)
        return payment

    def refund(
        self, merchant_id: str, payment_id: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Payment:
        """``POST /payments/{id}/refund``: refund ``amount`` (default: all that is left) of a captured payment.

        The refund entry is appended at once; ``amount_refunded`` and the status move at once too, unless the
        settings defer the refund (202, ``refund_completion`` deferred, a cash payment's ``redirect_url``). A
        refund pending does not reduce what is left to refund: a second refund is accepted as one more effect.
        """
        payment = self.payment_for(merchant_id, payment_id)
        amount = body.get("amount")
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0):
            raise invalid_parameter("amount", "amount must be a positive integer in the smallest currency unit.")
        description = body.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid_parameter("description", "description must be a string.")
        self._check_refundable(payment)
        if amount is None:
            amount = payment.refundable
        elif amount > payment.refundable:
            raise invalid_parameter("amount", f"amount {amount} exceeds the refundable amount {payment.refundable}.")
        refund = Refund(new_id(self.ids), amount, payment.currency, payment.id, description or "", self.clock.iso())
        if self.settings.refunds_by_redirect(payment):
            refund.redirect_url = f"{self.public_url}/customer/refunds/{refund.id}"
        payment.refunds.append(refund)
        if self.settings.defers("refund", payment):
            self._accept(payment, "refund", amount, idempotency_key, refund.id)
        else:
            payment.amount_refunded += amount
            to_status = "refunded" if payment.refundable <= 0 else "captured"
            self._change_status(payment, "refund", to_status, amount, idempotency_key, refund.id)
        return payment

    def _check_refundable(self, payment: Payment) -> None:
        if payment.status != "captured":
            reason = f"its status is {payment.status}"
        elif payment.payment_type in NON_REFUNDABLE_TYPES and not self.settings.refunds_by_redirect(payment):
            reason = f"{payment.payment_type} payments are refunded by a refund request, not through the API"
        else:
            return
        raise ApiError(
            self.settings.not_refundable_status, "not_refundable", f"The payment cannot be refunded because {reason}."
        )

    def _change_status(
        self,
        payment: Payment,
        action: str,
        to_status: str,
        amount: int,
        idempotency_key: str | None,
        refund_id: str | None = None,
    ) -> None:
        from_status = payment.status
        payment.status = to_status
        self.ledger.record_effect(
            merchant_id=payment.merchant_id,
            payment_id=payment.id,
            action=action,
            from_status=from_status,
            to_status=to_status,
            amount=amount,
            idempotency_key=idempotency_key,
            refund_id=refund_id,
        )

    def _accept(
        self, payment: Payment, action: str, amount: int, idempotency_key: str | None, refund_id: str | None = None
    ) -> None:
        """Record an accepted-but-not-done operation: an effect now, the status change when it completes."""
        effect = self.ledger.record_effect(
            merchant_id=payment.merchant_id,
            payment_id=payment.id,
            action=action,
            from_status=payment.status,
            to_status=payment.status,
            amount=amount,
            idempotency_key=idempotency_key,
            pending=True,
            refund_id=refund_id,
        )
        operation = PendingOperation(action, amount, self.clock.now(), effect["seq"], idempotency_key, refund_id)
        payment.pending.append(operation)
        self._waiting[payment.id] = payment

    # -- completing accepted operations ------------------------------------------------------------

    def _trigger(self, operation: PendingOperation) -> str | None:
        """What makes ``operation`` due now (``clock`` or ``get``), or None while it is not."""
        seconds = self.settings.complete_after_seconds
        if seconds is not None and self.clock.now() - operation.accepted_at >= seconds:
            return "clock"
        gets = self.settings.complete_after_gets
        if gets and operation.gets >= gets:
            return "get"
        return None

    def _settle(self, payment: Payment, trigger: str | None = None) -> list[dict[str, Any]]:
        """Complete the payment's pending operations that are due (all of them when ``trigger`` is given)."""
        done = []
        for operation in list(payment.pending):
            reason = trigger or self._trigger(operation)
            if reason is not None:
                done.append(self._complete(payment, operation, reason))
        if not payment.pending:
            self._waiting.pop(payment.id, None)
        return done

    def _complete(self, payment: Payment, operation: PendingOperation, trigger: str) -> dict[str, Any]:
        payment.pending.remove(operation)
        from_status = payment.status
        if operation.action == "cancel":
            payment.status = "cancelled"
        else:
            payment.amount_refunded += operation.amount
            if payment.refundable <= 0:
                payment.status = "refunded"
        return self.ledger.record_completion(payment, operation, from_status, trigger)

    def settle_due(self) -> list[dict[str, Any]]:
        """Complete every pending operation whose time has come (``complete_after_seconds``)."""
        return [entry for payment in list(self._waiting.values()) for entry in self._settle(payment)]

    def complete_now(self, payment_id: str) -> list[dict[str, Any]]:
        """Complete all pending operations of a payment at once (``POST /_emulator/payments/{id}/complete``)."""
        payment = self.payments.get(payment_id)
        if payment is None:
            raise ScenarioError(f"unknown payment {payment_id!r}")
        return self._settle(payment, trigger="control")

    # -- operations as answers ---------------------------------------------------------------------

    def execute(
        self,
        merchant_id: str,
        action: str,
        payment_id: str,
        body: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> ApiResponse:
        """Run ``cancel`` or ``refund`` and return KOMOJU's answer, success or error alike."""
        try:
            if action == "cancel":
                payment = self.cancel(merchant_id, payment_id, idempotency_key=idempotency_key)
            elif action == "refund":
                payment = self.refund(merchant_id, payment_id, body or {}, idempotency_key=idempotency_key)
            else:
                raise ValueError(f"unknown action {action!r}")
        except ApiError as error:
            return error.to_response()
        return ApiResponse(self.settings.success_status, payment.to_json())

    def keeps(self, answer: ApiResponse, source: str = "operation") -> bool:
        """Whether a keyed request's answer is stored for replay: successes always, errors as ``replay_errors``
        says (``source``: ``operation`` or ``fault``)."""
        return answer.status < 400 or self.settings.stores_error(source)

    def perform(
        self,
        merchant_id: str,
        action: str,
        payment_id: str,
        body: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        path: str | None = None,
    ) -> tuple[ApiResponse, bool]:
        """Execute a POST the way KOMOJU does, honouring an idempotency key; returns (answer, replayed)."""
        if idempotency_key is None:
            return self.execute(merchant_id, action, payment_id, body), False
        validate_idempotency_key(idempotency_key)
        path = path or f"/api/v1/payments/{payment_id}/{action}"
        outcome = self.idempotency.begin(merchant_id, idempotency_key, request_fingerprint("POST", path, body))
        if outcome.kind != "new":
            assert outcome.response is not None
            return outcome.response, outcome.kind == "replay"
        assert outcome.record is not None
        response = self.execute(merchant_id, action, payment_id, body, idempotency_key=idempotency_key)
        if self.keeps(response):
            self.idempotency.complete(outcome.record, response)
        else:
            self.idempotency.release(outcome.record)
        return response, False
