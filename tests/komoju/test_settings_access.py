"""What a change request may say (komoju.settings), a site update in the store, and which question the KOMOJU
page asks Airflow's auth manager for each action (komoju.access) — with Airflow's own SimpleAuthManager, and a
stricter one of the kind a FAB administrator configures."""

from __future__ import annotations

import pytest

from komoju import access, settings, store
from komoju.settings import Actor, InvalidChange

SITE, TOGGLE, MOVE = settings.SITE_FIELDS, settings.TOGGLE_FIELDS, settings.MOVE_FIELDS


# ------------------------------------------------------------------------------------------------ settings.parse


def test_a_partial_site_change_keeps_only_the_named_fields_normalised():
    parsed = settings.parse(
        {"notify_emails": " A@Example.com, b@example.com\nA@Example.com ", "active": "on", "name": "  "},
        settings.SITE_FIELDS,
        partial=True,
    )
    assert parsed == {"notify_emails": ["A@example.com", "b@example.com"], "active": True, "name": None}
    assert settings.parse({"email_enabled": False}, settings.SITE_FIELDS, partial=True) == {"email_enabled": False}
    assert settings.parse({"notify_emails": []}, settings.SITE_FIELDS, partial=True) == {"notify_emails": []}


@pytest.mark.parametrize(
    ("fields", "allowed", "partial", "field", "text"),
    [
        ({}, settings.SITE_FIELDS, True, None, "Nothing to change"),
        ({"colour": "red", "active": True}, settings.SITE_FIELDS, True, "colour", "Unknown field(s) 'colour'"),
        ({"komoju_conn_id": "other"}, settings.SITE_FIELDS, True, "komoju_conn_id", "Unknown field"),
        ({"active": 1}, settings.SITE_FIELDS, True, "active", "true or false"),
        ({"notify_emails": 5}, settings.SITE_FIELDS, True, "notify_emails", "list of e-mail addresses"),
        ({"notify_emails": ["x@y"]}, settings.SITE_FIELDS, True, "notify_emails", "'x@y' is not an e-mail address"),
        ({"notify_emails": [f"a{i}@example.com" for i in range(51)]}, SITE, True, "notify_emails", "at most 50"),
        ({"name": "x" * 201}, settings.SITE_FIELDS, True, "name", "at most 200"),
        ({"type_slug": "konbini", "enabled": True}, TOGGLE, False, "currency", "Missing field(s) 'currency'"),
        ({"type_slug": "konbini", "currency": "YEN!", "enabled": True}, TOGGLE, False, "currency", "3-letter"),
        ({"type_slug": "k", "currency": "JPY", "position": "0"}, settings.MOVE_FIELDS, False, "position", "from 1"),
        ({"type_slug": "k", "currency": "JPY", "position": True}, MOVE, False, "position", "whole number"),
    ],
)  # fmt: skip
def test_bad_change_requests_name_the_field(fields, allowed, partial, field, text):
    with pytest.raises(InvalidChange, match=None) as refused:
        settings.parse(fields, allowed, partial=partial)
    assert refused.value.field == field
    assert text in str(refused.value)


def test_site_diff_lists_only_real_changes():
    old = {
        "name": "Tokyo",
        "notify_emails": ("a@example.com",),
        "email_locale": "ja",
        "email_enabled": True,
        "active": True,
    }
    changes = settings.site_diff("tokyo", old, {"name": "Tokyo", "notify_emails": ["b@example.com"], "active": False})
    assert [(c.field, c.old_value, c.new_value) for c in changes] == [
        ("notify_emails", ["a@example.com"], ["b@example.com"]),
        ("active", True, False),
    ]


# ------------------------------------------------------------------------------------------- store.update_site


