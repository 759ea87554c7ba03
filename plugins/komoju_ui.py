"""Airflow plugin: the KOMOJU page (sites, payment-method toggles, order outcomes) in the Airflow UI's nav.

The app lives in the ``komoju`` package (``komoju.ui``); this file only registers it with Airflow.
"""

from airflow.plugins_manager import AirflowPlugin

from komoju.ui import create_app


class KomojuUIPlugin(AirflowPlugin):
    """Serves ``/komoju`` on the API server and puts "KOMOJU" in the navigation."""

    name = "komoju_ui"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/komoju", "name": "KOMOJU"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {"name": "KOMOJU", "href": "/komoju/", "destination": "nav", "url_route": "komoju"},
    ]
