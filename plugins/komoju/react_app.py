"""The FastAPI app behind the KOMOJU React plugin: the built bundle and the plugin's JSON API.

Mounted under ``/komoju-ui`` by ``plugins/komoju_react.py``. ``/static/`` serves ``ui_dist/`` (the bundle built
from ``ui/`` by ``make ui`` and committed, so users need no Node.js) without a login, as Airflow's React plugin
template does: the bundle holds code, no data. Everything under ``/api/`` requires an Airflow login (the UI's
``_token`` cookie, which the browser sends with the plugin's same-origin ``fetch``, or a Bearer token).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

URL_PREFIX = "/komoju-ui"
UI_DIST = Path(__file__).with_name("ui_dist")
BUNDLE = UI_DIST / "main.js"


@cache
def bundle_version() -> str:
    """A short digest of the built bundle, put in ``bundle_url`` so a browser never runs a stale copy."""
    return hashlib.sha256(BUNDLE.read_bytes()).hexdigest()[:12]


def bundle_url() -> str:
    """The bundle's address for ``react_apps``; relative, so the host resolves it against its ``<base href>``."""
    return f"{URL_PREFIX.lstrip('/')}/static/{BUNDLE.name}?v={bundle_version()}"


def create_app(auth: Any = None) -> FastAPI:
    """The app; ``auth`` is the login dependency (Airflow's ``get_user`` unless a test passes its own)."""
    if auth is None:
        from airflow.api_fastapi.core_api.security import get_user as auth
    app = FastAPI(title="KOMOJU UI (React)", docs_url=None, redoc_url=None, openapi_url=None)
    api = APIRouter(prefix="/api", dependencies=[Depends(auth)])

    @api.get("/hello")
    def hello() -> dict[str, bool]:
        """Proof that the plugin's cookie-authenticated fetch reaches its own API."""
        return {"ok": True}

    app.include_router(api)
    app.mount("/static", StaticFiles(directory=UI_DIST), name="static")
    return app
