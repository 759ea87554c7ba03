"""The React plugin's FastAPI app (bundle and API) and its registration, without a browser.

The proof in a real Airflow and browser is tests/devtools/test_up.py (test_komoju_react_plugin_in_a_real_browser);
these tests keep the pieces the browser relies on from drifting apart."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from komoju import react_app


@pytest.fixture
def client():
    return TestClient(react_app.create_app(auth=lambda: {"username": "tester"}))


def test_bundle_is_served_as_javascript_without_login():
    anonymous = TestClient(react_app.create_app())
    bundle = anonymous.get(f"/static/main.js?v={react_app.bundle_version()}")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    assert bundle.content == react_app.BUNDLE.read_bytes()
    assert anonymous.get("/static/../react_app.py").status_code == 404


def test_api_requires_login(client):
    assert TestClient(react_app.create_app()).get("/api/hello").status_code == 401
    assert client.get("/api/hello").json() == {"ok": True}


def test_react_apps_are_valid_for_airflow_and_registered_by_the_bundle():
    from airflow.api_fastapi.core_api.datamodels.plugins import ReactAppResponse
    from komoju_react import KomojuReactPlugin

    bundle = react_app.BUNDLE.read_text()
    apps = [ReactAppResponse.model_validate(app) for app in KomojuReactPlugin.react_apps]
    assert {app.destination for app in apps} == {"nav", "dag_run"}
    for app in apps:
        # The host looks the component up as globalThis[name]: the bundle must register exactly this name.
        assert f"`{app.name}`" in bundle or json.dumps(app.name) in bundle, app.name
        assert app.url_route
        assert app.bundle_url == f"komoju-ui/static/main.js?v={react_app.bundle_version()}"
    assert [app["url_prefix"] for app in KomojuReactPlugin.fastapi_apps] == ["/komoju-ui"]
