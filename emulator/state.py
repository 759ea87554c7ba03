"""The emulator's in-memory model of KOMOJU: merchants, payments, idempotency keys and the ledger.

Nothing here knows about HTTP. Every operation either returns an :class:`ApiResponse` (what KOMOJU would
answer, status and JSON body) or raises :class:`ApiError`; ``app.py`` turns both into HTTP responses.
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PAYMENT_ID_RE = re.compile(r"^[a-z0-9]{25}$")
STATUSES = ("pending", "authorized", "captured", "cancelled", "expired", "refunded", "failed")
CANCELLABLE_STATUSES = frozenset({"pending", "authorized"})
NON_REFUNDABLE_TYPES = frozenset({"konbini"})  # cash payments need a manual /refund_request
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
IDEMPOTENCY_HEADER = "X-KOMOJU-IDEMPOTENCY"
MAX_IDEMPOTENCY_KEY_LENGTH = 100
_ID_ALPHABET = string.ascii_lowercase + string.digits
_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))

PAYMENT_SPEC_FIELDS = frozenset(
    {
        "id", "status", "amount", "tax", "payment_method_fee", "currency", "payment_type", "payment_details",
        "captured_at", "amount_refunded", "external_order_num", "metadata", "created_at",
    }
)  # fmt: skip


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
    """A completed API answer: HTTP status, JSON-serialisable body, extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


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
    description: str | None
    created_at: str
    chargeback: bool = False

    def to_json(self) -> dict[str, Any]:
        """The refund as KOMOJU serialises it."""
        return {
            "id": self.id,
            "resource": "refund",
            "amount": self.amount,
            "currency": self.currency,
            "payment": self.payment_id,
            "description": self.description,
            "created_at": self.created_at,
            "chargeback": self.chargeback,
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
        """The Payment object as KOMOJU serialises it."""
        return {
            "id": self.id,
            "resource": "payment",
            "status": self.status,
            "amount": self.amount,
            "tax": self.tax,
            "payment_method_fee": self.payment_method_fee,
            "total": self.total,
            "currency": self.currency,
            "payment_details": copy.deepcopy(self.payment_details),
            "captured_at": self.captured_at,
            "amount_refunded": self.amount_refunded,
            "refunds": [refund.to_json() for refund in self.refunds],
            "refund_requests": copy.deepcopy(self.refund_requests),
            "external_order_num": self.external_order_num,
            "metadata": copy.deepcopy(self.metadata),
            "created_at": self.created_at,
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
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            raise ScenarioError(f"payment {payment_id}: currency {currency!r} is not a 3-letter ISO code")
        details = dict(spec.get("payment_details") or {})
        details.setdefault("type", spec.get("payment_type", "credit_card"))
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
            payment.refunds.append(Refund(new_id(rng), refunded, currency, payment_id, None, created_at))
        return payment


@dataclass
class Merchant:
    """A KOMOJU merchant account: its secret keys (key -> forbidden?) and enabled payment methods."""

    id: str
    keys: dict[str, bool]
    payment_methods: list[dict[str, Any]]


class Ledger:
    """Everything that happened, in order: one entry per API request and one per state change."""

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
    ) -> dict[str, Any]:
        """Record one API request (``status`` is None when no response reached the wire)."""
        return self._append(
            {
                "type": "request",
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
    ) -> dict[str, Any]:
        """Record one state change (a cancel or a refund that was applied)."""
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
            }
        )

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        """Entries with ``seq`` greater than ``since``."""
        return [dict(entry) for entry in self._entries[max(since, 0) :]]

    def effects(self, payment_id: str | None = None) -> list[dict[str, Any]]:
        """State-change entries, optionally for one payment."""
        return [
            dict(entry)
            for entry in self._entries
            if entry["type"] == "effect" and (payment_id is None or entry["payment_id"] == payment_id)
        ]


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
    """KOMOJU's idempotency keys, scoped per merchant and honoured for 24 h on the emulator's clock."""

    def __init__(self, clock: Clock, ttl_seconds: float = IDEMPOTENCY_TTL_SECONDS) -> None:
        self._clock = clock
        self._ttl = ttl_seconds
        self._records: dict[tuple[str, str], IdempotencyRecord] = {}

    def _live(self, merchant_id: str, key: str) -> IdempotencyRecord | None:
        record = self._records.get((merchant_id, key))
        if record is not None and self._clock.now() - record.first_used_at >= self._ttl:
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


