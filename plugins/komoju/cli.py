"""Command line for operators without the Airflow UI: ``python -m komoju COMMAND``.

    python -m komoju db upgrade                                   apply pending schema migrations
    python -m komoju db status                                    list migrations, applied or pending
    python -m komoju db clean [--older-than DAYS] [--yes]         bookkeeping of finished orders older than DAYS
                                                                  (90): what would go (dry run), or delete it
    python -m komoju payment-methods list    --site S [--json]     the site's methods, in display order
    python -m komoju payment-methods enable  --site S TYPE CUR     switch a method on
    python -m komoju payment-methods disable --site S TYPE CUR     switch a method off
    python -m komoju payment-methods move    --site S TYPE CUR N   put a method at position N (1 = first)
    python -m komoju sites changes           --site S              who changed the site's settings, and what
    python -m komoju orders status           --site S [--job J]    counts per status, recent final failures

Changes are recorded with the operating-system user in komoju.setting_change and in Airflow's audit log.

Every command takes ``--conn-id`` (default ``komoju_postgres``), the Airflow connection of the status database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from komoju import access, audit, db, migrations, retention, store
from komoju.money import format_amount


class CommandError(Exception):
    """A command that cannot do what was asked; the message says why and what to do."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code (0 ok, 1 failed, 2 usage)."""
    # Like the `airflow` CLI, this runs beside Airflow with its metadata database at hand: outside a task, Airflow
    # looks connections up there only in a server process context (else just in env vars and secrets backends).
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CommandError, migrations.MigrationError, ConnectionError, FileNotFoundError, ValueError) as exc:
        print(f"komoju: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m komoju", description="KOMOJU back-office jobs for Airflow.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def action(group: Any, name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> Any:
        sub = group.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--conn-id",
            default=db.DEFAULT_CONN_ID,
            help="Airflow connection of the status database (default: %(default)s)",
        )
        sub.set_defaults(handler=handler)
        return sub

    db_commands = commands.add_parser("db", help="the komoju schema").add_subparsers(required=True, metavar="ACTION")
    action(db_commands, "upgrade", _db_upgrade, "apply pending migrations (idempotent, safe to run concurrently)")
    action(db_commands, "status", _db_status, "list migrations and whether each is applied")
    clean = action(
        db_commands,
        "clean",
        _db_clean,
        "remove the bookkeeping (attempts, sent e-mails with their final failures and customer links) of finished "
        "orders older than DAYS; a dry run unless --yes. Never removes an open or Pending attempt, anything of an "
        "order a job would still work on, or a final failure not yet e-mailed; keeps komoju.setting_change.",
    )
    clean.add_argument(
        "--older-than",
        type=int,
        default=retention.DEFAULT_OLDER_THAN_DAYS,
        metavar="DAYS",
        help="age in days of what may go (default: %(default)s; at least 2)",
    )
    clean.add_argument("--yes", action="store_true", help="delete (without it: only print what would go)")
    clean.add_argument(
        "--batch-size",
        type=int,
        default=retention.DEFAULT_BATCH_SIZE,
        help="rows looked at per transaction (default: %(default)s)",
    )

    methods = commands.add_parser("payment-methods", help="a site's payment methods").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = action(methods, "list", _methods_list, "list the site's payment methods in display order")
    listing.add_argument("--site", required=True, help="site id")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for name, handler, help_text in (
        ("enable", _methods_enable, "switch a payment method on (the merchant's toggle)"),
        ("disable", _methods_disable, "switch a payment method off (kept off by every sync)"),
    ):
        toggle = action(methods, name, handler, help_text)
        toggle.add_argument("--site", required=True, help="site id")
        toggle.add_argument("type_slug", help="KOMOJU type slug, e.g. konbini")
        toggle.add_argument("currency", help="ISO 4217 code, e.g. JPY")
    move = action(methods, "move", _methods_move, "put a payment method at a position (1 = first)")
    move.add_argument("--site", required=True, help="site id")
    move.add_argument("type_slug")
    move.add_argument("currency")
    move.add_argument("position", type=int)

    sites = commands.add_parser("sites", help="a site's settings").add_subparsers(required=True, metavar="ACTION")
    changes = action(sites, "changes", _sites_changes, "recent changes of the site's settings and payment methods")
    changes.add_argument("--site", required=True, help="site id")
    changes.add_argument("--limit", type=int, default=20, help="changes to list (default: %(default)s)")

    orders = commands.add_parser("orders", help="a site's orders").add_subparsers(required=True, metavar="ACTION")
    status = action(orders, "status", _orders_status, "counts per cancel/refund status, and recent final failures")
    status.add_argument("--site", required=True, help="site id")
    status.add_argument("--job", choices=("cancel", "refund"), help="only this job's failures")
    status.add_argument("--limit", type=int, default=50, help="final failures to list (default: %(default)s)")
    return parser


