"""A live Airflow: `make up`, a REST trigger of one site, the KOMOJU page in a real browser, then `make down`.

One `make up` (airflow standalone with the plugin, the emulator, the SMTP sink, on free ports) serves the tests of
this module in order; the last one stops it and checks nothing is left. About three minutes."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from devtools import PROJECT_ROOT, localpg
from devtools.ports import free_port, poll_until
from komoju import store

pytestmark = pytest.mark.slow

PROCESSES = PROJECT_ROOT / ".local" / "up" / "processes.json"
SCREENSHOTS = PROJECT_ROOT / ".local" / "test-output" / "ui"
REACT_SCREENSHOTS = PROJECT_ROOT / ".local" / "test-output" / "ui-skeleton"
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
        self.url = f"http://localhost:{ports['AIRFLOW_PORT']}"
        self.password = stdout.split("login: admin / ")[1].split()[0]
        self.pids = [p["pid"] for p in json.loads(PROCESSES.read_text())["processes"]]
        token = requests.post(
            f"{self.url}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
        )
        assert token.status_code in (200, 201), token.text
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Trigger ``dag_id`` over REST and wait for it to finish; return its run id."""
        api = f"{self.url}/api/v2/dags/{dag_id}"
        triggered = requests.post(
            f"{api}/dagRuns", headers=self.headers, json={"logical_date": None, "conf": conf}, timeout=30
        )
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
        return localpg.find_server().connect("komoju_demo")


@pytest.fixture(scope="module")
def live():
    if PROCESSES.exists():
        pytest.skip("a `make up` of this checkout is running: these tests would stop it (run `make down` first)")
    ports = {"AIRFLOW_PORT": free_port(), "KOMOJU_EMULATOR_PORT": free_port(), "SMTP_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KOMOJU_"))}
    env.update({name: str(port) for name, port in ports.items()})
    started = _make("up", env)
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert f"Airflow UI: http://localhost:{ports['AIRFLOW_PORT']}   login: admin / " in started.stdout
        yield Live(env, ports, started.stdout)
    finally:
        if PROCESSES.exists():  # a test failed before test_make_down_leaves_nothing
            _make("down", env)


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


