"""The failure e-mail a site's contacts receive: subject and HTML body, in the site's language. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any

from komoju.money import format_amount
from komoju.outcomes import Job

DASHBOARD_URL = "https://komoju.com/admin"


@dataclass(frozen=True)
class FailureLine:
    """One order given up on, as the e-mail lists it."""

    order_no: str
    amount: Decimal | None
    currency: str | None
    status: str  # Rejected | Failed
    reason: str


_TEXT: dict[str, dict[str, str]] = {
    "ja": {
        "subject.cancel": "[KOMOJU] キャンセルできなかった注文 {count}件 (サイト: {site})",
        "subject.refund": "[KOMOJU] 返金できなかった注文 {count}件 (サイト: {site})",
        "lead.cancel": "サイト「{site}」で、KOMOJU の決済をキャンセルできなかった注文が {count}件あります。",
        "lead.refund": "サイト「{site}」で、KOMOJU の決済を返金できなかった注文が {count}件あります。",
        "action": (
            "自動処理ではこれ以上再試行しません。KOMOJU ダッシュボード ({dashboard}) で各決済を確認し、"
            "手動で処理してください。"
        ),
        "order_no": "注文番号",
        "amount": "金額",
        "status": "状態",
        "reason": "KOMOJU からの理由",
        "footer": "このメールは komoju-airflow のジョブ「{job_id}」が送信しました。",
    },
    "en": {
        "subject.cancel": "[KOMOJU] {count} order(s) could not be cancelled (site: {site})",
        "subject.refund": "[KOMOJU] {count} order(s) could not be refunded (site: {site})",
        "lead.cancel": "On site \u201c{site}\u201d, KOMOJU payments of {count} order(s) could not be cancelled.",
        "lead.refund": "On site \u201c{site}\u201d, KOMOJU payments of {count} order(s) could not be refunded.",
        "action": (
            "The job will not retry them. Please check each payment in the KOMOJU dashboard ({dashboard}) and "
            "settle it by hand."
        ),
        "order_no": "Order number",
        "amount": "Amount",
        "status": "Status",
        "reason": "KOMOJU's reason",
        "footer": "Sent by the komoju-airflow job \u201c{job_id}\u201d.",
    },
}

JOB_DAG_IDS = {Job.CANCEL: "komoju_cancel_process", Job.REFUND: "komoju_refund_process"}


def failure_subject(job: Job, site_label: str, count: int, locale: str) -> str:
    """The subject line: job, site and count, in the site's language (plain text, no HTML)."""
    return _texts(locale)[f"subject.{job.value}"].format(count=count, site=_one_line(site_label))


def failure_html(job: Job, site_label: str, failures: Sequence[FailureLine], locale: str) -> str:
    """The HTML body: what happened, the table of orders, and what to do. Every value is escaped."""
    text = _texts(locale)
    site = escape(_one_line(site_label))
    rows = "\n".join(
        "<tr>"
        f"<td>{escape(line.order_no)}</td>"
        f'<td style="text-align:right">{escape(format_amount(line.amount, line.currency))}</td>'
        f"<td>{escape(line.status)}</td>"
        f"<td>{escape(line.reason)}</td>"
        "</tr>"
        for line in failures
    )
    header = "".join(f"<th>{escape(text[k])}</th>" for k in ("order_no", "amount", "status", "reason"))
    return (
        '<html><body style="font-family:sans-serif">\n'
        f"<p>{text[f'lead.{job.value}'].format(site=site, count=len(failures))}</p>\n"
        f"<p><strong>{escape(text['action'].format(dashboard=DASHBOARD_URL))}</strong></p>\n"
        '<table border="1" cellpadding="4" cellspacing="0">\n'
        f"<thead><tr>{header}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n"
        f"<p>{escape(text['footer'].format(job_id=JOB_DAG_IDS[job]))}</p>\n"
        "</body></html>\n"
    )


def _texts(locale: Any) -> dict[str, str]:
    return _TEXT.get(locale, _TEXT["ja"])  # komoju.site.email_locale defaults to ja


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
