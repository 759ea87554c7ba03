"""The KOMOJU view in Airflow's UI: a React plugin (``react_apps``) and the JSON API its components read.

``plugins/komoju_ui.py`` mounts this FastAPI app under ``/komoju`` on Airflow's API server:

- ``/komoju/static/main.js``: the bundle built from ``ui/`` (``make ui``) and committed, so that installing the
  package and ``make up`` need no Node.js. No login: it holds code, no data (as Airflow's React plugin template).
- ``/komoju/api/...``: JSON. Every endpoint requires an Airflow login (the UI's session cookie, which the
  components' same-origin ``fetch`` sends, or a Bearer token), and what the user may read or change is asked of
  Airflow's auth manager (:mod:`komoju.access`). A change must come from the same origin (its ``Origin``, or
  ``Referer``, names this host), names only the fields it changes (JSON; anything else is refused with 422 and
  writes nothing), and is recorded with the Airflow user in ``komoju.setting_change`` and Airflow's audit log
  (:mod:`komoju.audit`).

The handlers are a thin layer over :mod:`komoju.store`: no SQL here. Words the user reads are the components'
(English and Japanese); what this API returns are data, identifiers and KOMOJU's own reasons.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from airflow.api_fastapi.core_api.security import get_user
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from komoju import access, audit, db, settings, store
from komoju.access import Permissions, Refused
from komoju.money import format_amount
from komoju.settings import Actor, FieldChange, InvalidChange

log = logging.getLogger(__name__)

URL_PREFIX = "/komoju"
UI_DIST = Path(__file__).with_name("ui_dist")
BUNDLE = UI_DIST / "main.js"
# The React apps, by the name each registers its component under in the bundle (ui/src/apps.ts).
NAV_APP, RUN_APP, DASHBOARD_APP = "KOMOJU", "KOMOJU results", "KOMOJU dashboard"

DAG_IDS = {
    "payment_methods": access.PAYMENT_METHODS_DAG,
    "cancel": access.CANCEL_DAG,
    "refund": access.REFUND_DAG,
}
SITE_TASK_IDS = {"payment_methods": "sync_site", "cancel": "cancel_site", "refund": "refund_site"}
ORDER_JOBS = {"cancel": access.CANCEL_DAG, "refund": access.REFUND_DAG}
RECENT_CHANGES = 10  # shown per site
LIST_LIMIT = 500  # orders to settle / pending, per site page


@cache
def bundle_version() -> str:
    """A short digest of the built bundle, put in ``bundle_url`` so a browser never runs a stale copy."""
    return hashlib.sha256(BUNDLE.read_bytes()).hexdigest()[:12]


def bundle_url() -> str:
    """The bundle's address for ``react_apps``; relative, so the host resolves it against its ``<base href>``."""
    return f"{URL_PREFIX.lstrip('/')}/static/{BUNDLE.name}?v={bundle_version()}"


# ------------------------------------------------------------------------------------------- Airflow's run history


@dataclass(frozen=True)
class SiteRun:
    """The latest instance of one job's task for one site, as Airflow recorded it."""

    job: str
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    state: str | None
    run_after: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "state": self.state,
            "run_after": _iso(self.run_after),
        }


def latest_site_runs(session: Any, site_ids: Sequence[str]) -> dict[str, dict[str, SiteRun]]:
    """``{site_id: {job: SiteRun}}``: the newest run of each job's per-site task labelled with the site (the
    mapped instance whose ``rendered_map_index`` is the site id). Jobs a site never ran in are absent."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import and_, select

    found: dict[str, dict[str, SiteRun]] = {site_id: {} for site_id in site_ids}
    for job, dag_id in DAG_IDS.items():
        task_id = SITE_TASK_IDS[job]
        for site_id in site_ids:
            row = session.execute(
                select(TaskInstance.run_id, TaskInstance.map_index, TaskInstance.state, DagRun.run_after)
                .join(DagRun, and_(DagRun.dag_id == TaskInstance.dag_id, DagRun.run_id == TaskInstance.run_id))
                .where(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.task_id == task_id,
                    TaskInstance.rendered_map_index == site_id,
                )
                .order_by(DagRun.run_after.desc(), DagRun.id.desc())
                .limit(1)
            ).first()
            if row is not None:
                found[site_id][job] = SiteRun(
                    job, dag_id, task_id, row.run_id, row.map_index, _state(row.state), row.run_after
                )
    return found


def _latest_runs(site_ids: Sequence[str]) -> dict[str, dict[str, SiteRun]] | None:
    """Read the latest runs from Airflow's database; None (the page says so) when that fails."""
    try:
        from airflow.utils.session import create_session

        with create_session() as session:
            return latest_site_runs(session, site_ids)
    except Exception:  # the settings must stay editable when Airflow's run history cannot be read
        log.exception("KOMOJU page: could not read the latest runs of sites %s from Airflow's database", site_ids)
        return None


