"""The operator CLI against the real status database (in process: ``komoju.cli.main``)."""

from __future__ import annotations

import json

import pytest

from komoju import cli, store


@pytest.fixture
def site_with_methods(db, airflow_db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id, name) VALUES ('shop-ja', 'Shop')")
    db.commit()
    store.sync_payment_methods(
        db,
        "shop-ja",
        [
            {"type_slug": "credit_card", "currency": "JPY", "name_en": "Card", "name_ja": "カード"},
            {"type_slug": "konbini", "currency": "JPY", "name_en": "Konbini", "name_ja": "コンビニ"},
            {"type_slug": "paypay", "currency": "JPY", "name_en": "PayPay", "name_ja": "PayPay"},
        ],
    )
    return "shop-ja"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_methods_in_order(capsys, site_with_methods):
    code, out, _ = _run(capsys, "payment-methods", "list", "--site", "shop-ja")
    assert code == 0
    lines = out.splitlines()
    assert "credit_card" in lines[1]
    assert "konbini" in lines[2]
    assert "カード" in lines[1]
    code, out, _ = _run(capsys, "payment-methods", "list", "--site", "shop-ja", "--json")
    assert [m["type_slug"] for m in json.loads(out)] == ["credit_card", "konbini", "paypay"]


def test_disable_enable_and_move_change_the_database(capsys, db, site_with_methods):
    assert _run(capsys, "payment-methods", "disable", "--site", "shop-ja", "konbini", "jpy")[0] == 0
    assert {m.type_slug: m.enabled for m in store.payment_methods(db, "shop-ja")}["konbini"] is False
    assert _run(capsys, "payment-methods", "enable", "--site", "shop-ja", "konbini", "JPY")[0] == 0
    assert {m.type_slug: m.enabled for m in store.payment_methods(db, "shop-ja")}["konbini"] is True
    code, out, _ = _run(capsys, "payment-methods", "move", "--site", "shop-ja", "paypay", "JPY", "1")
    assert code == 0
    assert "paypay JPY, credit_card JPY, konbini JPY" in out
    db.rollback()
    assert [m.type_slug for m in store.payment_methods(db, "shop-ja")] == ["paypay", "credit_card", "konbini"]


def test_changes_are_recorded_with_the_os_user_in_both_audit_places(capsys, db, site_with_methods):
    import getpass

    from airflow.models.log import Log
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        last_before = session.scalar(select(Log.id).order_by(Log.id.desc()).limit(1)) or 0
    assert _run(capsys, "payment-methods", "disable", "--site", "shop-ja", "konbini", "JPY")[0] == 0
    assert _run(capsys, "payment-methods", "move", "--site", "shop-ja", "konbini", "JPY", "3")[0] == 0
    assert _run(capsys, "payment-methods", "disable", "--site", "shop-ja", "konbini", "JPY")[0] == 0  # no change
    db.rollback()
    recorded = [
        (c.changed_by, c.channel, c.subject, c.field, c.old_value, c.new_value)
        for c in store.setting_changes(db, "shop-ja")
    ]
    user = getpass.getuser()
    assert recorded == [
        (user, "cli", "konbini JPY", "position", 2, 3),
        (user, "cli", "konbini JPY", "enabled", True, False),
    ]
    with create_session() as session:
        logged = session.scalars(select(Log).where(Log.id > last_before).order_by(Log.id)).all()
        entries = [(log.event, log.owner, log.dag_id, json.loads(log.extra)) for log in logged]
    assert [(event, owner, dag_id) for event, owner, dag_id, _ in entries] == [
        ("komoju.payment_method.toggle", user, "komoju_update_payment_methods"),
        ("komoju.payment_method.move", user, "komoju_update_payment_methods"),
    ]
    assert entries[1][3] == {
        "action": "komoju.payment_method.move",
        "site_id": "shop-ja",
        "subject": "konbini JPY",
        "field": "position",
        "old_value": 2,
        "new_value": 3,
        "channel": "cli",
    }
    code, out, _ = _run(capsys, "sites", "changes", "--site", "shop-ja")
    assert code == 0
    assert f"{user} (cli)  konbini JPY: position: 2 -> 3" in out.splitlines()[0]


def test_unknown_site_or_method_is_a_clear_error(capsys, site_with_methods):
    code, _, err = _run(capsys, "payment-methods", "disable", "--site", "shop-ja", "alipay", "JPY")
    assert code == 1
    assert "no payment method alipay JPY" in err
    assert "payment-methods list --site shop-ja" in err
    code, _, err = _run(capsys, "orders", "status", "--site", "nope")
    assert code == 1
    assert "no site 'nope'" in err


def test_orders_status_counts_and_final_failures(capsys, db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id) VALUES ('s1')")
        cur.execute(
            "INSERT INTO komoju.orders (site_id, order_no, status, payment_status, payment_method,"
            " komoju_payment_id, total_gross_price, currency, komoju_cancel_status, komoju_refund_status) VALUES"
            " ('s1', 'A', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'p1', 1000, 'JPY', 'Cancelled', NULL),"
            " ('s1', 'B', 'cancelled', 'not_paid', 'KOMOJU_HOSTED_PAGE', 'p2', 1000, 'JPY', NULL, NULL),"
            " ('s1', 'C', 'cancelled', 'paid', 'KOMOJU_HOSTED_PAGE', 'p3', 12.5, 'USD', NULL, 'Rejected')"
        )
        cur.execute(
            "INSERT INTO komoju.final_failure (job, site_id, order_no, attempt_no, status, reason, amount, currency)"
            " VALUES ('refund', 's1', 'C', 1, 'Rejected', 'HTTP 422 not_refundable: konbini', 12.5, 'USD')"
        )
    db.commit()
    code, out, _ = _run(capsys, "orders", "status", "--site", "s1")
    assert code == 0
    assert "cancel  to do: 1, Cancelled: 1" in out
    assert "refund  Rejected: 1" in out
    assert "final failures (newest first, at most 50): 1" in out
    assert "12.50 USD" in out
    assert "not e-mailed yet" in out
    assert "konbini" in out
