"""Static checks of the deployment files (docker-compose.yaml, Dockerfile, .env.example), for a machine with no
Docker engine. Each check returns the problems it finds as sentences (empty: none), so that a test can show both
that the real files pass and that a broken copy fails.

Compose semantics followed here (compose-spec: 12-interpolation.md, 05-services.md): ``${VAR}``, ``${VAR:-default}``,
``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}``, ``$VAR`` and ``$$``;
relative bind-mount sources are relative to the compose file's folder; YAML merge keys (``<<``) are expanded.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
SCHEMA_FILE = HERE / "compose-spec.json"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
INIT_SCRIPT = PROJECT_ROOT / "docker" / "komoju_init.py"
POSTGRES_INIT = PROJECT_ROOT / "docker" / "postgres" / "10-komoju-database.sh"
AIRFLOW_IMAGE = re.compile(r"^FROM\s+apache/airflow:(?P<version>\d+\.\d+\.\d+)(?P<variant>-python\d+\.\d+)?\s*$", re.M)
AIRFLOW_PIN = re.compile(r"^apache-airflow==(?P<version>\S+)\s*$", re.M)
RUNTIME_END_MARKER = "# Test-only tools"
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A required variable (``${VAR:?...}``) is unset or empty."""


# ---------------------------------------------------------------------------------------------------- loading


def load_yaml(path: Path) -> dict[str, Any]:
    """The compose file as data (PyYAML's safe loader expands anchors and ``<<`` merge keys)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a compose ``.env`` file (comments and blank lines skipped, no quoting used here)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path.name}: not KEY=VALUE: {line!r}")
        values[key.strip()] = value.strip()
    return values


def filled_env(example: Mapping[str, str]) -> dict[str, str]:
    """``.env.example`` with every empty value filled the way a deployer would (random secrets)."""
    from cryptography.fernet import Fernet

    env = dict(example)
    for name, value in example.items():
        if not value:
            env[name] = Fernet.generate_key().decode() if name == "AIRFLOW_FERNET_KEY" else secrets.token_urlsafe(16)
    return env


def _interpolate_string(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        is_set, non_empty = value is not None, bool(value)
        if op in (":-", "-"):
            return value if (non_empty if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if not (non_empty if op == ":?" else is_set):
                raise InterpolationError(f"{name}: {arg or 'required'}")
            return value or ""
        if op in (":+", "+"):
            return arg if (non_empty if op == ":+" else is_set) else ""
        return value or ""

    return _VARIABLE.sub(replace, text)


def interpolate(data: Any, env: Mapping[str, str]) -> Any:
    """``data`` with every string interpolated as ``docker compose`` does with ``env``."""
    if isinstance(data, str):
        return _interpolate_string(data, env)
    if isinstance(data, list):
        return [interpolate(item, env) for item in data]
    if isinstance(data, dict):
        return {key: interpolate(value, env) for key, value in data.items()}
    return data


def variables(text: str) -> dict[str, set[str | None]]:
    """Every variable the compose text refers to, with the operators it is used with (``None``: bare ``${VAR}``)."""
    found: dict[str, set[str | None]] = {}
    for match in _VARIABLE.finditer(text):
        if not match.group("escaped"):
            found.setdefault(match.group("braced") or match.group("bare"), set()).add(match.group("op"))
    return found


# ----------------------------------------------------------------------------------------------------- checks


def schema_problems(document: Any, schema_file: Path = SCHEMA_FILE) -> list[str]:
    """Violations of the compose-spec JSON schema."""
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]


def _mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(type, source, target) of each volume entry of a service, short or long syntax."""
    for entry in service.get("volumes", []) or []:
        if isinstance(entry, str):
            parts = entry.split(":")
            if len(parts) == 1:
                yield "anonymous", "", parts[0]
                continue
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            yield kind, source, target
        else:
            yield entry.get("type", ""), entry.get("source", ""), entry.get("target", "")


