"""A local emulator of the KOMOJU REST API, for tests, demos and benchmarks.

It reproduces what the project's ``KOMOJU_API.md`` (shared folder) lists: HTTP Basic auth with the secret key
as username, ``GET /api/v1/payment_methods``, ``GET /api/v1/payments[/{id}]``, ``POST /api/v1/payments/{id}/cancel`` and
``/refund``, KOMOJU's error body, and the ``X-KOMOJU-IDEMPOTENCY`` rules (replay, 409 while in flight, 422 for
a different request, keys honoured 24 h on the emulator's clock). On top of that it can add latency and inject
faults, and it keeps a ledger of every request and every state change.

Run it with ``python -m emulator --port 8765 --scenario emulator/scenarios/basic.json``, or from tests with
:class:`emulator.testing.EmulatorServer`.

Scenario format (JSON; unknown fields are errors)::

    {
      "description": "free text",                       # optional
      "seed": 42,                                       # optional: fault dice, jitter and generated ids
      "settings": {                                     # optional, all fields optional
        "latency_ms": 0, "jitter_ms": 0,                # answer latency_ms + uniform(0, jitter_ms) after arrival
        "not_cancellable_status": 422,                  # HTTP status of not_cancellable (unconfirmed in KOMOJU)
        "not_refundable_status": 422                    # HTTP status of not_refundable (unconfirmed in KOMOJU)
      },
      "faults": [ {"kind": "error_500", "match": {"method": "POST", "path_contains": "/refund",
                   "payment_id": "..."}, "rate": 0.5, "times": 3} ],       # see emulator.faults
      "merchants": [
        {
          "id": "shop-jp",
          "keys": ["sk_test_a", {"key": "sk_test_ro", "forbidden": true}],   # forbidden key -> 403
          "payment_methods": [                          # returned verbatim by GET /payment_methods
            {"type_slug": "credit_card", "currency": "JPY", "name_en": "Credit Card", "name_ja": "...",
             "name_ko": "...", "subtypes": ["visa"], "secure_token_supported": true, "payment_method_fee": 0}
          ],
          "payments": [                                 # every field optional
            {"id": "<25 lowercase alphanumerics>", "status": "captured", "amount": 1000, "tax": 0,
             "payment_method_fee": 0, "currency": "JPY", "payment_type": "credit_card",
             "payment_details": {...}, "captured_at": "...", "amount_refunded": 0,
             "external_order_num": "...", "metadata": {...}, "created_at": "2025-01-01T00:00:00Z"}
          ]
        }
      ]
    }

Payment defaults: a generated id, status ``captured``, amount 1000 JPY, no tax or fee, ``credit_card``,
created now; ``captured_at`` = ``created_at`` for captured/refunded payments; a ``refunded`` payment (or a
captured one with ``amount_refunded``) gets one matching refund entry.

Fault kinds: ``error_500``, ``error_503``, ``html_502``, ``rate_limit`` (``retry_after``), ``conflict``
(nothing applied, nothing stored under the idempotency key), ``timeout`` (``seconds``, ``apply``), ``drop``
(``apply``, ``mode`` ``reset``/``truncate``), ``applied_500`` (applied and stored, the wire says 500).
Faults only hit requests that were routed and authenticated. An unknown route is a 404 before any
authentication; a malformed JSON body or idempotency key is a 400 before any fault or idempotency lookup.
Idempotency fingerprints are method + path + the body's canonical JSON (key order ignored; an empty body and
``{}`` differ).

Control endpoints (no auth; the server only listens on loopback): ``GET /_emulator/health``,
``GET /_emulator/ledger?since=SEQ``, ``GET /_emulator/in_flight``, ``GET /_emulator/payments/{id}``,
``POST /_emulator/payments`` ``{"merchant_id", "payments": [...]}``, ``GET|PUT /_emulator/faults``
``{"rules": [...], "seed": S}``, ``GET|PUT /_emulator/settings``, ``POST /_emulator/clock``
``{"advance_seconds": N}``, ``POST /_emulator/reset``.
"""
