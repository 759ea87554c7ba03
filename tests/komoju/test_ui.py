"""The KOMOJU page's JSON API served by Airflow's own API server app (its plugin loading, its SimpleAuthManager, its
login and audit log), against the real status database.

Each of SimpleAuthManager's roles (viewer, user, op, admin) logs in through ``POST /auth/token`` and tries every
page and every change; a refused change leaves the database and Airflow's audit log as they were, an allowed one
is recorded in both with the user's name."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from komoju import store

SAME_ORIGIN = {"Origin": "http://testserver"}
ROLES = ("viewer", "user", "op", "admin")  # tests/conftest.py configures one SimpleAuthManager user per role


@pytest.fixture
def api(airflow_api, db):
    client, tokens = airflow_api.client, airflow_api.tokens
    client.cookies.clear()  # no language chosen by an earlier test
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO komoju.site (site_id, name, notify_emails, email_locale) VALUES"
            " ('shop-ja', '<script>alert(1)</script>東京', '{ops@example.com}', 'ja'),"
            " ('shop-en', 'Global', '{}', 'en')"
        )
        cur.execute("INSERT INTO komoju.site (site_id, active) VALUES ('closed', false)")
        cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method, komoju_payment_id,"
            " total_gross_price, currency, komoju_refund_status) VALUES ('shop-ja', '<b>1001</b>', 'cancelled', 'paid',"
            " 'KOMOJU_HOSTED_PAGE', 'p1001', 1200, 'JPY', 'Rejected')"
        )
        cur.execute(
            "INSERT INTO komoju.final_failure (job, site_id, order_no, attempt_no, komoju_payment_id, status, reason,"
            " amount, currency)"
            " VALUES ('refund', 'shop-ja', '<b>1001</b>', 1, 'p1001', 'Rejected', 'HTTP 422 not_refundable: <i>x</i>',"
            " 1200, 'JPY')"
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
    return Api(client, tokens, db)


class Api:
    """The Airflow app as each role sees it, and the state a change may alter."""

    def __init__(self, client: TestClient, tokens: dict[str, dict[str, str]], db) -> None:
        self.client = client
        self.tokens = tokens
        self.db = db

    def get(self, role: str, path: str, **kwargs):
        headers = {**self.tokens[role], **kwargs.pop("headers", {})}
        return self.client.get(f"/komoju/api{path}", headers=headers, **kwargs)

    def post(self, role: str, path: str, **kwargs):
        headers = {**SAME_ORIGIN, **self.tokens[role], **kwargs.pop("headers", {})}
        return self.client.post(f"/komoju/api{path}", headers=headers, follow_redirects=False, **kwargs)

    def state(self) -> dict:
        """Everything a change could touch in the status database."""
        self.db.rollback()
        with self.db.cursor() as cur:
            cur.execute("SELECT * FROM komoju.site ORDER BY site_id")
            sites = cur.fetchall()
            cur.execute(
                "SELECT site_id, type_slug, currency, enabled, position FROM komoju.payment_method ORDER BY 1, 2"
            )
            methods = cur.fetchall()
            cur.execute("SELECT count(*) FROM komoju.setting_change")
            (changes,) = cur.fetchone()
        self.db.rollback()
        return {"sites": sites, "methods": methods, "changes": changes}

    def audit_log(self, event: str) -> list[dict]:
        """Airflow's audit log entries of ``event``, through its REST API, oldest first."""
        answer = self.client.get(
            "/api/v2/eventLogs", params={"event": event, "order_by": "id", "limit": 100}, headers=self.tokens["admin"]
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["event_logs"]

    def audit_count(self) -> int:
        return sum(
            len(self.audit_log(event))
            for event in ("komoju.payment_method.toggle", "komoju.payment_method.move", "komoju.site.update")
        )

    def recorded(self, site_id: str) -> list[store.SettingChange]:
        self.db.rollback()
        return store.setting_changes(self.db, site_id)


# --------------------------------------------------------------------------------------------- who may do what

CHANGES = {
    "toggle": (
        "/sites/shop-ja/payment-methods/toggle",
        {"type_slug": "konbini", "currency": "JPY", "enabled": "false"},
    ),
    "move": ("/sites/shop-ja/payment-methods/move", {"type_slug": "konbini", "currency": "JPY", "position": "1"}),
    "site": ("/sites/shop-ja", {"notify_emails": "outside@example.net", "active": "false"}),
}
ALLOWED = {  # SimpleAuthManager: user may edit DAGs; op may also edit connections
    "toggle": {"user", "op", "admin"},
    "move": {"user", "op", "admin"},
    "site": {"op", "admin"},
}
EVENTS = {"toggle": "komoju.payment_method.toggle", "move": "komoju.payment_method.move", "site": "komoju.site.update"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", ["/overview", "/sites/shop-ja", "/dashboard", "/runs/komoju_cancel_process/x"])
def test_every_role_may_read_every_page(api, role, path):
    page = api.get(role, path)
    assert page.status_code == 200, page.text
    if path == "/overview":
        assert page.json()["user"] == role


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("change", list(CHANGES))
def test_each_change_is_allowed_or_refused_by_role(api, role, change):
    path, form = CHANGES[change]
    before, audited_before = api.state(), api.audit_count()
    answer = api.post(role, path, json=form)
    if role not in ALLOWED[change]:
        assert answer.status_code == 403, answer.text
        detail = answer.json()["detail"]
        assert "edit access" in detail
        assert "Nothing was changed" in detail
        if change == "site":
            assert "komoju_cancel_process and komoju_refund_process" in detail
            assert "connection komoju_default" in detail
        else:
            assert "komoju_update_payment_methods" in detail
        assert api.state() == before, "a refused change must write nothing"
        assert api.audit_count() == audited_before
        return
    assert answer.status_code == 200, answer.text
    after = api.state()
    assert after != before
    recorded = api.recorded("shop-ja")
    assert recorded, "an allowed change is recorded beside the data"
    assert {(c.changed_by, c.channel, c.action) for c in recorded} == {(role, "page", EVENTS[change])}
    entries = api.audit_log(EVENTS[change])
    assert [entry["owner"] for entry in entries[-len(recorded) :]] == [role] * len(recorded)
    details = [json.loads(entry["extra"]) for entry in entries[-len(recorded) :]]
    assert {(d["site_id"], d["field"], json.dumps(d["old_value"]), json.dumps(d["new_value"])) for d in details} == {
        (c.site_id, c.field, json.dumps(c.old_value), json.dumps(c.new_value)) for c in recorded
    }


def test_changes_are_recorded_with_old_and_new_values(api):
    assert api.post("user", CHANGES["toggle"][0], json=CHANGES["toggle"][1]).status_code == 200
    assert (
        api.post("op", "/sites/shop-ja", json={"notify_emails": ["a@example.com", "b@example.com"]}).status_code == 200
    )
    toggle = api.audit_log("komoju.payment_method.toggle")[-1]  # Airflow's log keeps earlier tests' entries
    assert toggle["owner"] == "user"
    assert toggle["dag_id"] == "komoju_update_payment_methods"  # it also shows on that DAG's audit log
    assert json.loads(toggle["extra"]) == {
        "action": "komoju.payment_method.toggle",
        "site_id": "shop-ja",
        "subject": "konbini JPY",
        "field": "enabled",
        "old_value": True,
        "new_value": False,
        "channel": "page",
    }
    contacts = api.audit_log("komoju.site.update")[-1]
    assert json.loads(contacts["extra"])["old_value"] == ["ops@example.com"]
    assert json.loads(contacts["extra"])["new_value"] == ["a@example.com", "b@example.com"]
    site_changes, method_changes = api.recorded("shop-ja")  # newest first
    assert (site_changes.field, site_changes.changed_by, site_changes.old_value) == (
        "notify_emails",
        "op",
        ["ops@example.com"],
    )
    assert (method_changes.subject, method_changes.old_value, method_changes.new_value) == ("konbini JPY", True, False)
    recent = api.get("viewer", "/sites/shop-ja").json()["recent_changes"]  # the site's page shows its last changes
    assert [(c["changed_by"], c["field"], c["new_value"]) for c in recent] == [
        ("op", "notify_emails", ["a@example.com", "b@example.com"]),
        ("user", "enabled", False),
    ]


def test_pages_say_which_controls_a_role_may_use_and_why_not(api):
    def site(role):
        return api.get(role, "/sites/shop-ja").json()

    viewer, user, op = site("viewer"), site("user"), site("op")
    assert (viewer["payment_methods"]["can_edit"], viewer["can_edit"]) == (False, False)
    assert viewer["payment_methods"]["edit_missing"] == [{"kind": "dag", "name": "komoju_update_payment_methods"}]
    assert viewer["edit_missing"] == [
        {"kind": "dag", "name": "komoju_cancel_process"},
        {"kind": "dag", "name": "komoju_refund_process"},
        {"kind": "connection", "name": "komoju_default"},
    ]
    assert (user["payment_methods"]["can_edit"], user["can_edit"]) == (True, False)
    assert user["edit_missing"] == [{"kind": "connection", "name": "komoju_default"}]
    assert (op["payment_methods"]["can_edit"], op["can_edit"], op["edit_missing"]) == (True, True, [])
    overview = api.get("user", "/overview").json()
    assert [(s["site_id"], s["can_edit"]) for s in overview["sites"]] == [
        ("shop-en", False),
        ("shop-ja", False),
        ("closed", False),
    ], "active sites first"


def test_anonymous_requests_get_401_and_cross_site_changes_403(api):
    assert api.client.get("/komoju/api/overview").status_code == 401
    toggle = "/komoju/api/sites/shop-ja/payment-methods/toggle"
    assert api.client.post(toggle, headers=SAME_ORIGIN, json=CHANGES["toggle"][1]).status_code == 401
    before = api.state()
    for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/form.html"}):
        forged = api.client.post(toggle, headers={**api.tokens["admin"], **headers}, json=CHANGES["toggle"][1])
        assert forged.status_code == 403
    no_origin = api.client.post(toggle, headers=api.tokens["admin"], json=CHANGES["toggle"][1])
    assert no_origin.status_code == 403
    assert api.state() == before


# ------------------------------------------------------------------------------------------ bad input changes nothing

BAD_REQUESTS = {
    "empty JSON": ({"json": {}}, None),
    "form instead of JSON": ({"data": {"active": "false"}}, None),
    "unknown field": ({"json": {"colour": "red"}}, "colour"),
    "wrong content type": ({"content": b"active=false", "headers": {"Content-Type": "text/plain"}}, None),
    "no content type": ({"content": b"active=false"}, None),
    "JSON not an object": ({"json": ["active", False]}, None),
    "not JSON": ({"content": b"{active: false", "headers": {"Content-Type": "application/json"}}, None),
}


@pytest.mark.parametrize("route", ["site", "toggle", "move"])
@pytest.mark.parametrize("bad", list(BAD_REQUESTS))
def test_bad_requests_are_refused_and_change_nothing(api, route, bad):
    kwargs, field = BAD_REQUESTS[bad]
    before = api.state()
    answer = api.post("admin", CHANGES[route][0], **kwargs)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]
    if field:
        assert answer.json()["field"] == field
        assert f"'{field}'" in answer.json()["detail"]
    assert api.state() == before


@pytest.mark.parametrize("route", ["toggle", "move"])
def test_a_method_change_missing_a_field_names_it(api, route):
    path, form = CHANGES[route]
    before = api.state()
    partial = {k: v for k, v in form.items() if k != "currency"}
    answer = api.post("admin", path, json=partial)
    assert answer.status_code == 422
    assert answer.json()["field"] == "currency"
    assert api.state() == before


def test_a_partial_update_changes_only_what_it_names(api):
    def site():
        api.db.rollback()
        return store.sites(api.db, ["shop-ja"])[0]

    before = site()
    assert api.post("op", "/sites/shop-ja", json={"name": "Tokyo"}).status_code == 200
    after = site()
    assert after.name == "Tokyo"
    assert (after.notify_emails, after.email_locale, after.email_enabled, after.active) == (
        before.notify_emails,
        before.email_locale,
        before.email_enabled,
        before.active,
    )
    answer = api.post("op", "/sites/shop-ja", json={"active": False})
    assert answer.json() == {
        "changes": [
            {
                "action": "komoju.site.update",
                "site_id": "shop-ja",
                "subject": None,
                "field": "active",
                "old_value": True,
                "new_value": False,
            }
        ]
    }
    assert (site().active, site().notify_emails, site().name) == (False, before.notify_emails, "Tokyo")
    assert api.post("op", "/sites/shop-ja", json={"email_enabled": True}).json() == {"changes": []}, "it was on"
    assert api.post("op", "/sites/shop-ja", json={"email_enabled": False}).status_code == 200
    assert (site().email_enabled, site().active, site().name) == (False, False, "Tokyo")
    assert [c.field for c in api.recorded("shop-ja")] == ["email_enabled", "active", "name"]


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"notify_emails": ["not-an-address"]}, "notify_emails", "not-an-address"),
        ({"email_locale": "fr"}, "email_locale", "ja, en"),
        ({"active": "maybe"}, "active", "true or false"),
        ({"name": "a\nb"}, "name", "one line"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(api, fields, field, text):
    before = api.state()
    answer = api.post("op", "/sites/shop-ja", json=fields)
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    assert text in answer.json()["detail"]
    assert api.state() == before


def test_unknown_site_or_method_is_404(api):
    assert api.post("op", "/sites/nope", json={"active": False}).status_code == 404
    missing = api.post("user", "/sites/shop-ja/payment-methods/toggle", json={**CHANGES["toggle"][1], "type_slug": "x"})
    assert missing.status_code == 404
    assert "has no payment method x JPY" in missing.json()["detail"]
    assert api.get("viewer", "/sites/nope").status_code == 404


# ------------------------------------------------------------------------------------------------- the pages


def test_a_sites_page_shows_its_settings_methods_and_orders_to_settle(api):
    details = api.get("viewer", "/sites/shop-ja").json()
    assert details["name"] == "<script>alert(1)</script>東京", "data as it is: the components escape it"
    assert details["komoju_conn_id"] == "komoju_default"  # the connection is shown, never its secret
    assert [(m["type_slug"], m["enabled"], m["position"]) for m in details["payment_methods"]["methods"]] == [
        ("credit_card", True, 1),
        ("konbini", True, 2),
    ]
    assert details["orders"]["to_settle"] == [
        {
            "job": "refund",
            "order_no": "<b>1001</b>",
            "status": "Rejected",
            "reason": "HTTP 422 not_refundable: <i>x</i>",
            "amount_text": "1,200 JPY",
            "recorded_at": details["orders"]["to_settle"][0]["recorded_at"],
            "emailed_at": None,
        }
    ]
    assert details["to_settle"] == 1
    assert api.get("viewer", "/dashboard").json() == {
        "to_settle": 1,
        "pending": 0,
        "sites": [{"site_id": "shop-ja", "name": "<script>alert(1)</script>東京", "to_settle": 1, "pending": 0}],
    }


def test_toggle_and_move_change_the_database(api):
    def methods():
        api.db.rollback()
        return [(m.type_slug, m.enabled) for m in store.payment_methods(api.db, "shop-ja")]

    assert api.post("user", CHANGES["toggle"][0], json=CHANGES["toggle"][1]).status_code == 200
    assert methods() == [("credit_card", True), ("konbini", False)]
    assert api.post("user", CHANGES["move"][0], json=CHANGES["move"][1]).status_code == 200
    assert methods() == [("konbini", False), ("credit_card", True)]
    again = api.post("user", CHANGES["toggle"][0], json={"type_slug": "konbini", "currency": "jpy", "enabled": False})
    assert again.json() == {"changes": []}, "switching off what is off changes and records nothing"
