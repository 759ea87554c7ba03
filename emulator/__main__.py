"""``python -m emulator --port N --scenario FILE [--host 127.0.0.1] [--seed S] [--latency-ms L]``."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import socket
import sys
from collections.abc import Generator
from types import FrameType

import uvicorn

from emulator.app import create_app
from emulator.scenario import read_scenario, with_overrides
from emulator.state import ScenarioError


def is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface (the only place the emulator may listen)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmulatorUvicorn(uvicorn.Server):
    """uvicorn, announcing readiness on stdout and exiting with status 0 on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, announce_host: str) -> None:
        super().__init__(config)
        self.announce_host = announce_host

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start listening, then print the one line that tells a parent process we are ready."""
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            host = f"[{self.announce_host}]" if ":" in self.announce_host else self.announce_host
            print(f"KOMOJU emulator listening on http://{host}:{port}", flush=True)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Like uvicorn's, but without re-raising the signal afterwards (which would end in a non-zero exit)."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C stops waiting for open requests
        self.should_exit = True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description="Local KOMOJU API emulator")
    parser.add_argument("--port", type=int, required=True, help="TCP port (0 picks a free one)")
    parser.add_argument("--scenario", required=True, help="scenario JSON file")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--seed", type=int, help="seed for fault dice, jitter and ids (overrides the scenario)")
    parser.add_argument("--latency-ms", type=float, help="answer latency in ms (overrides the scenario)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM/SIGINT; returns the exit status."""
    args = parse_args(argv)
    if not is_loopback(args.host):
        print(f"refusing to listen on {args.host}: the emulator has unauthenticated control endpoints, "
              "use a loopback address such as 127.0.0.1", file=sys.stderr)  # fmt: skip
        return 2
    try:
        scenario = with_overrides(read_scenario(args.scenario), seed=args.seed, latency_ms=args.latency_ms)
        app = create_app(scenario)
    except ScenarioError as error:
        print(f"bad scenario: {error}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = EmulatorUvicorn(config, args.host)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
