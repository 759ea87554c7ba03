"""Acceptance: the payment-method sync DAG end to end (SPEC §4.1, issue 3).

KOMOJU's offer changes between runs by pointing the site's connection at a new emulator holding the next
scenario. The merchant's toggles and order are set the way the storefront's admin would: in the ``enabled`` and
``position`` columns of ``komoju.payment_method``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from scenario import query

from emulator.testing import EmulatorServer

DAG_ID = "komoju_update_payment_methods"
PM_COLUMNS = ("type_slug", "currency", "name_en", "name_ja", "name_ko", "subtypes", "enabled", "available", "position")


def method(slug: str, currency: str, en: str, ja: str, ko: str, **extra: Any) -> dict[str, Any]:
    return {"type_slug": slug, "currency": currency, "name_en": en, "name_ja": ja, "name_ko": ko, **extra}


CARD = method("credit_card", "JPY", "Credit Card", "クレジットカード", "신용카드", subtypes=["visa", "master"])
CARD_RENAMED = method(
    "credit_card", "JPY", "Credit Card (Visa, Mastercard, JCB)", "クレジットカード (Visa/Master/JCB)",
    "신용카드 (Visa/Master/JCB)", subtypes=["visa", "master", "jcb"], secure_token_supported=True,
)  # fmt: skip
KONBINI = method("konbini", "JPY", "Konbini", "コンビニ", "편의점", subtypes=["seven-eleven", "lawson"])
PAYPAY = method("paypay", "JPY", "PayPay", "PayPay", "PayPay")
CARD_USD = method("credit_card", "USD", "Credit Card", "クレジットカード", "신용카드", subtypes=["visa"])
BANK = method("bank_transfer", "JPY", "Bank Transfer", "銀行振込", "은행 송금")
PAIDY = method("paidy", "JPY", "Paidy", "ペイディ", "Paidy")

KEY_A, KEY_B, KEY_C = "sk_test_e2e_pm_a", "sk_test_e2e_pm_b", "sk_test_e2e_pm_c"
KEY_C_READ_ONLY = "sk_test_e2e_pm_c_restricted"


def merchant(merchant_id: str, keys: list, methods: list[dict]) -> dict[str, Any]:
    return {"id": merchant_id, "keys": keys, "payment_methods": methods}


def add_sites(db, *sites: tuple[str, str]) -> None:
    with db.cursor() as cur:
        for site_id, conn_id in sites:
            cur.execute(
                "INSERT INTO komoju.site (site_id, name, komoju_conn_id, notify_emails) VALUES (%s, %s, %s, %s)",
                (site_id, site_id.upper(), conn_id, ["ops@example.com"]),
            )
    db.commit()


def methods_of(db, site_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = query(
        db,
        f"SELECT {', '.join(PM_COLUMNS)} FROM komoju.payment_method WHERE site_id = %s",  # noqa: S608 (fixed list)
        (site_id,),
    )
    return {(row[0], row[1]): dict(zip(PM_COLUMNS, row, strict=True)) for row in rows}


def full_rows(db, site_id: str) -> list[tuple]:
    """Every column of the site's methods (synced_at and details included), to prove nothing changed."""
    return query(db, "SELECT * FROM komoju.payment_method WHERE site_id = %s ORDER BY type_slug, currency", (site_id,))


def document(db, site_id: str) -> list[dict[str, Any]]:
    (row,) = query(db, "SELECT document FROM komoju.site_payment_methods_document WHERE site_id = %s", (site_id,))
    return row[0]


def flags(rows: dict) -> dict[tuple[str, str], tuple[bool, bool, int]]:
    """``{(slug, currency): (enabled, available, position)}``."""
    return {key: (row["enabled"], row["available"], row["position"]) for key, row in rows.items()}


def keys_of(*methods: dict) -> list[tuple[str, str]]:
    return [(m["type_slug"], m["currency"]) for m in methods]