def _methods(live) -> list[tuple[str, bool]]:
    conn = live.database()
    try:
        return [(f"{m.type_slug} {m.currency}", m.enabled) for m in store.payment_methods(conn, "tokyo")]
    finally:
        conn.close()


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (make test installs Debian's)")
def test_komoju_page_in_a_real_browser(live):
    from playwright.sync_api import sync_playwright

    live.trigger("komoju_update_payment_methods", {"site_ids": ["tokyo"]})
    assert ("konbini JPY", True) in _methods(live)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            page = browser.new_context(locale="en-US").new_page()
            page.goto(live.url)
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", live.password)
            page.click("button:has-text('Sign in')")
            page.get_by_role("link", name="KOMOJU", exact=True).click()  # not "KOMOJU (React)"
            # Playwright's sync API only sees the page change while one of its own calls waits: no poll_until here.
            frame = page.wait_for_selector("iframe[src*='/komoju']", timeout=60_000).content_frame()
            frame.wait_for_selector("#site-tokyo")
            page.screenshot(path=SCREENSHOTS / "1-sites.png")

            frame.click("#site-tokyo >> text=Payment methods")
            frame.wait_for_selector('tr[data-method="konbini:JPY"]')
            row = 'tr[data-method="konbini:JPY"]'

            def toggle(to: bool) -> None:
                frame.click(f"{row} button.toggle")
                frame.wait_for_selector(f"{row}.off" if not to else f"{row}:not(.off)")  # the page came back
                assert ("konbini JPY", to) in _methods(live)

            toggle(False)
            toggle(True)
            toggle(False)  # off, to see a sync keep it off
            frame.click(f"{row} button.move:has-text('Up')")
            frame.wait_for_selector('#payment-methods tbody tr:first-child[data-method="konbini:JPY"]')
            assert _methods(live)[0] == ("konbini JPY", False)
            page.screenshot(path=SCREENSHOTS / "2-payment-methods.png")

            live.trigger("komoju_update_payment_methods", {"site_ids": ["tokyo"]})
            assert _methods(live)[0] == ("konbini JPY", False), "a sync after toggling must keep the toggle"

            frame.click("text=Sites")
            frame.fill("#emails-tokyo", "ops-tokyo@example.com\nfinance-tokyo@example.com")
            frame.click("#site-tokyo button[type=submit]")
            frame.wait_for_selector("p.message")
            conn = live.database()
            try:
                assert store.sites(conn, ["tokyo"])[0].notify_emails == (
                    "ops-tokyo@example.com",
                    "finance-tokyo@example.com",
                )
                counts = store.order_status_counts(conn, "tokyo")
            finally:
                conn.close()
            frame.click("#site-tokyo >> text=Order outcomes")
            frame.wait_for_selector("#order-counts")
            shown = frame.inner_text("#order-counts")
            for status, count in counts["cancel"].items():
                assert f"cancel\t{status or 'to do'}\t{count}" in shown, shown
            page.screenshot(path=SCREENSHOTS / "3-orders.png")

            frame.click("text=Sites")  # the latest run of each job per site, linked into Airflow's own pages
            sync_run = frame.wait_for_selector("#site-tokyo table.latest-runs a.run")  # the sync's row comes first
            assert sync_run.inner_text() == "success"
            sync_run.click()  # Airflow's UI (the top window) shows that task instance
            page.wait_for_url(re.compile(r"/dags/komoju_update_payment_methods/runs/[^/]+/tasks/sync_site/mapped/0$"))
            page.wait_for_selector("text=tokyo", timeout=60_000)  # its page names the instance by its site label
            page.screenshot(path=SCREENSHOTS / "4-latest-sync-run.png")
        finally:
            browser.close()


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (make test installs Debian's)")
def test_komoju_react_plugin_in_a_real_browser(live):
    """The React plugin (plugins/komoju_react.py) loads into Airflow's own React tree: its nav page follows the
    user's color mode and language as set in Airflow's user menu, calls its API with the UI's login cookie, and
    its tab on a cancel run receives the run's ids."""
    from playwright.sync_api import sync_playwright

    run_id = live.trigger("komoju_cancel_process", {"site_ids": ["tokyo"]})
    other_run_id = live.trigger("komoju_update_payment_methods", {"site_ids": ["tokyo"]})
    REACT_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            page = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(live.url)
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", live.password)
            page.click("button:has-text('Sign in')")

            page.get_by_role("link", name="KOMOJU (React)").click()
            page.wait_for_selector("[data-testid=komoju-api]:has-text('\"ok\": true')", timeout=60_000)
            assert page.inner_text("[data-testid=komoju-color-mode]") == "light"
            assert page.inner_text("[data-testid=komoju-language]") == "English"
            page.screenshot(path=REACT_SCREENSHOTS / "1-nav-light.png")

            page.get_by_role("button", name="User").click()  # Airflow's own setting, not the plugin's
            page.get_by_role("menuitem", name="Appearance").hover()
            page.get_by_role("menuitemradio", name="Dark Mode").click()
            page.wait_for_selector("[data-testid=komoju-color-mode]:text-is('dark')")
            page.keyboard.press("Escape")
            page.wait_for_selector("[role=menu]", state="detached")
            page.screenshot(path=REACT_SCREENSHOTS / "2-nav-dark.png")

            page.get_by_role("button", name="User").click()
            page.get_by_role("menuitem", name="Select Language").click()
            page.get_by_role("combobox").click()
            page.get_by_role("option", name="日本語").click()
            page.keyboard.press("Escape")  # closes the language dialog
            page.wait_for_selector("[role=dialog]", state="detached")
            page.wait_for_selector("[data-testid=komoju-language]:text-is('日本語')")
            assert "ログイン済み" in page.inner_text("[data-testid=komoju-api]")
            page.screenshot(path=REACT_SCREENSHOTS / "3-nav-dark-ja.png")

            page.goto(f"{live.url}/dags/komoju_cancel_process/runs/{quote(run_id, safe='')}")
            page.get_by_role("link", name="KOMOJU run (React)").click()
            page.wait_for_selector(f"[data-testid=komoju-run-id]:text-is('{run_id}')", timeout=60_000)
            assert page.inner_text("[data-testid=komoju-dag-id]") == "komoju_cancel_process"
            assert page.query_selector("[data-testid=komoju-not-a-komoju-run]") is None
            page.screenshot(path=REACT_SCREENSHOTS / "4-cancel-run-tab.png")

            # Airflow 3.3 cannot limit a dag_run tab to some DAGs: on other runs the tab says it does not apply.
            page.goto(f"{live.url}/dags/komoju_update_payment_methods/runs/{quote(other_run_id, safe='')}")
            page.get_by_role("link", name="KOMOJU run (React)").click()
            page.wait_for_selector(f"[data-testid=komoju-run-id]:text-is('{other_run_id}')", timeout=60_000)
            assert "別の DAG" in page.inner_text("[data-testid=komoju-not-a-komoju-run]")
            page.screenshot(path=REACT_SCREENSHOTS / "5-other-run-tab.png")
            assert errors == []
        finally:
            browser.close()


def test_komoju_endpoints_need_a_login_and_refuse_cross_site_posts(live):
    assert requests.get(f"{live.url}/komoju/", timeout=30).status_code == 401
    before = _methods(live)
    forged = requests.post(
        f"{live.url}/komoju/sites/tokyo/payment-methods/toggle",
        headers={**live.headers, "Origin": "https://evil.example"},
        data={"type_slug": "credit_card", "currency": "JPY", "enabled": "false"},
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
        "3-orders.png",
        "4-latest-sync-run.png",
    ]
