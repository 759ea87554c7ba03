"""Local stand-ins for the services the jobs talk to, used by the tests and the demo (never in production)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
