"""`make demo` end to end: exit 0, the summary matches the demo scenario, the mails are saved, nothing written
outside .local/. Runs the real command (about a minute and a half: three `airflow dags test` processes)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import secrets
import subprocess

import pytest

from devtools import PROJECT_ROOT, localpg

pytestmark = pytest.mark.slow

# What the demo data (devtools/demo/seed.sql + emulator/scenarios/demo.json) must come to.
EXPECTED_ORDERS = {
    "tokyo": {
        "cancel": {"Cancelled": 4, "Rejected": 2, "Failed": 1, "no payment id": 1},
        "refund": {"Refunded": 5, "Rejected": 1, "Failed": 1},
    },
    "osaka": {"cancel": {"Cancelled": 1, "Rejected": 1}, "refund": {"Refunded": 2, "Rejected": 1}},
    "global": {"cancel": {"Cancelled": 2, "Failed": 1}, "refund": {"Refunded": 3, "Rejected": 1, "Failed": 1}},
}
EXPECTED_FAILURES = {
    ("tokyo", "cancel", "T-C04", "Rejected"),
    ("tokyo", "cancel", "T-C05", "Rejected"),
    ("tokyo", "cancel", "T-C06", "Failed"),
    ("tokyo", "refund", "T-R03", "Rejected"),
    ("tokyo", "refund", "T-R07", "Failed"),
    ("osaka", "cancel", "O-C02", "Rejected"),
    ("osaka", "refund", "O-R02", "Rejected"),
    ("global", "cancel", "G-C03", "Failed"),
    ("global", "refund", "G-R02", "Rejected"),
    ("global", "refund", "G-R04", "Failed"),
}
EXPECTED_MAILS = {
    ("ops-tokyo@example.com",): {
        "[KOMOJU] キャンセルできなかった注文 3件 (サイト: 東京ストア)": ["T-C04", "T-C05", "T-C06"],
        "[KOMOJU] 返金できなかった注文 2件 (サイト: 東京ストア)": ["T-R03", "T-R07"],
    },
    ("ops@example.com", "finance@example.com"): {
        "[KOMOJU] 1 order(s) could not be cancelled (site: Global Store)": ["G-C03"],
        "[KOMOJU] 2 order(s) could not be refunded (site: Global Store)": ["G-R02", "G-R04"],
    },
}


def _tree_outside_local() -> dict[str, float]:
    """Every file of the checkout but .local/, .venv/ and .git/, with its modification time."""
    skip = {".local", ".venv", ".git", ".pytest_cache", ".ruff_cache"}
    found = {}
    for root, dirs, files in os.walk(PROJECT_ROOT):
        dirs[:] = [d for d in dirs if not (root == str(PROJECT_ROOT) and d in skip)]
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, PROJECT_ROOT)] = os.stat(path).st_mtime
    return found


def test_make_demo_runs_the_three_jobs_and_reports_them():
    before = _tree_outside_local()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KOMOJU_"))}
    env["KOMOJU_DEMO_DATABASE"] = database = f"komoju_demo_test_{secrets.token_hex(4)}"  # not a developer's own
    try:
        done = subprocess.run(
            ["make", "demo"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=540, check=False
        )
    finally:
        server = localpg.find_server()
        if server is not None:
            server.drop_database(database)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for dag_id in ("komoju_update_payment_methods", "komoju_cancel_process", "komoju_refund_process"):
        assert f"{dag_id} " in out
    assert "FAILED" not in out
    assert "site tokyo (東京ストア)" in out
    assert "E-mails received by the SMTP sink: 4" in out

    report = json.loads((PROJECT_ROOT / ".local" / "demo" / "summary.json").read_text())
    assert set(report["sites"]) == {"tokyo", "osaka", "global"}  # the inactive site is not run
    for site_id, jobs in EXPECTED_ORDERS.items():
        for job, counts in jobs.items():
            assert report["sites"][site_id]["orders"][job] == counts, (site_id, job)
    failures = {
        (site_id, f["job"], f["order_no"], f["status"])
        for site_id, site in report["sites"].items()
        for f in site["final_failures"]
    }
    assert failures == EXPECTED_FAILURES
    emailed = {
        (s, f["order_no"]) for s, site in report["sites"].items() for f in site["final_failures"] if f["emailed"]
    }
    assert {order for _, order in emailed} == {f[2] for f in EXPECTED_FAILURES if f[0] != "osaka"}
    assert report["sites"]["tokyo"]["payment_methods"][:2] == ["credit_card JPY", "konbini JPY"]

    mails = {}
    for mail in report["mails"]:
        saved = email.message_from_bytes((PROJECT_ROOT / mail["path"]).read_bytes(), policy=email.policy.default)
        assert saved["Subject"] == mail["subject"]
        mails.setdefault(tuple(mail["to"]), {})[mail["subject"]] = saved.get_body(("html",)).get_content()
    assert {to: set(subjects) for to, subjects in mails.items()} == {
        to: set(subjects) for to, subjects in EXPECTED_MAILS.items()
    }
    for to, subjects in EXPECTED_MAILS.items():
        for subject, orders in subjects.items():
            for order_no in orders:
                assert f"<td>{order_no}</td>" in mails[to][subject]

    assert _tree_outside_local() == before, "make demo wrote outside .local/"