@dataclass
class Settings:
    """Behaviour switches that a scenario or ``PUT /_emulator/settings`` may change."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    not_cancellable_status: int = 422
    not_refundable_status: int = 422

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON."""
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "not_cancellable_status": self.not_cancellable_status,
            "not_refundable_status": self.not_refundable_status,
        }

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update, validating every value first."""
        unknown = set(changes) - set(self.to_json())
        if unknown:
            raise ScenarioError(f"unknown setting(s) {sorted(unknown)}; allowed: {sorted(self.to_json())}")
        for name in ("latency_ms", "jitter_ms"):
            value = changes.get(name, getattr(self, name))
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ScenarioError(f"{name} must be a non-negative number, got {value!r}")
        for name in ("not_cancellable_status", "not_refundable_status"):
            value = changes.get(name, getattr(self, name))
            if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 499:
                raise ScenarioError(f"{name} must be a 4xx HTTP status, got {value!r}")
        for name, value in changes.items():
            setattr(self, name, value)


class EmulatorState:
    """All of one emulator's data and the KOMOJU rules that change it."""

    def __init__(self, *, clock: Clock | None = None, seed: int | None = None) -> None:
        self.clock = clock or Clock()
        self.ids = random.Random(seed)
        self.settings = Settings()
        self.merchants: dict[str, Merchant] = {}
        self.payments: dict[str, Payment] = {}
        self.idempotency = IdempotencyStore(self.clock)
        self.ledger = Ledger(self.clock)
        self._merchant_by_key: dict[str, Merchant] = {}

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
        return {
            "resource": "list",
            "total": len(selected),
            "page": page,
            "per_page": per_page,
            "last_page": max(1, -(-len(selected) // per_page)),
            "data": [payment.to_json() for payment in selected[first : first + per_page]],
        }

    # -- writes ------------------------------------------------------------------------------------

    def cancel(self, merchant_id: str, payment_id: str, *, idempotency_key: str | None = None) -> Payment:
        """``POST /payments/{id}/cancel``: pending/authorized -> cancelled, anything else ``not_cancellable``."""
        payment = self.payment_for(merchant_id, payment_id)
        if payment.status not in CANCELLABLE_STATUSES:
            raise ApiError(
                self.settings.not_cancellable_status,
                "not_cancellable",
                f"The payment cannot be cancelled because its status is {payment.status}.",
            )
        self._change_status(payment, "cancel", "cancelled", payment.total, idempotency_key)
        return payment

    def refund(
        self, merchant_id: str, payment_id: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Payment:
        """``POST /payments/{id}/refund``: refund ``amount`` (default: all that is left) of a captured payment."""
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
        payment.refunds.append(
            Refund(new_id(self.ids), amount, payment.currency, payment.id, description, self.clock.iso())
        )
        payment.amount_refunded += amount
        to_status = "refunded" if payment.refundable == 0 else "captured"
        self._change_status(payment, "refund", to_status, amount, idempotency_key)
        return payment

    def _check_refundable(self, payment: Payment) -> None:
        if payment.status != "captured":
            reason = f"its status is {payment.status}"
        elif payment.payment_type in NON_REFUNDABLE_TYPES:
            reason = f"{payment.payment_type} payments are refunded by a refund request, not through the API"
        else:
            return
        raise ApiError(
            self.settings.not_refundable_status, "not_refundable", f"The payment cannot be refunded because {reason}."
        )

    def _change_status(
        self, payment: Payment, action: str, to_status: str, amount: int, idempotency_key: str | None
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
        )

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
        return ApiResponse(200, payment.to_json())

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
        self.idempotency.complete(outcome.record, response)
        return response, False
