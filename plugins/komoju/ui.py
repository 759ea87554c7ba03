"""The KOMOJU page inside the Airflow UI: sites, payment methods, order outcomes.

A FastAPI app the plugin ``plugins/komoju_ui.py`` mounts under ``/komoju`` on Airflow's API server. Every
endpoint requires an Airflow login (Bearer token or the UI's session cookie); every state change is a POST that
must come from the same origin (its ``Origin``, or ``Referer``, names this host), so another site cannot make a
logged-in browser change anything. Pages are server-rendered; Jinja2 escapes every value.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from email_validator import EmailNotValidError, validate_email
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from komoju import db, store
from komoju.money import format_amount

LANGUAGES = ("ja", "en")
LANG_COOKIE = "komoju_lang"
DAG_IDS = {
    "payment_methods": "komoju_update_payment_methods",
    "cancel": "komoju_cancel_process",
    "refund": "komoju_refund_process",
}
SITE_TASK_IDS = {"payment_methods": "sync_site", "cancel": "cancel_site", "refund": "refund_site"}

log = logging.getLogger(__name__)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("ui_templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_templates.filters["amount"] = lambda value, currency: format_amount(value, currency)

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


Database = Annotated[Any, Depends(_database)]
Lang = Annotated[str, Depends(language)]


def _page(request: Request, lang: str, template: str, **values: Any) -> HTMLResponse:
    base = request.scope.get("root_path", "")
    html = _templates.get_template(template).render(
        t=TEXT[lang], lang=lang, base=base, dag_ids=DAG_IDS, message=request.query_params.get("saved"), **values
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


def _back(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '')}{path}?saved=1", status_code=303)


def create_app(auth: Any = None) -> FastAPI:
    """The app; ``auth`` is the login dependency (Airflow's ``get_user`` unless a test passes its own)."""
    if auth is None:
        from airflow.api_fastapi.core_api.security import get_user as auth
    app = FastAPI(title="KOMOJU", dependencies=[Depends(auth)], docs_url=None, redoc_url=None, openapi_url=None)
    changes = [Depends(same_origin)]

    @app.get("/", response_class=HTMLResponse)
    def sites_page(request: Request, conn: Database, lang: Lang) -> HTMLResponse:
        sites = store.all_sites(conn)
        runs = _latest_runs([site.site_id for site in sites])
        return _page(request, lang, "sites.html", sites=sites, runs=runs, jobs=list(DAG_IDS))

    @app.post("/sites/{site_id}", dependencies=changes)
    def save_site(
        request: Request,
        site_id: str,
        conn: Database,
        name: Annotated[str, Form()] = "",
        notify_emails: Annotated[str, Form()] = "",
        email_locale: Annotated[str, Form()] = "ja",
        email_enabled: Annotated[bool, Form()] = False,
        active: Annotated[bool, Form()] = False,
    ) -> RedirectResponse:
        _site_or_404(conn, site_id)
        if email_locale not in LANGUAGES:
            raise HTTPException(status_code=422, detail=f"E-mail language must be one of {', '.join(LANGUAGES)}.")
        contacts = []
        for line in notify_emails.replace(",", "\n").splitlines():
            if not line.strip():
                continue
            try:
                contacts.append(validate_email(line.strip(), check_deliverability=False).normalized)
            except EmailNotValidError as exc:
                raise HTTPException(
                    status_code=422, detail=f"'{line.strip()}' is not an e-mail address: {exc}"
                ) from None
        store.update_site(
            conn,
            site_id,
            name=name.strip() or None,
            notify_emails=contacts,
            email_locale=email_locale,
            email_enabled=email_enabled,
            active=active,
        )
        return _back(request, "/")

    @app.get("/sites/{site_id}/payment-methods", response_class=HTMLResponse)
    def methods_page(request: Request, site_id: str, conn: Database, lang: Lang) -> HTMLResponse:
        site = _site_or_404(conn, site_id)
        return _page(request, lang, "methods.html", site=site, methods=store.payment_methods(conn, site_id))

    @app.post("/sites/{site_id}/payment-methods/toggle", dependencies=changes)
    def toggle_method(
        request: Request,
        site_id: str,
        conn: Database,
        type_slug: Annotated[str, Form()],
        currency: Annotated[str, Form()],
        enabled: Annotated[bool, Form()],
    ) -> RedirectResponse:
        if not store.set_payment_method_enabled(conn, site_id, type_slug, currency, enabled):
            raise HTTPException(status_code=404, detail=f"Site '{site_id}' has no method {type_slug} {currency}.")
        return _back(request, f"/sites/{site_id}/payment-methods")

    @app.post("/sites/{site_id}/payment-methods/move", dependencies=changes)
    def move_method(
        request: Request,
        site_id: str,
        conn: Database,
        type_slug: Annotated[str, Form()],
        currency: Annotated[str, Form()],
        position: Annotated[int, Form(ge=1)],
    ) -> RedirectResponse:
        if not store.move_payment_method(conn, site_id, type_slug, currency, position):
            raise HTTPException(status_code=404, detail=f"Site '{site_id}' has no method {type_slug} {currency}.")
        return _back(request, f"/sites/{site_id}/payment-methods")

    @app.get("/sites/{site_id}/orders", response_class=HTMLResponse)
    def orders_page(
        request: Request, site_id: str, conn: Database, lang: Lang, job: str | None = None, status: str | None = None
    ) -> HTMLResponse:
        site = _site_or_404(conn, site_id)
        job = job if job in ("cancel", "refund") else None
        failures = store.final_failures(conn, site_id, job, limit=500)
        if status in ("Rejected", "Failed"):
            failures = [f for f in failures if f.status == status]
        return _page(
            request,
            lang,
            "orders.html",
            site=site,
            counts=store.order_status_counts(conn, site_id),
            failures=failures,
            job=job,
            status=status,
        )

    return app
