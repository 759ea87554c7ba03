"""Fault injection: rules that make chosen API requests fail the ways a real network and KOMOJU can.

A rule is ``{"kind": K, "match": {...}, "rate": 0..1, "times": N, ...kind options}``. Rules are tried in
order; the first matching rule whose dice roll succeeds (and that has ``times`` left) fires. The dice come
from one ``random.Random(seed)``, so a seed gives the same sequence of faults for the same requests.

A fault that is not applied leaves the payment alone; its answer is stored under the request's idempotency
key only when the ``replay_errors`` setting is true, and only for the kinds in :data:`REPLAYABLE_FAULTS`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.state import ApiError, ApiResponse, ScenarioError

# kind -> its options with their defaults
FAULT_KINDS: dict[str, dict[str, Any]] = {
    "error_500": {},  # 500 internal_server_error, nothing applied
    "error_503": {},  # 503 service_unavailable (maintenance), nothing applied
    "html_502": {},  # 502 with an HTML page from a "proxy", nothing applied
    "timeout": {"seconds": 10.0, "apply": False},  # answer only after `seconds`; applied or not
    "drop": {"apply": False, "mode": "reset"},  # connection closed without a complete response
    "rate_limit": {"retry_after": 1},  # 429 + Retry-After, nothing applied
    "conflict": {},  # 409, nothing applied
    "applied_500": {},  # applied and stored under the idempotency key, but the wire says 500
    "forbidden_403": {},  # 403 forbidden (KOMOJU: the key may not access this resource), nothing applied
    "html_403": {},  # 403 with an HTML page from a firewall, nothing applied
    "processor_502": {"code": "insufficient_funds"},  # 502 whose code is the processor's refusal, nothing applied
    "payment_required_402": {},  # 402 request_failed (a refusal), nothing applied
}
# Not-applied faults whose answer replay_errors=true stores under the idempotency key (rate_limit and conflict
# never are, drop has no answer).
REPLAYABLE_FAULTS = frozenset(
    {"error_500", "error_503", "html_502", "timeout", "forbidden_403", "html_403", "processor_502",
     "payment_required_402"}
)  # fmt: skip
DROP_MODES = ("reset", "truncate")  # reset: no byte of the response; truncate: headers and half a body
MATCH_FIELDS = ("method", "path_contains", "payment_id")
ERROR_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

HTML_502_BODY = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    "<body><h1>502 Bad Gateway</h1><p>The upstream server did not answer.</p></body></html>\n"
)
HTML_403_BODY = (
    "<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>\n"
    "<body><h1>403 Forbidden</h1><p>The request was blocked by the web application firewall.</p></body></html>\n"
)
HTML_PAGES = {"html_502": (502, HTML_502_BODY), "html_403": (403, HTML_403_BODY)}


@dataclass
class FaultRule:
    """One fault rule and how many times it has fired."""

    kind: str
    match: dict[str, str] = field(default_factory=dict)
    rate: float = 1.0
    times: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    @property
    def applies_operation(self) -> bool:
        """Whether the cancel/refund really happens when this fault fires."""
        return self.kind == "applied_500" or bool(self.options.get("apply", False))

    def matches(self, method: str, path: str, payment_id: str | None) -> bool:
        """Whether this rule targets the request (ignoring rate and times)."""
        wanted_method = self.match.get("method")
        wanted_path = self.match.get("path_contains")
        wanted_payment = self.match.get("payment_id")
        return (
            (wanted_method is None or wanted_method.upper() == method.upper())
            and (wanted_path is None or wanted_path in path)
            and (wanted_payment is None or wanted_payment == payment_id)
        )

    def exhausted(self) -> bool:
        """Whether the rule has fired as many times as it may."""
        return self.times is not None and self.fired >= self.times

    def to_json(self) -> dict[str, Any]:
        """The rule as given, plus how often it fired."""
        return {
            "kind": self.kind,
            "match": dict(self.match),
            "rate": self.rate,
            "times": self.times,
            **self.options,
            "fired": self.fired,
        }


def parse_rule(raw: Any) -> FaultRule:
    """Validate one rule from JSON; unknown kinds, fields and options are errors (typos must not pass)."""
    if not isinstance(raw, Mapping) or raw.get("kind") not in FAULT_KINDS:
        raise ScenarioError(f"a fault rule needs a kind among {sorted(FAULT_KINDS)}, got {raw!r}")
    kind = raw["kind"]
    defaults = FAULT_KINDS[kind]
    unknown = set(raw) - {"kind", "match", "rate", "times"} - set(defaults)
    if unknown:
        raise ScenarioError(f"{kind} fault: unknown field(s) {sorted(unknown)}; options: {sorted(defaults)}")
    match = raw.get("match") or {}
    if not isinstance(match, Mapping) or set(match) - set(MATCH_FIELDS):
        raise ScenarioError(f"{kind} fault: match may only hold {MATCH_FIELDS}, got {match!r}")
    if not all(isinstance(value, str) for value in match.values()):
        raise ScenarioError(f"{kind} fault: match values must be strings, got {match!r}")
    rate = raw.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ScenarioError(f"{kind} fault: rate must be between 0 and 1, got {rate!r}")
    times = raw.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
        raise ScenarioError(f"{kind} fault: times must be a non-negative integer, got {times!r}")
    options = {name: raw.get(name, default) for name, default in defaults.items()}
    _check_options(kind, options)
    return FaultRule(kind=kind, match=dict(match), rate=float(rate), times=times, options=options)


def _check_options(kind: str, options: Mapping[str, Any]) -> None:
    seconds = options.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ScenarioError(f"{kind} fault: seconds must be a non-negative number, got {seconds!r}")
    if not isinstance(options.get("apply", False), bool):
        raise ScenarioError(f"{kind} fault: apply must be true or false")
    if options.get("mode", "reset") not in DROP_MODES:
        raise ScenarioError(f"{kind} fault: mode must be one of {DROP_MODES}")
    retry_after = options.get("retry_after", 0)
    if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
        raise ScenarioError(f"{kind} fault: retry_after must be a non-negative integer (seconds)")
    code = options.get("code", "x")
    if not isinstance(code, str) or not ERROR_CODE_RE.fullmatch(code):
        raise ScenarioError(f"{kind} fault: code must be an error code in lowercase letters, digits and _")


def parse_rules(raw: Any) -> list[FaultRule]:
    """Validate a list of rules."""
    if not isinstance(raw, list):
        raise ScenarioError(f"faults must be a list of rules, got {raw!r}")
    return [parse_rule(item) for item in raw]


class FaultInjector:
    """Holds the active rules and the seeded dice that decide when they fire."""

    def __init__(self, rules: list[FaultRule] | None = None, seed: int | None = None) -> None:
        self.rules: list[FaultRule] = list(rules or [])
        self._dice = random.Random(seed)

    def replace(self, rules: list[FaultRule], seed: int | None = None) -> None:
        """Swap in new rules (fresh counters); a seed restarts the dice."""
        self.rules = list(rules)
        if seed is not None:
            self._dice = random.Random(seed)

    def pick(self, method: str, path: str, payment_id: str | None) -> FaultRule | None:
        """The rule that fires for this request, if any (counting it as fired)."""
        for rule in self.rules:
            if rule.exhausted() or not rule.matches(method, path, payment_id):
                continue
            if rule.rate < 1 and self._dice.random() >= rule.rate:
                continue
            rule.fired += 1
            return rule
        return None


def fault_answer(rule: FaultRule) -> ApiResponse:
    """What a fault answers with: KOMOJU's JSON error, or an HTML page (not for drop, which has no answer)."""
    if rule.kind in HTML_PAGES:
        status, page = HTML_PAGES[rule.kind]
        return ApiResponse(status, page, media_type="text/html")
    return _fault_error(rule).to_response()


