"""Airflow plugin: the KOMOJU page as a native React plugin (``react_apps``, Airflow 3.3), beside the
server-rendered one that ``plugins/komoju_ui.py`` registers.

The app (bundle and JSON API) lives in the ``komoju`` package (``komoju.react_app``); the UI source is ``ui/``.
The ``name`` of each React app is the key its component is registered under in the bundle (``ui/src/apps.ts``).
"""

from airflow.plugins_manager import AirflowPlugin

from komoju.react_app import URL_PREFIX, bundle_url, create_app

NAV_APP = "KOMOJU (React)"
RUN_APP = "KOMOJU run (React)"


class KomojuReactPlugin(AirflowPlugin):
    """Serves ``/komoju-ui`` and adds a "KOMOJU (React)" nav page and a tab on every DAG run.

    Airflow 3.3 has no per-DAG filter for ``react_apps``: the ``dag_run`` tab shows on every DAG's runs and the
    component itself says when a run is not a KOMOJU cancel or refund run.
    """

    name = "komoju_react"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "KOMOJU UI (React)"}]  # noqa: RUF012
    react_apps = [  # noqa: RUF012
        # Top level: with two nav plugin entries not at top level, Airflow folds both into a "Plugins" menu.
        {
            "name": NAV_APP,
            "bundle_url": bundle_url(),
            "destination": "nav",
            "url_route": "komoju-react",
            "nav_top_level": True,
        },
        {"name": RUN_APP, "bundle_url": bundle_url(), "destination": "dag_run", "url_route": "komoju-run"},
    ]
