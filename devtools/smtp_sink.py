"""A real SMTP server (aiosmtpd) on loopback that keeps every message it receives."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

from devtools.ports import free_port, poll_until


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    path: Path | None  # where it was saved, when the sink writes to a folder


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self._sink._keep(envelope.mail_from, tuple(envelope.rcpt_tos), message, raw)
        return "250 Message accepted for delivery"


class SmtpSink:
    """``with SmtpSink() as sink:`` serves SMTP on ``sink.port``; ``sink.messages`` lists what arrived.

    With ``folder``, each message is also written there as ``NNNN.eml``.
    """

    def __init__(self, *, port: int | None = None, folder: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.folder = folder
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)

    def __enter__(self) -> SmtpSink:
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[ReceivedMail]:
        """The messages, once at least ``count`` have arrived (polls with a deadline)."""
        poll_until(lambda: len(self.messages) >= count, timeout=timeout, what=f"{count} e-mail(s) arriving")
        return self.messages

    def airflow_connection(self, from_email: str = "komoju-airflow@example.com") -> dict:
        """The ``smtp_default`` Airflow connection (JSON form) that sends to this sink in plain SMTP."""
        return {
            "conn_type": "smtp",
            "host": self.host,
            "port": self.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": from_email},
        }

    def _keep(self, mail_from: str, rcpt_tos: tuple[str, ...], message: EmailMessage, raw: bytes) -> None:
        with self._lock:
            path = None
            if self.folder:
                path = self.folder / f"{len(self._messages) + 1:04d}.eml"
                path.write_bytes(raw)  # exactly what arrived: re-serialising could refold headers
            self._messages.append(ReceivedMail(mail_from, rcpt_tos, message, path))


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.smtp_sink --port N --folder DIR``: serve until SIGTERM/SIGINT, saving each message."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m devtools.smtp_sink", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--folder", type=Path, required=True, help="where each message is saved as NNNN.eml")
    args = parser.parse_args(argv)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    with SmtpSink(port=args.port, folder=args.folder):
        print(f"SMTP sink listening on 127.0.0.1:{args.port}, saving to {args.folder}", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
