"""The KOMOJU plugin's registration and its bundle, without a browser: the pieces Airflow's UI relies on.

The proof in a real Airflow and browser is tests/devtools/test_up.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from fastapi.testclient import TestClient

from komoju import ui


def test_bundle_is_served_as_javascript_without_login():
    anonymous = TestClient(ui.create_app())
    bundle = anonymous.get(f"/static/main.js?v={ui.bundle_version()}")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    assert bundle.content == ui.BUNDLE.read_bytes()
    assert anonymous.get("/static/../ui.py").status_code == 404
    assert anonymous.get("/api/overview").status_code == 401, "the data needs a login"


def test_react_apps_are_valid_for_airflow_and_registered_by_the_bundle():
    from airflow.api_fastapi.core_api.datamodels.plugins import ReactAppResponse
    from komoju_ui import KomojuUIPlugin

    bundle = ui.BUNDLE.read_text()
    apps = [ReactAppResponse.model_validate(app) for app in KomojuUIPlugin.react_apps]
    assert {app.destination: app.name for app in apps} == {
        "nav": "KOMOJU",
        "dag_run": "KOMOJU results",
        "dashboard": "KOMOJU dashboard",
    }
    for app in apps:
        # The host looks the component up as globalThis[name]: the bundle must register exactly this name.
        assert f"`{app.name}`" in bundle or json.dumps(app.name) in bundle, app.name
        assert app.bundle_url == f"komoju/static/main.js?v={ui.bundle_version()}"
    assert {app.destination: app.url_route for app in apps if app.url_route} == {
        "nav": "komoju",
        "dag_run": "komoju-run",
    }
    assert [app["url_prefix"] for app in KomojuUIPlugin.fastapi_apps] == ["/komoju"]
    assert not getattr(KomojuUIPlugin, "external_views", None), "one UI: no iframe page beside the React one"


def test_the_bundle_ships_inside_the_package(tmp_path):
    """Building the package (setuptools' build_py, as a wheel build does) carries the bundle: users need no Node.js."""
    from devtools import PROJECT_ROOT

    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    shutil.copytree(
        PROJECT_ROOT / "plugins" / "komoju",
        tmp_path / "plugins" / "komoju",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    build = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "build_py", "--build-lib", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    # Newer setuptools warn, and will drop the files, when a data directory is not a listed package.
    assert "absent from the `packages` configuration" not in build.stderr
    assert (tmp_path / "out" / "komoju" / "ui_dist" / "main.js").read_bytes() == ui.BUNDLE.read_bytes()
    assert ui.BUNDLE.stat().st_size > 10_000
