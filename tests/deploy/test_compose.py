"""docker-compose.yml (local) and deploy/coolify/docker-compose.yml: valid Compose, sound services."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from src.config import Settings
from tests.deploy.service_variables import COOLIFY_ONLY, DELIBERATE_DEFAULTS, NOT_IN_COMPOSE, READ_BY
from tests.deploy.tools import (
    COMPOSE_FILES,
    COOLIFY_COMPOSE,
    LOCAL_COMPOSE,
    ROOT,
    app_services,
    apt_tool,
    environment,
    load_yaml,
    pip_tool,
    without_coolify_keys,
)

SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
# Read by the start script (N_WORKERS), by Coolify (SERVICE_*), or by the local MongoDB container only
# (MONGO_ROOT_PASSWORD); docs/deployment.md lists them.
EXTRA_VARIABLES = {"N_WORKERS", "MONGO_ROOT_PASSWORD"}
DUMMY_ENV = {
    "APP_VERSION": "0123abc",
    "API_ACCESS_TOKEN": "dummy-token",
    "REDIS_PASSWORD": "dummypassword",
    "MONGO_ROOT_PASSWORD": "dummypassword",
    "SOURCE_COMMIT": "0123abc",
    "SERVICE_PASSWORD_REDIS": "dummypassword",
    "SERVICE_USER_MONGODB": "dummyuser",
    "SERVICE_PASSWORD_MONGODB": "dummypassword",
    "SERVICE_PASSWORD_64_APITOKEN": "dummy-token",
}
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
ids = [str(p.relative_to(ROOT)) for p in COMPOSE_FILES]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, f"unexpected duration {duration!r}"
    return int(match[1]) * (60 if match[2] == "m" else 1)


def docker_compose_v1(path: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run Debian's docker-compose (v1) on a file, the repository root as project directory (as
    Coolify does) and an empty env file, so a developer's .env cannot change the outcome."""
    binary = apt_tool("docker-compose", "docker-compose")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    variables = {k: v for k, v in os.environ.items() if k not in DUMMY_ENV} | (env or {})
    return subprocess.run(
        [binary, "--env-file", str(empty), "--project-directory", str(ROOT), "-f", str(path), *args],
        cwd=ROOT,
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_jsonschema(document: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    target = tmp_path / "compose.json"  # JSON is YAML: the validator reads it as a compose file
    target.write_text(json.dumps(document))
    return subprocess.run(
        [str(pip_tool("check-jsonschema")), "--builtin-schema", "vendor.compose-spec", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_matches_the_compose_specification(path: Path, tmp_path: Path) -> None:
    """check-jsonschema's vendored compose-spec schema accepts the file (Coolify-only keys removed)."""
    result = check_jsonschema(without_coolify_keys(load_yaml(path)), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    """The schema check is not vacuous: an unknown key and a wrong type fail it."""
    result = check_jsonschema({"services": {"api": {"image": "x", "restart_policy": 5}}}, tmp_path)
    assert result.returncode != 0


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_docker_compose_v1_accepts_it_and_builds_from_the_repository_root(path: Path, tmp_path: Path) -> None:
    """`docker-compose config -q` passes with the secrets set, and every build context is the root."""
    quiet = docker_compose_v1(path, tmp_path, "config", "-q", env=DUMMY_ENV)
    assert quiet.returncode == 0, quiet.stderr
    resolved = docker_compose_v1(path, tmp_path, "config", env=DUMMY_ENV)
    from ruamel.yaml import YAML

    services = YAML(typ="safe", pure=True).load(resolved.stdout)["services"]
    contexts = {s["build"]["context"] for s in services.values() if "build" in s}
    assert contexts == {str(ROOT)} and (ROOT / "Dockerfile").exists()


@pytest.mark.parametrize(
    "missing", ["APP_VERSION", "API_ACCESS_TOKEN", "REDIS_PASSWORD", "MONGO_ROOT_PASSWORD"]
)
def test_local_compose_refuses_to_start_without_a_secret(missing: str, tmp_path: Path) -> None:
    """Without a required value the local compose fails with a message naming it (`${VAR:?...}`)."""
    env = {k: v for k, v in DUMMY_ENV.items() if k != missing}
    result = docker_compose_v1(LOCAL_COMPOSE, tmp_path, "config", "-q", env=env)
    assert result.returncode != 0 and f"set {missing}" in result.stderr


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_every_variable_is_a_setting_or_a_documented_extra(path: Path) -> None:
    """`${VAR}` references and our services' environment keys are Settings fields or documented extras."""
    compose = load_yaml(path)
    names = set(INTERPOLATION.findall(path.read_text()))
    for service in app_services(compose).values():
        names |= environment(service).keys()
    unknown = {
        n for n in names if n not in SETTINGS_VARIABLES | EXTRA_VARIABLES and not n.startswith("SERVICE_")
    }
    assert not unknown, f"not in Settings nor documented extras: {sorted(unknown)}"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_services_are_healthchecked_ordered_and_stop_gracefully(path: Path) -> None:
    """Every service has a healthcheck and no container_name; ours run with init, a stop grace period
    above the job completion wait, production settings and APP_VERSION as a build argument."""
    compose = load_yaml(path)
    services: dict[str, dict[str, Any]] = compose["services"]
    completion_wait = Settings.model_fields["arq_job_completion_wait"].default
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert "container_name" not in service, name
        assert not {"replicas"} & set(service.get("deploy", {})) and "scale" not in service, name
    ours = app_services(compose)
    assert set(ours) == {"api", "worker", "worker-maintenance"}
    for name, service in ours.items():
        env = environment(service)
        assert service["init"] is True, name
        # the default the file gives (the API does not set it: Settings' default applies)
        configured = env.get("ARQ_JOB_COMPLETION_WAIT") or f"${{ARQ_JOB_COMPLETION_WAIT:-{completion_wait}}}"
        wait = int(re.sub(r"\$\{ARQ_JOB_COMPLETION_WAIT:-(\d+)\}", r"\1", configured))
        assert wait == completion_wait, name
        assert seconds(service["stop_grace_period"]) >= wait + 15, name
        assert env["ENVIRONMENT"] == "production" and "APP_VERSION" not in env, name
        assert "APP_VERSION" in service["build"]["args"], name
        for dependency in service["depends_on"].values():
            assert dependency == {"condition": "service_healthy"}, name
    for name in ("worker", "worker-maintenance"):
        assert ours[name]["healthcheck"]["test"] == ["CMD", "python", "workers.py", "--check"]
        assert list(ours[name]["depends_on"]) == ["api"]
    assert ours["worker"]["command"] == ["python", "workers.py"]
    assert ours["worker-maintenance"]["command"] == ["python", "workers.py", "--queue", "maintenance"]
    stores = {n for n, s in services.items() if str(s.get("image", "")).startswith(("redis:", "mongo:"))}
    assert set(ours["api"]["depends_on"]) == stores and len(stores) == 2


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_redis_requires_a_password_persists_and_never_evicts(path: Path) -> None:
    """Redis runs with --requirepass, append-only persistence on a volume and noeviction."""
    services = load_yaml(path)["services"]
    [redis] = [s for s in services.values() if str(s.get("image", "")).startswith("redis:")]
    command = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert password.startswith(("${REDIS_PASSWORD:?", "${SERVICE_PASSWORD_REDIS}"))
    assert environment(redis)["REDISCLI_AUTH"] == password  # the healthcheck authenticates
    assert "noeviction" == command[command.index("--maxmemory-policy") + 1]
    assert "yes" == command[command.index("--appendonly") + 1]
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    [mongodb] = [s for s in services.values() if str(s.get("image", "")).startswith("mongo:")]
    assert {"MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"} <= environment(mongodb).keys()
    assert any(str(v).endswith(":/data/db") for v in mongodb["volumes"])


def test_coolify_routes_only_the_api_and_generates_the_secrets() -> None:
    """Only the api declares a Coolify URL (port 8000); nothing publishes ports; secrets are generated
    by Coolify and APP_VERSION is the deployed commit."""
    compose = load_yaml(COOLIFY_COMPOSE)
    services: dict[str, dict[str, Any]] = compose["services"]
    routed = {
        n
        for n, s in services.items()
        for k in environment(s)
        if k.startswith(("SERVICE_URL_", "SERVICE_FQDN_"))
    }
    assert routed == {"api"} and "SERVICE_URL_API_8000" in environment(services["api"])
    assert not [n for n, s in services.items() if "ports" in s]
    for name, service in app_services(compose).items():
        env = environment(service)
        assert service["build"]["args"]["APP_VERSION"] == "${SOURCE_COMMIT:-}", name
        assert env["SOURCE_COMMIT"] == "${SOURCE_COMMIT:-}", name  # the version when the build had none
        assert env["REDIS_PASSWORD"] == "${SERVICE_PASSWORD_REDIS}", name
        assert env["API_ACCESS_TOKEN"] == "${SERVICE_PASSWORD_64_APITOKEN}", name
        assert "${SERVICE_PASSWORD_MONGODB}" in (env["MONGODB_URL"] or ""), name


def test_every_setting_is_placed_for_the_compose_files() -> None:
    """Each setting is read by named services (READ_BY) or left out with a reason: a new setting
    cannot be forgotten in the compose files."""
    placed = set(READ_BY) | set(NOT_IN_COMPOSE) | set(COOLIFY_ONLY)
    assert placed == SETTINGS_VARIABLES
    assert not set(READ_BY) & set(NOT_IN_COMPOSE)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_every_documented_variable_reaches_the_services_that_read_it(path: Path) -> None:
    """Every variable of docs/configuration.md a service reads at run time is in that service's
    environment, so .env (local) or Coolify's Environment Variables page can set it; none of the
    variables left out on purpose is there."""
    expected = dict(READ_BY) | (COOLIFY_ONLY if path == COOLIFY_COMPOSE else {})
    for name, service in app_services(load_yaml(path)).items():
        env = environment(service)
        missing = sorted(v for v, readers in expected.items() if name in readers and v not in env)
        assert not missing, f"{path.relative_to(ROOT)}: {name} does not get {missing}"
        assert not set(NOT_IN_COMPOSE) & env.keys(), f"{path.relative_to(ROOT)}: {name}"


DEFAULTED = re.compile(r"^\$\{([A-Z0-9_]+):-([^}]*)\}$")


def setting_default(variable: str) -> str:
    value = Settings.model_fields[variable.lower()].default
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(getattr(value, "value", value))


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=ids)
def test_compose_defaults_are_the_settings_defaults(path: Path) -> None:
    """`VAR: ${VAR:-default}` gives the setting's own default, unless the file chooses another on
    purpose (DELIBERATE_DEFAULTS, each with its reason)."""
    for name, service in app_services(load_yaml(path)).items():
        for variable, value in environment(service).items():
            match = DEFAULTED.match(value or "")
            if not match or match[1] != variable or variable not in SETTINGS_VARIABLES:
                continue
            default, own = match[2], setting_default(variable)
            if (variable, default) in DELIBERATE_DEFAULTS:
                continue
            same = float(default) == float(own) if default.replace(".", "").isdigit() else default == own
            where = f"{path.relative_to(ROOT)}: {name}"
            assert same, f"{where}: {variable} defaults to {default!r}, the setting to {own!r}"


def test_a_placement_mistake_is_caught(tmp_path: Path) -> None:
    """The check above fails on a compose file that drops a variable from the service reading it."""
    compose = load_yaml(COOLIFY_COMPOSE)
    del compose["services"]["api"]["environment"]["RATE_LIMIT_PER_MINUTE"]
    env = environment(compose["services"]["api"])
    assert [v for v, readers in READ_BY.items() if "api" in readers and v not in env] == [
        "RATE_LIMIT_PER_MINUTE"
    ]