def _with_db(args: argparse.Namespace, work: Callable[[Any], int]) -> int:
    conn = db.connect(args.conn_id)
    try:
        return work(conn)
    finally:
        conn.close()


def _known_site(conn: Any, site_id: str) -> store.Site:
    found = store.sites(conn, [site_id])
    if not found:
        raise CommandError(f"There is no site '{site_id}' in komoju.site. Check the id (python -m komoju ... --site).")
    return found[0]


# --------------------------------------------------------------------------------------------------------- db


def _db_upgrade(args: argparse.Namespace) -> int:
    def work(conn: Any) -> int:
        applied = migrations.upgrade(conn)
        states = migrations.status(conn)
        for migration in applied:
            print(f"applied {migration.label}")
        latest = max((s.migration.version for s in states if s.applied_at), default=0)
        print(f"komoju schema {'upgraded to' if applied else 'already at'} version {latest:04d}")
        return 0

    return _with_db(args, work)


def _db_status(args: argparse.Namespace) -> int:
    def work(conn: Any) -> int:
        states = migrations.status(conn)
        for state in states:
            when = state.applied_at.isoformat(timespec="seconds") if state.applied_at else "pending"
            print(f"{state.migration.label:<40} {when}")
        pending = sum(1 for s in states if s.applied_at is None)
        print(f"{len(states) - pending} applied, {pending} pending")
        return 0

    return _with_db(args, work)