@dataclass(frozen=True)
class SiteTask:
    """One site's mapped instance of a cancel or refund run, and the summary its task returned."""

    site_id: str | None
    task_id: str
    map_index: int
    state: str | None
    summary: dict[str, Any] | None


def run_site_tasks(session: Any, dag_id: str, run_id: str, task_id: str) -> list[SiteTask]:
    """The run's mapped instances of ``task_id`` (labelled with their site) and the summaries they returned."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    summaries = {
        row.map_index: XComModel.deserialize_value(row)
        for row in session.execute(
            select(XComModel.map_index, XComModel.value).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        )
    }
    tasks = session.execute(
        select(TaskInstance.map_index, TaskInstance.rendered_map_index, TaskInstance.state)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
        .order_by(TaskInstance.map_index)
    )
    return [
        SiteTask(
            row.rendered_map_index,
            task_id,
            row.map_index,
            _state(row.state),
            summaries.get(row.map_index) if isinstance(summaries.get(row.map_index), dict) else None,
        )
        for row in tasks
    ]


# ------------------------------------------------------------------------------------------- requests and answers


def _database() -> Iterator[Any]:
    conn = db.connect()
    try:
        yield conn
    finally:
        conn.close()


def same_origin(request: Request) -> None:
    """Refuse a state change that does not come from a page of this host (cross-site request forgery)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("x-forwarded-host") or request.headers.get("host")
    if not source or not host or urlsplit(source).netloc != host:
        raise HTTPException(status_code=403, detail="Cross-site request refused: make the change from the KOMOJU page.")


def _permissions(request: Request, user: Annotated[Any, Depends(get_user)]) -> Permissions:
    """The logged-in user's permissions (Airflow's ``get_user``: 401 without a login); refuses the request when
    the auth manager denies the KOMOJU page itself for its method (GET reads, anything else changes)."""
    from airflow.api_fastapi.app import get_auth_manager

    permissions = Permissions(get_auth_manager(), user)
    _refuse(permissions.page_refusal(access.READ if request.method in ("GET", "HEAD") else access.EDIT))
    return permissions


Database = Annotated[Any, Depends(_database)]
Allowed = Annotated[Permissions, Depends(_permissions)]


def _refuse(refusal: str | None) -> None:
    if refusal:
        raise Refused(refusal)


def _site_or_404(conn: Any, site_id: str) -> store.Site:
    found = store.sites(conn, [site_id])
    if not found:
        raise HTTPException(status_code=404, detail=f"There is no site '{site_id}' in komoju.site.")
    return found[0]