def test_sync_adds_new_methods_keeps_toggles_and_order_and_marks_vanished_ones(db, run_dag, set_komoju_connection):
    add_sites(db, ("pm-a", "komoju_default"))

    def sync(methods: list[dict]) -> None:
        with EmulatorServer({"merchants": [merchant("merchant-a", [KEY_A], methods)]}) as komoju:
            set_komoju_connection("komoju_default", komoju.base_url, KEY_A)
            run = run_dag(DAG_ID, site_ids=["pm-a"])
            assert run.state == "success"
            assert run.states("sync_site") == {"pm-a": "success"}
            requests = komoju.requests_log()
            assert [(r["method"], r["path"]) for r in requests] == [("GET", "/api/v1/payment_methods")]

    # 1. first sync: every method KOMOJU offers, switched on, in KOMOJU's order
    sync([CARD, KONBINI, PAYPAY, CARD_USD])

    rows = methods_of(db, "pm-a")
    assert flags(rows) == {
        ("credit_card", "JPY"): (True, True, 1),
        ("konbini", "JPY"): (True, True, 2),
        ("paypay", "JPY"): (True, True, 3),
        ("credit_card", "USD"): (True, True, 4),
    }
    card = rows[("credit_card", "JPY")]
    assert (card["name_en"], card["name_ja"], card["name_ko"]) == ("Credit Card", "クレジットカード", "신용카드")
    assert card["subtypes"] == ["visa", "master"]
    assert [(d["type_slug"], d["currency"]) for d in document(db, "pm-a")] == keys_of(CARD, KONBINI, PAYPAY, CARD_USD)

    # the merchant switches konbini off and moves PayPay to the top
    with db.cursor() as cur:
        cur.execute("UPDATE komoju.payment_method SET enabled = false WHERE site_id = 'pm-a' AND type_slug = 'konbini'")
        for slug, currency, position in [("paypay", "JPY", 1), ("credit_card", "JPY", 2), ("konbini", "JPY", 3)]:
            cur.execute(
                "UPDATE komoju.payment_method SET position = %s"
                " WHERE site_id = 'pm-a' AND type_slug = %s AND currency = %s",
                (position, slug, currency),
            )
    db.commit()
    assert flags(methods_of(db, "pm-a")) == {
        ("paypay", "JPY"): (True, True, 1),
        ("credit_card", "JPY"): (True, True, 2),
        ("konbini", "JPY"): (False, True, 3),
        ("credit_card", "USD"): (True, True, 4),
    }

    # 2. KOMOJU renames the card, drops PayPay and USD cards, adds bank transfer and Paidy
    sync([CARD_RENAMED, KONBINI, BANK, PAIDY])

    rows = methods_of(db, "pm-a")
    assert flags(rows) == {
        ("paypay", "JPY"): (True, False, 1),  # vanished: kept, not offered, toggle and place kept
        ("credit_card", "JPY"): (True, True, 2),  # refreshed, toggle and place kept
        ("konbini", "JPY"): (False, True, 3),  # still off: the sync never switches a method back on
        ("credit_card", "USD"): (True, False, 4),
        ("bank_transfer", "JPY"): (True, True, 5),  # new: on, after the existing ones, in KOMOJU's order
        ("paidy", "JPY"): (True, True, 6),
    }
    card = rows[("credit_card", "JPY")]
    assert card["name_en"] == CARD_RENAMED["name_en"]
    assert card["name_ja"] == CARD_RENAMED["name_ja"]
    assert card["name_ko"] == CARD_RENAMED["name_ko"]
    assert card["subtypes"] == ["visa", "master", "jcb"]
    offered = document(db, "pm-a")
    assert [(d["type_slug"], d["currency"]) for d in offered] == keys_of(CARD_RENAMED, BANK, PAIDY)
    assert offered[0]["name_en"] == CARD_RENAMED["name_en"]
    assert offered[0]["name_ja"] == CARD_RENAMED["name_ja"]
    assert offered[0]["subtypes"] == ["visa", "master", "jcb"]

    # while PayPay is gone, the merchant switches it off
    with db.cursor() as cur:
        cur.execute("UPDATE komoju.payment_method SET enabled = false WHERE site_id = 'pm-a' AND type_slug = 'paypay'")
    db.commit()

    # 3. both vanished methods come back: each keeps its old toggle and place
    sync([CARD_RENAMED, KONBINI, BANK, PAIDY, PAYPAY, CARD_USD])

    assert flags(methods_of(db, "pm-a")) == {
        ("paypay", "JPY"): (False, True, 1),
        ("credit_card", "JPY"): (True, True, 2),
        ("konbini", "JPY"): (False, True, 3),
        ("credit_card", "USD"): (True, True, 4),
        ("bank_transfer", "JPY"): (True, True, 5),
        ("paidy", "JPY"): (True, True, 6),
    }
    offered = document(db, "pm-a")
    assert [(d["type_slug"], d["currency"]) for d in offered] == keys_of(CARD_RENAMED, CARD_USD, BANK, PAIDY)


