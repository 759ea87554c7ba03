"""Who changed what: every change made outside a DAG run is recorded in two places.

- ``komoju.setting_change``, beside the data, written by the store in the change's own transaction;
- Airflow's audit log (Browse → Audit Log, ``GET /api/v2/eventLogs``), one entry per changed field, with the
  Airflow user (the KOMOJU page) or the operating-system user (``python -m komoju``), as Airflow's own CLI does.

:func:`apply` makes a change only when both records are written: Airflow's entry is added before the change's
transaction commits, and a failure of either rolls the change back.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from komoju.settings import Actor, FieldChange


def apply(
    conn: Any, change: Callable[[], list[FieldChange]], actor: Actor, *, dag_id: str | None = None
) -> list[FieldChange]:
    """Run ``change`` (a store function that records in ``komoju.setting_change`` and does not commit), add its
    changes to Airflow's audit log, then commit; roll everything back if any step fails. ``dag_id``: the DAG the
    change concerns, so that it also shows in that DAG's audit log."""
    try:
        changes = change()
        if changes:
            record_in_airflow(changes, actor, dag_id=dag_id)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return changes


def record_in_airflow(changes: Sequence[FieldChange], actor: Actor, *, dag_id: str | None = None) -> None:
    """Add one entry per changed field to Airflow's audit log (its metadata database's ``log`` table)."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        session.add_all(
            Log(
                event=change.action,
                owner=actor.name,
                owner_display_name=actor.name,
                dag_id=dag_id,
                extra=json.dumps({**change.to_json(), "channel": actor.channel}, ensure_ascii=False, default=str),
            )
            for change in changes
        )


def cli_actor() -> Actor:
    """The operating-system user running ``python -m komoju``, as Airflow's own CLI records it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        name = f"uid {os.getuid()}"
    return Actor(name, "cli")
