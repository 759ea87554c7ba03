"""The end-to-end scenario: sites, KOMOJU merchants and payments, orders, and what each job must make of them.

Every row of SPEC §4.2/§4.3/§4.4/§6 is one :class:`Case`: the order as the storefront wrote it, the payment
KOMOJU holds for it, and the expected outcome (status, words of the response, the effect at KOMOJU, whether it
is a final failure that must be e-mailed). Helpers here write the scenario to Postgres, build the emulator's
scenario document, and read back what the tests compare.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape
from typing import Any

from testkit import payment, pid

HOSTED = "KOMOJU_HOSTED_PAGE"
ORDER_COLUMNS = (
    "site_id",
    "order_no",
    "status",
    "payment_status",
    "payment_method",
    "komoju_payment_id",
    "total_gross_price",
    "currency",
    "komoju_cancel_status",
    "komoju_cancel_response",
    "komoju_refund_status",
    "komoju_refund_response",
)
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


@dataclass(frozen=True)
class Site:
    """A ``komoju.site`` row and the KOMOJU merchant its connection reaches."""

    site_id: str
    name: str
    conn_id: str
    merchant: str
    secret_key: str
    emails: tuple[str, ...]
    locale: str = "ja"
    email_enabled: bool = True
    active: bool = True

    @property
    def label(self) -> str:
        return self.name or self.site_id

    @property
    def wants_email(self) -> bool:
        return self.email_enabled and bool(self.emails)


@dataclass(frozen=True)
class Case:
    """One order of the scenario and what the run of ``job`` must make of it.

    ``payment``: the payment KOMOJU holds (None: KOMOJU does not know the id). ``payment_id``: what the order
    stores, by default the payment's id. ``expect``: the order's status after the job, None for "untouched".
    ``effect``: the amount (smallest unit) of the one cancel/refund KOMOJU must apply, None for no effect.
    ``no_call``: the order is failed without calling KOMOJU. ``fault``: a fault firing once on its POST.
    """

    job: str
    site: Site
    order_no: str
    amount: str | None
    currency: str | None
    payment: dict[str, Any] | None = None
    payment_id: str | None = field(default=None)
    status: str = "cancelled"
    payment_status: str | None = None
    payment_method: str | None = HOSTED
    prior_status: str | None = None
    prior_response: str | None = None
    expect: str | None = None
    response_has: tuple[str, ...] = ()
    effect: int | None = None
    final: bool = False
    no_call: bool = False
    fault: str | None = None

    @property
    def stored_payment_id(self) -> str | None:
        if self.payment_id is not None or self.payment is None:
            return self.payment_id
        return self.payment["id"]

    @property
    def key(self) -> tuple[str, str]:
        return (self.site.site_id, self.order_no)

    @property
    def called(self) -> bool:
        """Whether the job must send KOMOJU a request about this order."""
        return self.expect is not None and not self.no_call

    @property
    def order_payment_status(self) -> str:
        return self.payment_status or ("not_paid" if self.job == "cancel" else "paid")


# ---------------------------------------------------------------------------------------------------------------
# The three sites of the acceptance scenario
# ---------------------------------------------------------------------------------------------------------------

JP = Site(
    "jp-store",
    "東京本店 Tokyo",
    "komoju_default",
    "merchant-jp",
    "sk_test_e2e_jp_merchant_key",
    ("ops-jp@example.com",),
    locale="ja",
)
EN = Site(
    "en-store",
    "Global Store",
    "komoju_en_merchant",
    "merchant-en",
    "sk_test_e2e_en_merchant_key",
    ("ops-en@example.com", "finance-en@example.com"),
    locale="en",
)
QUIET = Site(
    "quiet-store",
    "Outlet (e-mails off)",
    "komoju_default",
    "merchant-jp",
    "sk_test_e2e_jp_merchant_key",
    ("quiet@example.com",),
    locale="ja",
    email_enabled=False,
)
SITES = (JP, EN, QUIET)

SQL_PAYMENT_ID = "x' OR '1'='1'; DROP TABLE komoju.orders; --"
SQL_PAYMENT_ID_2 = "'; UPDATE komoju.orders SET komoju_refund_status = 'Refunded'; --"
HTML_CANCEL_ORDER = "<b>JP-C11</b>"
JINJA_CANCEL_ORDER = "JP-C12 {{ 7 * 7 }}"
HTML_REFUND_ORDER = "<b>JP-R13</b>"
JINJA_REFUND_ORDER = "JP-R14 {{ 7 * 7 }}"

CANCELLED = ("cancelled",)
NOT_CANCELLABLE = "not_cancellable"
NOT_REFUNDABLE = "not_refundable"
NOT_FOUND = ("404", "not_found")


def _cancel_cases() -> list[Case]:
    def c(site: Site, no: str, amount: str | None, currency: str | None = "JPY", **kw: Any) -> Case:
        return Case("cancel", site, no, amount, currency, **kw)

    return [
        # JP site: every outcome of SPEC §4.2 and §4.4
        c(JP, "JP-C01", "1000", payment=payment("jpc01", "pending", 1000), expect="Cancelled",
          response_has=CANCELLED, effect=1000),
        c(JP, "JP-C02", "2500", payment=payment("jpc02", "authorized", 2500), expect="Cancelled",
          response_has=CANCELLED, effect=2500),
        # already cancelled at KOMOJU: not_cancellable, then GET shows cancelled -> the goal is reached
        c(JP, "JP-C03", "1000", payment=payment("jpc03", "cancelled", 1000), expect="Cancelled",
          response_has=CANCELLED),
        c(JP, "JP-C04", "1200", payment=payment("jpc04", "captured", 1200), expect="Rejected",
          response_has=(NOT_CANCELLABLE, "captured"), final=True),
        c(JP, "JP-C05", "800", payment=payment("jpc05", "expired", 800), expect="Rejected",
          response_has=(NOT_CANCELLABLE, "expired"), final=True),
        c(JP, "JP-C06", "1500", payment_id=pid("jpc06unknown"), expect="Failed", response_has=NOT_FOUND,
          final=True),
        c(JP, "JP-C07", "900", payment_id=SQL_PAYMENT_ID, expect="Failed", response_has=("payment id",),
          final=True, no_call=True),
        # a Failed order (e.g. left by the SFCC cartridge) is tried again
        c(JP, "JP-C08", "1100", payment=payment("jpc08", "pending", 1100), prior_status="Failed",
          prior_response="HTTP 500 internal_server_error (cartridge)", expect="Cancelled", response_has=CANCELLED,
          effect=1100),
        c(JP, "JP-C09", "1300", payment=payment("jpc09", "pending", 1300), fault="error_500", expect="Cancelled",
          response_has=CANCELLED, effect=1300),
        c(JP, "JP-C10", "1400", payment=payment("jpc10", "pending", 1400), fault="applied_500",
          expect="Cancelled", response_has=CANCELLED, effect=1400),
        c(JP, HTML_CANCEL_ORDER, "3000", payment=payment("jpc11", "captured", 3000), expect="Rejected",
          response_has=(NOT_CANCELLABLE,), final=True),
        c(JP, JINJA_CANCEL_ORDER, "700", payment=payment("jpc12", "captured", 700), expect="Rejected",
          response_has=(NOT_CANCELLABLE,), final=True),
        # not eligible: untouched, and KOMOJU never hears of them (their payments would be cancellable)
        c(JP, "JP-C13", "1000", status="completed", payment=payment("jpc13", "pending", 1000)),
        c(JP, "JP-C14", "1000", payment_method="CREDIT_CARD", payment=payment("jpc14", "pending", 1000)),
        c(JP, "JP-C15", "1000", prior_status="Cancelled", prior_response="done earlier",
          payment=payment("jpc15", "pending", 1000)),
        c(JP, "JP-C16", "1000", prior_status="Rejected", prior_response="refused earlier",
          payment=payment("jpc16", "pending", 1000)),
        c(JP, "JP-C17", "1000", payment_id=None),
        c(JP, "JP-C18", "1000", payment_id=""),
        c(JP, "JP-C19", "1000", payment_status="part_paid", payment=payment("jpc19", "pending", 1000)),
        c(JP, "JP-C20", "1000", status="open", payment=payment("jpc20", "pending", 1000)),
        # EN site, its own KOMOJU merchant, amounts in USD
        c(EN, "EN-C01", "12.50", "USD", payment=payment("enc01", "pending", 1250, "USD"), expect="Cancelled",
          response_has=CANCELLED, effect=1250),
        c(EN, "EN-C02", "30.00", "USD", payment=payment("enc02", "authorized", 3000, "USD"), expect="Cancelled",
          response_has=CANCELLED, effect=3000),
        c(EN, "EN-C03", "12.50", "USD", payment=payment("enc03", "captured", 1250, "USD"), expect="Rejected",
          response_has=(NOT_CANCELLABLE, "captured"), final=True),
        c(EN, "EN-C04", "9.99", "USD", payment_id=pid("enc04unknown"), expect="Failed", response_has=NOT_FOUND,
          final=True),
        c(EN, "EN-C05", "5.00", "USD", payment=payment("enc05", "cancelled", 500, "USD"), expect="Cancelled",
          response_has=CANCELLED),
        c(EN, "<b>EN-C06</b>", "20.00", "USD", payment=payment("enc06", "expired", 2000, "USD"),
          expect="Rejected", response_has=(NOT_CANCELLABLE, "expired"), final=True),
        c(EN, "EN-C07", "10.00", "USD", status="completed", payment=payment("enc07", "pending", 1000, "USD")),
        # e-mails off: processed the same, never e-mailed
        c(QUIET, "QT-C01", "1000", payment=payment("qtc01", "pending", 1000), expect="Cancelled",
          response_has=CANCELLED, effect=1000),
        c(QUIET, "QT-C02", "1200", payment=payment("qtc02", "captured", 1200), expect="Rejected",
          response_has=(NOT_CANCELLABLE,), final=True),
        c(QUIET, "QT-C03", "1000", payment_id=pid("qtc03unknown"), expect="Failed", response_has=NOT_FOUND,
          final=True),
        c(QUIET, "QT-C04", "1000", prior_status="Rejected", prior_response="refused earlier",
          payment=payment("qtc04", "pending", 1000)),
    ]  # fmt: skip


def _refund_cases() -> list[Case]:
    def r(site: Site, no: str, amount: str | None, currency: str | None = "JPY", **kw: Any) -> Case:
        return Case("refund", site, no, amount, currency, **kw)

    konbini = {"payment_type": "konbini"}
    return [
        r(JP, "JP-R01", "1000", payment=payment("jpr01", "captured", 1000), expect="Refunded",
          response_has=("refunded",), effect=1000),
        # partly refunded before: the job refunds the whole remainder
        r(JP, "JP-R02", "5000", payment=payment("jpr02", "captured", 5000, amount_refunded=2000),
          expect="Refunded", response_has=("refunded",), effect=3000),
        # already refunded at KOMOJU: not_refundable, then GET shows refunded -> the goal is reached
        r(JP, "JP-R03", "1800", payment=payment("jpr03", "refunded", 1800), expect="Refunded",
          response_has=("refunded",)),
        r(JP, "JP-R04", "1200", payment=payment("jpr04", "captured", 1200, **konbini), expect="Rejected",
          response_has=(NOT_REFUNDABLE, "konbini"), final=True),
        r(JP, "JP-R05", "900", payment=payment("jpr05", "pending", 900), expect="Rejected",
          response_has=(NOT_REFUNDABLE, "pending"), final=True),
        # a refund moves money: unknown currency or negative amount -> reported, never sent
        r(JP, "JP-R06", "1000", "XYZ", payment=payment("jpr06", "captured", 1000), expect="Failed",
          response_has=("currency", "XYZ"), final=True, no_call=True),
        r(JP, "JP-R07", "-500", payment=payment("jpr07", "captured", 500), expect="Failed",
          response_has=("-500",), final=True, no_call=True),
        r(JP, "JP-R08", "1000", payment_id=pid("jpr08unknown"), expect="Failed", response_has=NOT_FOUND,
          final=True),
        r(JP, "JP-R09", "1000", payment_id=SQL_PAYMENT_ID_2, expect="Failed", response_has=("payment id",),
          final=True, no_call=True),
        r(JP, "JP-R10", "1600", payment=payment("jpr10", "captured", 1600), prior_status="Failed",
          prior_response="HTTP 503 (cartridge)", expect="Refunded", response_has=("refunded",), effect=1600),
        r(JP, "JP-R11", "1700", payment=payment("jpr11", "captured", 1700), fault="error_500",
          expect="Refunded", response_has=("refunded",), effect=1700),
        r(JP, "JP-R12", "1900", payment=payment("jpr12", "captured", 1900), fault="applied_500",
          expect="Refunded", response_has=("refunded",), effect=1900),
        r(JP, HTML_REFUND_ORDER, "2000", payment=payment("jpr13", "captured", 2000, **konbini), expect="Rejected",
          response_has=(NOT_REFUNDABLE,), final=True),
        r(JP, JINJA_REFUND_ORDER, "600", payment=payment("jpr14", "pending", 600), expect="Rejected",
          response_has=(NOT_REFUNDABLE,), final=True),
        # not eligible
        r(JP, "JP-R15", "1000", status="completed", payment=payment("jpr15", "captured", 1000)),
        r(JP, "JP-R16", "1000", payment_method="PAYPAL", payment=payment("jpr16", "captured", 1000)),
        r(JP, "JP-R17", "1000", prior_status="Refunded", prior_response="done earlier",
          payment=payment("jpr17", "captured", 1000)),
        r(JP, "JP-R18", "1000", prior_status="Rejected", prior_response="refused earlier",
          payment=payment("jpr18", "captured", 1000)),
        r(JP, "JP-R19", "1000", payment_id=None),
        # EN site
        r(EN, "EN-R01", "12.50", "USD", payment=payment("enr01", "captured", 1250, "USD"), expect="Refunded",
          response_has=("refunded",), effect=1250),
        r(EN, "EN-R02", "45.00", "USD", payment=payment("enr02", "captured", 4500, "USD", amount_refunded=1000),
          expect="Refunded", response_has=("refunded",), effect=3500),
        r(EN, "EN-R03", "12.50", "USD", payment=payment("enr03", "pending", 1250, "USD"), expect="Rejected",
          response_has=(NOT_REFUNDABLE, "pending"), final=True),
        r(EN, "EN-R04", "7.25", "USD", payment_id=pid("enr04unknown"), expect="Failed", response_has=NOT_FOUND,
          final=True),
        r(EN, "EN-R05", "10.00", "USD", prior_status="Refunded", prior_response="done earlier",
          payment=payment("enr05", "captured", 1000, "USD")),
        # e-mails off
        r(QUIET, "QT-R01", "1000", payment=payment("qtr01", "captured", 1000), expect="Refunded",
          response_has=("refunded",), effect=1000),
        r(QUIET, "QT-R02", "1200", payment=payment("qtr02", "captured", 1200, **konbini), expect="Rejected",
          response_has=(NOT_REFUNDABLE,), final=True),
        r(QUIET, "QT-R03", "-100", payment=payment("qtr03", "captured", 100), expect="Failed",
          response_has=("-100",), final=True, no_call=True),
    ]  # fmt: skip


CASES: tuple[Case, ...] = (*_cancel_cases(), *_refund_cases())


# ---------------------------------------------------------------------------------------------------------------
# Writing the scenario
# ---------------------------------------------------------------------------------------------------------------


def emulator_scenario(cases: tuple[Case, ...] = CASES, sites: tuple[Site, ...] = SITES) -> dict[str, Any]:
    """The emulator's scenario: one merchant per distinct merchant id, its key, its cases' payments and faults."""
    merchants: dict[str, dict[str, Any]] = {}
    for site in sites:
        merchant = merchants.setdefault(site.merchant, {"id": site.merchant, "keys": [], "payments": []})
        if site.secret_key not in merchant["keys"]:
            merchant["keys"].append(site.secret_key)
    faults = []
    for case in cases:
        if case.payment is not None:
            merchants[case.site.merchant]["payments"].append(case.payment)
        if case.fault:
            match = {"method": "POST", "payment_id": case.payment["id"]}
            faults.append({"kind": case.fault, "match": match, "times": 1})
    return {"description": "komoju-airflow e2e acceptance scenario", "seed": 7, "faults": faults,
            "merchants": list(merchants.values())}  # fmt: skip


def insert_sites(conn: Any, sites: tuple[Site, ...] | list[Site]) -> None:
    """Write the sites as an integrator would; commits."""
    with conn.cursor() as cur:
        for site in sites:
            cur.execute(
                "INSERT INTO komoju.site (site_id, name, komoju_conn_id, notify_emails, email_locale, email_enabled,"
                " active) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (site.site_id, site.name, site.conn_id, list(site.emails), site.locale, site.email_enabled,
                 site.active),
            )  # fmt: skip
    conn.commit()


def insert_orders(conn: Any, cases: tuple[Case, ...] | list[Case]) -> None:
    """Write the orders as the storefront's order sync would; commits."""
    with conn.cursor() as cur:
        for case in cases:
            prior = (case.prior_status, case.prior_response)
            cancel_prior, refund_prior = (prior, (None, None)) if case.job == "cancel" else ((None, None), prior)
            cur.execute(
                "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method,"
                " komoju_payment_id, total_gross_price, currency, komoju_cancel_status, komoju_cancel_response,"
                " komoju_refund_status, komoju_refund_response) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s)",
                (case.site.site_id, case.order_no, case.status, case.order_payment_status, case.payment_method,
                 case.stored_payment_id, case.amount, case.currency, *cancel_prior, *refund_prior),
            )  # fmt: skip
    conn.commit()


