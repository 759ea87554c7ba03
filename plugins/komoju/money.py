"""Currencies and amounts as KOMOJU and the e-mails show them."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

# ISO 4217 minor units of the currencies KOMOJU settles or presents (KOMOJU's currency list).
MINOR_UNITS: dict[str, int] = {
    "JPY": 0,
    "KRW": 0,
    "TWD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "HKD": 2,
    "SGD": 2,
    "NZD": 2,
    "THB": 2,
    "MYR": 2,
    "IDR": 2,
    "PHP": 2,
    "INR": 2,
    "VND": 0,
    "PLN": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "BRL": 2,
    "MXN": 2,
}


def is_known_currency(currency: Any) -> bool:
    """True for an ISO 4217 code this package knows how to show."""
    return isinstance(currency, str) and currency in MINOR_UNITS


def format_amount(amount: Any, currency: str | None) -> str:
    """``1,200 JPY``, ``12.50 USD``; unknown currencies and missing amounts shown as they are."""
    if amount is None:
        return f"— {currency or ''}".strip()
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return f"{amount} {currency or ''}".strip()
    if is_known_currency(currency):
        places = MINOR_UNITS[currency]
        quantum = Decimal(1).scaleb(-places)
        return f"{value.quantize(quantum):,.{places}f} {currency}"
    return f"{value.normalize():f} {currency or ''}".strip()
