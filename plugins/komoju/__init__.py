"""KOMOJU back-office jobs for Apache Airflow: hook, store, operators and CLI."""

__version__ = "0.1.0"
