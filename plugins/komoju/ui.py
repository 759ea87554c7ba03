"""The KOMOJU page inside the Airflow UI: sites, payment methods, order outcomes, recent changes.

A FastAPI app the plugin ``plugins/komoju_ui.py`` mounts under ``/komoju`` on Airflow's API server. Every
endpoint requires an Airflow login (Bearer token or the UI's session cookie) and what the user may do is asked
of Airflow's auth manager (:mod:`komoju.access`); every state change is a POST that must come from the same
origin (its ``Origin``, or ``Referer``, names this host), so another site cannot make a logged-in browser change
anything. A change names only the fields it changes (a form or JSON body; anything else is refused with 422 and
writes nothing) and is recorded with the Airflow user in ``komoju.setting_change`` and Airflow's audit log
(:mod:`komoju.audit`). Pages are server-rendered; Jinja2 escapes every value.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from komoju import access, audit, db, settings, store
from komoju.access import Permissions, Refused
from komoju.money import format_amount
from komoju.settings import LANGUAGES, Actor, FieldChange, InvalidChange

LANG_COOKIE = "komoju_lang"
DAG_IDS = {
    "payment_methods": access.PAYMENT_METHODS_DAG,
    "cancel": access.CANCEL_DAG,
    "refund": access.REFUND_DAG,
}
RECENT_CHANGES = 10  # shown per site
SITE_TASK_IDS = {"payment_methods": "sync_site", "cancel": "cancel_site", "refund": "refund_site"}

log = logging.getLogger(__name__)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("ui_templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_templates.filters["amount"] = lambda value, currency: format_amount(value, currency)


def _setting_text(value: Any) -> str:
    """A recorded setting value as the recent-changes table shows it."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


_templates.filters["setting"] = _setting_text

TEXT: dict[str, dict[str, str]] = {
    "ja": {
        "title": "KOMOJU 決済設定",
        "sites": "サイト",
        "site": "サイト",
        "name": "名前",
        "connection": "KOMOJU 接続 (Airflow)",
        "contacts": "通知先メールアドレス (1行に1件)",
        "language": "メールの言語",
        "emails_on": "失敗通知メールを送る",
        "active": "有効",
        "save": "保存",
        "methods": "決済方法",
        "orders": "注文の結果",
        "type": "種類",
        "currency": "通貨",
        "subtypes": "サブタイプ",
        "available": "KOMOJU で利用可能",
        "enabled": "表示",
        "on": "オン",
        "off": "オフ",
        "switch_on": "オンにする",
        "switch_off": "オフにする",
        "up": "上へ",
        "down": "下へ",
        "job": "ジョブ",
        "status": "状態",
        "count": "件数",
        "to_do": "未処理",
        "final_failures": "手動対応が必要な注文",
        "order_no": "注文番号",
        "amount": "金額",
        "reason": "KOMOJU からの理由",
        "emailed": "メール送信",
        "not_emailed": "未送信",
        "all": "すべて",
        "filter": "絞り込み",
        "dags": "ジョブ (DAG)",
        "none": "なし",
        "saved": "保存しました。",
        "yes": "はい",
        "no": "いいえ",
        "latest_runs": "最新の実行",
        "payment_methods_job": "決済方法の同期",
        "cancel_job": "キャンセル",
        "refund_job": "返金",
        "never_run": "未実行",
        "runs_unknown": "Airflow の実行履歴を読めませんでした。",
        "recent_changes": "最近の変更",
        "changed_at": "日時",
        "changed_by": "変更者",
        "channel": "経路",
        "change": "変更内容",
        "old_value": "変更前",
        "new_value": "変更後",
        "channel_page": "画面",
        "channel_cli": "CLI",
        "no_changes": "記録された変更はありません",
        "read_only": "閲覧のみ: Airflow のロールでは次を編集できません: ",
        "the_connection": "接続",
    },
    "en": {
        "title": "KOMOJU payment settings",
        "sites": "Sites",
        "site": "Site",
        "name": "Name",
        "connection": "KOMOJU connection (Airflow)",
        "contacts": "Failure e-mail contacts (one per line)",
        "language": "E-mail language",
        "emails_on": "Send failure e-mails",
        "active": "Active",
        "save": "Save",
        "methods": "Payment methods",
        "orders": "Order outcomes",
        "type": "Type",
        "currency": "Currency",
        "subtypes": "Subtypes",
        "available": "Available at KOMOJU",
        "enabled": "Shown",
        "on": "on",
        "off": "off",
        "switch_on": "Switch on",
        "switch_off": "Switch off",
        "up": "Up",
        "down": "Down",
        "job": "Job",
        "status": "Status",
        "count": "Orders",
        "to_do": "to do",
        "final_failures": "Orders to settle by hand",
        "order_no": "Order number",
        "amount": "Amount",
        "reason": "KOMOJU's reason",
        "emailed": "E-mailed",
        "not_emailed": "not yet",
        "all": "all",
        "filter": "Filter",
        "dags": "Jobs (DAGs)",
        "none": "none",
        "saved": "Saved.",
        "yes": "yes",
        "no": "no",
        "latest_runs": "Latest runs",
        "payment_methods_job": "Payment method sync",
        "cancel_job": "Cancel",
        "refund_job": "Refund",
        "never_run": "not run yet",
        "runs_unknown": "Airflow's run history could not be read.",
        "recent_changes": "Recent changes",
        "changed_at": "When",
        "changed_by": "Who",
        "channel": "Through",
        "change": "What",
        "old_value": "Before",
        "new_value": "After",
        "channel_page": "page",
        "channel_cli": "CLI",
        "no_changes": "no change recorded",
        "read_only": "read-only: your Airflow role cannot edit ",
        "the_connection": "the connection",
    },
}


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

    @property
    def url(self) -> str:
        """That task instance's page in the Airflow UI."""
        return (
            f"/dags/{quote(self.dag_id, safe='')}/runs/{quote(self.run_id, safe='')}"
            f"/tasks/{quote(self.task_id, safe='')}/mapped/{self.map_index}"
        )


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
                state = None if row.state is None else str(getattr(row.state, "value", row.state))
                found[site_id][job] = SiteRun(job, dag_id, task_id, row.run_id, row.map_index, state, row.run_after)
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
        raise HTTPException(status_code=403, detail="Cross-site request refused: submit the form from the KOMOJU page.")


