"""Payment-method sync in the store: new methods on, toggles and order kept, vanished ones unavailable."""

from __future__ import annotations

import pytest

from komoju import store
from komoju.settings import Actor

OPERATOR = Actor("ops-test", "cli")


def _method(slug: str, currency: str = "JPY", **extra) -> dict:
    return {"type_slug": slug, "currency": currency, "name_en": slug.title(), "name_ja": f"{slug}(ja)", **extra}


@pytest.fixture
def site(db):
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id, name) VALUES ('shop-ja', 'Shop JA')")
    db.commit()
    return "shop-ja"


def _toggle(db, site_id, slug, enabled):
    changes = store.set_payment_method_enabled(db, site_id, slug, "JPY", enabled, OPERATOR)
    db.commit()
    return changes


def _move(db, site_id, slug, position):
    changes = store.move_payment_method(db, site_id, slug, "JPY", position, OPERATOR)
    db.commit()
    return changes


def _state(db, site_id):
    return {(m.type_slug, m.currency): (m.enabled, m.available, m.position) for m in store.payment_methods(db, site_id)}


def test_first_sync_adds_every_method_enabled_in_komoju_order(db, site):
    items = [_method("credit_card", subtypes=["visa", "jcb"]), _method("konbini"), _method("credit_card", "USD")]
    counts = store.sync_payment_methods(db, site, items)
    assert counts == store.SyncCounts(added=3, refreshed=0, vanished=0, ignored=0)
    assert _state(db, site) == {
        ("credit_card", "JPY"): (True, True, 1),
        ("konbini", "JPY"): (True, True, 2),
        ("credit_card", "USD"): (True, True, 3),
    }
    (card,) = [m for m in store.payment_methods(db, site) if m.type_slug == "credit_card" and m.currency == "JPY"]
    assert card.subtypes == ("visa", "jcb")
    assert card.name_ja == "credit_card(ja)"


def test_resync_keeps_toggles_and_order_refreshes_names_and_marks_vanished(db, site):
    store.sync_payment_methods(db, site, [_method("credit_card"), _method("konbini"), _method("paypay")])
    assert _toggle(db, site, "konbini", False)
    assert _move(db, site, "paypay", 1)
    counts = store.sync_payment_methods(
        db, site, [_method("credit_card", name_en="Card"), _method("konbini"), _method("bank_transfer")]
    )
    assert counts == store.SyncCounts(added=1, refreshed=2, vanished=1, ignored=0)
    assert _state(db, site) == {
        ("paypay", "JPY"): (True, False, 1),
        ("credit_card", "JPY"): (True, True, 2),
        ("konbini", "JPY"): (False, True, 3),
        ("bank_transfer", "JPY"): (True, True, 4),
    }
    assert [m.name_en for m in store.payment_methods(db, site) if m.type_slug == "credit_card"] == ["Card"]
    # paypay comes back: it keeps its toggle (switched off meanwhile) and its place.
    _toggle(db, site, "paypay", False)
    store.sync_payment_methods(db, site, [_method("paypay"), _method("konbini")])
    assert _state(db, site)[("paypay", "JPY")] == (False, True, 1)
    assert _state(db, site)[("credit_card", "JPY")] == (True, False, 2)


def test_unusable_items_are_counted_and_left_out(db, site):
    items = [_method("credit_card"), {"currency": "JPY"}, _method("", "JPY"), _method("paypay", "yen!"), "junk"]
    counts = store.sync_payment_methods(db, site, [i for i in items if isinstance(i, dict)])
    assert counts.added == 1
    assert counts.ignored == 3


def test_a_failing_sync_changes_nothing(db, site):
    store.sync_payment_methods(db, site, [_method("credit_card")])
    before = _state(db, site)
    with pytest.raises(Exception, match="violates foreign key"):
        store.sync_payment_methods(db, "no-such-site", [_method("konbini")])
    assert _state(db, site) == before


def test_document_lists_offered_methods_in_order(db, site):
    store.sync_payment_methods(db, site, [_method("credit_card"), _method("konbini"), _method("paypay")])
    _toggle(db, site, "konbini", False)
    _move(db, site, "paypay", 1)
    document = store.payment_methods_document(db, site)
    assert [(m["type_slug"], m["currency"]) for m in document] == [("paypay", "JPY"), ("credit_card", "JPY")]
    assert document[0]["name_ja"] == "paypay(ja)"


def test_move_to_the_end_and_unknown_methods(db, site):
    store.sync_payment_methods(db, site, [_method("a"), _method("b"), _method("c")])
    assert _move(db, site, "a", 99)
    assert [m.type_slug for m in store.payment_methods(db, site)] == ["b", "c", "a"]
    assert [m.position for m in store.payment_methods(db, site)] == [1, 2, 3]
    with pytest.raises(store.NotFound, match="Site 'shop-ja' has no payment method zzz JPY"):
        _move(db, site, "zzz", 1)
    with pytest.raises(store.NotFound, match="has no payment method zzz JPY"):
        _toggle(db, site, "zzz", False)
    db.rollback()
    assert _move(db, site, "a", 3) == [], "a method already there changes nothing"
    assert _toggle(db, site, "a", True) == [], "a method already on changes nothing"
    (moved,) = store.setting_changes(db, site)
    assert (moved.action, moved.subject, moved.field, moved.old_value, moved.new_value, moved.changed_by) == (
        "komoju.payment_method.move",
        "a JPY",
        "position",
        1,
        3,
        "ops-test",
    )


def test_resolve_scope(db, site):
    with db.cursor() as cur:
        cur.execute("INSERT INTO komoju.site (site_id, active) VALUES ('shop-en', true), ('old', false)")
    db.commit()
    assert [s.site_id for s in store.resolve_scope(db, [])] == ["shop-en", "shop-ja"]
    assert [s.site_id for s in store.resolve_scope(db, ["shop-ja"])] == ["shop-ja"]
    with pytest.raises(store.ScopeError, match=r"unknown site id\(s\) 'nope'.*inactive site id\(s\) 'old'"):
        store.resolve_scope(db, ["shop-ja", "nope", "old"])
