"""Run the emulator from tests: ``with EmulatorServer(scenario) as komoju: ... komoju.base_url ...``."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import requests
import uvicorn

from devtools import PROJECT_ROOT
from devtools.ports import poll_until
from emulator.app import create_app
from emulator.scenario import ScenarioSource, read_scenario

T = TypeVar("T")
_ANNOUNCEMENT = re.compile(r"KOMOJU emulator listening on http://\S+:(\d+)")
BASIC_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "basic.json"


class EmulatorServer:
    """The emulator on a free loopback port, in a daemon thread (default) or a ``python -m emulator`` process.

    ``base_url`` is ``http://127.0.0.1:PORT`` (the API lives under ``/api/v1``); the helpers drive the
    ``/_emulator`` control endpoints.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        scenario: ScenarioSource,
        *,
        mode: str = "thread",
        port: int | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if mode not in ("thread", "subprocess"):
            raise ValueError(f"mode must be 'thread' or 'subprocess', got {mode!r}")
        self.scenario = read_scenario(scenario)  # a bad scenario fails here, in the caller
        self.mode = mode
        self.port = port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.session = requests.Session()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log: IO[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, without ``/api/v1``."""
        if self.port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``base_url + "/api/v1"``."""
        return f"{self.base_url}/api/v1"

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until ``/_emulator/health`` answers."""
        try:
            if self.mode == "thread":
                self._start_thread()
            else:
                self._start_process()
            if self.port is None:  # the process picked a free port itself and printed it
                self.port = poll_until(self._announced_port, timeout=self.startup_timeout, what="emulator port")
            poll_until(self._healthy, timeout=self.startup_timeout, interval=0.02, what="emulator health")
        except BaseException:
            self.stop()
            raise

    def _start_thread(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port or 0))  # bound here: no race for the port
        self.port = int(listener.getsockname()[1])
        config = uvicorn.Config(
            create_app(self.scenario),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name=f"komoju-emulator-{self.port}", daemon=True
        )
        self._thread.start()

    def _start_process(self) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="komoju-emulator-")
        scenario_file = Path(self._workdir.name) / "scenario.json"
        scenario_file.write_text(json.dumps(self.scenario), encoding="utf-8")
        self._log = open(Path(self._workdir.name) / "emulator.log", "wb")  # noqa: SIM115 (closed in stop)
        python_path = [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--host", self.host, "--port", str(self.port or 0),
             "--scenario", str(scenario_file)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_ROOT,
        )  # fmt: skip

    def _check_alive(self) -> None:
        if self._thread is not None and not self._thread.is_alive():
            raise RuntimeError("the emulator thread stopped during startup")
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"the emulator exited with status {self._process.returncode}: {self.output()}")

    def _announced_port(self) -> int | None:
        self._check_alive()
        found = _ANNOUNCEMENT.search(self.output())
        return int(found.group(1)) if found else None

    def _healthy(self) -> bool:
        self._check_alive()
        try:
            return self.session.get(f"{self.base_url}/_emulator/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def output(self) -> str:
        """What a subprocess emulator printed so far (empty in thread mode)."""
        if self._workdir is None:
            return ""
        log = Path(self._workdir.name) / "emulator.log"
        return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(self.stop_timeout)
            self._server, self._thread = None, None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(self.stop_timeout)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        self.session.close()

    # -- control helpers ---------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.session.request(
            method, f"{self.base_url}/_emulator/{path}", json=body, params=params or None, timeout=10
        )
        if response.status_code >= 400:
            raise RuntimeError(f"emulator {method} {path} failed: {response.status_code} {response.text}")
        return response.json()

    def health(self) -> dict[str, Any]:
        """``/_emulator/health``."""
        return self._control("GET", "health")

    def ledger(self, since: int = 0) -> list[dict[str, Any]]:
        """Ledger entries (requests and effects) after ``since``."""
        return self._control("GET", "ledger", since=since)["entries"]

    def requests_log(self, since: int = 0) -> list[dict[str, Any]]:
        """Only the request entries of the ledger."""
        return [entry for entry in self.ledger(since) if entry["type"] == "request"]

    def _entries(self, entry_type: str, payment_id: str | None) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.ledger()
            if entry["type"] == entry_type and (payment_id is None or entry["payment_id"] == payment_id)
        ]

    def effects(self, payment_id: str | None = None) -> list[dict[str, Any]]:
        """The cancels/refunds KOMOJU accepted (``pending`` true when not done yet), optionally for one payment."""
        return self._entries("effect", payment_id)

    def completions(self, payment_id: str | None = None) -> list[dict[str, Any]]:
        """The pending cancels/refunds done later (``trigger``: get, clock or control), optionally for one payment."""
        return self._entries("completion", payment_id)

    def post_counts(self) -> dict[str, int]:
        """How many POSTs (cancel/refund, replays and faulted ones included) each payment id received."""
        counts: dict[str, int] = {}
        for entry in self.requests_log():
            if entry["method"] == "POST" and entry["payment_id"] is not None:
                counts[entry["payment_id"]] = counts.get(entry["payment_id"], 0) + 1
        return counts

    def complete(self, payment_id: str) -> list[dict[str, Any]]:
        """Do a payment's pending cancels/refunds now; returns the completion entries (empty if none pended)."""
        return self._control("POST", f"payments/{payment_id}/complete")["completed"]

    def in_flight(self) -> list[dict[str, str]]:
        """Idempotency keys whose first request is still being processed."""
        return self._control("GET", "in_flight")["in_flight"]

    def payment(self, payment_id: str) -> dict[str, Any]:
        """Any merchant's payment, with ``merchant_id`` and ``pending_operations`` added (not an API GET: it
        counts for no ``complete_after_gets``)."""
        return self._control("GET", f"payments/{payment_id}")

    def add_payments(self, merchant_id: str, payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create payments for a merchant; returns them as KOMOJU would show them."""
        return self._control("POST", "payments", {"merchant_id": merchant_id, "payments": payments})["payments"]

    def set_faults(self, rules: list[dict[str, Any]], seed: int | None = None) -> list[dict[str, Any]]:
        """Replace the fault rules (and restart the dice when ``seed`` is given)."""
        body: dict[str, Any] = {"rules": rules}
        if seed is not None:
            body["seed"] = seed
        return self._control("PUT", "faults", body)["rules"]

    def set_settings(self, **settings: Any) -> dict[str, Any]:
        """Change settings, e.g. ``set_settings(success_status=202, replay_errors=True)``; returns them all."""
        return self._control("PUT", "settings", settings)

    def advance_clock(self, seconds: float) -> str:
        """Move the emulator's clock forward; returns the new time."""
        return self._control("POST", "clock", {"advance_seconds": seconds})["time"]

    def reset(self) -> None:
        """Back to the scenario as loaded."""
        self._control("POST", "reset")
