"""Acceptance (issue 15): a run maps a task only for the sites its job has work for; the others are reported as
checked with nothing to do (the resolve task's log and XCom ``nothing_to_do``, ``komoju.site_check``). A run with
nothing to do runs no per-site task and succeeds; a site named in ``site_ids`` always gets its task."""

from __future__ import annotations

import pytest
from scenario import Case, Site, emulator_scenario, payment, setup_database

from emulator.testing import EmulatorServer

KEY = "sk_test_e2e_idle"


def _site(site_id: str, **kw) -> Site:
    return Site(site_id, f"Idle test {site_id}", "komoju_default", "merchant-idle", KEY, (f"{site_id}@example.com",),
                locale="en", **kw)  # fmt: skip


WORK_A, WORK_B, MAIL_ONLY, DONE, GIVEN_UP, EMPTY = (
    _site(s) for s in ("idle-work-a", "idle-work-b", "idle-mail", "idle-done", "idle-given-up", "idle-empty")
)
SITES = (WORK_A, WORK_B, MAIL_ONLY, DONE, GIVEN_UP, EMPTY)
CASES = (
    Case("refund", WORK_A, "IA-1", "1000", "JPY", payment=payment("idlea1", "captured", 1000), expect="Refunded",
         effect=1000),
    Case("refund", WORK_B, "IB-1", "2000", "JPY", payment=payment("idleb1", "captured", 2000), expect="Refunded",
         effect=2000),
    Case("refund", DONE, "ID-1", "1000", "JPY", prior_status="Refunded", payment=payment("idled1", "refunded", 1000)),
    Case("refund", GIVEN_UP, "IG-1", "1000", "JPY", prior_status="Failed", payment=payment("idleg1", "captured", 1000)),
    Case("cancel", EMPTY, "IE-1", "1000", "JPY", payment=payment("idlee1", "pending", 1000)),  # the other job's
)  # fmt: skip
ALL = sorted(site.site_id for site in SITES)


@pytest.fixture
def komoju(db, set_komoju_connection):
    with EmulatorServer(emulator_scenario(CASES, SITES)) as server:
        set_komoju_connection("komoju_default", server.base_url, KEY)
        setup_database(db, CASES, SITES)
        with db.cursor() as cur:
            # GIVEN_UP: given up on for its payment, e-mailed long ago; MAIL_ONLY: a final failure never e-mailed.
            cur.execute(
                "INSERT INTO komoju.notification (job, site_id, recipients, subject, message_id, sent_at)"
                " VALUES ('refund', %s, '{x@example.com}', 'old', '<old@test>', now()) RETURNING notification_id",
                (GIVEN_UP.site_id,),
            )
            (sent,) = cur.fetchone()
            cur.execute(
                "INSERT INTO komoju.final_failure (job, site_id, order_no, attempt_no, komoju_payment_id, status,"
                " reason, notification_id) VALUES ('refund', %s, 'IG-1', 3, %s, 'Failed', 'gave up', %s),"
                " ('refund', %s, 'IM-1', 1, 'idlem1', 'Rejected', 'konbini', NULL)",
                (GIVEN_UP.site_id, payment("idleg1", "captured", 1)["id"], sent, MAIL_ONLY.site_id),
            )
        db.commit()
        yield server


def _checks(db) -> dict[str, tuple[bool, str]]:
    with db.cursor() as cur:
        cur.execute("SELECT site_id, had_work, run_id FROM komoju.site_check WHERE job = 'refund'")
        found = {site_id: (had_work, run_id) for site_id, had_work, run_id in cur.fetchall()}
    db.commit()
    return found


def _xcom(run, task_id: str, key: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id, XComModel.task_id == task_id,
                XComModel.key == key,
            )
        )  # fmt: skip
    return XComModel.deserialize_value(type("Row", (), {"value": value})())


def test_only_sites_with_work_get_a_task_the_others_are_checked(db, komoju, smtp_sink, run_dag, caplog, airflow_api):
    caplog.set_level("INFO", logger="komoju.tasks")

    first = run_dag("komoju_refund_process")

    assert first.state == "success"
    with_work = sorted([WORK_A.site_id, WORK_B.site_id, MAIL_ONLY.site_id])
    assert sorted(first.states("refund_site")) == with_work
    assert set(first.states("refund_site").values()) == {"success"}
    idle = sorted([DONE.site_id, GIVEN_UP.site_id, EMPTY.site_id])
    assert sorted(_xcom(first, "resolve_sites", "nothing_to_do")) == idle
    assert sorted(_xcom(first, "resolve_sites", "return_value")) == with_work
    assert _checks(db) == {site: (site in with_work, first.run_id) for site in ALL}
    reported = [r.getMessage() for r in caplog.records if "nothing to do" in r.getMessage()]
    assert len(reported) == 1, reported
    assert all(site in reported[0] for site in idle), reported
    assert [list(m.rcpt_tos) for m in smtp_sink.messages] == [[f"{MAIL_ONLY.site_id}@example.com"]]
    assert [t.label for t in first.mapped("send_failure_email")] == [MAIL_ONLY.site_id]

    second = run_dag("komoju_refund_process")

    assert second.state == "success"
    assert second.mapped("refund_site") == []
    assert second.task("refund_site").state == "skipped"
    assert second.task("all_sites_done").state == "skipped"
    assert sorted(_xcom(second, "resolve_sites", "nothing_to_do")) == ALL
    assert _checks(db) == {site: (False, second.run_id) for site in ALL}
    assert len(smtp_sink.messages) == 1
    # The KOMOJU view says when a run last looked at a site and found nothing to do.
    overview = airflow_api.client.get("/komoju/api/overview", headers=airflow_api.tokens["viewer"]).json()
    shown = {s["site_id"]: s["last_checked"]["refund"] for s in overview["sites"] if s["site_id"] in ALL}
    assert {site: (check["had_work"], check["run_id"]) for site, check in shown.items()} == {
        site: (False, second.run_id) for site in ALL
    }

    named = run_dag("komoju_refund_process", site_ids=[DONE.site_id, EMPTY.site_id])

    assert named.state == "success"
    assert named.states("refund_site") == {DONE.site_id: "success", EMPTY.site_id: "success"}
    assert _checks(db)[DONE.site_id] == (False, named.run_id)  # checked, nothing found, run as asked
    assert _checks(db)[GIVEN_UP.site_id] == (False, second.run_id)  # not in this run's scope

    dry = run_dag("komoju_refund_process", dry_run=True)

    assert dry.mapped("refund_site") == []
    assert _checks(db)[GIVEN_UP.site_id] == (False, second.run_id), "a dry run records nothing"


def test_map_all_sites_switch_maps_every_site_as_before(db, komoju, smtp_sink, run_dag, monkeypatch):
    monkeypatch.setenv("KOMOJU_MAP_ALL_SITES", "1")

    run = run_dag("komoju_refund_process")

    assert run.state == "success"
    assert run.states("refund_site") == {site: "success" for site in ALL}
    assert _xcom(run, "resolve_sites", "nothing_to_do") == []
    assert _checks(db) == {
        site: (site in (WORK_A.site_id, WORK_B.site_id, MAIL_ONLY.site_id), run.run_id) for site in ALL
    }
