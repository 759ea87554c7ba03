"""A live Airflow: `make up`, a REST trigger of one site, the KOMOJU page in a real browser, then `make down`.

One `make up` (airflow standalone with the plugin, the emulator, the SMTP sink, on free ports) serves the tests of
this module in order; the last one stops it and checks nothing is left. About three minutes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from devtools import PROJECT_ROOT, localpg
from devtools.airflow_stack import post_retrying
from devtools.ports import free_port, poll_until
from komoju import store

pytestmark = pytest.mark.slow

PROCESSES = PROJECT_ROOT / ".local" / "up" / "processes.json"
SCREENSHOTS = PROJECT_ROOT / ".local" / "test-output" / "ui"
CHROMIUM = "/usr/bin/chromium"


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", target], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=400, check=False
    )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Live:
    """The running `make up`: its URL, login, REST helpers and the demo database."""

    def __init__(self, env: dict[str, str], ports: dict[str, int], stdout: str) -> None:
        self.env = env
        self.ports = ports
        self.url = f"http://127.0.0.1:{ports['AIRFLOW_PORT']}"
        self.passwords = dict(re.findall(r"^  login: (\w+) / (\S+)", stdout, re.MULTILINE))
        assert sorted(self.passwords) == ["admin", "op", "user", "viewer"], stdout
        self.password = self.passwords["admin"]
        self.pids = [p["pid"] for p in json.loads(PROCESSES.read_text())["processes"]]
        self.tokens = {role: self.token(role) for role in self.passwords}
        self.headers = self.tokens["admin"]

    def token(self, role: str) -> dict[str, str]:
        answer = requests.post(
            f"{self.url}/auth/token", json={"username": role, "password": self.passwords[role]}, timeout=30
        )
        assert answer.status_code in (200, 201), answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Trigger ``dag_id`` over REST and wait for it to finish; return its run id."""
        api = f"{self.url}/api/v2/dags/{dag_id}"
        # (retried on 5xx: on SQLite the API server's write may meet "database is locked" while the scheduler and
        # the tasks write: devtools.airflow_stack.post_retrying)
        triggered = post_retrying(f"{api}/dagRuns", headers=self.headers, json={"logical_date": None, "conf": conf})
        assert triggered.status_code == 200, triggered.text
        run_id = triggered.json()["dag_run_id"]

        def finished() -> str | None:
            state = requests.get(f"{api}/dagRuns/{run_id}", headers=self.headers, timeout=30).json()["state"]
            return state if state in ("success", "failed") else None

        assert poll_until(finished, timeout=240, interval=1, what=f"{dag_id} run {run_id} finishing") == "success"
        return run_id

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        got = requests.get(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", headers=self.headers, timeout=30
        )
        return got.json()["task_instances"]

    def database(self):
        return localpg.find_server().connect(self.env["KOMOJU_DEMO_DATABASE"])

    @staticmethod
    def rows(conn, sql: str, params: Any = None) -> list[tuple]:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()


@pytest.fixture(scope="module")
def live():
    if PROCESSES.exists():
        pytest.skip("a `make up` of this checkout is running: these tests would stop it (run `make down` first)")
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # only this run's screenshots are checked and kept
    ports = {"AIRFLOW_PORT": free_port(), "KOMOJU_EMULATOR_PORT": free_port(), "SMTP_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KOMOJU_"))}
    env.update({name: str(port) for name, port in ports.items()})
    env["KOMOJU_DEMO_DATABASE"] = f"komoju_demo_test_{secrets.token_hex(4)}"  # never a developer's own demo data
    started = _make("up", env)
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert f"Airflow UI: http://127.0.0.1:{ports['AIRFLOW_PORT']}   (listening on 127.0.0.1" in started.stdout
        yield Live(env, ports, started.stdout)
    finally:
        if PROCESSES.exists():  # a test failed before test_make_down_leaves_nothing
            _make("down", env)
        server = localpg.find_server()
        if server is not None:
            server.drop_database(env["KOMOJU_DEMO_DATABASE"])


