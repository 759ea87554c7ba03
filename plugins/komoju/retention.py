"""Bookkeeping retention: ``python -m komoju db clean`` and the ``komoju_db_clean`` DAG.

Removes, in batches of their own transactions, the attempts of finished orders and the sent e-mails (with the final
failures and customer links they carried) older than a number of days. What may go is decided by two named
statements, ``retention_attempts.sql`` and ``retention_notifications.sql``; docs/reliability.md has the argument
for why removing it can change no job's behaviour. Never removed: an open or Pending attempt, anything of an order
a job would still work on, a final failure or customer link not yet e-mailed, the audit trail of setting changes
(``komoju.setting_change``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from komoju import store

DEFAULT_OLDER_THAN_DAYS = 90
# KOMOJU keeps an idempotency key for 24 hours. An attempt removed younger than that could, if its order became
# eligible again, see its number (and so its key) taken again while KOMOJU still remembers the key's answer.
MIN_OLDER_THAN_DAYS = 2
DEFAULT_BATCH_SIZE = 5000
PROGRESS_EVERY = 100_000  # attempts looked at between two progress lines
CLEANED_TABLES = ("komoju.attempt", "komoju.final_failure", "komoju.customer_link", "komoju.notification")


@dataclass
class CleanReport:
    """What a clean found and did, per table, with the tables' sizes before and after."""

    older_than_days: int
    cutoff: Any  # datetime: bookkeeping finished before this instant was looked at
    delete: bool
    removable: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLEANED_TABLES, 0))
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLEANED_TABLES, 0))
    batches: int = 0
    seconds: float = 0.0
    sizes_before: list[store.TableSize] = field(default_factory=list)
    sizes_after: list[store.TableSize] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as an operator reads it (the CLI prints it, the DAG's task logs it)."""
        when = f"{self.cutoff:%Y-%m-%d %H:%M %Z}" if hasattr(self.cutoff, "strftime") else str(self.cutoff)
        head = [
            f"Bookkeeping of finished orders older than {self.older_than_days} days (finished before {when}).",
            "Dry run: nothing was deleted. Run again with --yes to delete."
            if not self.delete
            else f"Deleted in {self.batches} batches of their own transactions, in {self.seconds:.1f} s.",
        ]
        after = {size.table: size for size in self.sizes_after}
        rows = [["table", "rows", "size", "would remove" if not self.delete else "removed"]]
        if self.delete:
            rows[0] += ["rows after", "size after"]
        for size in self.sizes_before:
            if size.table in self.removable:
                count = self.removed[size.table] if self.delete else self.removable[size.table]
                what = str(count)
            else:
                what = "kept (audit trail)"
            row = [size.table, str(size.rows), _human(size.bytes), what]
            if self.delete and size.table in after:
                row += [str(after[size.table].rows), _human(after[size.table].bytes)]
            rows.append(row)
        widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
        table = [
            "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r))
            for r in rows
        ]
        notes = []
        if self.delete:
            notes.append(
                "Sizes after a VACUUM (ANALYZE): the freed space is reused by new rows; only VACUUM FULL (which "
                "locks the tables) would give it back to the operating system."
            )
        return [*head, *table, *notes]


def clean(
    conn: Any,
    *,
    older_than_days: int = DEFAULT_OLDER_THAN_DAYS,
    delete: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[str], None] | None = None,
) -> CleanReport:
    """Remove (``delete``) or only count what may go of the bookkeeping older than ``older_than_days``.

    Each batch (``batch_size`` rows looked at) is one statement and one transaction: the jobs' own writes never
    wait for more than one batch, and never for a row they use (the clean touches only finished history)."""
    if older_than_days < MIN_OLDER_THAN_DAYS:
        raise ValueError(
            f"--older-than must be at least {MIN_OLDER_THAN_DAYS} days (KOMOJU keeps idempotency keys 24 hours), "
            f"got {older_than_days}."
        )
    if batch_size < 1:
        raise ValueError(f"The batch size must be at least 1, got {batch_size}.")
    started = time.monotonic()
    report = CleanReport(older_than_days, store.retention_cutoff(conn, older_than_days), delete)
    report.sizes_before = store.bookkeeping_sizes(conn)
    conn.commit()
    after_id = 0
    while True:
        batch = store.clean_notifications_batch(
            conn, cutoff=report.cutoff, after_id=after_id, limit=batch_size, delete=delete
        )
        report.batches += 1
        _add(report, "komoju.notification", batch.notifications_removable, batch.notifications_removed)
        _add(report, "komoju.final_failure", batch.failures_removable, batch.failures_removed)
        _add(report, "komoju.customer_link", batch.links_removable, batch.links_removed)
        if batch.last_id is None or batch.scanned < batch_size:
            break
        after_id = batch.last_id
    after: store.AttemptKey = store.ATTEMPT_KEY_START
    scanned = 0
    while True:
        attempts = store.clean_attempts_batch(conn, cutoff=report.cutoff, after=after, limit=batch_size, delete=delete)
        report.batches += 1
        scanned += attempts.scanned
        _add(report, "komoju.attempt", attempts.removable, attempts.removed)
        if progress is not None and scanned and scanned % PROGRESS_EVERY < attempts.scanned:
            counted = report.removed if delete else report.removable
            verb = "removed" if delete else "may go"
            progress(f"attempts: {scanned} looked at, {counted['komoju.attempt']} {verb}")
        if attempts.last is None or attempts.scanned < batch_size:
            break
        after = attempts.last
    if delete:
        store.vacuum_bookkeeping(conn)
    report.sizes_after = store.bookkeeping_sizes(conn)
    conn.commit()
    report.seconds = time.monotonic() - started
    return report


def _add(report: CleanReport, table: str, removable: int, removed: int) -> None:
    report.removable[table] += removable
    report.removed[table] += removed


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
