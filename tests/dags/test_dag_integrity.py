"""Every DAG file imports cleanly, and every DAG has tags and retries (Astronomer's integrity test)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from devtools import PROJECT_ROOT as ROOT

MIN_RETRIES = 2


def integrity_problems(dag_folder: Path) -> list[str]:
    """What is wrong with the DAG files in ``dag_folder``, one sentence each (empty: nothing)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_folder), safe_mode=False)
    problems = [
        f"{Path(path).name} does not import: {error.strip().splitlines()[-1]}"
        for path, error in bag.import_errors.items()
    ]
    files_with_dags = {Path(dag.fileloc).name for dag in bag.dags.values()}
    for path in sorted(dag_folder.glob("*.py")):
        if path.name not in files_with_dags and not any(path.name in p for p in problems):
            problems.append(f"{path.name} defines no DAG")
    for dag_id, dag in sorted(bag.dags.items()):
        if not dag.tags:
            problems.append(f"DAG {dag_id} has no tags")
        problems.extend(
            f"task {dag_id}.{task.task_id} has {task.retries} retries (at least {MIN_RETRIES} expected)"
            for task in dag.tasks
            if (task.retries or 0) < MIN_RETRIES
        )
    return problems


def test_project_dags_have_no_problems():
    assert integrity_problems(ROOT / "dags") == []


def test_the_check_finds_each_kind_of_problem(tmp_path):
    files = {
        "broken.py": "import no_such_module_anywhere\n",
        "untagged.py": """
            from airflow.sdk import DAG
            from airflow.providers.standard.operators.empty import EmptyOperator

            with DAG("untagged", schedule=None, default_args={"retries": 3}):
                EmptyOperator(task_id="ok")
        """,
        "no_retries.py": """
            from airflow.sdk import DAG
            from airflow.providers.standard.operators.empty import EmptyOperator

            with DAG("fragile", schedule=None, tags=["t"]):
                EmptyOperator(task_id="once")
        """,
        "helpers.py": "VALUE = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    problems = integrity_problems(tmp_path)
    assert any(p.startswith("broken.py does not import") and "no_such_module_anywhere" in p for p in problems)
    assert "DAG untagged has no tags" in problems
    assert "task fragile.once has 0 retries (at least 2 expected)" in problems
    assert "helpers.py defines no DAG" in problems
    assert len(problems) == 4, problems