def test_make_up_listens_on_loopback_only(live):
    """Nothing `make up` started (nor any process they started) accepts connections from another machine."""
    import psutil

    processes = []
    for pid in live.pids:
        parent = psutil.Process(pid)
        processes += [parent, *parent.children(recursive=True)]
    pids = {process.pid for process in processes}
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids
    }
    assert ("127.0.0.1", live.ports["AIRFLOW_PORT"]) in listening, listening
    assert {ip for ip, _ in listening} <= {"127.0.0.1", "::1"}, listening


def test_rest_trigger_of_one_site_succeeds_with_one_mapped_instance(live):
    status = requests.get(f"{live.url}/api/v2/dags/komoju_cancel_process", headers=live.headers, timeout=30).json()
    assert status["is_paused"] is False
    run_id = live.trigger("komoju_cancel_process", {"site_ids": ["tokyo"]})
    sites = [
        (t["map_index"], t["rendered_map_index"], t["state"])
        for t in live.task_instances("komoju_cancel_process", run_id)
        if t["task_id"] == "cancel_site"
    ]
    assert sites == [(0, "tokyo", "success")]


def test_cancelling_a_paid_order_starts_its_refund_within_seconds(live):
    """make up runs the triggerer with the DAGs event-driven (the default): one UPDATE cancelling a paid order
    notifies the refund DAG's watcher, its asset gets an event naming the site, and an asset-triggered run refunds
    the order without waiting for the 30-minute schedule."""
    payment = "demotn0100000000000000000"  # T-N01: open and paid in the demo data, its payment captured at KOMOJU
    conn = live.database()
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE komoju.orders SET status = 'cancelled' WHERE site_id = 'tokyo' AND order_no = 'T-N01'")
        conn.commit()
        cancelled_at = time.time()
        ledger = f"http://127.0.0.1:{live.ports['KOMOJU_EMULATOR_PORT']}/_emulator/ledger"

        def refunded() -> list[dict]:
            entries = requests.get(ledger, timeout=30).json()["entries"]
            return [e for e in entries if e["type"] == "effect" and e["payment_id"] == payment]

        effects = poll_until(refunded, timeout=120, interval=0.5, what="KOMOJU refunding T-N01")
        assert [e["action"] for e in effects] == ["refund"]
        poll_until(
            lambda: (
                live.rows(conn, "SELECT komoju_refund_status FROM komoju.orders WHERE order_no = 'T-N01'")
                == [("Refunded",)]
            ),
            timeout=60,
            what="T-N01 Refunded",
        )
    finally:
        conn.close()
    api = f"{live.url}/api/v2"
    (asset,) = requests.get(f"{api}/assets", params={"name_pattern": "komoju_orders_refund"}, headers=live.headers,
                            timeout=30).json()["assets"]  # fmt: skip
    events = requests.get(f"{api}/assets/events", params={"asset_id": asset["id"], "limit": 100},
                          headers=live.headers, timeout=30).json()["asset_events"]  # fmt: skip
    notified = [e["extra"]["payload"] for e in events if e["extra"]["payload"]["reason"] == "notified"]
    assert any("tokyo" in payload["site_ids"] for payload in notified), events
    runs = requests.get(f"{api}/dags/komoju_refund_process/dagRuns", params={"limit": 100}, headers=live.headers,
                        timeout=30).json()["dag_runs"]  # fmt: skip
    assert any(
        r["run_type"] == "asset_triggered"
        and dt.datetime.fromisoformat(r["run_after"].replace("Z", "+00:00")).timestamp() >= cancelled_at - 1
        for r in runs
    ), runs


def _methods(live) -> list[tuple[str, bool]]:
    conn = live.database()
    try:
        return [(f"{m.type_slug} {m.currency}", m.enabled) for m in store.payment_methods(conn, "tokyo")]
    finally:
        conn.close()


@contextlib.contextmanager
def _chromium():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()


def _login(browser, live, role: str, locale: str = "en-US"):
    """A new browser session logged in to Airflow as ``role``."""
    page = browser.new_context(locale=locale, viewport={"width": 1400, "height": 900}).new_page()
    page.goto(live.url)
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", live.passwords[role])
    page.click("button:has-text('Sign in')")
    page.get_by_role("link", name="KOMOJU", exact=True).wait_for(timeout=60_000)  # logged in, Airflow's page shown
    return page


