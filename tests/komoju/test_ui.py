"""The KOMOJU UI app over HTTP (FastAPI's TestClient) against the real status database.

Airflow's login is replaced by a stand-in user except in the test proving an anonymous request gets 401; the
browser tests against a running Airflow cover the real login."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from komoju import store
from komoju.ui import create_app

SAME_ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def client(db):
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO komoju.site (site_id, name, notify_emails, email_locale) VALUES"
            " ('shop-ja', '<script>alert(1)</script>東京', '{ops@example.com}', 'ja'),"
            " ('shop-en', 'Global', '{}', 'en')"
        )
        cur.execute(
            "INSERT INTO komoju.final_failure (job, site_id, order_no, attempt_no, status, reason, amount, currency)"
            " VALUES ('refund', 'shop-ja', '<b>1001</b>', 1, 'Rejected', 'HTTP 422 not_refundable: <i>x</i>', 1200,"
            " 'JPY')"
        )
    db.commit()
    store.sync_payment_methods(
        db,
        "shop-ja",
        [
            {"type_slug": "credit_card", "currency": "JPY", "name_en": "Card", "name_ja": "カード"},
            {"type_slug": "konbini", "currency": "JPY", "name_en": "Konbini", "name_ja": "コンビニ"},
        ],
    )
    return TestClient(create_app(auth=lambda: {"username": "tester"}), base_url="http://testserver")


def _methods(db):
    db.rollback()
    return [(m.type_slug, m.enabled) for m in store.payment_methods(db, "shop-ja")]


def test_anonymous_requests_get_401(db):
    anonymous = TestClient(create_app())
    assert anonymous.get("/").status_code == 401
    assert anonymous.post("/sites/shop-ja/payment-methods/toggle", headers=SAME_ORIGIN).status_code == 401


def test_pages_render_escaped_in_the_chosen_language(client):
    page = client.get("/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert page.status_code == 200
    assert "KOMOJU payment settings" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;東京" in page.text
    assert "<script>alert" not in page.text
    assert "komoju_default" in page.text  # the connection is shown, never its secret
    japanese = client.get("/?lang=ja")
    assert "KOMOJU 決済設定" in japanese.text
    assert japanese.cookies.get("komoju_lang") == "ja"
    orders = client.get("/sites/shop-ja/orders?lang=en")
    assert "&lt;b&gt;1001&lt;/b&gt;" in orders.text
    assert "&lt;i&gt;x&lt;/i&gt;" in orders.text
    assert "1,200 JPY" in orders.text
    assert client.get("/sites/nope/orders").status_code == 404


def test_toggle_and_move_change_the_database(client, db):
    off = client.post(
        "/sites/shop-ja/payment-methods/toggle",
        data={"type_slug": "konbini", "currency": "JPY", "enabled": "false"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert off.status_code == 303
    assert _methods(db) == [("credit_card", True), ("konbini", False)]
    moved = client.post(
        "/sites/shop-ja/payment-methods/move",
        data={"type_slug": "konbini", "currency": "JPY", "position": "1"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert _methods(db) == [("konbini", False), ("credit_card", True)]
    page = client.get("/sites/shop-ja/payment-methods?lang=en")
    assert 'data-method="konbini:JPY" class="off"' in page.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Origin": "https://evil.example"}, {"Referer": "https://evil.example/form.html"}],
    ids=["no origin", "other origin", "other referer"],
)
def test_cross_site_changes_are_refused(client, db, headers):
    refused = client.post(
        "/sites/shop-ja/payment-methods/toggle",
        data={"type_slug": "konbini", "currency": "JPY", "enabled": "false"},
        headers=headers,
    )
    assert refused.status_code == 403
    assert _methods(db) == [("credit_card", True), ("konbini", True)]


def test_site_settings_are_validated_and_saved(client, db):
    saved = client.post(
        "/sites/shop-en",
        data={
            "name": "Global Store",
            "notify_emails": "a@example.com\nb@example.com",
            "email_locale": "en",
            "email_enabled": "true",
            "active": "true",
        },
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert saved.status_code == 303
    db.rollback()
    (site,) = store.sites(db, ["shop-en"])
    assert (site.name, site.notify_emails, site.email_locale, site.email_enabled) == (
        "Global Store",
        ("a@example.com", "b@example.com"),
        "en",
        True,
    )
    bad_email = client.post("/sites/shop-en", data={"notify_emails": "not-an-address"}, headers=SAME_ORIGIN)
    assert bad_email.status_code == 422
    assert "not-an-address" in bad_email.text
    bad_locale = client.post("/sites/shop-en", data={"email_locale": "fr"}, headers=SAME_ORIGIN)
    assert bad_locale.status_code == 422
    db.rollback()
    assert store.sites(db, ["shop-en"])[0].notify_emails == ("a@example.com", "b@example.com")
