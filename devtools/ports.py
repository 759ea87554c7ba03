"""Loopback ports, and waiting for something to happen (polling with a deadline, never a bare sleep)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll_until(
    probe: Callable[[], T | None], *, timeout: float = 5.0, what: str = "condition", interval: float = 0.01
) -> T:
    """Call ``probe`` until it returns something truthy and return that; ``TimeoutError`` after ``timeout`` s.

    An ``OSError`` from the probe (a server still starting) counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s")
        time.sleep(interval)
