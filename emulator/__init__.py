"""A local emulator of the KOMOJU REST API, for tests, demos and benchmarks.

It reproduces what the project's ``KOMOJU_API.md`` (shared folder) lists: HTTP Basic auth with the secret key
as username, ``GET /api/v1/payment_methods``, ``GET /api/v1/payments[/{id}]``, ``POST /api/v1/payments/{id}/cancel`` and
``/refund``, KOMOJU's error body, and the ``X-KOMOJU-IDEMPOTENCY`` rules (replay, 409 while in flight, 422 for
a different request, keys honoured 24 h on the emulator's clock). On top of that it can add latency and inject
faults, switch between the readings of KOMOJU's documentation that no source settles (see "Settings"), and it
keeps a ledger of every request, every accepted cancel/refund and every later completion.

Run it with ``python -m emulator --port 8765 --scenario emulator/scenarios/basic.json``, or from tests with
:class:`emulator.testing.EmulatorServer`.

Scenario format (JSON; unknown fields are errors)::

    {
      "description": "free text",                       # optional
      "seed": 42,                                       # optional: fault dice, jitter and generated ids
      "settings": {...},                                # optional, any of the settings below
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
             "external_order_num": "...", "metadata": {...}, "created_at": "2025-01-01T00:00:00Z",
             "description": null, "locale": "en"}
          ]
        }
      ]
    }

Payment defaults: a generated id, status ``captured``, amount 1000 JPY, no tax or fee, ``credit_card``,
created now; ``captured_at`` = ``created_at`` for captured/refunded payments; a ``refunded`` payment (or a
captured one with ``amount_refunded``) gets one matching refund entry. ``currency`` and the payment type must be
among KOMOJU's (its SDK's Currency enum and payment_details types); ``payment_details`` gets the fields KOMOJU's
response model requires for the type (credit_card: brand, last_four_digits, month, year, email; konbini: store,
email; others: email), the scenario's own fields winning. Payments answer every field KOMOJU's Payment model
requires (``customer``, ``payment_deadline``, ``customer_family_name``, ``customer_given_name``, ``mcc`` null,
``statement_descriptor`` {}, ``session`` an id derived from the payment's); ``tests/emulator/schemas`` holds the
models as JSON Schemas.

Settings (scenario ``"settings"`` or ``PUT /_emulator/settings``, partial; the defaults are KOMOJU's usual
answers)::

    latency_ms 0, jitter_ms 0          answer latency_ms + uniform(0, jitter_ms) after arrival
    not_cancellable_status 422         HTTP status of not_cancellable (unconfirmed in KOMOJU)
    not_refundable_status 422          HTTP status of not_refundable (unconfirmed in KOMOJU)
    success_status 200 | 202           202: a cancel/refund is accepted, not done: the answer is the payment
                                       unchanged (a refund's entry already in refunds, amount_refunded not grown)
    refund_completion "immediate" | "deferred"
                                       deferred: a refund answers 200 with the payment still captured, its
                                       entry in refunds, amount_refunded not grown
    cash_refunds "not_refundable" | "redirect_url"
                                       refund of a cash payment (konbini, bank_transfer, pay_easy): 422
                                       not_refundable, or 200 with the payment still captured and the refund
                                       entry's redirect_url ({base}/customer/refunds/{refund_id}, an HTML page)
    complete_after_gets 1              an accepted operation completes at its payment's Nth GET /payments/{id}
                                       after acceptance (0: never by GETs); applied before that GET's answer
    complete_after_seconds null        ... or N seconds later on the emulator's clock (null: never by time),
                                       whichever comes first
    replay_errors false | "operation_errors" | true
                                       which error answers to a keyed POST are stored under the key and replayed
                                       until it expires: false none (the key is released, a resend executes for
                                       real); "operation_errors" the cancel/refund's own 4xx (the emulator's
                                       behaviour before this setting existed); true those and the answers of the
                                       not-applied faults error_500, error_503, html_502, timeout,
                                       forbidden_403, html_403, processor_502, payment_required_402. Never
                                       stored: 409 (in flight, conflict) and 429. applied_500 always stores
                                       the real answer.
    idempotency_ttl_seconds 86400      how long a key is honoured ("up to 24 h"), read at every lookup

A completion makes a cancel ``cancelled``; a refund grows ``amount_refunded`` and makes the payment ``refunded``
once nothing is left. A refund accepted while another is pending is accepted again (what is left to refund
ignores pending refunds), so a client that refunds twice shows two effects and ``amount_refunded`` beyond the
total.

Fault kinds (``emulator.faults``): ``error_500``, ``error_503``, ``html_502``, ``rate_limit`` (``retry_after``),
``conflict`` (nothing applied, nothing stored under the idempotency key), ``timeout`` (``seconds``, ``apply``),
``drop`` (``apply``, ``mode`` ``reset``/``truncate``), ``applied_500`` (applied and stored, the wire says 500),
``forbidden_403`` (403 ``forbidden``, "The API key doesn't have permission to access the specified resource"),
``html_403`` (an HTML 403 page from a firewall), ``processor_502`` (502 whose code is the option ``code``,
default ``insufficient_funds``), ``payment_required_402`` (402 ``request_failed``); the last four apply nothing.
Faults only hit requests that were routed and authenticated. An unknown route is a 404 before any
authentication; a malformed JSON body or idempotency key is a 400 before any fault or idempotency lookup.
Idempotency fingerprints are method + path + the body's canonical JSON (key order ignored; an empty body and
``{}`` differ).

Ledger (``GET /_emulator/ledger``), entries with ``seq`` and ``time``, by ``type``:
``request`` (merchant_id, method, path, payment_id, idempotency_key, status (null: nothing reached the wire),
fault, replayed); ``effect``, one per cancel/refund KOMOJU accepted, at acceptance (merchant_id, payment_id,
action ``cancel``/``refund``, from_status, to_status, amount, idempotency_key, refund_id, ``pending``: true when
accepted but not done, to_status then equals from_status); ``completion``, one per pending effect done later
(merchant_id, payment_id, action, from_status, to_status, amount, idempotency_key, refund_id, effect_seq: the
effect's seq, trigger ``get``/``clock``/``control``). Effects are thus the money/state moves KOMOJU accepted,
completions never count as effects.

Control endpoints (no auth; the server only listens on loopback): ``GET /_emulator/health``,
``GET /_emulator/ledger?since=SEQ``, ``GET /_emulator/in_flight``, ``GET /_emulator/payments/{id}`` (plus
``merchant_id`` and ``pending_operations``; not an API GET), ``POST /_emulator/payments/{id}/complete``
(completes its pending operations now: ``{"completed": [completion entries], "payment": {...}}``),
``POST /_emulator/payments`` ``{"merchant_id", "payments": [...]}``, ``GET|PUT /_emulator/faults``
``{"rules": [...], "seed": S}``, ``GET|PUT /_emulator/settings``, ``POST /_emulator/clock``
``{"advance_seconds": N}`` (completes what falls due), ``POST /_emulator/reset``. ``GET /customer/refunds/{id}``
is the page a cash refund's ``redirect_url`` names.
"""
