"""Command line for operators without the Airflow UI: ``python -m komoju COMMAND``.

python -m komoju db upgrade [--conn-id komoju_postgres]   apply pending schema migrations
python -m komoju db status  [--conn-id komoju_postgres]   list migrations, applied or pending
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from komoju import db, migrations


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code (0 ok, 1 failed, 2 usage)."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (migrations.MigrationError, ConnectionError, FileNotFoundError, ValueError) as exc:
        print(f"komoju: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m komoju", description="KOMOJU back-office jobs for Airflow.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    db_parser = commands.add_parser("db", help="the komoju schema in the status database")
    db_commands = db_parser.add_subparsers(required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("upgrade", _db_upgrade, "apply pending migrations (idempotent, safe to run concurrently)"),
        ("status", _db_status, "list migrations and whether each is applied"),
    ):
        action = db_commands.add_parser(name, help=help_text)
        action.add_argument(
            "--conn-id",
            default=db.DEFAULT_CONN_ID,
            help="Airflow connection of the status database (default: %(default)s)",
        )
        action.set_defaults(handler=handler)
    return parser


def _db_upgrade(args: argparse.Namespace) -> int:
    conn = db.connect(args.conn_id)
    try:
        applied = migrations.upgrade(conn)
        states = migrations.status(conn)
    finally:
        conn.close()
    for migration in applied:
        print(f"applied {migration.label}")
    latest = max((s.migration.version for s in states if s.applied_at), default=0)
    verb = "upgraded to" if applied else "already at"
    print(f"komoju schema {verb} version {latest:04d}")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    conn = db.connect(args.conn_id)
    try:
        states = migrations.status(conn)
    finally:
        conn.close()
    for state in states:
        when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else "pending"
        print(f"{state.migration.label:<40} {when}")
    pending = sum(1 for s in states if s.applied_at is None)
    print(f"{len(states) - pending} applied, {pending} pending")
    return 0
