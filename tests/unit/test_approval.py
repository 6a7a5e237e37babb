"""A person's sign-off: the policy, the checks on a decision, the record it leaves.

Real MLflow (SQLite under a temporary PRIVGATE_HOME) and tiny real models, through the
same `register` helper as the consumer tests. The pause itself needs a Prefect server
and is tested in tests/server/test_approval.py (REST) and test_ui.py (the form).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from privgate.config import ApprovalPolicy, PrivacyPolicy, load_policy
from privgate.errors import RegistryError
from privgate.registry import attestation
from privgate.registry.approval import Decision, refusal, timeout_refusal
from privgate.registry.consumer import list_approvals, verify_registry, verify_version
from privgate.registry.model_card import render_model_card
from privgate.registry.versions import (
    PENDING_APPROVAL,
    REJECTED_REASON_TAG,
    SIGNATURE_TAG,
    STATUS_TAG,
    champion_version,
    log_and_register,
    record_decision,
)
from tests.unit.test_consumer import NAME, SPEC

ROOT = Path(__file__).resolve().parents[2]
REPORT = json.dumps({"passed": True, "gates": ["privacy_budget"]})
DIGEST = attestation.sha256_bytes(REPORT.encode())
POLICY = ApprovalPolicy(required=True, approvers=["officer@example.org"], timeout="30m")


def _decision(**changes: str) -> Decision:
    fields = {
        "approver": "officer@example.org",
        "decision": "approve",
        "rationale": "epsilon 3 accepted for this extract",
        "evidence_sha256": DIGEST,
    } | changes
    return Decision.now(**fields)  # type: ignore[arg-type]


def _held(run_key: str) -> str:
    import torch

    from privgate.dp.training import build_network

    torch.manual_seed(0)
    registration = log_and_register(
        model_name=NAME,
        alias="champion",
        experiment="privgate-tests",
        network=build_network(model="logistic", input_width=1, hidden_units=1),
        model_spec=SPEC,
        params={"dp.epsilon": "2.5"},
        metrics={"accuracy": 0.8},
        tags={},
        gate_tags={"privacy_budget": "passed"},
        gate_report_json=REPORT,
        approved=True,
        epsilon=2.5,
        delta=1e-5,
        policy_sha256="0" * 64,
        json_artifacts={},
        text_artifacts={},
        run_key=run_key,
        hold_for_approval=True,
    )
    assert registration.pending_approval
    assert not registration.promoted
    return registration.version


def _record(version: str, decision: Decision | None, refusal_reason: str | None = None) -> bool:
    return record_decision(
        model_name=NAME,
        version=version,
        alias="champion",
        approval=None if decision is None else decision.to_dict(),
        refusal=refusal_reason,
        gate_report_json=REPORT,
        epsilon=2.5,
        delta=1e-5,
        policy_sha256="0" * 64,
    )


# The policy


def test_when_the_policy_asks_for_approval_then_its_fields_are_checked() -> None:
    assert POLICY.timeout_seconds == 1800
    assert ApprovalPolicy(timeout="72h").timeout_seconds == 72 * 3600
    for bad in (
        {"required": True},  # nobody to decide
        {"approvers": ["a", "a"]},
        {"timeout": "72"},
        {"timeout": "0h"},
        {"timeout": "3 days"},
    ):
        with pytest.raises(ValueError, match=r"approv|timeout"):
            ApprovalPolicy(**bad)


def test_when_a_policy_has_no_approval_step_then_its_hash_is_unchanged() -> None:
    policy = load_policy(ROOT / "configs" / "policy.yaml")
    raw = yaml.safe_load((ROOT / "configs" / "policy.yaml").read_text())
    assert policy.sha256() == PrivacyPolicy.model_validate(raw).sha256()
    with_step = PrivacyPolicy.model_validate(
        raw | {"approval": {"required": True, "approvers": ["x"]}}
    )
    assert with_step.sha256() != policy.sha256()  # turning approval on is a policy change


def test_when_the_reviewed_approval_policy_is_read_then_only_the_approval_step_differs() -> None:
    base = load_policy(ROOT / "configs" / "policy.yaml")
    reviewed = load_policy(ROOT / "configs" / "policy-approval.yaml")
    assert reviewed.approval.required
    assert reviewed.approval.approvers
    # Its own registered name: no run under the base policy promotes into it.
    assert reviewed.registered_model_name != base.registered_model_name
    unchanged = {"approval": ApprovalPolicy(), "registered_model_name": base.registered_model_name}
    assert reviewed.model_copy(update=unchanged) == base
    assert not base.approval.required  # the quickstart promotes without a person


# Judging a decision


def test_when_a_listed_approver_decides_on_this_evidence_then_it_is_accepted() -> None:
    assert refusal(_decision(), POLICY, evidence_sha256=DIGEST) is None
    assert refusal(_decision(decision="reject"), POLICY, evidence_sha256=DIGEST.upper()) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"approver": "Quorvath Zelbrandt"}, "not one the policy lists"),
        ({"approver": "officer@example.org.Quorvath"}, "not one the policy lists"),
        ({"evidence_sha256": "0" * 64}, "for other evidence"),
        ({"rationale": "   "}, "needs a rationale"),
        ({"rationale": "x" * 2001}, "longer than 2000"),
    ],
)
def test_when_a_decision_is_not_acceptable_then_it_is_refused_naming_why(
    changes: dict[str, str], reason: str
) -> None:
    refused = refusal(_decision(**changes), POLICY, evidence_sha256=DIGEST)
    assert refused is not None
    assert reason in refused
    assert "Quorvath" not in refused  # what was typed is never echoed


# Recording it


def test_when_an_approver_approves_then_the_version_is_signed_with_the_decision(
    home: Path,
) -> None:
    version = _held("run-approve")
    tags = MlflowClient().get_model_version(NAME, version).tags
    assert tags[STATUS_TAG] == PENDING_APPROVAL
    assert SIGNATURE_TAG not in tags
    assert champion_version(NAME, "champion") is None
    attestation.load_signing_key()  # the publisher's key pair exists; nothing is signed yet
    with pytest.raises(Exception, match=r"tagged privgate\.status='pending-approval'"):
        verify_version(NAME, alias=None, version=version)

    decision = _decision()
    assert _record(version, decision) is True

    verified = verify_version(NAME, require_approval=True)
    assert verified.version == version
    assert verified.attestation.approval == decision.to_dict()
    assert verify_registry(NAME)[0]["approval"]["approver"] == "officer@example.org"
    (row,) = list_approvals(NAME)
    assert row["signed"] is True
    assert row["decision"] == "approve"
    assert row["evidence_sha256"] == DIGEST
    with pytest.raises(RegistryError, match="not waiting for approval"):
        _record(version, _decision(decision="reject"))  # decided once, never otherwise


def test_when_recording_is_retried_then_it_finishes_without_recording_twice(
    home: Path,
) -> None:
    approved, rejected = _held("run-retry-a"), _held("run-retry-b")
    decision = _decision()
    assert _record(approved, decision) is True
    MlflowClient().delete_registered_model_alias(NAME, "champion")  # a failed alias move

    assert _record(approved, decision) is True  # the retry only promotes
    assert champion_version(NAME, "champion") == approved
    no = _decision(decision="reject", rationale="no")
    assert _record(rejected, no) is False
    assert _record(rejected, no) is False  # the same rejection again: nothing changes
    with pytest.raises(RegistryError, match="not waiting for approval"):
        _record(rejected, _decision())  # but no other decision is taken after it


def test_when_an_approver_rejects_then_the_version_is_tagged_with_the_reason(home: Path) -> None:
    version = _held("run-reject")

    promoted = _record(version, _decision(decision="reject", rationale="cost too high"))

    assert promoted is False
    tags = MlflowClient().get_model_version(NAME, version).tags
    assert tags[STATUS_TAG] == "rejected"
    assert tags[REJECTED_REASON_TAG] == "rejected by officer@example.org: cost too high"
    assert SIGNATURE_TAG not in tags
    assert champion_version(NAME, "champion") is None
    (row,) = list_approvals(NAME)
    assert row["signed"] is False
    assert row["decision"] == "reject"


def test_when_nobody_decides_in_time_then_the_version_is_blocked(home: Path) -> None:
    version = _held("run-timeout")

    assert _record(version, None, timeout_refusal(POLICY)) is False

    tags = MlflowClient().get_model_version(NAME, version).tags
    assert tags[STATUS_TAG] == "rejected"
    assert "no approval within 30m" in tags[REJECTED_REASON_TAG]
    (row,) = list_approvals(NAME)
    assert row["status"] == "rejected"
    assert "approver" not in row
    assert row["requested_utc"]


def test_when_a_signed_approval_is_edited_then_verification_refuses(home: Path) -> None:
    version = _held("run-edit")
    _record(version, _decision())
    client = MlflowClient()
    run_id = client.get_model_version(NAME, version).run_id
    path = f"attestation/v{version}.json"
    statement = _downloaded(run_id, version)
    # Control: the statement written back unchanged, in its canonical form, verifies.
    client.log_text(run_id, attestation.Attestation(**statement).payload().decode(), path)
    assert verify_version(NAME).attestation.approval["approver"] == "officer@example.org"

    statement["approval"]["approver"] = "dpo@example.org"  # someone rewrites who approved
    client.log_text(run_id, attestation.Attestation(**statement).payload().decode(), path)

    with pytest.raises(Exception, match="signature does not verify"):
        verify_version(NAME)


def _downloaded(run_id: str, version: str) -> dict:
    import mlflow

    with_path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=f"attestation/v{version}.json"
    )
    return json.loads(Path(with_path).read_text())


# The card


@pytest.mark.parametrize(
    ("approval", "shown"),
    [
        (None, None),
        ({"status": "pending", "approvers": ["officer@example.org"]}, "**Pending**"),
        ({"status": "rejected", "refusal": "no approval within 30m"}, "**Blocked**"),
        ({"status": "approved", **_decision().to_dict()}, "Signed into the version's"),
    ],
)
def test_when_a_card_is_rendered_then_it_shows_the_approval(
    approval: dict | None, shown: str | None
) -> None:
    card, _ = render_model_card({"approval": approval})
    if shown is None:
        assert "## Approval" not in card
    else:
        assert "## Approval" in card
        assert shown in card


def test_when_a_consumer_requires_approval_then_a_version_nobody_signed_off_is_refused(
    home: Path,
) -> None:
    from tests.unit.test_consumer import register

    register(approved=True, run_key="run-gates-only")  # promoted by the gates alone

    assert verify_version(NAME).version == "1"
    with pytest.raises(Exception, match="no person's approval is signed into it"):
        verify_version(NAME, require_approval=True)