def _komoju_page(browser, live, role: str, locale: str = "en-US"):
    """A new browser session logged in as ``role``, on the KOMOJU page (Airflow's own layout, no iframe)."""
    page = _login(browser, live, role, locale)
    page.get_by_role("link", name="KOMOJU", exact=True).click()
    page.wait_for_selector('[data-testid=komoju-site][data-site-id="tokyo"]', timeout=60_000)
    assert page.query_selector("iframe") is None, "the KOMOJU view is part of Airflow's page, not a frame"
    return page


def _details(page, site_id: str, tab: str) -> None:
    """Open a site's details on the KOMOJU page, at one of its tabs."""
    page.click(f'[data-testid=komoju-site][data-site-id="{site_id}"] button')
    page.wait_for_selector(f'[data-testid=komoju-details] >> text="{site_id}"')
    page.get_by_role("tab", name=tab).click()


def _airflow_setting(page, menu_item: str, choice: str) -> None:
    """Change one of Airflow's own user settings (the user menu): dark mode, the language."""
    try:
        page.get_by_role("button", name="User").click(timeout=15_000)
    except Exception:
        page.screenshot(path=SCREENSHOTS.parent / "failed-user-menu.png")  # what the page showed instead
        raise
    if menu_item == "Appearance":
        page.get_by_role("menuitem", name="Appearance").hover()
        page.get_by_role("menuitemradio", name=choice).click()
        page.keyboard.press("Escape")
        page.wait_for_selector("[role=menu]", state="detached")
    else:
        page.get_by_role("menuitem", name="Select Language").click()
        page.get_by_role("combobox").click()
        page.get_by_role("option", name=choice).click()
        page.keyboard.press("Escape")
        page.wait_for_selector("[role=dialog]", state="detached")


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (make test installs Debian's)")
def test_komoju_view_in_a_real_browser(live):
    assert ("konbini JPY", True) in _methods(live), "make up synced the payment methods before printing the URL"
    with _chromium() as browser:
        page = _komoju_page(browser, live, "admin")
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        cards = page.eval_on_selector_all("[data-testid=komoju-site]", "cards => cards.map(c => c.dataset.active)")
        assert cards == sorted(cards, key=lambda active: active != "true"), "active sites first"
        page.screenshot(path=SCREENSHOTS / "1-sites.png", full_page=True)

        _details(page, "tokyo", "Payment methods")
        row = '[data-testid=komoju-payment-methods] tr[data-method="konbini JPY"]'
        switch = f"{row} input[type=checkbox]"
        page.wait_for_selector(switch, state="attached")  # the switch's input is hidden behind its control

        def toggle(to: bool) -> None:
            page.click(f"{row} label")
            page.wait_for_selector(f"{switch}{':checked' if to else ':not(:checked)'}", state="attached")
            page.wait_for_selector(f"{row} label:not([data-disabled])")  # the reload after the change is done
            assert ("konbini JPY", to) in _methods(live)

        toggle(False)
        toggle(True)
        toggle(False)  # off, to see a sync keep it off
        page.click(f"{row} button[aria-label='Move up: konbini JPY']")
        page.wait_for_selector('[data-testid=komoju-payment-methods] tbody tr:first-child[data-method="konbini JPY"]')
        assert _methods(live)[0] == ("konbini JPY", False)
        page.screenshot(path=SCREENSHOTS / "2-payment-methods.png", full_page=True)

        live.trigger("komoju_update_payment_methods", {"site_ids": ["tokyo"]})
        assert _methods(live)[0] == ("konbini JPY", False), "a sync after toggling must keep the toggle"

        page.get_by_role("tab", name="Settings").click()
        contacts = "[data-testid=komoju-settings] textarea"
        page.fill(contacts, "ops-tokyo@example.com\nfinance-tokyo@example.com")
        page.click("[data-testid=komoju-settings] button[type=submit]")
        page.wait_for_selector("text=Saved (1 change).")
        conn = live.database()
        try:
            assert store.sites(conn, ["tokyo"])[0].notify_emails == (
                "ops-tokyo@example.com",
                "finance-tokyo@example.com",
            )
        finally:
            conn.close()
        page.get_by_role("tab", name="Recent changes").click()
        page.wait_for_selector("[data-testid=komoju-changes] >> text=finance-tokyo@example.com")

        page.click('[data-testid=komoju-site][data-site-id="tokyo"] [data-job=payment_methods] a')
        page.wait_for_url(re.compile(r"/dags/komoju_update_payment_methods/runs/[^/]+/tasks/sync_site/mapped/\d+$"))
        page.wait_for_selector("text=tokyo", timeout=60_000)  # Airflow's page names the instance by its site label
        page.screenshot(path=SCREENSHOTS / "3-latest-sync-run.png")

        page.go_back()
        page.wait_for_selector('[data-testid=komoju-site][data-site-id="tokyo"]', timeout=60_000)
        _airflow_setting(page, "Appearance", "Dark Mode")
        page.wait_for_function("document.documentElement.classList.contains('dark')")
        page.screenshot(path=SCREENSHOTS / "4-sites-dark.png", full_page=True)

        _airflow_setting(page, "Language", "日本語")
        page.wait_for_selector("text=詳細を表示")
        shown = page.inner_text("[data-testid=komoju-page]")
        labels = ("Show details", "Latest runs", "Orders", "Active", "to do", "Cancelled", "Refunded", "Pending",
                  "Rejected", "Failed", "success", "Payment methods", "Settings", "Save", "no payment id")  # fmt: skip
        english = [label for label in labels if label in shown]
        assert english == [], english
        page.screenshot(path=SCREENSHOTS / "5-sites-dark-ja.png", full_page=True)
        assert errors == []  # (each test's browser context starts with Airflow's default settings again)


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (make test installs Debian's)")
def test_a_cancel_runs_komoju_tab_shows_what_it_did_per_site(live):
    # The first cancel run did the demo's work (the DAG was unpaused by make up: its scheduled run came first).
    runs = requests.get(
        f"{live.url}/api/v2/dags/komoju_cancel_process/dagRuns",
        params={"order_by": "run_after", "limit": 1},
        headers=live.headers,
        timeout=30,
    ).json()["dag_runs"]
    run_id = runs[0]["dag_run_id"] if runs else live.trigger("komoju_cancel_process", {})
    poll_until(
        lambda: (
            requests.get(
                f"{live.url}/api/v2/dags/komoju_cancel_process/dagRuns/{quote(run_id, safe='')}",
                headers=live.headers,
                timeout=30,
            ).json()["state"]
            in ("success", "failed")
        ),
        timeout=240,
        interval=1,
        what=f"cancel run {run_id} ending",
    )
    conn = live.database()
    try:
        failures = live.rows(
            conn, "SELECT site_id, order_no FROM komoju.final_failure WHERE job = 'cancel' AND run_id = %s", (run_id,)
        )
    finally:
        conn.close()
    assert failures, "the demo's first cancel run gives orders up (unknown payment, not cancellable, ...)"
    with _chromium() as browser:
        page = _login(browser, live, "admin")
        page.goto(f"{live.url}/dags/komoju_cancel_process/runs/{quote(run_id, safe='')}")
        page.get_by_role("link", name="KOMOJU results").click()
        page.wait_for_selector('[data-testid=komoju-run-site][data-site-id="tokyo"]', timeout=60_000)
        sites = page.eval_on_selector_all("[data-testid=komoju-run-site]", "s => s.map(x => x.dataset.siteId)")
        assert sorted(sites) == ["global", "osaka", "tokyo"]
        shown = page.inner_text("[data-testid=komoju-run-tab]")
        for _, order_no in failures:
            assert order_no in shown, (order_no, shown)
        page.screenshot(path=SCREENSHOTS / "6-cancel-run-tab.png", full_page=True)


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (make test installs Debian's)")
def test_a_viewer_can_change_nothing_and_changes_are_in_airflows_audit_log(live):
    before = _methods(live)
    refused = requests.post(
        f"{live.url}/komoju/api/sites/tokyo/payment-methods/toggle",
        headers={**live.tokens["viewer"], "Origin": live.url},
        json={"type_slug": "credit_card", "currency": "JPY", "enabled": False},
        timeout=30,
    )
    assert refused.status_code == 403
    assert "edit access to the DAG komoju_update_payment_methods" in refused.json()["detail"]
    assert _methods(live) == before
    with _chromium() as browser:
        page = _komoju_page(browser, live, "viewer")
        _details(page, "tokyo", "Payment methods")
        page.wait_for_selector("[data-testid=komoju-payment-methods] input[type=checkbox]", state="attached")
        enabled = page.eval_on_selector_all(
            "[data-testid=komoju-details] input:not([type=hidden]), [data-testid=komoju-details] textarea,"
            " [data-testid=komoju-details] select, [data-testid=komoju-details] button:not([role=tab])",
            "controls => controls.filter(c => !c.disabled).map(c => c.outerHTML.slice(0, 80))",
        )
        assert enabled == [], "a viewer's view has no enabled control"
        notes = page.locator("[data-testid=komoju-details] [data-testid=komoju-read-only]").all_inner_texts()
        assert "Read-only: your Airflow role cannot edit the DAG komoju_update_payment_methods." in notes, notes
        page.screenshot(path=SCREENSHOTS / "7-viewer-read-only.png", full_page=True)
        page.get_by_role("tab", name="Settings").click()
        enabled = page.eval_on_selector_all(
            "[data-testid=komoju-settings] input:not([type=hidden]), [data-testid=komoju-settings] textarea,"
            " [data-testid=komoju-settings] select, [data-testid=komoju-settings] button",
            "controls => controls.filter(c => !c.disabled).map(c => c.outerHTML.slice(0, 80))",
        )
        assert enabled == [], "nor its settings form"
        assert (
            "Read-only: your Airflow role cannot edit the DAG komoju_cancel_process, the DAG komoju_refund_process,"
            " the connection komoju_default." in notes
        ), notes

        # The admin's toggles of the browser test above are in Airflow's own audit log, with the admin's name.
        admin = _login(browser, live, "admin")
        admin.goto(f"{live.url}/events")
        admin.wait_for_selector("text=komoju.payment_method.toggle", timeout=60_000)
        admin.screenshot(path=SCREENSHOTS / "8-audit-log.png")
    logged = requests.get(
        f"{live.url}/api/v2/eventLogs",
        params={"event": "komoju.payment_method.toggle"},
        headers=live.headers,
        timeout=30,
    ).json()["event_logs"]
    assert {entry["owner"] for entry in logged} == {"admin"}
    assert len(logged) >= 3  # off, on, off in the browser test


def test_komoju_endpoints_need_a_login_and_refuse_cross_site_posts(live):
    assert requests.get(f"{live.url}/komoju/api/overview", timeout=30).status_code == 401
    before = _methods(live)
    forged = requests.post(
        f"{live.url}/komoju/api/sites/tokyo/payment-methods/toggle",
        headers={**live.headers, "Origin": "https://evil.example"},
        json={"type_slug": "credit_card", "currency": "JPY", "enabled": False},
        timeout=30,
    )
    assert forged.status_code == 403
    assert _methods(live) == before


def test_make_down_leaves_nothing(live):
    stopped = _make("down", live.env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not PROCESSES.exists()
    assert [pid for pid in live.pids if _alive(pid)] == []
    assert [port for port in live.ports.values() if _listening(port)] == []


def test_screenshots_were_saved():
    if not shutil.which(CHROMIUM):
        pytest.skip("no browser test ran")
    assert sorted(p.name for p in Path(SCREENSHOTS).glob("*.png")) == [
        "1-sites.png",
        "2-payment-methods.png",
        "3-latest-sync-run.png",
        "4-sites-dark.png",
        "5-sites-dark-ja.png",
        "6-cancel-run-tab.png",
        "7-viewer-read-only.png",
        "8-audit-log.png",
    ]