def language(request: Request) -> str:
    """``?lang=``, else the language cookie, else the browser's first ja/en preference, else Japanese."""
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "ja"


def _permissions(request: Request, user: Annotated[Any, Depends(get_user)]) -> Permissions:
    """The logged-in user's permissions (Airflow's ``get_user``: 401 without a login); refuses the request when
    the auth manager denies the KOMOJU page itself for its method (GET reads, anything else changes)."""
    from airflow.api_fastapi.app import get_auth_manager

    permissions = Permissions(get_auth_manager(), user)
    _refuse(permissions.page_refusal(access.READ if request.method in ("GET", "HEAD") else access.EDIT))
    return permissions


Database = Annotated[Any, Depends(_database)]
Lang = Annotated[str, Depends(language)]
Allowed = Annotated[Permissions, Depends(_permissions)]


def _page(request: Request, lang: str, template: str, permissions: Permissions, **values: Any) -> HTMLResponse:
    base = request.scope.get("root_path", "")
    html = _templates.get_template(template).render(
        t=TEXT[lang],
        lang=lang,
        base=base,
        dag_ids=DAG_IDS,
        readable=set(permissions.readable()),
        user=permissions.user_name,
        message=request.query_params.get("saved"),
        **values,
    )
    response = HTMLResponse(html)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, samesite="lax", httponly=True)
    return response


def _site_or_404(conn: Any, site_id: str) -> store.Site:
    found = store.sites(conn, [site_id])
    if not found:
        raise HTTPException(status_code=404, detail=f"There is no site '{site_id}'.")
    return found[0]


