"""Airflow provider metadata: registers the ``komoju`` connection type (entry point in pyproject.toml)."""

from __future__ import annotations

from typing import Any

from komoju import __version__


def get_provider_info() -> dict[str, Any]:
    """Provider info read by Airflow's ProvidersManager; ``package-name`` is the distribution name."""
    return {
        "package-name": "komoju-airflow",
        "name": "KOMOJU",
        "description": "KOMOJU payments: payment-method sync, cancel and refund jobs for storefront sites.",
        "versions": [__version__],
        "hooks": [{"integration-name": "KOMOJU", "python-modules": ["komoju.hooks"]}],
        "connection-types": [
            {
                "connection-type": "komoju",
                "hook-class-name": "komoju.hooks.KomojuHook",
                "hook-name": "KOMOJU",
                "conn-fields": {
                    "read_timeout": {
                        "label": "Read timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 5},
                    },
                    "max_retries": {
                        "label": "Retries of a failed call",
                        "schema": {"type": ["integer", "null"], "default": 3},
                    },
                    "api_version": {
                        "label": "KOMOJU API version (X-KOMOJU-API-VERSION)",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login"],
                    "relabeling": {"password": "Secret key"},
                    "placeholders": {
                        "host": "empty for https://komoju.com, or a full URL such as http://127.0.0.1:8123",
                        "password": "sk_live_... or sk_test_...",
                    },
                },
            }
        ],
    }