def _db_clean(args: argparse.Namespace) -> int:
    def work(conn: Any) -> int:
        def progress(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        report = retention.clean(
            conn, older_than_days=args.older_than, delete=args.yes, batch_size=args.batch_size, progress=progress
        )
        print("\n".join(report.lines()))
        return 0

    return _with_db(args, work)


# ---------------------------------------------------------------------------------------------- payment methods


def _methods_list(args: argparse.Namespace) -> int:
    def work(conn: Any) -> int:
        site = _known_site(conn, args.site)
        methods = store.payment_methods(conn, site.site_id)
        if args.json:
            print(json.dumps([m.__dict__ for m in methods], ensure_ascii=False, indent=2))
            return 0
        if not methods:
            print(f"Site {site.site_id} has no payment methods yet: run the komoju_update_payment_methods DAG.")
            return 0
        print(f"{'#':>3}  {'type_slug':<22} {'cur':<4} {'enabled':<8} {'available':<10} name_en / name_ja")
        for m in methods:
            print(
                f"{m.position:>3}  {m.type_slug:<22} {m.currency:<4} {'on' if m.enabled else 'off':<8} "
                f"{'yes' if m.available else 'no':<10} {m.name_en or ''} / {m.name_ja or ''}"
            )
        return 0

    return _with_db(args, work)


def _toggle(args: argparse.Namespace, enabled: bool) -> int:
    def work(conn: Any) -> int:
        site = _known_site(conn, args.site)
        actor = audit.cli_actor()
        _apply(
            conn,
            lambda: store.set_payment_method_enabled(conn, site.site_id, args.type_slug, args.currency, enabled, actor),
            actor,
            site.site_id,
            args,
        )
        print(f"{args.type_slug} {args.currency.upper()} is now {'on' if enabled else 'off'} for site {site.site_id}")
        return 0

    return _with_db(args, work)


def _methods_enable(args: argparse.Namespace) -> int:
    return _toggle(args, True)


def _methods_disable(args: argparse.Namespace) -> int:
    return _toggle(args, False)


def _methods_move(args: argparse.Namespace) -> int:
    def work(conn: Any) -> int:
        site = _known_site(conn, args.site)
        actor = audit.cli_actor()
        _apply(
            conn,
            lambda: store.move_payment_method(conn, site.site_id, args.type_slug, args.currency, args.position, actor),
            actor,
            site.site_id,
            args,
        )
        order = ", ".join(f"{m.type_slug} {m.currency}" for m in store.payment_methods(conn, site.site_id))
        print(f"Site {site.site_id}: {order}")
        return 0

    return _with_db(args, work)


def _apply(conn: Any, change: Callable[[], list], actor: Any, site_id: str, args: argparse.Namespace) -> None:
    """Make a payment-method change, recorded with the OS user in komoju.setting_change and Airflow's audit log."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        audit.apply(conn, change, actor, dag_id=access.PAYMENT_METHODS_DAG)
    except store.NotFound:
        raise CommandError(_no_method(site_id, args)) from None
    except SQLAlchemyError as exc:
        raise CommandError(
            f"Could not record the change in Airflow's audit log ({type(exc).__name__}: {str(exc).splitlines()[0]}), "
            "so nothing was changed. Run this command where Airflow's metadata database is reachable (the "
            "environment and airflow.cfg of your Airflow installation)."
        ) from None


def _no_method(site_id: str, args: argparse.Namespace) -> str:
    return (
        f"Site {site_id} has no payment method {args.type_slug} {args.currency.upper()}. "
        f"List them with: python -m komoju payment-methods list --site {site_id}"
    )


# -------------------------------------------------------------------------------------------------------- sites


def _sites_changes(args: argparse.Namespace) -> int:
    def work(conn: Any) -> int:
        site = _known_site(conn, args.site)
        changes = store.setting_changes(conn, site.site_id, args.limit)
        if not changes:
            print(f"No change of site {site.site_id} is recorded.")
        for c in changes:
            what = f"{c.subject}: {c.field}" if c.subject else c.field
            print(
                f"{c.changed_at:%Y-%m-%d %H:%M:%S %Z}  {c.changed_by} ({c.channel})  {what}: "
                f"{json.dumps(c.old_value, ensure_ascii=False)} -> {json.dumps(c.new_value, ensure_ascii=False)}"
            )
        return 0

    return _with_db(args, work)


# ------------------------------------------------------------------------------------------------------- orders


def _orders_status(args: argparse.Namespace) -> int:
    def work(conn: Any) -> int:
        site = _known_site(conn, args.site)
        counts = store.order_status_counts(conn, [site.site_id])[site.site_id]
        for job in ("cancel", "refund"):
            if args.job and job != args.job:
                continue
            parts = [f"{status or 'to do'}: {count}" for status, count in counts[job].items()]
            print(f"{job:<7} {', '.join(parts) if parts else 'no orders'}")
        failures = store.final_failures(conn, site.site_id, args.job, args.limit)
        print(f"\nfinal failures (newest first, at most {args.limit}): {len(failures)}")
        for f in failures:
            emailed = f"e-mailed {f.emailed_at:%Y-%m-%d %H:%M}" if f.emailed_at else "not e-mailed yet"
            print(
                f"  {f.job:<6} {f.order_no:<20} {f.status:<8} {format_amount(f.amount, f.currency):>14}  "
                f"{emailed:<26} {f.reason}"
            )
        return 0

    return _with_db(args, work)