def _refuse(refusal: str | None) -> None:
    if refusal:
        raise Refused(refusal)


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def change_request(request: Request) -> tuple[dict[str, Any], bool]:
    """The fields a change request names, and whether it came as a form (answered with a redirect to the page)
    rather than JSON (answered with JSON). Any other content type is refused."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in FORM_TYPES:
        form = await request.form()
        # A form's checkbox sends a hidden "false" and, when ticked, "true" after it: the last value wins.
        return {name: form.getlist(name)[-1] for name in form}, True
    if content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise InvalidChange(None, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise InvalidChange(None, "The request body must be a JSON object of the fields to change.")
        return body, False
    raise InvalidChange(
        None,
        f"Unsupported content type '{content_type or 'none'}': send the change as a form "
        "(application/x-www-form-urlencoded) or as JSON (application/json).",
    )


def _changed(request: Request, as_form: bool, page: str, changes: list[FieldChange]) -> Response:
    if as_form:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{page}?saved=1", status_code=303)
    return JSONResponse({"changes": [change.to_json() for change in changes]})


def _refused(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=403)


def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidChange)
    return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=422)


def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=404)


def _database_down(request: Request, exc: Exception) -> Response:
    log.error("KOMOJU page: %s", exc)
    return JSONResponse({"detail": f"{exc} Nothing was changed."}, status_code=503)


def create_app() -> FastAPI:
    """The app. Every route depends on :func:`_permissions`: a login, and the auth manager's leave for the page."""
    app = FastAPI(title="KOMOJU", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(InvalidChange, _invalid)
    app.add_exception_handler(store.NotFound, _not_found)
    app.add_exception_handler(ConnectionError, _database_down)
    changes = [Depends(same_origin)]

    @app.get("/", response_class=HTMLResponse)
    def sites_page(request: Request, conn: Database, lang: Lang, permissions: Allowed) -> HTMLResponse:
        _refuse(permissions.read_refusal(access.KOMOJU_DAGS))
        sites = sorted(store.all_sites(conn), key=lambda site: (not site.active, site.site_id))
        runs = _latest_runs([site.site_id for site in sites])
        return _page(
            request,
            lang,
            "sites.html",
            permissions,
            sites=sites,
            runs=runs,
            jobs=list(DAG_IDS),
            read_only={site.site_id: permissions.site_missing(site.komoju_conn_id) for site in sites},
            recent={site.site_id: store.setting_changes(conn, site.site_id, RECENT_CHANGES) for site in sites},
        )

    @app.post("/sites/{site_id}", dependencies=changes)
    async def save_site(request: Request, site_id: str, conn: Database, permissions: Allowed) -> Response:
        site = _site_or_404(conn, site_id)
        _refuse(permissions.site_refusal(site.komoju_conn_id))
        fields, as_form = await change_request(request)
        wanted = settings.parse(fields, settings.SITE_FIELDS, partial=True)
        actor = _actor(permissions)
        done = audit.apply(conn, lambda: store.update_site(conn, site_id, wanted, actor), actor)
        return _changed(request, as_form, "/", done)

    @app.get("/sites/{site_id}/payment-methods", response_class=HTMLResponse)
    def methods_page(request: Request, site_id: str, conn: Database, lang: Lang, permissions: Allowed) -> HTMLResponse:
        _refuse(permissions.read_refusal([access.PAYMENT_METHODS_DAG]))
        site = _site_or_404(conn, site_id)
        return _page(
            request,
            lang,
            "methods.html",
            permissions,
            site=site,
            methods=store.payment_methods(conn, site_id),
            read_only=permissions.methods_missing(),
        )

    # A payment-method change: the fields it needs, and the store function that makes it with their values.
    method_changes = {
        "toggle": (settings.TOGGLE_FIELDS, store.set_payment_method_enabled),
        "move": (settings.MOVE_FIELDS, store.move_payment_method),
    }

    @app.post("/sites/{site_id}/payment-methods/{change}", dependencies=changes)
    async def change_method(
        request: Request, site_id: str, change: str, conn: Database, permissions: Allowed
    ) -> Response:
        if change not in method_changes:
            raise HTTPException(status_code=404, detail=f"Unknown payment-method change '{change}'.")
        fields, make = method_changes[change]
        _refuse(permissions.methods_refusal())
        body, as_form = await change_request(request)
        wanted = settings.parse(body, fields, partial=False)
        actor = _actor(permissions)
        done = audit.apply(
            conn,
            lambda: make(conn, site_id, *(wanted[name] for name in fields), actor),
            actor,
            dag_id=access.PAYMENT_METHODS_DAG,
        )
        return _changed(request, as_form, f"/sites/{site_id}/payment-methods", done)

    @app.get("/sites/{site_id}/orders", response_class=HTMLResponse)
    def orders_page(
        request: Request,
        site_id: str,
        conn: Database,
        lang: Lang,
        permissions: Allowed,
        job: str | None = None,
        status: str | None = None,
    ) -> HTMLResponse:
        jobs = {"cancel": access.CANCEL_DAG, "refund": access.REFUND_DAG}
        _refuse(permissions.read_refusal(list(jobs.values())))
        site = _site_or_404(conn, site_id)
        shown = [name for name, dag_id in jobs.items() if permissions.dag(access.READ, dag_id)]
        job = job if job in shown else None
        failures = [f for f in store.final_failures(conn, site_id, job, limit=500) if f.job in shown]
        if status in ("Rejected", "Failed"):
            failures = [f for f in failures if f.status == status]
        counts = store.order_status_counts(conn, site_id)
        return _page(
            request,
            lang,
            "orders.html",
            permissions,
            site=site,
            jobs=shown,
            counts={name: by_status for name, by_status in counts.items() if name in shown},
            failures=failures,
            job=job,
            status=status,
        )

    return app


def _actor(permissions: Permissions) -> Actor:
    return Actor(permissions.user_name, "page")