def _fault_error(rule: FaultRule) -> ApiError:
    if rule.kind in ("error_500", "applied_500"):
        return ApiError(500, "internal_server_error", "An internal error occurred. Please retry later.")
    if rule.kind == "error_503":
        return ApiError(503, "service_unavailable", "KOMOJU is under maintenance. Please retry later.")
    if rule.kind == "rate_limit":
        return ApiError(
            429,
            "too_many_requests",
            "Too many requests. Retry after the time given in the Retry-After header.",
            headers={"Retry-After": str(rule.options.get("retry_after", 1))},
        )
    if rule.kind == "conflict":
        return ApiError(409, "conflict", "The request conflicts with another request in progress. Retry later.")
    if rule.kind == "timeout":
        return ApiError(504, "gateway_timeout", "The request was not processed. Please retry.")
    if rule.kind == "forbidden_403":
        return ApiError(403, "forbidden", "The API key doesn't have permission to access the specified resource")
    if rule.kind == "processor_502":
        code = rule.options.get("code", "insufficient_funds")
        return ApiError(502, code, f"The upstream payment processor returned an error: {code}.")
    if rule.kind == "payment_required_402":
        return ApiError(402, "request_failed", "The request failed: the payment processor refused it.")
    raise ValueError(f"{rule.kind} faults have no error answer")
