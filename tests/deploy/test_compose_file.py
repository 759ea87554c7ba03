"""The deployment files are consistent, checked without a Docker engine: docker-compose.yaml against the vendored
compose-spec schema (as written, and interpolated with .env.example's variables), every mounted path exists, every
dependency waits for a healthy (or completed init) service, the image tag matches requirements.txt's Airflow, and
the variables the compose file needs are listed in .env.example. Each check is also shown failing on a broken copy.
"""

from __future__ import annotations

import subprocess

import compose_checks as checks
import pytest
import yaml
from compose_checks import COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE, PROJECT_ROOT, REQUIREMENTS, filled_env

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return checks.load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return checks.read_env_file(ENV_EXAMPLE)


def _edit(path, edit) -> dict:
    """Load the compose copy at ``path``, apply ``edit`` to it, write it back; return the edited document."""
    document = checks.load_yaml(path)
    edit(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return checks.load_yaml(path)


# ----------------------------------------------------------------------------------------------- compose-spec


def test_the_vendored_schema_is_a_valid_draft7_schema():
    import json

    import jsonschema

    schema = json.loads(checks.SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"
    assert (checks.HERE / "compose-spec.LICENSE").read_text().lstrip().startswith("Apache License")


def test_compose_file_matches_the_compose_spec_as_written_and_interpolated(compose, env_example):
    assert checks.schema_problems(compose) == []
    interpolated = checks.interpolate(compose, filled_env(env_example))
    assert checks.schema_problems(interpolated) == []


def test_schema_check_fails_on_an_invalid_file(compose_copy):
    def break_it(document):
        document["services"]["redis"]["healthcheck"]["retry"] = 5  # not a healthcheck key
        document["services"]["airflow-scheduler"]["depends_on"]["redis"]["condition"] = "service_ready"

    problems = checks.schema_problems(_edit(compose_copy, break_it))
    assert any("healthcheck" in p and "retry" in p for p in problems), problems
    assert any("airflow-scheduler" in p and "depends_on" in p for p in problems), problems


def test_interpolation_follows_compose_rules():
    env = {"SET": "v", "EMPTY": ""}
    assert checks.interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$HOME $SET", env) == "v d  d $HOME v"
    assert checks.interpolate("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}", env) == "alt||alt"
    with pytest.raises(checks.InterpolationError, match="EMPTY: set it"):
        checks.interpolate({"a": ["${EMPTY:?set it}"]}, env)


def test_required_secrets_stop_compose_when_left_empty(compose, env_example):
    # .env.example leaves them empty on purpose: `docker compose` must refuse to start until they are filled.
    with pytest.raises(checks.InterpolationError):
        checks.interpolate(compose, env_example)
    required = {name for name, ops in checks.variables(COMPOSE_FILE.read_text()).items() if ":?" in ops}
    assert {"AIRFLOW_DB_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
            "AIRFLOW_ADMIN_PASSWORD", "KOMOJU_DB_PASSWORD"} <= required  # fmt: skip
    assert all(env_example[name] == "" for name in required)


# ------------------------------------------------------------------------------------------------------ layout


def test_the_services_follow_airflows_compose_layout(compose):
    services = compose["services"]
    assert {"postgres", "redis", *AIRFLOW_SERVICES} <= set(services)
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-worker"] == "celery worker"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-init"] == ["python", "/opt/airflow/docker/komoju_init.py", "init"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        mounts = {target: source for _, source, target in checks._mounts(service)}
        assert mounts["/opt/airflow/dags"] == "./dags", name
        assert mounts["/opt/airflow/plugins"] == "./plugins", name
        assert mounts["/opt/airflow/include"] == "./include", name
    # Airflow metadata and the komoju schema live in two databases of the one Postgres service.
    env = services["airflow-init"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert env["KOMOJU_DB_NAME"] == "${KOMOJU_DB_NAME:-komoju}"
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "airflow"
    # The demo profile: the KOMOJU emulator (demo scenario) and an SMTP sink with a web inbox.
    demo = {name for name, service in services.items() if "demo" in service.get("profiles", [])}
    assert demo == {"komoju-demo-init", "komoju-emulator", "mailpit"}
    assert "emulator/scenarios/demo.json" in " ".join(services["komoju-emulator"]["entrypoint"])
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")


def test_requirements_are_installed_at_build_time_not_at_container_start(compose):
    assert checks.dockerfile_problems(DOCKERFILE.read_text(), PROJECT_ROOT) == []
    for name, service in compose["services"].items():
        assert not (service.get("environment") or {}).get("_PIP_ADDITIONAL_REQUIREMENTS"), name
    runtime, marker, _ = REQUIREMENTS.read_text().partition(checks.RUNTIME_END_MARKER)
    assert marker, f"requirements.txt has no {checks.RUNTIME_END_MARKER!r} line: the Dockerfile cuts it there"
    assert "apache-airflow==" in runtime
    assert "apache-airflow-providers-postgres==" in runtime


def test_dockerfile_check_fails_on_a_missing_copy_source_and_a_runtime_install(tmp_path):
    broken = DOCKERFILE.read_text().replace("COPY --chown=airflow:0 dags/", "COPY --chown=airflow:0 no-such-dir/")
    broken = broken.replace("--no-deps -e", "-e")
    problems = checks.dockerfile_problems(broken, PROJECT_ROOT)
    assert any("no-such-dir/ does not exist" in p for p in problems), problems
    assert any("--no-deps" in p for p in problems), problems


# ------------------------------------------------------------------------------------------------------ mounts


def test_every_mounted_path_exists(compose):
    assert checks.mount_problems(compose, PROJECT_ROOT) == []


def test_mount_check_fails_on_a_missing_path_and_an_undeclared_volume(compose_copy):
    def break_it(document):
        worker = document["services"]["airflow-worker"]  # a new list: the anchor's is shared by every service
        worker["volumes"] = [*worker["volumes"], "./no-such-folder:/opt/airflow/extra:ro"]
        document["services"]["redis"]["volumes"] = ["redis-data:/data"]

    problems = checks.mount_problems(_edit(compose_copy, break_it), PROJECT_ROOT)
    assert problems == [
        "redis: volume redis-data -> /data is not declared under top-level volumes",
        "airflow-worker: bind mount ./no-such-folder -> /opt/airflow/extra: ./no-such-folder does not exist",
    ]


# ------------------------------------------------------------------------------------------------ healthchecks


def test_every_service_has_a_healthcheck_and_every_dependency_waits_for_health(compose):
    assert checks.healthcheck_problems(compose) == []
    for name in AIRFLOW_SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        if name != "airflow-init":
            assert depends["airflow-init"]["condition"] == "service_completed_successfully", name


def test_healthcheck_check_fails_on_a_missing_healthcheck_or_a_weak_condition(compose_copy):
    def break_it(document):
        del document["services"]["redis"]["healthcheck"]
        document["services"]["airflow-scheduler"]["depends_on"]["airflow-init"]["condition"] = "service_started"
        document["services"]["airflow-triggerer"]["depends_on"] = ["postgres", "redis"]
        document["services"]["airflow-dag-processor"]["depends_on"]["airflow-worker"] = {
            "condition": "service_completed_successfully"
        }

    problems = checks.healthcheck_problems(_edit(compose_copy, break_it))
    assert "redis: no healthcheck" in problems
    assert any(p.startswith("airflow-apiserver: waits for redis to be healthy") for p in problems), problems
    assert any(p.startswith("airflow-scheduler: depends on airflow-init with condition 'service_started'")
               for p in problems), problems  # fmt: skip
    assert any(p.startswith("airflow-triggerer: depends_on is a list") for p in problems), problems
    assert "airflow-dag-processor: waits for airflow-worker to complete, but airflow-worker restarts" in problems


# ------------------------------------------------------------------------------------------------- image tag


def test_the_image_tag_matches_the_airflow_pin():
    assert checks.image_problems(DOCKERFILE.read_text(), REQUIREMENTS.read_text()) == []
    pin = checks.AIRFLOW_PIN.search((PROJECT_ROOT / "constraints.txt").read_text()).group("version")
    assert checks.AIRFLOW_IMAGE.search(DOCKERFILE.read_text()).group("version") == pin


def test_image_check_fails_on_a_different_airflow_version():
    dockerfile = DOCKERFILE.read_text().replace("FROM apache/airflow:3.3.2", "FROM apache/airflow:3.3.1")
    problems = checks.image_problems(dockerfile, REQUIREMENTS.read_text())
    assert problems == ["Dockerfile builds FROM apache/airflow:3.3.1 but requirements.txt pins apache-airflow==3.3.2"]
    assert checks.image_problems("FROM python:3.11\n", REQUIREMENTS.read_text()) == [
        "Dockerfile: no `FROM apache/airflow:X.Y.Z` line"
    ]


# ------------------------------------------------------------------------------------------------ .env secrets


def test_env_example_lists_exactly_the_variables_compose_needs(env_example):
    assert checks.variable_problems(COMPOSE_FILE.read_text(), env_example) == []


def test_variable_check_fails_on_a_missing_or_stale_variable(env_example):
    text = COMPOSE_FILE.read_text() + "\nx-extra:\n  token: ${NEW_SECRET:?set it}\n  other: ${WITH_DEFAULT:-1}\n"
    stale = {**env_example, "OLD_SETTING": "1"}
    assert checks.variable_problems(text, stale) == [
        "NEW_SECRET is required by docker-compose.yaml (no default) but missing from .env.example",
        ".env.example sets OLD_SETTING, which docker-compose.yaml never uses",
    ]


def test_env_file_is_ignored_by_git_and_docker_but_the_example_is_not():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=PROJECT_ROOT, check=False)
    example = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=PROJECT_ROOT, check=False)
    assert ignored.returncode == 0, ".env is not git-ignored"
    assert example.returncode == 1, ".env.example is git-ignored"
    assert ".env" in (PROJECT_ROOT / ".dockerignore").read_text().split()


# ------------------------------------------------------------------------------------------------------- docs


DOCS = PROJECT_ROOT / "docs" / "deploy.md"


def test_docs_name_every_service_and_their_env_snippet_fills_every_required_secret(compose, tmp_path):
    docs = DOCS.read_text(encoding="utf-8")
    for name in compose["services"]:
        assert f"`{name}`" in docs, f"docs/deploy.md does not describe the service {name}"
    (snippet,) = [block for block in docs.split("```bash\n")[1:] if 'open(".env", "w")' in block]
    script = tmp_path / "fill-env.sh"
    script.write_text(snippet.split("\n```", 1)[0] + "\n", encoding="utf-8")
    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    subprocess.run(["bash", str(script)], cwd=tmp_path, check=True, timeout=60)
    env = checks.read_env_file(tmp_path / ".env")
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    interpolated = checks.interpolate(compose, env)  # no required variable left empty
    assert checks.schema_problems(interpolated) == []
    from cryptography.fernet import Fernet

    Fernet(env["AIRFLOW_FERNET_KEY"])  # a valid Fernet key
