"""Acceptance (issues 7 and 14): what the KOMOJU view shows of real ``dag.test()`` runs, read through its JSON API
in Airflow's own app: the latest run of each job per site, and what one cancel run did per site."""

from __future__ import annotations

from scenario import Case, Site, emulator_scenario, payment, setup_database

from emulator.testing import EmulatorServer

# Sites of their own: Airflow's database is shared by the e2e session, and other tests run the DAGs too.
SITES = (
    Site("ui-a", "UI a", "komoju_default", "merchant-ui", "sk_test_e2e_ui", ("ui-a@example.com",), locale="en"),
    Site("ui-b", "UI b", "komoju_default", "merchant-ui", "sk_test_e2e_ui", ("ui-b@example.com",), locale="en",
         email_enabled=False),
)  # fmt: skip
CASES = (
    *(Case("cancel", site, f"UI-{site.site_id}-{n}", "1000", "JPY",
           payment=payment(f"ui{site.site_id[-1]}{n}", "pending", 1000),
           expect="Cancelled", response_has=("cancelled",), effect=1000)
      for site in SITES for n in range(1, 3)),
    Case("cancel", SITES[0], "UI-ui-a-gone", "1500", "JPY", payment=None, payment_id="uiagonexxxxxxxxxxxxxxxxxx",
         expect="Failed", final=True),  # KOMOJU does not know the payment: a final failure, e-mailed
)  # fmt: skip


def test_latest_run_per_site_and_what_a_cancel_run_did(db, smtp_sink, run_dag, set_komoju_connection, airflow_api):
    site, other = SITES
    viewer = airflow_api.tokens["viewer"]

    def api(path: str) -> dict:
        answer = airflow_api.client.get(f"/komoju/api{path}", headers=viewer)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def latest(overview: dict, site_id: str) -> dict:
        return next(s for s in overview["sites"] if s["site_id"] == site_id)["latest_runs"]

    with EmulatorServer(emulator_scenario(CASES, SITES)) as komoju:
        set_komoju_connection("komoju_default", komoju.base_url, "sk_test_e2e_ui")
        setup_database(db, CASES, SITES)

        assert latest(api("/overview"), site.site_id) == {"payment_methods": None, "cancel": None, "refund": None}

        first = run_dag("komoju_cancel_process", site_ids=[site.site_id])
        second = run_dag("komoju_cancel_process", site_ids=[site.site_id, other.site_id])

        overview = api("/overview")
        for site_id in (site.site_id, other.site_id):
            run = latest(overview, site_id)["cancel"]
            instance = second.per_site("cancel_site")[site_id]
            assert (run["run_id"], run["task_id"], run["map_index"], run["state"]) == (
                second.run_id,
                "cancel_site",
                instance.map_index,
                "success",
            ), "the newest run is linked, not an older one"
        assert latest(overview, site.site_id)["refund"] is None, "the refund job never ran for this site"

        did = api(f"/runs/komoju_cancel_process/{first.run_id}")
        assert (did["job"], [s["site_id"] for s in did["sites"]]) == ("cancel", [site.site_id])
        (outcome,) = did["sites"]
        assert (outcome["state"], outcome["name"], outcome["task_id"]) == ("success", "UI a", "cancel_site")
        assert {k: outcome["counts"][k] for k in ("succeeded", "failed", "final_failures")} == {
            "succeeded": 2,
            "failed": 1,
            "final_failures": 1,
        }
        ((failure),) = outcome["failures"]
        assert (failure["order_no"], failure["status"], failure["amount_text"]) == (
            "UI-ui-a-gone",
            "Failed",
            "1,500 JPY",
        )
        assert "HTTP 404" in failure["reason"]
        assert outcome["email"] == {"state": "sent", "recipients": 1}

        again = api(f"/runs/komoju_cancel_process/{second.run_id}")
        by_site = {s["site_id"]: s for s in again["sites"]}
        assert by_site[site.site_id]["counts"]["succeeded"] == 0, "the second run had nothing left to do there"
        assert by_site[site.site_id]["failures"] == []
        assert by_site[other.site_id]["counts"]["succeeded"] == 2
        assert by_site[other.site_id]["email"] == {"state": "off", "recipients": 0}

        assert api(f"/runs/komoju_update_payment_methods/{first.run_id}") == {
            "dag_id": "komoju_update_payment_methods",
            "run_id": first.run_id,
            "job": None,
            "sites": [],
        }, "another DAG's run: the tab says it does not apply"
