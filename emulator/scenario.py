"""Loading and validating scenario documents (the format is described in the package docstring)."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator.faults import FaultInjector, parse_rules
from emulator.state import Clock, EmulatorState, Merchant, ScenarioError

SCENARIO_FIELDS = frozenset({"description", "seed", "settings", "faults", "merchants"})
MERCHANT_FIELDS = frozenset({"id", "keys", "payment_methods", "payments"})
PAYMENT_METHOD_REQUIRED = ("type_slug", "currency", "name_en", "name_ja", "name_ko")

ScenarioSource = Mapping[str, Any] | str | os.PathLike[str]


def read_scenario(source: ScenarioSource) -> dict[str, Any]:
    """A scenario as a fresh dict: a mapping is deep-copied, a path is read as JSON. Validated."""
    if isinstance(source, Mapping):
        scenario = copy.deepcopy(dict(source))
    else:
        try:
            scenario = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ScenarioError(f"cannot read scenario {source}: {error}") from error
    build_state(scenario)  # validation: raises ScenarioError on anything unusable
    return scenario


def with_overrides(
    scenario: Mapping[str, Any], *, seed: int | None = None, latency_ms: float | None = None
) -> dict[str, Any]:
    """A copy of ``scenario`` with the command line's seed and latency applied (they survive a reset)."""
    result = copy.deepcopy(dict(scenario))
    if seed is not None:
        result["seed"] = seed
    if latency_ms is not None:
        result["settings"] = {**result.get("settings", {}), "latency_ms": latency_ms}
    return result


def _merchant(raw: Any) -> tuple[Merchant, list[Any]]:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"a merchant must be a JSON object, got {raw!r}")
    unknown = set(raw) - MERCHANT_FIELDS
    if unknown:
        raise ScenarioError(f"merchant: unknown field(s) {sorted(unknown)}; allowed: {sorted(MERCHANT_FIELDS)}")
    merchant_id = raw.get("id")
    if not isinstance(merchant_id, str) or not merchant_id:
        raise ScenarioError(f"a merchant needs a non-empty string id, got {merchant_id!r}")
    keys = _keys(merchant_id, raw.get("keys"))
    methods = _payment_methods(merchant_id, raw.get("payment_methods", []))
    payments = raw.get("payments", [])
    if not isinstance(payments, list):
        raise ScenarioError(f"merchant {merchant_id}: payments must be a list")
    return Merchant(id=merchant_id, keys=keys, payment_methods=methods), payments


def _keys(merchant_id: str, raw: Any) -> dict[str, bool]:
    """``"sk_..."`` or ``{"key": "sk_...", "forbidden": true}`` -> {key: forbidden}."""
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"merchant {merchant_id}: keys must be a non-empty list")
    keys: dict[str, bool] = {}
    for item in raw:
        entry = {"key": item} if isinstance(item, str) else item
        if not isinstance(entry, Mapping) or set(entry) - {"key", "forbidden"}:
            raise ScenarioError(f"merchant {merchant_id}: a key is a string or {{key, forbidden}}")
        key, forbidden = entry.get("key"), entry.get("forbidden", False)
        if not isinstance(key, str) or not key or not isinstance(forbidden, bool) or key in keys:
            raise ScenarioError(f"merchant {merchant_id}: keys must be unique non-empty strings")
        keys[key] = forbidden
    return keys


def _payment_methods(merchant_id: str, raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise ScenarioError(f"merchant {merchant_id}: payment_methods must be a list")
    seen: set[tuple[str, str]] = set()
    for method in raw:
        if not isinstance(method, Mapping):
            raise ScenarioError(f"merchant {merchant_id}: a payment method must be a JSON object")
        missing = [name for name in PAYMENT_METHOD_REQUIRED if not isinstance(method.get(name), str)]
        if missing:
            raise ScenarioError(f"merchant {merchant_id}: payment method {method!r} lacks {missing}")
        if not re.fullmatch(r"[A-Z]{3}", method["currency"]):
            raise ScenarioError(f"merchant {merchant_id}: currency {method['currency']!r} is not ISO 4217")
        identity = (method["type_slug"], method["currency"])
        if identity in seen:
            raise ScenarioError(f"merchant {merchant_id}: payment method {identity} listed twice")
        seen.add(identity)
    return copy.deepcopy(raw)


def build_state(scenario: Mapping[str, Any], clock: Clock | None = None) -> tuple[EmulatorState, FaultInjector]:
    """Build a fresh model and fault injector from a scenario."""
    if not isinstance(scenario, Mapping):
        raise ScenarioError("a scenario must be a JSON object")
    unknown = set(scenario) - SCENARIO_FIELDS
    if unknown:
        raise ScenarioError(f"scenario: unknown field(s) {sorted(unknown)}; allowed: {sorted(SCENARIO_FIELDS)}")
    seed = scenario.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ScenarioError(f"seed must be an integer, got {seed!r}")
    state = EmulatorState(clock=clock, seed=seed)
    settings = scenario.get("settings", {})
    if not isinstance(settings, Mapping):
        raise ScenarioError("settings must be a JSON object")
    state.settings.update(settings)
    merchants = scenario.get("merchants")
    if not isinstance(merchants, list) or not merchants:
        raise ScenarioError("a scenario needs a non-empty merchants list")
    for raw in merchants:
        merchant, payments = _merchant(raw)
        state.add_merchant(merchant)
        state.add_payments(merchant.id, payments)
    return state, FaultInjector(parse_rules(scenario.get("faults", [])), seed)