async def change_request(request: Request) -> dict[str, Any]:
    """The fields a change request names: a JSON object. Any other body or content type is refused."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise InvalidChange(
            None,
            f"Unsupported content type '{content_type or 'none'}': send the change as JSON (application/json), "
            "naming only the fields to change.",
        )
    try:
        body = await request.json()
    except ValueError:
        raise InvalidChange(None, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidChange(None, "The request body must be a JSON object of the fields to change.")
    return body


def _changed(changes: list[FieldChange]) -> dict[str, Any]:
    return {"changes": [change.to_json() for change in changes]}


def _actor(permissions: Permissions) -> Actor:
    return Actor(permissions.user_name, "page")


def _refused(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc), "field": None}, status_code=403)


def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidChange)
    return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=422)


def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc), "field": None}, status_code=404)


def _database_down(request: Request, exc: Exception) -> Response:
    log.error("KOMOJU page: %s", exc)
    return JSONResponse({"detail": f"{exc} Nothing was changed.", "field": None}, status_code=503)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail, "field": None}, status_code=exc.status_code, headers=exc.headers)


# ------------------------------------------------------------------------------------------------- what is shown


def _site_json(
    site: store.Site,
    permissions: Permissions,
    runs: dict[str, SiteRun] | None,
    counts: dict[str, dict[str | None, int]],
    attention: tuple[int, int],
    checks: dict[str, store.SiteCheck],
) -> dict[str, Any]:
    missing = permissions.site_missing(site.komoju_conn_id)
    readable = set(permissions.readable())
    latest = {}
    for job, dag_id in DAG_IDS.items():
        if dag_id in readable:
            run = (runs or {}).get(job)
            latest[job] = run.to_json() if run else None
    return {
        "site_id": site.site_id,
        "name": site.name,
        "komoju_conn_id": site.komoju_conn_id,
        "notify_emails": list(site.notify_emails),
        "email_locale": site.email_locale,
        "email_enabled": site.email_enabled,
        "active": site.active,
        "can_edit": not missing,
        "edit_missing": [{"kind": m.kind, "name": m.name} for m in missing],
        "latest_runs": latest,
        "counts": {job: _counts(job, counts.get(job, {})) for job in ORDER_JOBS if ORDER_JOBS[job] in readable},
        # When a cancel/refund run last looked at the site, and whether it found work (a site with nothing to do
        # gets no task: its latest run may be older).
        "last_checked": {
            job: {"checked_at": _iso(check.checked_at), "had_work": check.had_work, "run_id": check.run_id}
            for job, check in checks.items()
            if job in ORDER_JOBS and ORDER_JOBS[job] in readable
        },
        "to_settle": attention[0],
        "pending": attention[1],
    }


def _counts(job: str, by_status: dict[str | None, int]) -> dict[str, int]:
    """Counts as the page shows them: to do, done, Pending, Rejected, Failed (and orders without a payment id,
    which are not the jobs' to handle)."""
    done = "Cancelled" if job == "cancel" else "Refunded"
    shown = {"to_do": by_status.get(None, 0), done: 0, "Pending": 0, "Rejected": 0, "Failed": 0}
    for status, count in by_status.items():
        if status is not None:
            key = "no_payment_id" if status == "no payment id" else status
            shown[key] = shown.get(key, 0) + count
    return shown


def _amount(amount: Any, currency: str | None) -> str:
    return format_amount(amount, currency)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


def _state(state: Any) -> str | None:
    return None if state is None else str(getattr(state, "value", state))


def _site_ids(sites: Sequence[store.Site]) -> list[str]:
    return [site.site_id for site in sites]


# ------------------------------------------------------------------------------------------------------ the app


def create_app() -> FastAPI:
    """The app: the bundle under ``/static`` and the JSON API under ``/api`` (every route needs a login and the
    auth manager's leave for the KOMOJU page, :func:`_permissions`)."""
    app = FastAPI(title="KOMOJU", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(InvalidChange, _invalid)
    app.add_exception_handler(store.NotFound, _not_found)
    app.add_exception_handler(ConnectionError, _database_down)
    app.add_exception_handler(HTTPException, _http_error)
    # The login and the page permission first (resolved once per request), before any database connection.
    api = APIRouter(prefix="/api", dependencies=[Depends(_permissions)])
    changes = [Depends(same_origin)]

    @api.get("/overview")
    def overview(conn: Database, permissions: Allowed) -> dict[str, Any]:
        """Every site (active first), with what the user may do, its latest runs and its order counts."""
        _refuse(permissions.read_refusal(access.KOMOJU_DAGS))
        sites = sorted(store.all_sites(conn), key=lambda site: (not site.active, site.site_id))
        site_ids = _site_ids(sites)
        runs = _latest_runs(site_ids)
        counts = store.order_status_counts(conn, site_ids)
        attention = store.attention_counts(conn, site_ids)
        checks = store.site_checks(conn)
        return {
            "user": permissions.user_name,
            "can_read": {dag_id: permissions.dag(access.READ, dag_id) for dag_id in access.KOMOJU_DAGS},
            "runs_unknown": runs is None,
            "sites": [
                _site_json(
                    site,
                    permissions,
                    None if runs is None else runs[site.site_id],
                    counts[site.site_id],
                    attention.get(site.site_id, (0, 0)),
                    checks.get(site.site_id, {}),
                )
                for site in sites
            ],
        }

    @api.get("/sites/{site_id}")
    def site_details(site_id: str, conn: Database, permissions: Allowed) -> dict[str, Any]:
        """One site: its settings, payment methods, orders to settle by hand, Pending orders, recent changes."""
        _refuse(permissions.read_refusal(access.KOMOJU_DAGS))
        site = _site_or_404(conn, site_id)
        readable = set(permissions.readable())
        runs = _latest_runs([site_id])
        counts = store.order_status_counts(conn, [site_id])[site_id]
        details = _site_json(
            site,
            permissions,
            None if runs is None else runs[site_id],
            counts,
            store.attention_counts(conn, [site_id]).get(site_id, (0, 0)),
            store.site_checks(conn).get(site_id, {}),
        )
        methods = None
        if access.PAYMENT_METHODS_DAG in readable:
            missing = permissions.methods_missing()
            methods = {
                "can_edit": not missing,
                "edit_missing": [{"kind": m.kind, "name": m.name} for m in missing],
                "methods": [m.__dict__ | {"subtypes": list(m.subtypes)} for m in store.payment_methods(conn, site_id)],
            }
        jobs = {job for job, dag_id in ORDER_JOBS.items() if dag_id in readable}
        details["payment_methods"] = methods
        details["orders"] = {
            "counts": details["counts"],
            "to_settle": [
                {
                    "job": o.job,
                    "order_no": o.order_no,
                    "status": o.status,
                    "reason": o.reason,
                    "amount_text": _amount(o.amount, o.currency),
                    "recorded_at": _iso(o.recorded_at),
                    "emailed_at": _iso(o.emailed_at),
                }
                for o in store.orders_to_settle(conn, [site_id], LIST_LIMIT)
                if o.job in jobs
            ],
            "pending": [
                {
                    "job": o.job,
                    "order_no": o.order_no,
                    "since": _iso(o.since),
                    "response": o.response,
                    "amount_text": _amount(o.amount, o.currency),
                    "customer_link": o.customer_link,
                }
                for o in store.pending_orders(conn, [site_id], LIST_LIMIT)
                if o.job in jobs
            ],
        }
        details["recent_changes"] = [
            {
                "changed_at": _iso(c.changed_at),
                "changed_by": c.changed_by,
                "channel": c.channel,
                "action": c.action,
                "subject": c.subject,
                "field": c.field,
                "old_value": c.old_value,
                "new_value": c.new_value,
            }
            for c in store.setting_changes(conn, site_id, RECENT_CHANGES)
        ]
        return details

    @api.post("/sites/{site_id}", dependencies=changes)
    async def save_site(request: Request, site_id: str, conn: Database, permissions: Allowed) -> dict[str, Any]:
        """Change the site settings the request names (and no other)."""
        body = await change_request(request)

        def save() -> dict[str, Any]:  # blocking database work, off the API server's event loop
            site = _site_or_404(conn, site_id)
            _refuse(permissions.site_refusal(site.komoju_conn_id))
            wanted = settings.parse(body, settings.SITE_FIELDS, partial=True)
            actor = _actor(permissions)
            return _changed(audit.apply(conn, lambda: store.update_site(conn, site_id, wanted, actor), actor))

        return await run_in_threadpool(save)

    # A payment-method change: the fields it needs, and the store function that makes it with their values (in
    # that order, after the site id).
    method_changes = {
        "toggle": (settings.TOGGLE_FIELDS, store.set_payment_method_enabled),
        "move": (settings.MOVE_FIELDS, store.move_payment_method),
    }

    @api.post("/sites/{site_id}/payment-methods/{change}", dependencies=changes)
    async def change_method(
        request: Request, site_id: str, change: str, conn: Database, permissions: Allowed
    ) -> dict[str, Any]:
        """Switch a payment method on or off, or move it."""
        if change not in method_changes:
            raise HTTPException(status_code=404, detail=f"Unknown payment-method change '{change}'.")
        fields, make = method_changes[change]
        _refuse(permissions.methods_refusal())
        wanted = settings.parse(await change_request(request), fields, partial=False)
        actor = _actor(permissions)

        def apply() -> list[FieldChange]:  # blocking database work, off the API server's event loop
            return audit.apply(
                conn,
                lambda: make(conn, site_id, *(wanted[name] for name in fields), actor),
                actor,
                dag_id=access.PAYMENT_METHODS_DAG,
            )

        return _changed(await run_in_threadpool(apply))

    @api.get("/runs/{dag_id}/{run_id}")
    def run_outcomes(dag_id: str, run_id: str, conn: Database, permissions: Allowed) -> dict[str, Any]:
        """What one cancel or refund run did, per site; ``job`` None for any other DAG's run."""
        job = next((name for name, order_dag in ORDER_JOBS.items() if order_dag == dag_id), None)
        if job is None:
            return {"dag_id": dag_id, "run_id": run_id, "job": None, "sites": []}
        _refuse(permissions.read_refusal([dag_id]))
        from airflow.utils.session import create_session

        with create_session() as session:
            tasks = run_site_tasks(session, dag_id, run_id, SITE_TASK_IDS[job])
        labels = [task.site_id for task in tasks if task.site_id]
        names = {site.site_id: site for site in store.sites(conn, labels)}
        failures = store.run_final_failures(conn, job, run_id)
        mails = store.run_notifications(conn, job, run_id)
        return {
            "dag_id": dag_id,
            "run_id": run_id,
            "job": job,
            "sites": [
                {
                    "site_id": task.site_id,
                    "name": names[task.site_id].name if task.site_id in names else None,
                    "task_id": task.task_id,
                    "map_index": task.map_index,
                    "state": task.state,
                    "counts": _run_counts(task.summary),
                    "failures": [
                        {
                            "order_no": f.order_no,
                            "status": f.status,
                            "reason": f.reason,
                            "amount_text": _amount(f.amount, f.currency),
                        }
                        for f in failures
                        if f.site_id == task.site_id
                    ],
                    "email": _run_email(names.get(task.site_id or ""), [m for m in mails if m[0] == task.site_id]),
                }
                for task in tasks
            ],
        }

    @api.get("/dashboard")
    def dashboard(conn: Database, permissions: Allowed) -> dict[str, Any]:
        """Across sites: orders to settle by hand and Pending orders."""
        _refuse(permissions.read_refusal(list(ORDER_JOBS.values())))
        sites = store.all_sites(conn)
        attention = store.attention_counts(conn, _site_ids(sites))
        listed = [
            {
                "site_id": s.site_id,
                "name": s.name,
                "to_settle": attention[s.site_id][0],
                "pending": attention[s.site_id][1],
            }
            for s in sites
            if s.site_id in attention
        ]
        return {
            "to_settle": sum(site["to_settle"] for site in listed),
            "pending": sum(site["pending"] for site in listed),
            "sites": listed,
        }

    app.include_router(api)
    app.mount("/static", StaticFiles(directory=UI_DIST), name="static")
    return app


RUN_COUNTS = ("succeeded", "pending", "rejected", "failed", "final_failures", "not_sent")


def _run_counts(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The counts a site task's summary holds (``komoju.runner``), or None when it left none."""
    if summary is None:
        return None
    counts: dict[str, Any] = {name: int(summary.get(name, 0) or 0) for name in RUN_COUNTS}
    counts["dry_run"] = bool(summary.get("dry_run", False))
    return counts


def _run_email(site: store.Site | None, mails: list[tuple[str, bool, int]]) -> dict[str, Any]:
    """Whether the run's e-mail of a site went out: sent, not sent (yet), off (e-mails off), none (nothing to
    e-mail)."""
    if mails:
        sent = all(mail[1] for mail in mails)
        return {"state": "sent" if sent else "not_sent", "recipients": max(mail[2] for mail in mails)}
    if site is not None and not site.wants_email:
        return {"state": "off", "recipients": 0}
    return {"state": "none", "recipients": 0}