def test_failing_call_changes_nothing_for_that_site_and_the_others_sync(db, run_dag, set_komoju_connection, capfd):
    """pm-b's KOMOJU answers 503 throughout, pm-c's key is refused (403): both instances fail, their methods
    and documents stay as they were although KOMOJU's offer changed; pm-a syncs. Fixed, both sync."""
    add_sites(db, ("pm-a", "komoju_default"), ("pm-b", "komoju_pm_b"), ("pm-c", "komoju_pm_c"))
    c_keys = [KEY_C, {"key": KEY_C_READ_ONLY, "forbidden": True}]
    with contextlib.ExitStack() as servers:
        first_main = servers.enter_context(
            EmulatorServer({"merchants": [merchant("m-a", [KEY_A], [CARD]), merchant("m-c", c_keys, [KONBINI])]})
        )
        first_b = servers.enter_context(EmulatorServer({"merchants": [merchant("m-b", [KEY_B], [CARD, PAYPAY])]}))
        set_komoju_connection("komoju_default", first_main.base_url, KEY_A)
        set_komoju_connection("komoju_pm_b", first_b.base_url, KEY_B)
        set_komoju_connection("komoju_pm_c", first_main.base_url, KEY_C)
        first = run_dag(DAG_ID)
        assert first.states("sync_site") == {"pm-a": "success", "pm-b": "success", "pm-c": "success"}

    before = {site: (full_rows(db, site), document(db, site)) for site in ("pm-b", "pm-c")}
    assert len(before["pm-b"][0]) == 2
    assert len(before["pm-c"][0]) == 1
    capfd.readouterr()

    with contextlib.ExitStack() as servers:
        main = servers.enter_context(
            EmulatorServer(
                {"merchants": [merchant("m-a", [KEY_A], [CARD, BANK]), merchant("m-c", c_keys, [PAYPAY, BANK])]}
            )
        )
        b_down = servers.enter_context(
            EmulatorServer(
                {
                    "merchants": [merchant("m-b", [KEY_B], [PAIDY])],
                    "faults": [{"kind": "error_503", "match": {"path_contains": "/payment_methods"}}],
                }
            )
        )
        set_komoju_connection("komoju_default", main.base_url, KEY_A)
        set_komoju_connection("komoju_pm_b", b_down.base_url, KEY_B)
        set_komoju_connection("komoju_pm_c", main.base_url, KEY_C_READ_ONLY)

        second = run_dag(DAG_ID)

        sites = second.per_site("sync_site")
        assert {k: v.state for k, v in sites.items()} == {"pm-a": "success", "pm-b": "failed", "pm-c": "failed"}
        assert sites["pm-b"].try_number > 1  # KOMOJU down: Airflow retried the site
        assert sites["pm-c"].try_number == 1  # key refused: retrying cannot help
        assert {site: (full_rows(db, site), document(db, site)) for site in ("pm-b", "pm-c")} == before
        assert flags(methods_of(db, "pm-a")) == {("credit_card", "JPY"): (True, True, 1),
                                                  ("bank_transfer", "JPY"): (True, True, 2)}  # fmt: skip
        output = capfd.readouterr().out
        assert [line for line in output.splitlines() if "pm-c" in line and "komoju_pm_c" in line]
        assert KEY_C_READ_ONLY not in output

        b_down.set_faults([])
        set_komoju_connection("komoju_pm_c", main.base_url, KEY_C)
        third = run_dag(DAG_ID, site_ids=["pm-b", "pm-c"])

        assert third.states("sync_site") == {"pm-b": "success", "pm-c": "success"}
        assert flags(methods_of(db, "pm-b")) == {("credit_card", "JPY"): (True, False, 1),
                                                  ("paypay", "JPY"): (True, False, 2),
                                                  ("paidy", "JPY"): (True, True, 3)}  # fmt: skip
        assert flags(methods_of(db, "pm-c")) == {("konbini", "JPY"): (True, False, 1),
                                                  ("paypay", "JPY"): (True, True, 2),
                                                  ("bank_transfer", "JPY"): (True, True, 3)}  # fmt: skip
        assert [(d["type_slug"], d["currency"]) for d in document(db, "pm-b")] == keys_of(PAIDY)
