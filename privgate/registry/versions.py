"""Log, register and look up privgate models in MLflow.

Every trained model is registered, approved or not, so a rejected attempt stays on the
record with its reasons. The version is tagged `privgate.status` (`approved` /
`rejected`, or `pending-approval` while a person decides) and `privgate.gate.<name>`
(`passed` / `failed` / `inconclusive`); the alias (`champion`) moves only to a version
whose every gate passed and, when the policy asks, that an approver approved.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privgate.errors import RegistryError, is_transient
from privgate.home import file_lock, privgate_home
from privgate.registry import attestation

STATUS_TAG = "privgate.status"
GATE_TAG_PREFIX = "privgate.gate."
SIGNATURE_TAG = "privgate.signature"
RUN_TAG = "privgate.run_id"
RUN_KEY_TAG = "privgate.run_key"
DEMOTED_TAG = "privgate.demoted_utc"
DEMOTED_REASON_TAG = "privgate.demoted_reason"
# A version whose gates all passed, waiting for a person's decision (policy `approval`).
PENDING_APPROVAL = "pending-approval"
APPROVAL_TAG_PREFIX = "privgate.approval."
REJECTED_REASON_TAG = "privgate.rejected_reason"
GATE_REPORT_PATH = "reports/gate_report.json"

# Given a model name, a lock held while its aliases move.
PromotionLock = Callable[[str], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Registration:
    """Where a model landed in the registry."""

    model_name: str
    version: str
    run_id: str
    promoted: bool
    # Gates all passed and the policy asks a person: waiting for `record_decision`.
    pending_approval: bool = False
    # The facts its model card was rendered from (aggregates), to render it again once
    # a person decided.
    card_facts: Mapping[str, Any] | None = None


def configure_mlflow() -> str:
    """Point MLflow at the configured tracking store; return its URI."""
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{privgate_home() / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:"):
        # Two runs starting on a fresh home would both create the schema and collide
        # in its migrations; the first creates it under the lock, the rest find it.
        from mlflow.tracking import MlflowClient

        with file_lock(f"mlflow-init:{uri}"):
            MlflowClient().search_experiments(max_results=1)
    # No set_registry_uri: MLflow's registry follows the tracking URI unless the user set
    # MLFLOW_REGISTRY_URI, and set_registry_uri would export a value that then goes stale.
    return uri


def experiment_id(name: str) -> str:
    """Return the id of experiment `name`, creating it (artifacts under PRIVGATE_HOME)."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        # The embedded default keeps artifacts beside the database, under PRIVGATE_HOME.
        location = (privgate_home() / "mlartifacts").as_uri()
    try:
        return str(mlflow.create_experiment(name, artifact_location=location))
    except Exception:
        # Another run created it between our lookup and create.
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def log_and_register(
    *,
    model_name: str,
    alias: str,
    experiment: str,
    network: Any,
    model_spec: Mapping[str, Any],
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    gate_tags: Mapping[str, str],
    gate_report_json: str,
    approved: bool,
    epsilon: float,
    delta: float,
    policy_sha256: str,
    json_artifacts: Mapping[str, Any],
    text_artifacts: Mapping[str, str],
    run_key: str,
    promotion_lock: PromotionLock | None = None,
    silos: list[dict[str, Any]] | None = None,
    hold_for_approval: bool = False,
) -> Registration:
    """Log one training run, register its model once, sign and promote it if approved.

    With `hold_for_approval`, a version whose gates all passed is tagged
    `pending-approval` and neither signed nor promoted: `record_decision` does that once
    a person decided.

    `run_key` identifies the pipeline run: a retried task finds the version it made
    before instead of registering a second one. The version is created with its verdict
    tags in one call, so no version is ever visible without a status; an approved
    version is signed (see `privgate.registry.attestation`) before the alias may move to it, so a
    crash at any step leaves no alias on a half-registered version, and the retry
    finishes the steps left. `promotion_lock(model_name)` serializes the alias moves of
    one model across machines (the flows pass a Prefect global concurrency slot).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    existing = _version_for_run_key(client, model_name, run_key)
    if existing is not None:
        version, run_id = str(existing.version), str(existing.run_id)
    else:
        run_id, model_uri, model_id = _log_run(
            experiment=experiment,
            network=network,
            model_spec=model_spec,
            params=params,
            metrics=metrics,
            tags=tags,
            gate_report_json=gate_report_json,
            json_artifacts=json_artifacts,
            text_artifacts=text_artifacts,
        )
        status = "approved" if approved else "rejected"
        if approved and hold_for_approval:
            status = PENDING_APPROVAL
        version_tags = {
            STATUS_TAG: status,
            **(
                {APPROVAL_TAG_PREFIX + "requested_utc": _utc_now()}
                if status == PENDING_APPROVAL
                else {}
            ),
            RUN_TAG: run_id,
            RUN_KEY_TAG: run_key,
            **{GATE_TAG_PREFIX + g: status for g, status in gate_tags.items()},
        }
        _ensure_registered_model(client, model_name)
        created = client.create_model_version(
            model_name, source=model_uri, run_id=run_id, tags=version_tags, model_id=model_id
        )
        version = str(created.version)
    promoted = False
    if approved and not hold_for_approval:
        _sign_version(
            client,
            model_name=model_name,
            version=version,
            run_id=run_id,
            gate_report_json=gate_report_json,
            epsilon=epsilon,
            delta=delta,
            policy_sha256=policy_sha256,
            silos=silos,
        )
        promoted = _promote(client, model_name, alias, version, promotion_lock)
    return Registration(
        model_name=model_name,
        version=version,
        run_id=run_id,
        promoted=promoted,
        pending_approval=approved and hold_for_approval,
    )


def _log_run(
    *,
    experiment: str,
    network: Any,
    model_spec: Mapping[str, Any],
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    gate_report_json: str,
    json_artifacts: Mapping[str, Any],
    text_artifacts: Mapping[str, str],
) -> tuple[str, str, str | None]:
    import mlflow
    import torch
    from mlflow.entities import Metric
    from mlflow.models import ModelSignature
    from mlflow.tracking import MlflowClient
    from mlflow.types import ColSpec, Schema

    from privgate.registry import serving

    client = MlflowClient()
    with mlflow.start_run(experiment_id=experiment_id(experiment)) as run:
        run_id = run.info.run_id
        mlflow.log_params(dict(params))
        now = int(time.time() * 1000)
        # One batched call: a single log_metric on SQLite costs ~7 ms, batched ~0.4 ms.
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        client.log_batch(run_id, metrics=batch, synchronous=True)
        mlflow.set_tags(dict(tags))
        # Logged as the exact text the attestation hashes.
        mlflow.log_text(gate_report_json, GATE_REPORT_PATH)
        for name, payload in json_artifacts.items():
            mlflow.log_dict(payload, f"reports/{name}")
        for name, text in text_artifacts.items():
            mlflow.log_text(text, f"reports/{name}")
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "weights.pt"
            torch.save(network.state_dict(), weights)
            spec_path = Path(tmp) / "model_spec.json"
            spec_path.write_text(json.dumps(model_spec, sort_keys=True))
            # Signature column names come from the anonymized schema's feature list; no
            # input_example: an example would be a real row.
            features = model_spec["feature_spec"]["features"]
            signature = ModelSignature(
                inputs=Schema([ColSpec(f.get("input", "string"), f["name"]) for f in features]),
                outputs=Schema([ColSpec("double", "probability"), ColSpec("long", "prediction")]),
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*input example was not provided")
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=serving.__file__,
                    artifacts={"weights": str(weights), "model_spec": str(spec_path)},
                    signature=signature,
                    pip_requirements=_pip_requirements(),
                )
    return run_id, info.model_uri, getattr(info, "model_id", None)


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        # Another run may create it between our lookup and create: both outcomes are fine.
        with contextlib.suppress(MlflowException):
            client.create_registered_model(name)


def _version_for_run_key(client: Any, name: str, run_key: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    return next((v for v in versions if (v.tags or {}).get(RUN_KEY_TAG) == run_key), None)


def _sign_version(
    client: Any,
    *,
    model_name: str,
    version: str,
    run_id: str,
    gate_report_json: str,
    epsilon: float,
    delta: float,
    policy_sha256: str,
    silos: list[dict[str, Any]] | None = None,
    approval: dict[str, Any] | None = None,
) -> None:
    import mlflow

    key = attestation.load_signing_key()
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_name}/{version}", dst_path=tmp
        )
        digests = attestation.digest_tree(Path(local))
    statement = attestation.Attestation(
        model_name=model_name,
        version=version,
        run_id=run_id,
        artifacts=digests,
        gate_report_sha256=attestation.sha256_bytes(gate_report_json.encode()),
        epsilon=epsilon,
        delta=delta,
        policy_sha256=policy_sha256,
        key_id=attestation.key_id(key.public_key()),
        silos=silos,
        approval=approval,
    )
    client.log_text(run_id, statement.payload().decode(), attestation_path(version))
    client.set_model_version_tag(
        model_name, version, SIGNATURE_TAG, attestation.sign(statement, key)
    )


def record_decision(
    *,
    model_name: str,
    version: str,
    alias: str,
    approval: dict[str, Any] | None,
    refusal: str | None,
    gate_report_json: str,
    epsilon: float,
    delta: float,
    policy_sha256: str,
    promotion_lock: PromotionLock | None = None,
    silos: list[dict[str, Any]] | None = None,
) -> bool:
    """Finish a `pending-approval` version: sign and promote it, or reject it.

    `approval` is the approver's record (`privgate.registry.approval.Decision.to_dict`);
    with `decision: approve` and no `refusal`, the attestation is signed with it and the
    alias moves. A rejection, a refusal (a timeout, an error) or anything else tags the
    version rejected with the reason: it never gets the alias. Returns whether it was
    promoted.

    Idempotent, so a retried task finishes what a failed attempt began: a version this
    same decision already approved is only promoted again, one it already rejected for
    the same reason is left as it is.

    Raises:
        RegistryError: when the version is not waiting for a decision, nor finished by
            this one.
    """
    client = _client()
    mv = client.get_model_version(model_name, version)
    tags = mv.tags or {}
    status = tags.get(STATUS_TAG)
    approves = approval is not None and approval.get("decision") == "approve" and not refusal
    if refusal:
        reason = refusal
    elif approval is not None and not approves:
        reason = f"rejected by {approval['approver']}: {approval['rationale']}"
    else:
        reason = "not approved"
    if status != PENDING_APPROVAL:
        same = approval is not None and tags.get(APPROVAL_TAG_PREFIX + "decided_utc") == str(
            approval.get("decided_utc")
        )
        if approves and status == "approved" and same and tags.get(SIGNATURE_TAG):
            return _promote(client, model_name, alias, version, promotion_lock)
        if not approves and status == "rejected" and tags.get(REJECTED_REASON_TAG) == reason:
            return False
        raise RegistryError(
            f"{model_name} version {version} is {status!r}, not waiting for approval"
        )
    for key, value in (approval or {}).items():
        tag = APPROVAL_TAG_PREFIX + key
        client.set_model_version_tag(model_name, version, tag, str(value)[:4000])
    if not approves:
        client.set_model_version_tag(model_name, version, STATUS_TAG, "rejected")
        client.set_model_version_tag(model_name, version, REJECTED_REASON_TAG, reason[:4000])
        return False
    # Signed first, then approved: a crash in between leaves a version no consumer loads.
    _sign_version(
        client,
        model_name=model_name,
        version=version,
        run_id=str(mv.run_id),
        gate_report_json=gate_report_json,
        epsilon=epsilon,
        delta=delta,
        policy_sha256=policy_sha256,
        silos=silos,
        approval=approval,
    )
    client.set_model_version_tag(model_name, version, STATUS_TAG, "approved")
    return _promote(client, model_name, alias, version, promotion_lock)


def registered_gate_report_sha256(run_id: str) -> str:
    """Return the SHA-256 of the gate report logged with a run (what a version carries)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        report = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=GATE_REPORT_PATH, dst_path=tmp
        )
        return attestation.sha256_bytes(Path(report).read_bytes())


