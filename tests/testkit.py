"""Helpers shared by the end-to-end and reliability suites: KOMOJU-shaped payments, a finished ``dag.test()``
run summarised, and the table of a failure e-mail read back. (Importable as ``testkit``: pytest puts ``tests/``
on the path for the root conftest.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any


def pid(label: str) -> str:
    """A KOMOJU-shaped payment id (25 lowercase alphanumerics) that reads as ``label``."""
    assert label.isalnum(), label
    assert label.islower(), label
    assert len(label) <= 25, label
    return label.ljust(25, "x")  # padded with a letter: "t1" and "t10" stay apart


def payment(label: str, status: str, amount: int, currency: str = "JPY", **extra: Any) -> dict[str, Any]:
    """A payment at KOMOJU (amount in the currency's smallest unit)."""
    return {"id": pid(label), "status": status, "amount": amount, "currency": currency, **extra}


# ---------------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    """One task instance of a finished run, read out of Airflow's metadata database."""

    task_id: str
    map_index: int
    label: str | None  # rendered_map_index: the site id for the per-site tasks
    state: str | None
    try_number: int


@dataclass(frozen=True)
class RunResult:
    """A finished DAG run: its state and its task instances."""

    dag_id: str
    run_id: str
    state: str
    tasks: tuple[TaskResult, ...]

    def task(self, task_id: str) -> TaskResult:
        """The one (unmapped) instance of ``task_id``."""
        (found,) = [t for t in self.tasks if t.task_id == task_id]
        return found

    def mapped(self, task_id: str) -> list[TaskResult]:
        """The mapped instances of ``task_id``, in map index order."""
        return sorted((t for t in self.tasks if t.task_id == task_id and t.map_index >= 0), key=lambda t: t.map_index)

    def per_site(self, task_id: str) -> dict[str | None, TaskResult]:
        """The mapped instances of ``task_id`` by site id (their ``map_index_template`` label), one per site."""
        instances = self.mapped(task_id)
        labels = [t.label for t in instances]
        assert len(set(labels)) == len(labels), f"{task_id}: several instances per site: {labels}"
        return {t.label: t for t in instances}

    def states(self, task_id: str) -> dict[str | None, str | None]:
        """``{site id: state}`` of the mapped instances of ``task_id``."""
        return {label: t.state for label, t in self.per_site(task_id).items()}


def state_name(state: Any) -> str | None:
    """An Airflow state (enum or text) as text."""
    return None if state is None else str(getattr(state, "value", state))


def dag_runner(dagbag: Any) -> Callable[..., RunResult]:
    """``run(dag_id, **conf)``: one whole run with ``dag.test()`` in this process, summarised.

    Every param is passed, the DAG's declared defaults filled in: ``dag.test()`` updates the params of the shared
    task objects with a run's conf, so a param left out would keep the value an earlier run gave it.
    """
    defaults = {dag_id: {name: dag.params[name] for name in dag.params} for dag_id, dag in dagbag.dags.items()}

    def run(dag_id: str, **conf: Any) -> RunResult:
        unknown = set(conf) - set(defaults[dag_id])
        assert not unknown, f"{dag_id} has no param(s) {sorted(unknown)}"
        dag_run = dagbag.dags[dag_id].test(run_conf={**defaults[dag_id], **conf})
        tasks = tuple(
            TaskResult(ti.task_id, ti.map_index, ti.rendered_map_index, state_name(ti.state), ti.try_number)
            for ti in dag_run.get_task_instances()
        )
        return RunResult(dag_id, dag_run.run_id, state_name(dag_run.state), tasks)

    return run


# ---------------------------------------------------------------------------------------------------------------
# Failure e-mails
# ---------------------------------------------------------------------------------------------------------------


def html_body(mail: Any) -> str:
    """The HTML part of a received e-mail."""
    part = mail.message.get_body(("html",))
    assert part is not None, f"no HTML part in {mail.message['Subject']!r}"
    return part.get_content()


def text_body(mail: Any) -> str:
    """The plain-text part of a received e-mail (beside its HTML part, ``multipart/alternative``)."""
    assert mail.message.get_content_type() == "multipart/alternative", mail.message.get_content_type()
    part = mail.message.get_body(("plain",))
    assert part is not None, f"no text part in {mail.message['Subject']!r}"
    return part.get_content()


class _TableCells(HTMLParser):
    """The ``<td>`` texts of each ``<tr>`` (escaped text comes back unescaped; raw markup would not survive)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    """The data rows (``<td>`` cells, as text) of the e-mail's table. A ``<b>`` written into the HTML as markup
    rather than as escaped text would not survive as part of a cell's text."""
    parser = _TableCells()
    parser.feed(html)
    return [row for row in parser.rows if row]
