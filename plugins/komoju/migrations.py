"""Apply the versioned SQL under ``include/sql/migrations`` to the status database, once each."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg2.extensions

from komoju.sql import Migration, migrations, query

# pg_advisory_lock key shared by every runner ("KOMOJU" in ASCII): two upgrades never interleave.
MIGRATION_LOCK_ID = 0x4B4F4D4F4A55


class MigrationError(RuntimeError):
    """The database and the migration files disagree, or a migration failed."""


@dataclass(frozen=True)
class MigrationState:
    """A migration file and when it was applied (``None``: pending)."""

    migration: Migration
    applied_at: dt.datetime | None


def upgrade(conn: psycopg2.extensions.connection) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; return those applied.

    Holds a session advisory lock for the whole run, so concurrent runners wait and then find nothing
    left to do. Refuses to go on if an applied migration's file has changed since.
    """
    applied_now: list[Migration] = []
    with conn.cursor() as cur:
        cur.execute(query("migration_lock"), {"lock_id": MIGRATION_LOCK_ID})
        conn.commit()
        try:
            cur.execute(query("migration_bootstrap"))
            conn.commit()
            for migration in _pending(cur):
                try:
                    cur.execute(migration.text)
                    cur.execute(
                        query("migration_record"),
                        {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
                    )
                    conn.commit()
                except psycopg2.Error as exc:
                    conn.rollback()
                    raise MigrationError(
                        f"Migration {migration.path.name} failed and was rolled back: {str(exc).strip()}. "
                        "Fix the migration or the database, then run `python -m komoju db upgrade` again."
                    ) from exc
                applied_now.append(migration)
        finally:
            conn.rollback()
            cur.execute(query("migration_unlock"), {"lock_id": MIGRATION_LOCK_ID})
            conn.commit()
    return applied_now


def status(conn: psycopg2.extensions.connection) -> list[MigrationState]:
    """Every migration file with the time it was applied, or ``None`` if pending (read-only)."""
    with conn.cursor() as cur:
        cur.execute(query("migration_schema_exists"))
        (present,) = cur.fetchone()
        applied = _applied(cur) if present else {}
    conn.rollback()
    _check_unchanged(applied)
    return [MigrationState(m, applied[m.version][1] if m.version in applied else None) for m in migrations()]


def _pending(cur: psycopg2.extensions.cursor) -> list[Migration]:
    applied = _applied(cur)
    _check_unchanged(applied)
    return [m for m in migrations() if m.version not in applied]


def _applied(cur: psycopg2.extensions.cursor) -> dict[int, tuple[str, dt.datetime]]:
    cur.execute(query("migration_applied"))
    return {version: (checksum, applied_at) for version, _name, checksum, applied_at in cur.fetchall()}


def _check_unchanged(applied: dict[int, tuple[str, dt.datetime]]) -> None:
    files = {m.version: m for m in migrations()}
    for version, (checksum, _applied_at) in sorted(applied.items()):
        migration = files.get(version)
        if migration is None:
            raise MigrationError(
                f"The database has migration {version:04d} applied, but no such file exists in "
                "include/sql/migrations: this code is older than the database. Deploy the newer code."
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"Migration {migration.path.name} was changed after it was applied. Applied migrations are "
                "immutable: restore the file and put the change in a new migration."
            )