def log_run_text(run_id: str, text: str, path: str) -> None:
    """Log `text` as an artifact of an existing (possibly finished) run."""
    from mlflow.tracking import MlflowClient

    MlflowClient().log_text(run_id, text, path)


def log_run_file(run_id: str, path: Path, artifact_dir: str) -> None:
    """Log a local file as an artifact of an existing (possibly finished) run."""
    from mlflow.tracking import MlflowClient

    MlflowClient().log_artifact(run_id, str(path), artifact_dir)


def artifact_url(run_id: str, path: str) -> str:
    """Return where a browser can fetch a run's artifact.

    A tracking server serves it over HTTP (`/get-artifact`, what the MLflow UI uses);
    a local store has only the file's own URI.
    """
    from urllib.parse import urlencode

    import mlflow
    from mlflow.tracking import MlflowClient

    tracking = mlflow.get_tracking_uri()
    if tracking.startswith(("http://", "https://")):
        query = urlencode({"path": path, "run_uuid": run_id})
        return f"{tracking.rstrip('/')}/get-artifact?{query}"
    root = MlflowClient().get_run(run_id).info.artifact_uri
    return f"{root.rstrip('/')}/{path}"


def attestation_path(version: str) -> str:
    """Return the run-artifact path of a version's attestation."""
    return f"attestation/v{version}.json"


