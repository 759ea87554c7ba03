"""The installed distribution registers the ``komoju`` connection type with Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _airflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AIRFLOW, *args], env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False
    )


def test_providers_list_shows_the_komoju_provider():
    done = _airflow("providers", "list", "-o", "json")
    assert done.returncode == 0, done.stderr
    providers = {p["package_name"]: p for p in json.loads(done.stdout)}
    assert "komoju-airflow" in providers
    from komoju import __version__

    assert providers["komoju-airflow"]["version"] == __version__


def test_komoju_connection_type_points_at_the_hook():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook_info = manager.hooks["komoju"]
    assert hook_info.hook_class_name == "komoju.hooks.KomojuHook"
    assert hook_info.connection_type == "komoju"
    behaviour = manager.field_behaviours["komoju"]
    assert behaviour["relabeling"] == {"password": "Secret key"}
    assert "login" in behaviour["hidden_fields"]


def test_connections_add_accepts_the_komoju_type(airflow_db):
    added = _airflow(
        "connections", "add", "komoju_site_b",
        "--conn-type", "komoju", "--conn-host", "http://127.0.0.1:8123", "--conn-password", "sk_test_provider",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shown = _airflow("connections", "get", "komoju_site_b", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    (conn,) = json.loads(shown.stdout)
    assert conn["conn_type"] == "komoju"
    assert conn["host"] == "http://127.0.0.1:8123"
