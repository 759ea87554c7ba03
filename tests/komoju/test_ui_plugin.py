"""The KOMOJU plugin's registration and its bundle, without a browser: the pieces Airflow's UI relies on.

The proof in a real Airflow and browser is tests/devtools/test_up.py."""

from __future__ import annotations

import json

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


def test_the_bundle_ships_inside_the_package():
    """pip install of this repository carries the built bundle (users need no Node.js)."""
    import tomllib

    from devtools import PROJECT_ROOT

    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert "ui_dist/*" in pyproject["tool"]["setuptools"]["package-data"]["komoju"]
    assert ui.BUNDLE.is_relative_to(PROJECT_ROOT / "plugins" / "komoju")
    assert ui.BUNDLE.stat().st_size > 10_000
