"""The Starlette application: KOMOJU's ``/api/v1`` endpoints plus the ``/_emulator`` control endpoints.

Every API request goes through one pipeline (:meth:`Emulator.api`): complete the pending operations whose time
has come, route, authenticate, read the body and idempotency key, pick a fault, wait the configured latency,
answer (or replay), misbehave if a fault says so, and record the request in the ledger.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from emulator.faults import REPLAYABLE_FAULTS, FaultRule, fault_answer, parse_rules
from emulator.scenario import ScenarioSource, build_state, read_scenario
from emulator.state import (
    IDEMPOTENCY_HEADER,
    ApiError,
    ApiResponse,
    EmulatorState,
    IdempotencyRecord,
    ScenarioError,
    not_found,
    request_fingerprint,
    validate_idempotency_key,
)

API_PREFIX = "/api/v1"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
TRANSPORT_SCOPE_KEY = "emulator.transport"
_API_ROUTES = (
    ("GET", re.compile(r"/payment_methods"), "payment_methods"),
    ("GET", re.compile(r"/payments"), "list_payments"),
    ("GET", re.compile(r"/payments/(?P<payment_id>[^/]+)"), "show_payment"),
    ("POST", re.compile(r"/payments/(?P<payment_id>[^/]+)/cancel"), "cancel"),
    ("POST", re.compile(r"/payments/(?P<payment_id>[^/]+)/refund"), "refund"),
)


@dataclass
class _Call:
    """What the pipeline has learnt about one API request so far."""

    state: EmulatorState
    method: str
    path: str
    started: float
    received_at: float = field(default_factory=time.time)  # wall clock, seconds since the epoch
    merchant_id: str | None = None
    payment_id: str | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None
    fault: FaultRule | None = None
    replayed: bool = False
    latency_done: bool = False


class DroppedConnection(Response):
    """A "response" that closes the TCP connection instead of completing an answer.

    ``reset`` closes it before any byte is sent (``requests`` raises ``ConnectionError``); ``truncate`` sends
    the status line, headers and half of the body first (``requests`` raises ``ChunkedEncodingError``).
    """

    def __init__(self, mode: str, answer: ApiResponse) -> None:
        super().__init__(json.dumps(answer.body).encode(), status_code=answer.status, media_type="application/json")
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Close the connection; fall back to raising mid-response when the transport is out of reach."""
        transport = scope.get(TRANSPORT_SCOPE_KEY)
        if self.mode == "truncate" or transport is None:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self.mode == "truncate":
            await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
        if transport is None:
            raise ConnectionAbortedError("emulator fault: connection dropped")  # the server closes the socket
        transport.close()
        with contextlib.suppress(TimeoutError):  # let the server notice, so it logs nothing
            async with asyncio.timeout(2):
                while (await receive())["type"] != "http.disconnect":
                    pass


