"""`make up`, a REST trigger of komoju_cancel_process for one site, then `make down` (issue: make up / down).

Runs the real commands on free ports: airflow standalone, the emulator, the SMTP sink (about two minutes)."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import requests

from devtools import PROJECT_ROOT
from devtools.ports import free_port, poll_until

pytestmark = pytest.mark.slow


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


def test_make_up_serves_airflow_a_rest_trigger_succeeds_and_make_down_leaves_nothing():
    if (PROJECT_ROOT / ".local" / "up" / "processes.json").exists():
        pytest.skip("a `make up` of this checkout is running: this test would stop it (run `make down` first)")
    ports = {"AIRFLOW_PORT": free_port(), "KOMOJU_EMULATOR_PORT": free_port(), "SMTP_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KOMOJU_"))}
    env.update({name: str(port) for name, port in ports.items()})
    started = _make("up", env)
    processes = PROJECT_ROOT / ".local" / "up" / "processes.json"
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        url = f"http://localhost:{ports['AIRFLOW_PORT']}"
        assert f"Airflow UI: {url}   login: admin / " in started.stdout
        password = started.stdout.split("login: admin / ")[1].split()[0]
        pids = [p["pid"] for p in json.loads(processes.read_text())["processes"]]

        token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        assert token.status_code in (200, 201), token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        api = f"{url}/api/v2/dags/komoju_cancel_process"
        assert requests.get(api, headers=headers, timeout=30).json()["is_paused"] is False
        triggered = requests.post(
            f"{api}/dagRuns", headers=headers, json={"logical_date": None, "conf": {"site_ids": ["tokyo"]}}, timeout=30
        )
        assert triggered.status_code == 200, triggered.text
        run_id = triggered.json()["dag_run_id"]

        def finished() -> str | None:
            state = requests.get(f"{api}/dagRuns/{run_id}", headers=headers, timeout=30).json()["state"]
            return state if state in ("success", "failed") else None

        assert poll_until(finished, timeout=240, interval=1, what=f"dag run {run_id} finishing") == "success"
        instances = requests.get(f"{api}/dagRuns/{run_id}/taskInstances", headers=headers, timeout=30).json()
        sites = [
            (t["map_index"], t["rendered_map_index"], t["state"])
            for t in instances["task_instances"]
            if t["task_id"] == "cancel_site"
        ]
        assert sites == [(0, "tokyo", "success")]
    finally:
        stopped = _make("down", env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not processes.exists()
    assert [pid for pid in pids if _alive(pid)] == []
    assert [port for port in ports.values() if _listening(port)] == []
