"""Acceptance (issue 7): the KOMOJU page links each site to its latest run of each job, read from Airflow's
database after real ``dag.test()`` runs."""

from __future__ import annotations

import re
from urllib.parse import quote

from scenario import Case, Site, emulator_scenario, payment, setup_database

from emulator.testing import EmulatorServer

# Sites of their own: Airflow's database is shared by the e2e session, and other tests run the DAGs too.
SITES = tuple(
    Site(f"ui-{n}", f"UI {n}", "komoju_default", "merchant-ui", "sk_test_e2e_ui", (f"ui-{n}@example.com",), locale="en")
    for n in ("a", "b")
)
CASES = tuple(
    Case("cancel", site, f"UI-{site.site_id}-{n}", "1000", "JPY",
         payment=payment(f"ui{site.site_id[-1]}{n}", "pending", 1000),
         expect="Cancelled", response_has=("cancelled",), effect=1000)
    for site in SITES for n in range(1, 3)
)  # fmt: skip


def _runs_table(page: str, site_id: str) -> str:
    """The 'latest runs' table of one site's section of the sites page."""
    section = page.split(f'<section id="site-{site_id}">', 1)[1].split("</section>", 1)[0]
    return section.split('<table class="latest-runs">', 1)[1].split("</table>", 1)[0]


def test_sites_page_links_the_latest_run_of_each_job_per_site(
    db, smtp_sink, run_dag, set_komoju_connection, airflow_api
):
    site, other = SITES[0], SITES[1]
    with EmulatorServer(emulator_scenario(CASES, SITES)) as komoju:
        set_komoju_connection("komoju_default", komoju.base_url, "sk_test_e2e_ui")
        setup_database(db, CASES, SITES)
        viewer = airflow_api.tokens["viewer"]

        def sites_page() -> str:
            page = airflow_api.client.get("/komoju/?lang=en", headers=viewer)
            assert page.status_code == 200, page.text
            return page.text

        before = sites_page()
        assert "not run yet" in _runs_table(before, site.site_id)

        first = run_dag("komoju_cancel_process", site_ids=[site.site_id])
        second = run_dag("komoju_cancel_process", site_ids=[site.site_id, other.site_id])

        page = sites_page()
        mine, theirs = _runs_table(page, site.site_id), _runs_table(page, other.site_id)
        for table, run in ((mine, second), (theirs, second)):
            label = site.site_id if table is mine else other.site_id
            map_index = second.per_site("cancel_site")[label].map_index
            link = f"/dags/komoju_cancel_process/runs/{quote(run.run_id, safe='')}/tasks/cancel_site/mapped/{map_index}"
            assert f'href="{link}"' in table, (link, table)
            assert re.search(r'class="run state-success">success</a>', table)
        assert first.run_id not in mine, "the newest run is linked, not an older one"
        assert mine.count("not run yet") == 2, "the sync and refund jobs never ran for this site"
