"""The e-mail a site's contacts receive: subject, an HTML body and the same as plain text, in the site's language.
Pure.

It lists the orders the job gave up on (to settle by hand in KOMOJU's dashboard) and, for cash payments whose
refund waits for the customer's bank account, the links to forward to those customers.
"""

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


@dataclass(frozen=True)
class LinkLine:
    """A refund KOMOJU will make once the customer gives a bank account at ``url``: to forward to them."""

    order_no: str
    amount: Decimal | None
    currency: str | None
    url: str


# "{orders}" is the count with its noun ("1 order", "2 orders"; Japanese has one form): see _counted.
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
        "status.Rejected": "拒否",
        "status.Failed": "失敗",
        "subject.links": "[KOMOJU] お客様の口座情報が必要な返金 {count}件 (サイト: {site})",
        "links": (
            "次の注文の返金には、お客様による返金先口座の入力が必要です。各お客様にリンクを送ってください。"
            "入力が済むと KOMOJU が返金し、ジョブが「返金済み」に更新します。"
        ),
        "link": "お客様用リンク",
        "footer": "このメールは komoju-airflow のジョブ「{job_id}」が送信しました。",
    },
    "en": {
        "subject.cancel": "[KOMOJU] {orders} could not be cancelled (site: {site})",
        "subject.refund": "[KOMOJU] {orders} could not be refunded (site: {site})",
        "lead.cancel": "On site \u201c{site}\u201d, the KOMOJU payments of {orders} could not be cancelled.",
        "lead.refund": "On site \u201c{site}\u201d, the KOMOJU payments of {orders} could not be refunded.",
        "action": (
            "The job will not retry them. Please check each payment in the KOMOJU dashboard ({dashboard}) and "
            "settle it by hand."
        ),
        "order_no": "Order number",
        "amount": "Amount",
        "status": "Status",
        "reason": "KOMOJU's reason",
        "status.Rejected": "Rejected",
        "status.Failed": "Failed",
        "subject.links": "[KOMOJU] {refunds} need the customer's bank account (site: {site})",
        "links": (
            "KOMOJU refunds these orders once each customer has given a bank account: please send each customer "
            "their link. The job marks the order Refunded when KOMOJU has refunded it."
        ),
        "link": "Link for the customer",
        "footer": "Sent by the komoju-airflow job \u201c{job_id}\u201d.",
    },
}

JOB_DAG_IDS = {Job.CANCEL: "komoju_cancel_process", Job.REFUND: "komoju_refund_process"}


def _counted(count: int, noun: str) -> str:
    """``1 order``, ``2 orders`` (English; the Japanese texts put the count before 件 themselves)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _fill(template: str, *, count: int, site: str, **extra: str) -> str:
    return template.format(
        count=count, site=site, orders=_counted(count, "order"), refunds=_counted(count, "refund"), **extra
    )


def failure_subject(job: Job, site_label: str, count: int, locale: str, links: int = 0) -> str:
    """The subject line: job, site and count of failures (or, without failures, of customer links), in the
    site's language (plain text, no HTML)."""
    key, count = (f"subject.{job.value}", count) if count else ("subject.links", links)
    return _fill(_texts(locale)[key], count=count, site=_one_line(site_label))


def status_word(status: str, locale: str) -> str:
    """A final failure's status as the site's language says it."""
    return _texts(locale).get(f"status.{status}", status)


def failure_html(
    job: Job, site_label: str, failures: Sequence[FailureLine], locale: str, links: Sequence[LinkLine] = ()
) -> str:
    """The HTML body: what happened, the table of orders, and what to do; then the links to forward to customers.
    Every value is escaped."""
    text = _texts(locale)
    site = escape(_one_line(site_label))
    parts = ['<html><body style="font-family:sans-serif">\n']
    if failures:
        rows = "\n".join(
            "<tr>"
            f"<td>{escape(line.order_no)}</td>"
            f'<td style="text-align:right;white-space:nowrap">{escape(format_amount(line.amount, line.currency))}</td>'
            f"<td>{escape(status_word(line.status, locale))}</td>"
            f"<td>{escape(line.reason)}</td>"
            "</tr>"
            for line in failures
        )
        parts += [
            f"<p>{_fill(text[f'lead.{job.value}'], count=len(failures), site=site)}</p>\n",  # site: escaped above
            f"<p><strong>{escape(text['action'].format(dashboard=DASHBOARD_URL))}</strong></p>\n",
            _html_table(text, ("order_no", "amount", "status", "reason"), rows),
        ]
    if links:
        rows = "\n".join(
            "<tr>"
            f"<td>{escape(line.order_no)}</td>"
            f'<td style="text-align:right;white-space:nowrap">{escape(format_amount(line.amount, line.currency))}</td>'
            f'<td><a href="{escape(line.url)}">{escape(line.url)}</a></td>'
            "</tr>"
            for line in links
        )
        parts += [
            f"<p><strong>{escape(text['links'])}</strong></p>\n",
            _html_table(text, ("order_no", "amount", "link"), rows),
        ]
    parts.append(f"<p>{escape(text['footer'].format(job_id=JOB_DAG_IDS[job]))}</p>\n</body></html>\n")
    return "".join(parts)


def failure_text(
    job: Job, site_label: str, failures: Sequence[FailureLine], locale: str, links: Sequence[LinkLine] = ()
) -> str:
    """The same as :func:`failure_html`, as plain text (the e-mail's text/plain part)."""
    text = _texts(locale)
    site = _one_line(site_label)
    blocks = []
    if failures:
        lines = [
            f"- {_one_line(f.order_no)} | {format_amount(f.amount, f.currency)} | {status_word(f.status, locale)} | "
            f"{_one_line(f.reason)}"
            for f in failures
        ]
        header = " | ".join(text[k] for k in ("order_no", "amount", "status", "reason"))
        blocks += [
            _fill(text[f"lead.{job.value}"], count=len(failures), site=site),
            text["action"].format(dashboard=DASHBOARD_URL),
            "\n".join([header, *lines]),
        ]
    if links:
        lines = [f"- {_one_line(x.order_no)} | {format_amount(x.amount, x.currency)} | {x.url}" for x in links]
        header = " | ".join(text[k] for k in ("order_no", "amount", "link"))
        blocks += [text["links"], "\n".join([header, *lines])]
    blocks.append(text["footer"].format(job_id=JOB_DAG_IDS[job]))
    return "\n\n".join(blocks) + "\n"


def _html_table(text: dict[str, str], columns: tuple[str, ...], rows: str) -> str:
    header = "".join(f"<th>{escape(text[k])}</th>" for k in columns)
    return (
        '<table border="1" cellpadding="4" cellspacing="0">\n'
        f"<thead><tr>{header}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n"
    )


def _texts(locale: Any) -> dict[str, str]:
    return _TEXT.get(locale, _TEXT["ja"])  # komoju.site.email_locale defaults to ja


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
