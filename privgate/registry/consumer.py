"""Load only approved, untampered models: every check before anything is deserialized.

Loading an MLflow model can execute pickled code, so the order matters: resolve the
alias (a deleted alias is a refusal, never a fallback to "latest"), read the version's
status, download the attestation and check its Ed25519 signature with the publisher's
public key, check that it names this very version and run, check the epsilon limit,
download the model and gate report and compare every file's SHA-256 with the
attestation; only then hand the verified local copy to `mlflow.pyfunc.load_model`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privgate.errors import PrivgateError, RegistryError, is_transient
from privgate.registry import attestation
from privgate.registry.versions import (
    GATE_REPORT_PATH,
    SIGNATURE_TAG,
    STATUS_TAG,
    attestation_path,
    configure_mlflow,
)


class RefusedError(PrivgateError):
    """Raised when a model version fails verification; nothing was deserialized."""


@dataclass(frozen=True)
class VerifiedVersion:
    """A model version whose signature and every artifact digest checked out."""

    model_name: str
    version: str
    run_id: str
    attestation: attestation.Attestation
    local_path: Path


def verify_version(
    name: str,
    *,
    alias: str | None = "champion",
    version: str | None = None,
    max_epsilon: float | None = None,
    download_to: Path | None = None,
    require_approval: bool = False,
) -> VerifiedVersion:
    """Resolve and verify a version; return its verified local copy (not deserialized).

    The copy goes to `download_to`, else to a new temporary folder the caller owns.

    Raises:
        RefusedError: naming the check that failed.
        ConfigError: when no public key is available to verify with.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    configure_mlflow()
    client = MlflowClient()
    public_key = attestation.load_verify_key()
    try:
        if version is not None:
            mv = client.get_model_version(name, version)
            what = f"{name} version {version}"
        else:
            mv = client.get_model_version_by_alias(name, alias)
            what = f"{name}@{alias}"
    except MlflowException as exc:
        if is_transient(exc):  # the registry is down, not the version missing
            raise
        target = f"version {version}" if version else f"alias {alias!r}"
        raise RefusedError(
            f"{target} of registered model {name!r} does not exist; privgate never falls "
            "back to another version"
        ) from None
    tags = mv.tags or {}
    if tags.get(STATUS_TAG) != "approved":
        raise RefusedError(
            f"{what} is version {mv.version}, tagged {STATUS_TAG}={tags.get(STATUS_TAG)!r}, "
            "not approved (was the alias moved by hand?)"
        )
    signature = tags.get(SIGNATURE_TAG)
    if not signature:
        raise RefusedError(f"{what} (version {mv.version}) carries no signed approval")
    work = Path(download_to or tempfile.mkdtemp(prefix="privgate-verified-"))
    try:
        statement_file = mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, artifact_path=attestation_path(str(mv.version)), dst_path=str(work)
        )
    except (MlflowException, OSError) as exc:
        if is_transient(exc):  # the artifact store is down, not the attestation missing
            raise
        raise RefusedError(f"{what}: its attestation artifact is missing") from None
    payload = Path(statement_file).read_bytes()
    if not attestation.signature_valid(payload, signature, public_key):
        raise RefusedError(f"{what}: the approval signature does not verify with the public key")
    try:
        statement = attestation.Attestation.from_payload(payload)
    except (ValueError, TypeError):
        raise RefusedError(f"{what}: the signed statement is not a privgate attestation") from None
    if (statement.model_name, statement.version, statement.run_id) != (
        name,
        str(mv.version),
        mv.run_id,
    ):
        raise RefusedError(
            f"{what}: the signed approval is for {statement.model_name} version "
            f"{statement.version}, not this version"
        )
    if require_approval:
        signed_off = statement.approval or {}
        if signed_off.get("decision") != "approve":
            raise RefusedError(
                f"{what}: no person's approval is signed into it (the policy that promoted "
                "it asked for none), and --require-approval asks for one"
            )
        if str(signed_off.get("evidence_sha256", "")).lower() != statement.gate_report_sha256:
            raise RefusedError(f"{what}: its approval is for other evidence than its gate report")
    if max_epsilon is not None and not statement.epsilon <= max_epsilon:
        raise RefusedError(
            f"{what} spent epsilon {statement.epsilon:.4g}, more than --max-epsilon {max_epsilon:g}"
        )
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(work / "model")
        )
    )
    _check_digests(what, attestation.digest_tree(model_dir), statement.artifacts)
    report = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id, artifact_path=GATE_REPORT_PATH, dst_path=str(work / "report")
    )
    if attestation.sha256_bytes(Path(report).read_bytes()) != statement.gate_report_sha256:
        raise RefusedError(f"{what}: the gate report changed after approval")
    return VerifiedVersion(name, str(mv.version), mv.run_id, statement, model_dir)