def mount_problems(document: Mapping[str, Any], project_dir: Path) -> list[str]:
    """Bind-mount sources missing from the project, and named volumes not declared at the top level."""
    problems = []
    declared = set((document.get("volumes") or {}).keys())
    for name, service in (document.get("services") or {}).items():
        for kind, source, target in _mounts(service):
            if kind == "bind":
                path = Path(source).expanduser()
                path = path if path.is_absolute() else (project_dir / path)
                if not path.exists():
                    problems.append(f"{name}: bind mount {source} -> {target}: {source} does not exist")
            elif kind == "volume" and source not in declared:
                problems.append(f"{name}: volume {source} -> {target} is not declared under top-level volumes")
    return problems


def _is_one_shot(service: Mapping[str, Any]) -> bool:
    return str(service.get("restart", "no")).strip("'\"") == "no"


def healthcheck_problems(document: Mapping[str, Any]) -> list[str]:
    """Services without a healthcheck, and dependencies that do not wait for a healthy (or, for one-shot init
    services, a successfully completed) service."""
    services = document.get("services") or {}
    problems = []
    for name, service in services.items():
        check = service.get("healthcheck")
        if not check or check.get("disable") in (True, "true") or not check.get("test"):
            problems.append(f"{name}: no healthcheck")
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on is a list (waits only for 'started'); use conditions")
            continue
        for target, rule in depends.items():
            condition = (rule or {}).get("condition")
            if target not in services:
                problems.append(f"{name}: depends on {target}, which is not a service")
                continue
            if condition == "service_completed_successfully":
                if not _is_one_shot(services[target]):
                    problems.append(f"{name}: waits for {target} to complete, but {target} restarts")
            elif condition == "service_healthy":
                if not services[target].get("healthcheck"):
                    problems.append(f"{name}: waits for {target} to be healthy, but {target} has no healthcheck")
            else:
                problems.append(
                    f"{name}: depends on {target} with condition {condition!r}; use service_healthy "
                    "(or service_completed_successfully for an init service)"
                )
    return problems


def image_problems(dockerfile_text: str, requirements_text: str) -> list[str]:
    """The Dockerfile's ``FROM apache/airflow:X`` against requirements.txt's ``apache-airflow==X``."""
    image = AIRFLOW_IMAGE.search(dockerfile_text)
    pin = AIRFLOW_PIN.search(requirements_text)
    if not image:
        return ["Dockerfile: no `FROM apache/airflow:X.Y.Z` line"]
    if not pin:
        return ["requirements.txt: no `apache-airflow==X.Y.Z` pin"]
    if image.group("version") != pin.group("version"):
        return [
            f"Dockerfile builds FROM apache/airflow:{image.group('version')} but requirements.txt pins "
            f"apache-airflow=={pin.group('version')}"
        ]
    return []


def dockerfile_problems(dockerfile_text: str, project_dir: Path) -> list[str]:
    """COPY sources missing from the build context, and the install steps the image relies on."""
    problems = []
    for line in dockerfile_text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        for source in args[:-1]:
            if not (project_dir / source).exists():
                problems.append(f"Dockerfile: COPY source {source} does not exist")
    joined = re.sub(r"\\\n", " ", dockerfile_text)
    if not re.search(r"^RUN .*pip install [^\n]*-r [^\n]*", joined, re.M):
        problems.append("Dockerfile: the requirements are not installed at build time (RUN pip install -r)")
    if not re.search(r"^RUN .*pip install [^\n]*--no-deps[^\n]*", joined, re.M):
        problems.append("Dockerfile: the project is not installed with `pip install --no-deps` (provider entry point)")
    if RUNTIME_END_MARKER not in dockerfile_text:
        problems.append(f"Dockerfile: does not cut requirements.txt at {RUNTIME_END_MARKER!r}")
    return problems


def variable_problems(compose_text: str, env_example: Mapping[str, str]) -> list[str]:
    """Variables the compose file needs but .env.example does not list, and .env.example entries nobody uses."""
    used = variables(compose_text)
    problems = [
        f"{name} is required by docker-compose.yaml (no default) but missing from .env.example"
        for name, ops in sorted(used.items())
        if any(op not in (":-", "-") for op in ops) and name not in env_example
    ]
    unused = [name for name in env_example if name not in used]
    return problems + [f".env.example sets {name}, which docker-compose.yaml never uses" for name in unused]
