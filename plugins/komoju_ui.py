"""Airflow plugin: the KOMOJU view as a native part of Airflow's UI (a React plugin, Airflow 3.3 ``react_apps``).

The app (the built bundle and the JSON API the components read) lives in the ``komoju`` package (``komoju.ui``);
the UI source is ``ui/``. The ``name`` of each React app is the key its component is registered under in the
bundle (``ui/src/apps.ts``); Airflow shows it as the nav entry's and the tab's title.
"""

from airflow.plugins_manager import AirflowPlugin

from komoju.ui import DASHBOARD_APP, NAV_APP, RUN_APP, URL_PREFIX, bundle_url, create_app


class KomojuUIPlugin(AirflowPlugin):
    """Serves ``/komoju`` (bundle and API) and adds the KOMOJU page to the navigation, a "KOMOJU results" tab to
    DAG runs, and a card to the home page.

    Airflow 3.3 has no per-DAG filter for ``react_apps``: the ``dag_run`` tab shows on every DAG's runs, and the
    component says when a run is not a KOMOJU cancel or refund run.
    """

    name = "komoju_ui"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "KOMOJU"}]  # noqa: RUF012
    react_apps = [  # noqa: RUF012
        {"name": NAV_APP, "bundle_url": bundle_url(), "destination": "nav", "url_route": "komoju",
         "nav_top_level": True},
        {"name": RUN_APP, "bundle_url": bundle_url(), "destination": "dag_run", "url_route": "komoju-run"},
        {"name": DASHBOARD_APP, "bundle_url": bundle_url(), "destination": "dashboard"},
    ]  # fmt: skip
