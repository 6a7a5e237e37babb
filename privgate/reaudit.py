"""Re-audit a registered model version from its recorded lineage (`privgate audit`).

A version's run records the config it was trained with (`reports/config.json`), the
content hashes of its raw tables and its DP parameters. The re-audit reads the same
tables (refusing if their content changed), rebuilds the anonymized split the same
deterministic way (seeded scan sample, generalization, split), checks that the rebuilt
encoding is the one the model was registered with, loads the registered weights (a
tensor file: nothing is unpickled) and runs today's audit code on it with the recorded
audit settings: fresh reference models, a fresh canary audit of the recorded recipe,
judged by today's policy. The result is
logged back to the version's run (`reports/reaudit/<UTC time>.json` and tags), so the
scheduled re-audit of the operations issue can act on it.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from audits.gates import Evidence, GateReport, run_gates
from audits.suite import AuditReport
from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.dp.training import DpReport, TrainedModel, accuracy, build_network
from privgate.errors import DataError, RegistryError, is_transient
from privgate.home import resolve_path
from privgate.registry.versions import configure_mlflow

# Every gate a trained model can be judged on again without retraining: today's budget
# and delta limits and accuracy floor, and the audit's. (The data gates judge the
# anonymized table, which the lineage check already pins to the one trained on.)
AUDIT_GATES = (
    "privacy_budget",
    "privacy_delta",
    "utility",
    "membership_inference_auc",
    "membership_inference_tpr",
    "dp_consistency",
    "audit_power",
)


def reaudit(
    name: str, *, version: str | None, alias: str, policy: PrivacyPolicy
) -> tuple[AuditReport, GateReport, dict[str, Any]]:
    """Re-audit `name` (`version`, else `alias`); return the report, gates and a summary.

    Raises:
        RegistryError: when the version or its recorded lineage cannot be found.
        DataError: when a raw table changed since the version was trained.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    configure_mlflow()
    client = MlflowClient()
    try:
        mv = (
            client.get_model_version(name, version)
            if version is not None
            else client.get_model_version_by_alias(name, alias)
        )
        run = client.get_run(mv.run_id)
    except MlflowException as exc:
        if is_transient(exc):  # the registry is down, not the version missing
            raise
        which = f"version {version}" if version is not None else f"alias {alias!r}"
        raise RegistryError(f"{which} of model {name!r} not found ({exc.error_code})") from None
    tags, params = run.data.tags, run.data.params
    config = _recorded_config(client, mv.run_id, name, mv.version)
    if config.sha256() != tags.get("privgate.lineage.config_sha256"):
        raise RegistryError(
            f"the config logged with version {mv.version} of {name!r} does not match its "
            "lineage hash (privgate.lineage.config_sha256)"
        )
    tables = stages.ingest(config)
    for path, digest, recorded in (
        (config.data.train_path, tables.train_sha256, "train_sha256"),
        # Without a test file the test table is split off the training file.
        (config.data.test_path or config.data.train_path, tables.test_sha256, "test_sha256"),
    ):
        if digest != tags.get(f"privgate.lineage.{recorded}"):
            raise DataError(
                f"{resolve_path(path)} changed since version {mv.version} was trained "
                f"(content hash differs from its lineage); cannot rebuild its training split"
            )
    anonymized = stages.anonymize(tables, stages.scan(tables, config), config)
    data = stages.training_data(anonymized, tables, config)
    n_train = int(run.data.metrics.get("n_train", -1))
    if len(data.members[0]) != n_train:
        raise DataError(
            f"the rebuilt training split has {len(data.members[0])} rows, version "
            f"{mv.version} trained on {n_train}: its anonymization is not reproducible here"
        )
    try:
        dp = DpReport.from_mlflow_params(params)
    except (KeyError, ValueError):
        raise RegistryError(f"version {mv.version} of {name!r} has no DP parameters") from None
    network, registered_spec = _registered_network(mv.source)
    if registered_spec != data.feature_spec:
        raise DataError(
            f"the rebuilt feature encoding differs from the one version {mv.version} was "
            "registered with (expectation suite or generalization changed)"
        )
    trained = stages.Trained(
        model=TrainedModel(network=network, dp=dp, n_train=n_train),
        feature_spec=data.feature_spec,
        test_accuracy=accuracy(network, *data.test),
        baseline_accuracy=None,
        members=data.members,
        non_members=data.non_members,
        population=data.test,
        majority_rate=stages.majority_rate(data.test[1]),
    )
    report = stages.run_audit(trained, config)
    evidence = Evidence(
        epsilon=dp.epsilon_spent,
        delta=dp.delta,
        n_train=n_train,
        accuracy=trained.test_accuracy,
        majority_rate=trained.majority_rate,
        # The baseline is not retrained (no non-private run for an audit): its recorded figure.
        baseline_accuracy=_finite(run.data.metrics.get("baseline_accuracy")),
        **stages.audit_evidence(report),
    )
    gates = run_gates(evidence, policy, AUDIT_GATES)
    summary = {
        "model_name": name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "passed": gates.passed,
        **report.to_dict(),
        "gates": gates.to_dict()["gates"],
        "audited_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _record(client, mv.run_id, summary)
    return report, gates, summary


def _recorded_config(client: Any, run_id: str, name: str, version: str) -> PipelineConfig:
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="privgate-reaudit-") as tmp:
        try:
            path = client.download_artifacts(run_id, "reports/config.json", tmp)
        except (MlflowException, OSError) as exc:
            if is_transient(exc):  # the artifact store is down, not the config missing
                raise
            raise RegistryError(
                f"version {version} of {name!r} has no recorded config (reports/config.json)"
            ) from None
        try:
            return PipelineConfig.model_validate(json.loads(Path(path).read_text()))
        except ValidationError:
            raise RegistryError(
                f"the config recorded with version {version} of {name!r} is not valid for "
                "this privgate version (it was written by an older one)"
            ) from None


def _registered_network(source: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load the registered weights into a fresh network (tensors only, no pickle).

    Returns the network and the feature spec it was registered with.
    """
    import mlflow

    with tempfile.TemporaryDirectory(prefix="privgate-reaudit-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp))
        spec = json.loads(next(local.rglob("model_spec.json")).read_text())
        network = build_network(
            model=spec["model"], input_width=spec["input_width"], hidden_units=spec["hidden_units"]
        )
        network.load_state_dict(torch.load(next(local.rglob("weights.pt")), weights_only=True))
    network.eval()
    return network, spec["feature_spec"]


def _record(client: Any, run_id: str, summary: dict[str, Any]) -> None:
    """Log the re-audit to the version's run: the report, and tags for the latest one."""
    stamp = summary["audited_utc"].replace(":", "")
    client.log_text(
        run_id, json.dumps(summary, sort_keys=True, indent=2), f"reports/reaudit/{stamp}.json"
    )
    client.set_tag(run_id, "privgate.reaudit.passed", str(summary["passed"]).lower())
    client.set_tag(run_id, "privgate.reaudit.utc", summary["audited_utc"])


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