def test_update_site_changes_only_named_fields_and_records_them(db):
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO komoju.site (site_id, name, notify_emails) VALUES ('tokyo', 'Tokyo', '{a@example.com}')"
        )
    db.commit()
    ops = Actor("hanako", "page")
    changes = store.update_site(db, "tokyo", {"active": False, "name": "Tokyo"}, ops)
    db.commit()
    assert [(c.field, c.old_value, c.new_value) for c in changes] == [("active", True, False)]
    (site,) = store.sites(db, ["tokyo"])
    assert (site.name, site.notify_emails, site.email_enabled, site.active) == (
        "Tokyo",
        ("a@example.com",),
        True,
        False,
    )
    (recorded,) = store.setting_changes(db, "tokyo")
    assert (recorded.changed_by, recorded.channel, recorded.action, recorded.field) == (
        "hanako",
        "page",
        "komoju.site.update",
        "active",
    )
    assert store.update_site(db, "tokyo", {"active": False}, ops) == []
    with pytest.raises(store.NotFound, match="There is no site 'osaka'"):
        store.update_site(db, "osaka", {"active": False}, ops)


def test_a_change_airflows_audit_log_cannot_take_is_not_made(db, monkeypatch):
    """Airflow's metadata database unreachable: the change and its komoju.setting_change row are rolled back."""
    import airflow.utils.session
    from sqlalchemy.exc import OperationalError

    from komoju import audit

    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id) VALUES ('tokyo')")
    db.commit()

    def unreachable():
        raise OperationalError("SELECT 1", {}, Exception("could not connect to Airflow's metadata database"))

    monkeypatch.setattr(airflow.utils.session, "create_session", unreachable)
    actor = Actor("hanako", "cli")
    with pytest.raises(OperationalError, match="could not connect"):
        audit.apply(db, lambda: store.update_site(db, "tokyo", {"active": False}, actor), actor)
    assert store.sites(db, ["tokyo"])[0].active is True
    assert store.setting_changes(db, "tokyo") == []


# ------------------------------------------------------------------------------------------------------ access


def _user(role: str):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return SimpleAuthManagerUser(username=role, role=role)


def _simple_auth_manager():
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    return SimpleAuthManager()


@pytest.mark.parametrize(
    ("role", "methods", "site"),
    [("viewer", False, False), ("user", True, False), ("op", True, True), ("admin", True, True)],
)
def test_simple_auth_manager_roles(role, methods, site):
    permissions = access.Permissions(_simple_auth_manager(), _user(role))
    assert permissions.page_refusal("GET") is None
    assert permissions.read_refusal(access.KOMOJU_DAGS) is None
    assert (permissions.methods_refusal() is None) is methods
    assert (permissions.site_refusal("komoju_default") is None) is site


def test_a_stricter_auth_manager_is_obeyed_and_its_refusals_are_named():
    class Strict:
        """An auth manager that grants the KOMOJU page for reading only, the refund DAG not at all, and no
        connection (as a FAB administrator may configure it)."""

        def __init__(self) -> None:
            self.asked: list[tuple] = []

        def is_authorized_custom_view(self, *, method, resource_name, user):
            self.asked.append(("view", method, resource_name))
            return method == "GET"

        def is_authorized_dag(self, *, method, details, user, access_entity=None):
            self.asked.append(("dag", method, details.id))
            return details.id != access.REFUND_DAG

        def is_authorized_connection(self, *, method, details, user):
            self.asked.append(("connection", method, details.conn_id))
            return False

    manager = Strict()
    permissions = access.Permissions(manager, _user("admin"))
    assert permissions.page_refusal("GET") is None
    assert "refuses PUT on the custom view 'KOMOJU'" in permissions.page_refusal("PUT")
    assert permissions.readable() == [access.PAYMENT_METHODS_DAG, access.CANCEL_DAG]
    assert permissions.read_refusal([access.REFUND_DAG]) == (
        "Reading this page needs read access to the DAG komoju_refund_process; your Airflow role has none. "
        "Ask an Airflow administrator for read access to it."
    )
    refusal = permissions.site_refusal("komoju_tokyo")
    assert "cannot edit komoju_refund_process or the connection komoju_tokyo" in refusal
    assert [str(m) for m in permissions.site_missing("komoju_tokyo")] == [
        "komoju_refund_process",
        "the connection komoju_tokyo",
    ]
    assert manager.asked.count(("dag", "PUT", access.REFUND_DAG)) == 1, "each question is asked once per request"
