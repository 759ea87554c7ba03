"""What the emulator's HTTP test modules share: the basic scenario's keys and payments, URLs, KOMOJU's error check.

(Importable as ``emulator_kit``: pytest puts each test file's folder on the path. Fixtures stay in the test
modules, not in a conftest: a second conftest module would replace ``sys.modules["conftest"]``.)
"""

from __future__ import annotations

from typing import Any

import requests

from emulator.testing import EmulatorServer

JP_KEY = "sk_test_shopjp_main"
JP_FORBIDDEN_KEY = "sk_test_shopjp_noaccess"
GLOBAL_KEY = "sk_test_global_main"
PENDING = "jppending0000000000000001"  # total 1100 JPY
AUTHORIZED = "jpauthorized0000000000001"  # total 2750 JPY
CAPTURED = "jpcaptured000000000000001"  # total 5500 JPY
KONBINI = "jpkonbini0000000000000001"  # captured, total 3490 JPY
PARTIAL = "jppartial0000000000000001"  # total 11000 JPY, 3000 already refunded
CANCELLED = "jpcancelled00000000000001"
GLOBAL_CAPTURED = "glcaptured000000000000001"
TIMEOUT = 5


def cancel_url(emu: EmulatorServer, payment_id: str) -> str:
    """``POST`` here cancels."""
    return f"{emu.api_url}/payments/{payment_id}/cancel"


def refund_url(emu: EmulatorServer, payment_id: str) -> str:
    """``POST`` here refunds."""
    return f"{emu.api_url}/payments/{payment_id}/refund"


def payment_url(emu: EmulatorServer, payment_id: str) -> str:
    """``GET`` here shows the payment."""
    return f"{emu.api_url}/payments/{payment_id}"


def keyed(key: str) -> dict[str, str]:
    """The idempotency header."""
    return {"X-KOMOJU-IDEMPOTENCY": key}


def assert_error(response: requests.Response, status: int, code: str, param: str | None = None) -> None:
    """The answer is KOMOJU's error body, exactly."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    message = body["error"]["message"]
    assert body == {"error": {"code": code, "message": message, "param": param, "details": {}}}
    assert isinstance(message, str)
    assert message


def assert_html(response: requests.Response, status: int) -> None:
    """The answer is an HTML page, not JSON."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


def last_request(emu: EmulatorServer) -> dict[str, Any]:
    """The ledger's latest request entry."""
    return emu.requests_log()[-1]