@contextlib.contextmanager
def _promotion(model_name: str, lock: PromotionLock | None) -> Iterator[None]:
    """Hold the model's promotion lock: the caller's (cross-machine) and this machine's."""
    with lock(model_name) if lock else contextlib.nullcontext(), file_lock(f"promote:{model_name}"):
        yield


def _promote(
    client: Any, model_name: str, alias: str, version: str, lock: PromotionLock | None = None
) -> bool:
    """Move `alias` to `version` unless a newer approved version already holds it.

    Two runs finishing together must not lose an update: under the lock, the alias only
    moves forward, so the older run finishing last leaves the newer champion in place.
    A version demoted since it was approved never gets the alias back.
    """
    with _promotion(model_name, lock):
        if (client.get_model_version(model_name, version).tags or {}).get(STATUS_TAG) != (
            "approved"
        ):
            return False
        current = _aliased(client, model_name, alias)
        if current is not None and int(current.version) > int(version):
            tags = current.tags or {}
            if tags.get(STATUS_TAG) == "approved" and tags.get(SIGNATURE_TAG):
                return False
        client.set_registered_model_alias(model_name, alias, version)
        return True


# What MLflow answers for an alias (or a model) that does not exist; anything else, an
# outage or a refused credential, is an error and never reads as "no champion".
_NO_SUCH_ALIAS = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def _aliased(client: Any, model_name: str, alias: str) -> Any | None:
    """Return the version `alias` points at, or None when the alias or model does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if is_transient(exc) or exc.error_code not in _NO_SUCH_ALIAS:
            raise
        return None


def champion_version(model_name: str, alias: str) -> str | None:
    """Return the version `alias` of `model_name` points at, or None if it points nowhere."""
    current = _aliased(_client(), model_name, alias)
    return None if current is None else str(current.version)


def demote(
    model_name: str,
    *,
    alias: str,
    version: str,
    reason: str,
    promotion_lock: PromotionLock | None = None,
) -> bool:
    """Mark `version` demoted, with `reason`, and take `alias` off it if it still holds it.

    The status `demoted` stops every consumer loading the version (by alias or by
    number) and any retried registration promoting it again. The alias is removed only
    if it still points at `version`: a newer champion promoted while the re-audit ran
    is not the one it judged. Returns whether the alias was removed.
    """
    client = _client()
    with _promotion(model_name, promotion_lock):
        stamp = _utc_now()
        # Status first: if the alias removal fails, consumers already refuse the version.
        client.set_model_version_tag(model_name, version, STATUS_TAG, "demoted")
        client.set_model_version_tag(model_name, version, DEMOTED_TAG, stamp)
        client.set_model_version_tag(model_name, version, DEMOTED_REASON_TAG, reason[:4000])
        current = _aliased(client, model_name, alias)
        if current is None or str(current.version) != str(version):
            return False
        client.delete_registered_model_alias(model_name, alias)
        return True


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "pandas", "numpy", "pydantic")]


# --------------------------------------------------------------------------- reading


def _client() -> Any:
    from mlflow.tracking import MlflowClient

    configure_mlflow()
    return MlflowClient()


def _version_summary(client: Any, mv: Any, aliases: list[str]) -> dict[str, Any]:
    tags = dict(mv.tags or {})
    summary: dict[str, Any] = {
        "name": mv.name,
        "version": str(mv.version),
        "aliases": aliases,
        "status": tags.get(STATUS_TAG, "unknown"),
        "gates": {
            key[len(GATE_TAG_PREFIX) :]: value
            for key, value in sorted(tags.items())
            if key.startswith(GATE_TAG_PREFIX)
        },
        "run_id": mv.run_id,
        "created": mv.creation_timestamp,
    }
    if mv.run_id:
        run = client.get_run(mv.run_id)
        summary["dp"] = {k: v for k, v in sorted(run.data.params.items()) if k.startswith("dp.")}
        summary["metrics"] = dict(sorted(run.data.metrics.items()))
        summary["lineage"] = {
            k: v for k, v in sorted(run.data.tags.items()) if k.startswith("privgate.lineage.")
        }
    return summary


def _aliases_by_version(client: Any, name: str) -> dict[str, list[str]]:
    model = client.get_registered_model(name)
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def list_models() -> list[dict[str, Any]]:
    """Return every registered model with its versions (newest first)."""
    client = _client()
    out = []
    for model in client.search_registered_models():
        aliases = _aliases_by_version(client, model.name)
        versions = sorted(
            client.search_model_versions(f"name='{model.name}'"),
            key=lambda mv: int(mv.version),
            reverse=True,
        )
        out.append(
            {
                "name": model.name,
                "aliases": dict(model.aliases or {}),
                "versions": [
                    {
                        "version": str(mv.version),
                        "status": (mv.tags or {}).get(STATUS_TAG, "unknown"),
                        "aliases": aliases.get(str(mv.version), []),
                    }
                    for mv in versions
                ],
            }
        )
    return out


def show_model(name: str, version: str | None = None, alias: str = "champion") -> dict[str, Any]:
    """Return one version in full: the given one, else the alias's, else the newest.

    Raises:
        RegistryError: when the model or version does not exist.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        aliases = _aliases_by_version(client, name)
        if version is not None:
            mv, resolved = client.get_model_version(name, version), "version"
        elif alias in (client.get_registered_model(name).aliases or {}):
            mv, resolved = client.get_model_version_by_alias(name, alias), f"alias {alias}"
        else:
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise RegistryError(f"registered model {name!r} has no versions")
            mv, resolved = max(versions, key=lambda v: int(v.version)), "latest"
    except MlflowException as exc:
        what = f"version {version} of " if version else ""
        raise RegistryError(
            f"{what}registered model {name!r} not found ({exc.error_code})"
        ) from None
    summary = _version_summary(client, mv, aliases.get(str(mv.version), []))
    summary["resolved_by"] = resolved
    return summary