def _check_digests(what: str, found: dict[str, str], signed: dict[str, str]) -> None:
    changed = sorted(p for p in signed.keys() & found.keys() if signed[p] != found[p])
    missing, extra = sorted(signed.keys() - found.keys()), sorted(found.keys() - signed.keys())
    if changed or missing or extra:
        parts = [
            f"{label}: {paths}"
            for label, paths in (("changed", changed), ("missing", missing), ("added", extra))
            if paths
        ]
        differences = "; ".join(parts)
        raise RefusedError(f"{what}: model files differ from the approved ones ({differences})")


def load_verified_model(
    name: str,
    *,
    alias: str = "champion",
    max_epsilon: float | None = None,
    require_approval: bool = False,
) -> tuple[Any, VerifiedVersion]:
    """Verify `name@alias`, then load it; return the pyfunc model and what was verified.

    The verified copy is downloaded to a temporary folder that is removed once the model
    is in memory (privgate's model reads its weights and spec in `load_context`).

    Raises:
        RefusedError: when any check fails (nothing was deserialized).
    """
    import mlflow

    with tempfile.TemporaryDirectory(prefix="privgate-verified-") as tmp:
        verified = verify_version(
            name,
            alias=alias,
            max_epsilon=max_epsilon,
            download_to=Path(tmp),
            require_approval=require_approval,
        )
        return mlflow.pyfunc.load_model(str(verified.local_path)), verified


def load_approved_model(
    name: str,
    *,
    alias: str = "champion",
    max_epsilon: float | None = None,
    require_approval: bool = False,
) -> Any:
    """Return the pyfunc model behind `name@alias`, only if approved, signed and untampered.

    `require_approval` also refuses a version no person signed off (policy `approval`).

    Raises:
        RefusedError: when any check fails (nothing was deserialized).
    """
    return load_verified_model(
        name, alias=alias, max_epsilon=max_epsilon, require_approval=require_approval
    )[0]


def verify_registry(name: str | None = None) -> list[dict[str, Any]]:
    """Check every aliased version (of `name`, or of every model) against its attestation.

    Returns one row per alias: model, alias, version, ok, and the reason when not ok.
    """
    from mlflow.tracking import MlflowClient

    configure_mlflow()
    client = MlflowClient()
    try:
        models = [client.get_registered_model(name)] if name else client.search_registered_models()
    except Exception:
        raise RegistryError(f"registered model {name!r} not found") from None
    rows = []
    for model in models:
        for alias, version in sorted((model.aliases or {}).items()):
            row: dict[str, Any] = {"model": model.name, "alias": alias, "version": str(version)}
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    verified = verify_version(model.name, alias=alias, download_to=Path(tmp))
                    row |= {"ok": True, "reason": ""}
                    if verified.attestation.silos is not None:  # a federated model
                        row["silos"] = verified.attestation.silos
                    if verified.attestation.approval is not None:  # a person signed off
                        row["approval"] = verified.attestation.approval
                except RefusedError as exc:
                    row |= {"ok": False, "reason": str(exc)}
            rows.append(row)
    return rows


def list_approvals(name: str | None = None) -> list[dict[str, Any]]:
    """Return every version a person decided on or is asked about, newest first.

    An approval is read from the version's signed attestation, verified as a consumer
    would (`signed: true`); a version that fails verification says why. A rejection, a
    timeout or a pending request is read from the version's tags (`signed: false`):
    they block, so nothing vouches for them.
    """
    from mlflow.tracking import MlflowClient

    from privgate.registry.versions import (
        APPROVAL_TAG_PREFIX,
        PENDING_APPROVAL,
        REJECTED_REASON_TAG,
    )

    configure_mlflow()
    client = MlflowClient()
    names = [name] if name else [m.name for m in client.search_registered_models()]
    rows = []
    for model_name in names:
        versions = sorted(
            client.search_model_versions(f"name='{model_name}'"),
            key=lambda mv: int(mv.version),
            reverse=True,
        )
        for mv in versions:
            tags = dict(mv.tags or {})
            asked = {
                k[len(APPROVAL_TAG_PREFIX) :]: v
                for k, v in tags.items()
                if k.startswith(APPROVAL_TAG_PREFIX)
            }
            status = tags.get(STATUS_TAG)
            if not asked and status != PENDING_APPROVAL:
                continue
            row: dict[str, Any] = {
                "model": model_name,
                "version": str(mv.version),
                "status": status,
            }
            if status == "approved":
                with tempfile.TemporaryDirectory() as tmp:
                    try:
                        verified = verify_version(
                            model_name, alias=None, version=str(mv.version), download_to=Path(tmp)
                        )
                        row |= {"signed": True, **(verified.attestation.approval or {})}
                    except RefusedError as exc:
                        row |= {"signed": False, "reason": str(exc), **asked}
            else:
                row |= {"signed": False, **asked}
                if tags.get(REJECTED_REASON_TAG):
                    row["reason"] = tags[REJECTED_REASON_TAG]
            rows.append(row)
    return rows
