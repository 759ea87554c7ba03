"""Text fit for logs, exceptions, database columns and e-mails (no dependencies: used everywhere)."""

from __future__ import annotations

import re

MAX_MESSAGE_LENGTH = 500

# C0/C1 controls, DEL and the bidi overrides that can disguise text in logs and e-mails.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+")
_SECRET_KEY_RE = re.compile(r"\b[sS][kK]_[A-Za-z0-9_]{4,}")
_SPACES_RE = re.compile(r"\s+")


def sanitise(text: str, secrets: tuple[str, ...] = (), *, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """Text fit for logs, exceptions and e-mails: secrets redacted, control characters removed, truncated."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _SECRET_KEY_RE.sub("sk_***", text)
    text = _SPACES_RE.sub(" ", _CONTROL_RE.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text
