"""Acceptance (issue 15): the ``komoju_db_clean`` maintenance DAG, run for real with ``dag.test()``, removes the old
bookkeeping of finished orders and nothing else: open and Pending attempts, failures not yet e-mailed or in an
unsent e-mail, whatever a job still needs, recent rows and the audit trail stay."""

from __future__ import annotations

import pytest
from airflow.sdk.definitions.param import ParamValidationError
from bookkeeping_kit import left, problems, seed_year_of_bookkeeping


def test_the_maintenance_dag_is_off_until_unpaused_and_daily(dagbag):
    dag = dagbag.dags["komoju_db_clean"]
    assert dag.is_paused_upon_creation is True
    assert dag.schedule == "@daily"
    assert dag.params["older_than_days"] == 90
    assert dag.params["dry_run"] is False


def test_a_dry_run_removes_nothing_then_a_run_removes_only_the_old_finished_rows(db, run_dag):
    expected = seed_year_of_bookkeeping(db)
    before = left(db)

    dry = run_dag("komoju_db_clean", dry_run=True)

    assert dry.state == "success"
    assert left(db) == before

    run = run_dag("komoju_db_clean")

    assert run.state == "success"
    assert run.task("clean_bookkeeping").state == "success"
    assert problems(db, expected) == []
    assert left(db) != before


def test_an_age_under_two_days_is_refused_before_anything_is_deleted(db, run_dag):
    seed_year_of_bookkeeping(db)
    before = left(db)
    with pytest.raises(ParamValidationError):
        run_dag("komoju_db_clean", older_than_days=1)
    assert left(db) == before
