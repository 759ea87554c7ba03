"""Changes an operator makes to a site's settings and payment methods: what a request may say, and what it
changed. Pure functions, no I/O: the KOMOJU page and the CLI validate with them, the store applies and records.

A change request names only the fields it changes; every other setting keeps its value. A field the request
does not know, a value of the wrong kind, or a request that names nothing is refused with :class:`InvalidChange`,
which names the field, before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

LANGUAGES = ("ja", "en")  # komoju.site.email_locale
CHANNELS = ("page", "cli")  # where a change came from: the KOMOJU page in Airflow, or `python -m komoju`
MAX_CONTACTS = 50
MAX_NAME_LENGTH = 200

# Audit event names, as they appear in Airflow's audit log and in komoju.setting_change.action.
SITE_UPDATE = "komoju.site.update"
METHOD_TOGGLE = "komoju.payment_method.toggle"
METHOD_MOVE = "komoju.payment_method.move"

_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_TRUE = frozenset({"true", "on", "1", "yes"})
_FALSE = frozenset({"false", "off", "0", "no"})


class InvalidChange(ValueError):
    """A change request that cannot be applied as sent; ``field`` names the culprit (None: the request)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Actor:
    """Who makes a change, and through what (``page`` or ``cli``)."""

    name: str
    channel: str

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"Unknown channel {self.channel!r}: expected one of {', '.join(CHANNELS)}.")
        if not self.name:
            raise ValueError("A change needs the name of who makes it.")


@dataclass(frozen=True)
class FieldChange:
    """One field one change altered: ``subject`` is the payment method (``"konbini JPY"``), None for the site."""

    action: str
    site_id: str
    subject: str | None
    field: str
    old_value: Any
    new_value: Any

    def to_json(self) -> dict[str, Any]:
        """The change as the store records it and the audit log shows it."""
        return {
            "action": self.action,
            "site_id": self.site_id,
            "subject": self.subject,
            "field": self.field,
            "old_value": self.old_value,
            "new_value": self.new_value,
        }


# ---------------------------------------------------------------------------------------------- field values


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidChange(field, f"Field '{field}' must be text, not {type(value).__name__}.")
    return value.strip()


def _name(value: Any) -> str | None:
    text = _text("name", value)
    if len(text) > MAX_NAME_LENGTH or _CONTROL.search(text):
        raise InvalidChange("name", f"Field 'name' must be one line of at most {MAX_NAME_LENGTH} characters.")
    return text or None


def _contacts(value: Any) -> list[str]:
    """Addresses as a list, or as one text of lines or commas (the page's text area)."""
    from email_validator import EmailNotValidError, validate_email  # pydantic's e-mail validator, with Airflow

    if isinstance(value, str):
        candidates = value.replace(",", "\n").splitlines()
    elif isinstance(value, list):
        candidates = [_text("notify_emails", item) for item in value]
    else:
        raise InvalidChange("notify_emails", "Field 'notify_emails' must be a list of e-mail addresses.")
    contacts: list[str] = []
    for candidate in (c.strip() for c in candidates):
        if not candidate:
            continue
        try:
            address = validate_email(candidate, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise InvalidChange("notify_emails", f"'{candidate}' is not an e-mail address: {exc}") from None
        if address not in contacts:
            contacts.append(address)
    if len(contacts) > MAX_CONTACTS:
        raise InvalidChange("notify_emails", f"Field 'notify_emails' holds at most {MAX_CONTACTS} addresses.")
    return contacts


def _language(value: Any) -> str:
    text = _text("email_locale", value)
    if text not in LANGUAGES:
        choices = ", ".join(LANGUAGES)
        raise InvalidChange("email_locale", f"Field 'email_locale' must be one of {choices}, not '{text}'.")
    return text


def _flag(field: str) -> Callable[[Any], bool]:
    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidChange(field, f"Field '{field}' must be true or false, not {value!r}.")

    return parse


def _type_slug(value: Any) -> str:
    text = _text("type_slug", value)
    if not text or len(text) > 100 or _CONTROL.search(text):
        raise InvalidChange("type_slug", "Field 'type_slug' must name a KOMOJU payment type, e.g. konbini.")
    return text


def _currency(value: Any) -> str:
    text = _text("currency", value)
    if not _CURRENCY.match(text):
        raise InvalidChange("currency", f"Field 'currency' must be a 3-letter ISO 4217 code, not '{text}'.")
    return text.upper()


def _position(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidChange("position", f"Field 'position' must be a whole number from 1 (first), not {value!r}.")
    return value


SITE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": _name,
    "notify_emails": _contacts,
    "email_locale": _language,
    "email_enabled": _flag("email_enabled"),
    "active": _flag("active"),
}
TOGGLE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "type_slug": _type_slug,
    "currency": _currency,
    "enabled": _flag("enabled"),
}
MOVE_FIELDS: dict[str, Callable[[Any], Any]] = {"type_slug": _type_slug, "currency": _currency, "position": _position}


def parse(fields: Mapping[str, Any], allowed: Mapping[str, Callable[[Any], Any]], *, partial: bool) -> dict[str, Any]:
    """The request's fields as values to apply.

    ``partial``: the request names any non-empty subset of ``allowed`` (a site update); otherwise every allowed
    field is required (a toggle or a move)."""
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise InvalidChange(
            unknown[0],
            f"Unknown field(s) {', '.join(map(repr, unknown))}: this change takes {', '.join(map(repr, allowed))}.",
        )
    missing = [name for name in allowed if name not in fields]
    if partial and len(missing) == len(allowed):
        raise InvalidChange(None, f"Nothing to change: name at least one of {', '.join(map(repr, allowed))}.")
    if not partial and missing:
        raise InvalidChange(missing[0], f"Missing field(s) {', '.join(map(repr, missing))}: this change needs them.")
    return {name: allowed[name](value) for name, value in fields.items()}


def site_diff(site_id: str, old: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[FieldChange]:
    """The fields of ``wanted`` whose value differs from ``old`` (the site as stored), in SITE_FIELDS order."""
    changes = []
    for field in SITE_FIELDS:
        if field in wanted and _comparable(old[field]) != _comparable(wanted[field]):
            changes.append(
                FieldChange(SITE_UPDATE, site_id, None, field, _comparable(old[field]), _comparable(wanted[field]))
            )
    return changes


def method_subject(type_slug: str, currency: str) -> str:
    """How a change names a payment method: ``"konbini JPY"``."""
    return f"{type_slug} {currency.upper()}"


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value
