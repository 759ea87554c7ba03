"""Bookkeeping retention against real PostgreSQL (``komoju.retention.clean``, ``python -m komoju db clean``): only what
may go goes, in batches; a dry run counts exactly what a real clean removes; the jobs see the same orders after."""

from __future__ import annotations

import pytest
from bookkeeping_kit import QUIET_SITE, SITE, left, problems, seed_year_of_bookkeeping

from komoju import cli, retention, store


def _eligible(conn) -> dict:
    """Everything the jobs read to decide what to do: each job's eligible orders with their history, per site."""
    found = {}
    for job in ("cancel", "refund"):
        for site_id in (SITE, QUIET_SITE):
            found[(job, site_id)] = store.eligible_orders(conn, job, site_id, limit=1000)
            found[(job, site_id, "work")] = store.sites_work(conn, job, [site_id])
    conn.rollback()
    return found


@pytest.mark.parametrize("batch_size", [2, 5000])
def test_clean_removes_only_what_may_go_and_the_jobs_see_the_same_orders(db, batch_size):
    expected = seed_year_of_bookkeeping(db)
    before, seen_by_jobs = left(db), _eligible(db)

    dry = retention.clean(db, older_than_days=90, delete=False, batch_size=batch_size)

    assert left(db) == before, "a dry run deletes nothing"
    assert dry.removable == {
        "komoju.attempt": len(expected.attempts_gone),
        "komoju.final_failure": len(expected.failures_gone),
        "komoju.customer_link": len(expected.links_gone),
        "komoju.notification": len(expected.notifications_gone),
    }
    assert sum(dry.removed.values()) == 0

    done = retention.clean(db, older_than_days=90, delete=True, batch_size=batch_size)

    assert problems(db, expected) == []
    assert done.removed == dry.removable
    assert _eligible(db) == seen_by_jobs, "the clean changed what a job would do"
    assert [size.table for size in done.sizes_after] == [size.table for size in done.sizes_before]
    rows_after = {size.table: size.rows for size in done.sizes_after}
    rows_before = {size.table: size.rows for size in done.sizes_before}
    assert rows_after["komoju.attempt"] == rows_before["komoju.attempt"] - len(expected.attempts_gone)
    assert rows_after["komoju.setting_change"] == rows_before["komoju.setting_change"] == 1
    if batch_size == 2:
        assert done.batches > 10  # each batch its own transaction
    again = retention.clean(db, older_than_days=90, delete=True, batch_size=batch_size)
    assert sum(again.removed.values()) == 0, "a second clean finds nothing more"


def test_a_shorter_age_takes_the_recent_finished_rows_too_never_the_open_ones(db):
    seed_year_of_bookkeeping(db)
    retention.clean(db, older_than_days=5, delete=True)
    now = left(db)
    assert ("refund", "R-RECENT", 1) not in now["attempts"]
    assert {("refund", "R-MIXED", 1), ("refund", "R-MIXED", 2)}.isdisjoint(now["attempts"])
    assert {("refund", "R-PEND", 1), ("refund", "R-PEND", 2), ("refund", "R-OPEN", 1), ("refund", "R-RETRY", 1),
            ("refund", "R-UNSENT", 1), ("refund", "R-QUIET", 1)} <= now["attempts"]  # fmt: skip
    assert {"R-GAVEUP", "R-UNSENT", "R-QUIET"} <= now["failures"]
    assert "R-REJ-LATE" not in now["failures"]
    assert now["links"] == {"R-PEND"}


def test_ages_under_two_days_are_refused(db):
    with pytest.raises(ValueError, match="at least 2 days"):
        retention.clean(db, older_than_days=1, delete=True)


def test_cli_dry_run_by_default_then_yes_deletes(capsys, db):
    expected = seed_year_of_bookkeeping(db)
    before = left(db)

    code = cli.main(["db", "clean"])
    out, err = capsys.readouterr()

    assert (code, err) == (0, "")
    assert left(db) == before
    assert "older than 90 days" in out
    assert "Dry run: nothing was deleted" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("komoju.")}
    assert lines["komoju.attempt"][-1] == str(len(expected.attempts_gone))
    assert lines["komoju.notification"][-1] == str(len(expected.notifications_gone))
    assert lines["komoju.setting_change"][-3:] == ["kept", "(audit", "trail)"]

    code = cli.main(["db", "clean", "--older-than", "90", "--yes", "--batch-size", "3"])
    out, err = capsys.readouterr()

    assert (code, err) == (0, "")
    assert problems(db, expected) == []
    assert "Deleted in" in out
    assert "rows after" in out
    assert "size after" in out
    attempt = next(line.split() for line in out.splitlines() if line.startswith("komoju.attempt"))
    assert attempt[4] == str(len(expected.attempts_gone))  # table, rows, size (2 words), removed, ...
    assert int(attempt[5]) == len(before["attempts"]) - len(expected.attempts_gone)

    assert cli.main(["db", "clean", "--older-than", "1"]) == 1
    assert "at least 2 days" in capsys.readouterr().err
