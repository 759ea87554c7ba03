"""Fixtures of the deployment tests (the paths and checks themselves are in compose_checks.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from compose_checks import COMPOSE_FILE, INIT_SCRIPT


@pytest.fixture(scope="session")
def komoju_init() -> ModuleType:
    """docker/komoju_init.py, imported by path (docker/ is not a package)."""
    spec = importlib.util.spec_from_file_location("komoju_init_under_test", INIT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def compose_copy(tmp_path) -> Path:
    """A copy of docker-compose.yaml in ``tmp_path``, for tests that break it."""
    copy = tmp_path / "docker-compose.yaml"
    copy.write_text(COMPOSE_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    return copy
