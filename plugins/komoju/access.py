"""Who may do what on the KOMOJU page. Airflow's auth manager answers (SimpleAuthManager, FAB, Keycloak or any
other a deployment configures); this module only decides which of its questions each action asks:

- every request: the custom view ``KOMOJU`` (``GET`` to read, ``PUT`` to change), so that an administrator of
  a richer auth manager can grant or deny the page as a whole;
- reading: read access (``GET``) to the DAG the page concerns (the sites overview: at least one of the three);
- changing payment methods (toggle, move): edit access (``PUT``) to ``komoju_update_payment_methods``;
- changing a site's settings (name, contacts, language, e-mails on/off, active): edit access to
  ``komoju_cancel_process`` and ``komoju_refund_process`` and to the site's KOMOJU connection in Airflow
  (whoever may change a site's KOMOJU key may change where its failures are mailed and whether it runs).

A refusal is a sentence naming the permission that is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PAGE = "KOMOJU"  # the custom view (FAB: resource) name of the KOMOJU page
PAYMENT_METHODS_DAG = "komoju_update_payment_methods"
CANCEL_DAG = "komoju_cancel_process"
REFUND_DAG = "komoju_refund_process"
KOMOJU_DAGS = (PAYMENT_METHODS_DAG, CANCEL_DAG, REFUND_DAG)
SITE_SETTINGS_DAGS = (CANCEL_DAG, REFUND_DAG)
READ, EDIT = "GET", "PUT"


class Refused(Exception):
    """The user's Airflow role lacks a permission; the message names it (HTTP 403)."""


class Permissions:
    """One user's permissions as the auth manager states them; each question is asked once per request."""

    def __init__(self, auth_manager: Any, user: Any) -> None:
        self.auth_manager = auth_manager
        self.user = user
        self._answers: dict[tuple[str, str, str], bool] = {}

    @property
    def user_name(self) -> str:
        return self.user.get_name()

    # -- the auth manager's answers ---------------------------------------------------------------------

    def page(self, method: str) -> bool:
        """May the user use the KOMOJU page with ``method`` (``GET`` or ``PUT``)?"""
        return self._ask(
            ("view", method, PAGE),
            lambda: self.auth_manager.is_authorized_custom_view(method=method, resource_name=PAGE, user=self.user),
        )

    def dag(self, method: str, dag_id: str) -> bool:
        """May the user read (``GET``) or edit (``PUT``) the DAG ``dag_id``?"""
        from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

        return self._ask(
            ("dag", method, dag_id),
            lambda: self.auth_manager.is_authorized_dag(
                method=method, details=DagDetails(id=dag_id, team_name=_dag_team(dag_id)), user=self.user
            ),
        )

    def connection(self, method: str, conn_id: str) -> bool:
        """May the user read or edit the Airflow connection ``conn_id``?"""
        from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

        return self._ask(
            ("connection", method, conn_id),
            lambda: self.auth_manager.is_authorized_connection(
                method=method, details=ConnectionDetails(conn_id=conn_id, team_name=_connection_team(conn_id)),
                user=self.user,
            ),
        )  # fmt: skip

    def _ask(self, question: tuple[str, str, str], answer: Any) -> bool:
        if question not in self._answers:
            self._answers[question] = bool(answer())
        return self._answers[question]

    # -- what each action needs -------------------------------------------------------------------------

    def page_refusal(self, method: str) -> str | None:
        """Why the user may not use the page at all with ``method``; None when they may."""
        if self.page(method):
            return None
        what = "read" if method == READ else "change anything on"
        return (
            f"Your Airflow role may not {what} the KOMOJU page: the auth manager refuses {method} on the custom view "
            f"'{PAGE}'. Ask an Airflow administrator for that permission."
        )

    def readable(self, dag_ids: Sequence[str] = KOMOJU_DAGS) -> list[str]:
        """Those of ``dag_ids`` the user may read."""
        return [dag_id for dag_id in dag_ids if self.dag(READ, dag_id)]

    def read_refusal(self, dag_ids: Sequence[str]) -> str | None:
        """Why the user may not read a page about ``dag_ids`` (read access to one of them suffices)."""
        if self.readable(dag_ids):
            return None
        names = _names(dag_ids, "or")
        return (
            f"Reading this page needs read access to the DAG {names}; your Airflow role has none. Ask an Airflow "
            "administrator for read access to it."
        )

    def methods_missing(self) -> list[Missing]:
        """The edit permissions the user lacks to switch or reorder payment methods (empty: none)."""
        return [] if self.dag(EDIT, PAYMENT_METHODS_DAG) else [Missing("dag", PAYMENT_METHODS_DAG)]

    def site_missing(self, conn_id: str) -> list[Missing]:
        """The edit permissions the user lacks to change the settings of a site using connection ``conn_id``."""
        missing = [Missing("dag", dag_id) for dag_id in SITE_SETTINGS_DAGS if not self.dag(EDIT, dag_id)]
        if not self.connection(EDIT, conn_id):
            missing.append(Missing("connection", conn_id))
        return missing

    def methods_refusal(self) -> str | None:
        """Why the user may not switch or reorder payment methods; None when they may."""
        if not self.methods_missing():
            return None
        return (
            f"Changing payment methods needs edit access to the DAG {PAYMENT_METHODS_DAG}; your Airflow role "
            "cannot edit it. Nothing was changed."
        )

    def site_refusal(self, conn_id: str) -> str | None:
        """Why the user may not change the settings of a site whose KOMOJU connection is ``conn_id``."""
        missing = self.site_missing(conn_id)
        if not missing:
            return None
        return (
            f"Changing a site's settings needs edit access to the DAGs {_names(SITE_SETTINGS_DAGS, 'and')} and to "
            f"the site's KOMOJU connection {conn_id}; your Airflow role cannot edit "
            f"{_names([str(m) for m in missing], 'or')}. Nothing was changed."
        )


@dataclass(frozen=True)
class Missing:
    """An edit permission the user lacks: on a ``dag`` or a ``connection``, by id."""

    kind: str
    name: str

    def __str__(self) -> str:
        return self.name if self.kind == "dag" else f"the connection {self.name}"


def _names(items: Sequence[str], joiner: str) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {joiner} {items[-1]}"


def _multi_team() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("core", "multi_team", fallback=False)


def _dag_team(dag_id: str) -> str | None:
    """The team owning the DAG when Airflow runs multi-team (as Airflow's own ``requires_access_dag`` asks)."""
    if not _multi_team():
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(dag_id)


def _connection_team(conn_id: str) -> str | None:
    if not _multi_team():
        return None
    from airflow.models.connection import Connection

    return Connection.get_team_name(conn_id)