def _transport_of(send: Send) -> Any:
    """The asyncio transport behind uvicorn's ``send`` (used only to drop connections), or None."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if callable(getattr(transport, "close", None)) else None


def _secret_key(authorization: str | None) -> str | None:
    """The username of an HTTP Basic ``Authorization`` header (KOMOJU's secret key)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def _json_body(raw: bytes) -> dict[str, Any] | None:
    """The POST body as a JSON object (None when empty); 400 ``bad_request`` when malformed."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "bad_request", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "The request body must be a JSON object.")
    return body


def _route(method: str, path: str) -> tuple[str, str | None]:
    """(action, payment id) for an API path; 404 for anything KOMOJU would not know."""
    relative = path[len(API_PREFIX) :]
    for route_method, pattern, action in _API_ROUTES:
        found = pattern.fullmatch(relative)
        if found and method == route_method:
            return action, found.groupdict().get("payment_id")
    raise not_found(f"No route matches {method} {path}.")


def _respond(answer: ApiResponse) -> Response:
    """An answer on the wire: JSON, or an HTML page (a proxy's or firewall's)."""
    if answer.media_type == "text/html":
        return HTMLResponse(answer.body, status_code=answer.status, headers=dict(answer.headers))
    return JSONResponse(answer.body, status_code=answer.status, headers=dict(answer.headers))


def _control_error(message: str, status: int = 400) -> Response:
    return _respond(ApiError(status, "bad_request" if status == 400 else "not_found", message).to_response())


def _customer_refund_page(refund_id: str, payment_id: str, amount: int, currency: str) -> str:
    """What a customer sees at a cash refund's ``redirect_url`` (the emulator only shows it)."""
    return (
        "<!DOCTYPE html>\n<html><head><title>Refund</title></head>\n<body><h1>Refund "
        f"{html.escape(refund_id)}</h1><p>{amount} {html.escape(currency)} of payment {html.escape(payment_id)}: "
        "enter the bank account that should receive it.</p></body></html>\n"
    )


async def _control_body(request: Request) -> dict[str, Any]:
    try:
        body = _json_body(await request.body())
    except ApiError as error:
        raise ScenarioError(error.message) from None
    return body or {}


class Emulator:
    """One emulator instance: the scenario as loaded, and the live model, faults and dice built from it."""

    def __init__(self, scenario: ScenarioSource) -> None:
        self.scenario = read_scenario(scenario)
        self.state, self.faults = build_state(self.scenario)
        self._jitter = random.Random(self.scenario.get("seed"))
        self.active_requests = 0  # API requests being served now (one event loop: no lock needed)
        self.peak_active_requests = 0

    def reset(self) -> None:
        """Back to the scenario as loaded: payments, keys, faults, settings, clock, ledger, dice, peak."""
        self.state, self.faults = build_state(self.scenario)
        self._jitter = random.Random(self.scenario.get("seed"))
        self.peak_active_requests = self.active_requests

    # -- the API pipeline ---------------------------------------------------------------------------

    async def api(self, request: Request) -> Response:
        """Serve one ``/api/v1`` request and record it in the ledger."""
        call = _Call(self.state, request.method, request.url.path, asyncio.get_running_loop().time())
        call.state.public_url = str(request.base_url).rstrip("/")
        call.state.settle_due()
        self.active_requests += 1
        self.peak_active_requests = max(self.peak_active_requests, self.active_requests)
        try:
            response = await self._serve(request, call)
        except ApiError as error:
            await self._latency(call)
            response = _respond(error.to_response())
        finally:
            self.active_requests -= 1
        call.state.ledger.record_request(
            merchant_id=call.merchant_id,
            method=call.method,
            path=call.path,
            payment_id=call.payment_id,
            idempotency_key=call.idempotency_key,
            status=None if isinstance(response, DroppedConnection) else response.status_code,
            fault=call.fault.kind if call.fault else None,
            replayed=call.replayed,
            received_at=round(call.received_at, 6),
        )
        return response

    async def _serve(self, request: Request, call: _Call) -> Response:
        action, call.payment_id = _route(call.method, call.path)
        merchant = call.state.authenticate(_secret_key(request.headers.get("authorization")))
        call.merchant_id = merchant.id
        body = None
        if call.method == "POST":
            body = _json_body(await request.body())
            key = request.headers.get(IDEMPOTENCY_HEADER)
            call.idempotency_key = None if key is None else validate_idempotency_key(key)
            call.fingerprint = request_fingerprint(call.method, call.path, body)
        call.fault = self.faults.pick(call.method, call.path, call.payment_id)
        if call.fault is not None and not call.fault.applies_operation:
            return await self._unapplied_fault(call.fault, call)
        answer = await self._answer(action, body, dict(request.query_params), call)
        if call.fault is None or call.fault.kind == "timeout":
            return _respond(answer)
        if call.fault.kind == "drop":
            return DroppedConnection(call.fault.options["mode"], answer)
        return _respond(fault_answer(call.fault))  # applied_500: done and stored, but the wire says 500

    async def _answer(
        self, action: str, body: dict[str, Any] | None, params: Mapping[str, str], call: _Call
    ) -> ApiResponse:
        """The real answer, executed once per idempotency key."""
        assert call.merchant_id is not None
        if call.idempotency_key is None:
            await self._processing(call)
            return self._execute(action, body, params, call)
        assert call.fingerprint is not None
        outcome = call.state.idempotency.begin(call.merchant_id, call.idempotency_key, call.fingerprint)
        if outcome.kind != "new":
            assert outcome.response is not None
            call.replayed = outcome.kind == "replay"
            await self._processing(call)
            return outcome.response
        assert outcome.record is not None
        try:
            await self._processing(call)  # the key stays in flight meanwhile: a retry now gets 409
            answer = self._execute(action, body, params, call)
        except BaseException:
            call.state.idempotency.release(outcome.record)
            raise
        if call.state.keeps(answer):
            call.state.idempotency.complete(outcome.record, answer)
        else:  # replay_errors false: the key is released, a resend executes for real
            call.state.idempotency.release(outcome.record)
        return answer

    def _execute(self, action: str, body: dict[str, Any] | None, params: Mapping[str, str], call: _Call) -> ApiResponse:
        state, merchant_id, payment_id = call.state, call.merchant_id, call.payment_id
        assert merchant_id is not None
        try:
            if action == "payment_methods":
                return ApiResponse(200, state.payment_methods(merchant_id))
            if action == "list_payments":
                return ApiResponse(200, state.list_payments(merchant_id, params))
            assert payment_id is not None
            if action == "show_payment":
                return ApiResponse(200, state.show_payment(merchant_id, payment_id))
        except ApiError as error:
            return error.to_response()
        return state.execute(merchant_id, action, payment_id, body, idempotency_key=call.idempotency_key)

    async def _latency(self, call: _Call) -> None:
        """Answer no sooner than ``latency_ms`` (+ jitter) after the request arrived; once per request."""
        if call.latency_done:
            return
        call.latency_done = True
        settings = call.state.settings
        jitter = self._jitter.uniform(0, settings.jitter_ms) if settings.jitter_ms else 0.0
        remaining = call.started + (settings.latency_ms + jitter) / 1000 - asyncio.get_running_loop().time()
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def _processing(self, call: _Call) -> None:
        await self._latency(call)
        if call.fault is not None and call.fault.kind == "timeout":
            await asyncio.sleep(call.fault.options["seconds"])

    async def _unapplied_fault(self, fault: FaultRule, call: _Call) -> Response:
        """A fault that fires before anything is done. Its answer is stored under the idempotency key only with
        ``replay_errors`` true (and never for drop, rate_limit, conflict)."""
        if fault.kind == "drop":
            await self._processing(call)
            lost = ApiError(502, "bad_gateway", "The connection to KOMOJU was lost.").to_response()
            return DroppedConnection(fault.options["mode"], lost)
        answer = fault_answer(fault)
        record = self._reserve_for_fault(fault, call)
        try:
            await self._processing(call)
        except BaseException:
            if record is not None:
                call.state.idempotency.release(record)
            raise
        if record is not None:
            call.state.idempotency.complete(record, answer)
        return _respond(answer)

    def _reserve_for_fault(self, fault: FaultRule, call: _Call) -> IdempotencyRecord | None:
        """The key's fresh reservation when this fault's answer is to be stored under it, else None."""
        if call.idempotency_key is None or fault.kind not in REPLAYABLE_FAULTS:
            return None
        if not call.state.settings.stores_error("fault"):
            return None
        assert call.merchant_id is not None
        assert call.fingerprint is not None
        outcome = call.state.idempotency.begin(call.merchant_id, call.idempotency_key, call.fingerprint)
        return outcome.record if outcome.kind == "new" else None

    # -- control endpoints (loopback only, no auth) -------------------------------------------------

    async def health(self, request: Request) -> Response:
        """``GET /_emulator/health``."""
        return JSONResponse(
            {
                "status": "ok",
                "time": self.state.clock.iso(),
                "in_flight": len(self.state.idempotency.in_flight()),
                "active_requests": self.active_requests,
                "peak_active_requests": self.peak_active_requests,
            }
        )

    async def ledger(self, request: Request) -> Response:
        """``GET /_emulator/ledger?since=SEQ``: entries after SEQ (all by default)."""
        since = request.query_params.get("since", "0")
        if not since.isdigit():
            return _control_error("since must be a non-negative integer")
        self.state.settle_due()
        return JSONResponse({"entries": self.state.ledger.entries(int(since))})

    async def in_flight(self, request: Request) -> Response:
        """``GET /_emulator/in_flight``: idempotency keys whose first request is still being processed."""
        return JSONResponse({"in_flight": self.state.idempotency.in_flight()})

    async def show_payment(self, request: Request) -> Response:
        """``GET /_emulator/payments/{id}``: any merchant's payment, plus its merchant id and the operations
        accepted but not done yet (``pending_operations``). Not a GET of the API: completes nothing but what
        the clock makes due."""
        self.state.settle_due()
        payment = self.state.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _control_error("unknown payment", 404)
        return JSONResponse(
            {
                **payment.to_json(),
                "merchant_id": payment.merchant_id,
                "pending_operations": [operation.to_json() for operation in payment.pending],
            }
        )

    async def complete_payment(self, request: Request) -> Response:
        """``POST /_emulator/payments/{id}/complete``: do the payment's pending cancels/refunds now; answers the
        completion ledger entries (empty when nothing was pending) and the payment."""
        payment_id = request.path_params["payment_id"]
        if payment_id not in self.state.payments:
            return _control_error("unknown payment", 404)
        completed = self.state.complete_now(payment_id)
        return JSONResponse({"completed": completed, "payment": self.state.payments[payment_id].to_json()})

    async def customer_refund(self, request: Request) -> Response:
        """``GET /customer/refunds/{id}``: the page a cash refund's ``redirect_url`` leads to."""
        refund_id = request.path_params["refund_id"]
        for payment in self.state.payments.values():
            for refund in payment.refunds:
                if refund.id == refund_id and refund.redirect_url is not None:
                    return HTMLResponse(_customer_refund_page(refund.id, payment.id, refund.amount, refund.currency))
        return HTMLResponse("<!DOCTYPE html>\n<html><body><h1>Refund not found</h1></body></html>\n", 404)

    async def add_payments(self, request: Request) -> Response:
        """``POST /_emulator/payments`` ``{"merchant_id": ..., "payments": [...]}``: create payments."""
        body = await _control_body(request)
        payments = body.get("payments")
        if not isinstance(payments, list):
            raise ScenarioError("payments must be a list of payment objects")
        created = self.state.add_payments(str(body.get("merchant_id")), payments)
        return JSONResponse({"payments": [payment.to_json() for payment in created]}, status_code=201)

    async def show_faults(self, request: Request) -> Response:
        """``GET /_emulator/faults``: the active rules and how often each fired."""
        return JSONResponse({"rules": [rule.to_json() for rule in self.faults.rules]})

    async def replace_faults(self, request: Request) -> Response:
        """``PUT /_emulator/faults`` ``{"rules": [...], "seed": S}``: replace the rules (seed optional)."""
        body = await _control_body(request)
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ScenarioError("seed must be an integer")
        self.faults.replace(parse_rules(body.get("rules", [])), seed)
        return await self.show_faults(request)

    async def show_settings(self, request: Request) -> Response:
        """``GET /_emulator/settings``."""
        return JSONResponse(self.state.settings.to_json())

    async def update_settings(self, request: Request) -> Response:
        """``PUT /_emulator/settings``: change some settings (see :class:`emulator.state.Settings`)."""
        self.state.settings.update(await _control_body(request))
        return JSONResponse(self.state.settings.to_json())

    async def advance_clock(self, request: Request) -> Response:
        """``POST /_emulator/clock`` ``{"advance_seconds": N}``."""
        seconds = (await _control_body(request)).get("advance_seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ScenarioError("advance_seconds must be a number")
        self.state.clock.advance(seconds)
        self.state.settle_due()
        return JSONResponse({"time": self.state.clock.iso()})

    async def reset_endpoint(self, request: Request) -> Response:
        """``POST /_emulator/reset``."""
        self.reset()
        return JSONResponse({"status": "reset"})

    async def unknown(self, request: Request) -> Response:
        """Anything outside ``/api/v1`` and the control endpoints."""
        return _respond(not_found(f"No route matches {request.method} {request.url.path}.").to_response())

    def routes(self) -> list[Route]:
        """The API, the control routes, then a JSON 404 for everything else."""
        control = "/_emulator"
        return [
            Route(f"{API_PREFIX}/{{rest:path}}", self.api, methods=ALL_METHODS),  # first: the hot path
            Route(f"{control}/health", self.health, methods=["GET"]),
            Route(f"{control}/ledger", self.ledger, methods=["GET"]),
            Route(f"{control}/in_flight", self.in_flight, methods=["GET"]),
            Route(f"{control}/payments", self.add_payments, methods=["POST"]),
            Route(f"{control}/payments/{{payment_id}}", self.show_payment, methods=["GET"]),
            Route(f"{control}/payments/{{payment_id}}/complete", self.complete_payment, methods=["POST"]),
            Route(f"{control}/faults", self.show_faults, methods=["GET"]),
            Route(f"{control}/faults", self.replace_faults, methods=["PUT"]),
            Route(f"{control}/settings", self.show_settings, methods=["GET"]),
            Route(f"{control}/settings", self.update_settings, methods=["PUT"]),
            Route(f"{control}/clock", self.advance_clock, methods=["POST"]),
            Route(f"{control}/reset", self.reset_endpoint, methods=["POST"]),
            Route("/customer/refunds/{refund_id}", self.customer_refund, methods=["GET"]),
            Route("/{rest:path}", self.unknown, methods=ALL_METHODS),
        ]


async def _scenario_error(request: Request, exc: Exception) -> Response:
    return _control_error(str(exc))


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _respond(ApiError(500, "internal_server_error", "The emulator failed; see its log.").to_response())


class EmulatorApp(Starlette):
    """The ASGI application; ``.emulator`` is the live :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(
            routes=emulator.routes(),
            exception_handlers={ScenarioError: _scenario_error, Exception: _internal_error},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Remember the connection's transport, so that the ``drop`` fault can close it."""
        if scope["type"] == "http":
            scope[TRANSPORT_SCOPE_KEY] = _transport_of(send)
        await super().__call__(scope, receive, send)


def create_app(scenario: ScenarioSource) -> EmulatorApp:
    """Build the emulator application for a scenario (a dict or a JSON file path)."""
    return EmulatorApp(Emulator(scenario))