def setup_database(conn: Any, cases: tuple[Case, ...] = CASES, sites: tuple[Site, ...] = SITES) -> None:
    insert_sites(conn, sites)
    insert_orders(conn, cases)


# ---------------------------------------------------------------------------------------------------------------
# Reading back
# ---------------------------------------------------------------------------------------------------------------


def orders_table(conn: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Every order, every interface column, keyed by (site_id, order_no)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(ORDER_COLUMNS)} FROM komoju.orders")  # noqa: S608 (fixed column list)
        rows = {(row[0], row[1]): dict(zip(ORDER_COLUMNS, row, strict=True)) for row in cur.fetchall()}
    conn.commit()
    return rows


def query(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.commit()
    return rows


def row_problems(
    job: str, cases: tuple[Case, ...], before: dict[tuple[str, str], dict], after: dict[tuple[str, str], dict]
) -> list[str]:
    """Every way the orders after ``job``'s run differ from the cases' expectations (empty when all is well)."""
    problems = []
    status_col, response_col = f"komoju_{job}_status", f"komoju_{job}_response"
    assert set(before) == set(after), "orders appeared or disappeared"
    for case in cases:
        old, new = before[case.key], after[case.key]
        if case.job != job or case.expect is None:
            if new != old:
                problems.append(f"{case.key}: must be untouched, was {old} now {new}")
            continue
        if new[status_col] != case.expect:
            problems.append(f"{case.key}: {status_col} {new[status_col]!r}, expected {case.expect!r}")
        response = new[response_col] or ""
        missing = [part for part in case.response_has if part.lower() not in response.lower()]
        if missing:
            problems.append(f"{case.key}: {response_col} {response!r} lacks {missing}")
        others = {k: v for k, v in new.items() if k not in (status_col, response_col)}
        if others != {k: v for k, v in old.items() if k not in (status_col, response_col)}:
            problems.append(f"{case.key}: columns other than {status_col}/{response_col} changed: {old} -> {new}")
    return problems


def effects_by_payment(entries: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """``{payment id: [(action, amount), ...]}`` of the ledger's state changes."""
    found: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for entry in entries:
        if entry["type"] == "effect":
            found[entry["payment_id"]].append((entry["action"], entry["amount"]))
    return dict(found)


def formatted_amount(amount: str | None, currency: str | None) -> str | None:
    """How SPEC §4.4 wants the amount shown (JPY without decimals, USD with two); None where it says nothing."""
    if amount is None or currency not in ("JPY", "USD"):
        return None
    places = 0 if currency == "JPY" else 2
    return f"{Decimal(amount):,.{places}f} {currency}"


def is_japanese(text: str) -> bool:
    return bool(_JAPANESE.search(text))


def escaped(text: str) -> str:
    """``text`` as it must appear in an HTML body (markup characters escaped)."""
    return escape(text, quote=False)
