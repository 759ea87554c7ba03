"""The failure e-mail: language, subject, escaping, amounts (pure)."""

from __future__ import annotations

from decimal import Decimal

from komoju.emails import FailureLine, LinkLine, failure_html, failure_subject, failure_text
from komoju.money import format_amount
from komoju.outcomes import Job

LINES = [
    FailureLine("<b>1001</b>", Decimal("1200.0000"), "JPY", "Rejected", "HTTP 422 not_refundable: <script>x</script>"),
    FailureLine("{{ 7 * 7 }}", Decimal("12.5"), "USD", "Failed", "HTTP 404 not_found: Not found & gone"),
]


def test_subject_names_job_site_and_count_in_the_sites_language():
    assert failure_subject(Job.REFUND, "Shop JA", 2, "ja") == "[KOMOJU] 返金できなかった注文 2件 (サイト: Shop JA)"
    english = failure_subject(Job.CANCEL, "Shop EN", 1, "en")
    assert english == "[KOMOJU] 1 order could not be cancelled (site: Shop EN)"
    assert failure_subject(Job.REFUND, "Shop EN", 3, "en") == "[KOMOJU] 3 orders could not be refunded (site: Shop EN)"
    assert "\n" not in failure_subject(Job.CANCEL, "evil\nBcc: x@example.com", 1, "en")


def test_body_escapes_every_value_and_formats_amounts():
    html = failure_html(Job.REFUND, "Shop <JA>", LINES, "en")
    assert "&lt;b&gt;1001&lt;/b&gt;" in html
    assert "<b>1001" not in html
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    assert "Not found &amp; gone" in html
    assert "{{ 7 * 7 }}" in html
    assert "Shop &lt;JA&gt;" in html
    assert "1,200 JPY" in html
    assert "12.50 USD" in html
    assert "KOMOJU dashboard" in html
    assert "settle it by hand" in html


def test_body_in_japanese_with_statuses_in_japanese():
    html = failure_html(Job.CANCEL, "ショップ", LINES, "ja")
    assert "キャンセルできなかった注文が 2件" in html
    assert "KOMOJU ダッシュボード" in html
    assert "注文番号" in html
    assert "<td>拒否</td>" in html
    assert "<td>失敗</td>" in html
    assert "Rejected" not in html
    assert "Failed" not in html


def test_the_plain_text_part_says_the_same_without_markup():
    links = [LinkLine("2001", Decimal("1500"), "JPY", "https://komoju.example/r/1")]
    text = failure_text(Job.REFUND, "Shop <JA>", LINES, "en", links)
    assert text.startswith("On site \u201cShop <JA>\u201d, the KOMOJU payments of 2 orders could not be refunded.")
    assert "- <b>1001</b> | 1,200 JPY | Rejected | HTTP 422 not_refundable: <script>x</script>" in text
    assert "- {{ 7 * 7 }} | 12.50 USD | Failed | HTTP 404 not_found: Not found & gone" in text
    assert "- 2001 | 1,500 JPY | https://komoju.example/r/1" in text
    assert "settle it by hand" in text
    assert "&lt;" not in text, "plain text is not escaped"
    japanese = failure_text(Job.REFUND, "ショップ", LINES[:1], "ja")
    assert "| 拒否 |" in japanese
    assert "返金できなかった注文が 1件" in japanese


def test_format_amount():
    assert format_amount(Decimal("1200.0000"), "JPY") == "1,200 JPY"
    assert format_amount(Decimal("1234567.5"), "USD") == "1,234,567.50 USD"
    assert format_amount(Decimal("5"), "KRW") == "5 KRW"
    assert format_amount(None, "JPY") == "— JPY"
    assert format_amount(Decimal("7.25"), "XYZ") == "7.25 XYZ"


def test_links_for_customers_get_a_section_of_their_own_escaped():
    links = [LinkLine("<i>2001</i>", Decimal("1500"), "JPY", 'https://komoju.example/r/1?a=1&b="x"')]
    html = failure_html(Job.REFUND, "Shop", [], "en", links)
    assert "bank account" in html
    assert "could not be refunded" not in html, "no failure, no failure table"
    assert "&lt;i&gt;2001&lt;/i&gt;" in html
    assert 'href="https://komoju.example/r/1?a=1&amp;b=&quot;x&quot;"' in html
    assert "1,500 JPY" in html
    both = failure_html(Job.REFUND, "Shop", LINES, "ja", links)
    assert "返金先口座" in both
    assert both.index("KOMOJU からの理由") < both.index("お客様用リンク")
    assert failure_subject(Job.REFUND, "Shop", 0, "en", links=1) == (
        "[KOMOJU] 1 refund need the customer's bank account (site: Shop)"
    )
    assert failure_subject(Job.REFUND, "Shop", 2, "en", links=1).startswith("[KOMOJU] 2 orders could not")
