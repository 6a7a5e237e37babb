"""A person signs off, through a real Prefect server: approve, reject, time out.

Three runs of `approved-training` (the reviewed approval policy), on their own copy of
the demo data (their own ledger) and under their own registered model name. Each pauses
after its gates pass; the test answers through the REST API exactly as the UI's form
does (`POST /flow_runs/{id}/resume` with `run_input`, the evidence digest read from the
form's schema):

- the first answer comes from an approver the policy does not list, and is refused (the
  run pauses again); then a listed approver approves: promoted, the approval signed
  into the attestation, shown by `privgate approvals list` and `models verify`;
- an approval for other evidence is refused; then a rejection: tagged rejected with its
  reason, never aliased;
- nobody answers within the timeout (20 s in this run's policy copy): blocked.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient

from privgate.data.demo_data import write_demo_data
from privgate.registry import attestation
from tests.server.conftest import ROWS
from tests.server.stack import ROOT, Stack

pytestmark = pytest.mark.server

MODEL = "privgate-approval-test"
DEPLOYMENT = "privacy-gated-training/approved-training"
APPROVER = "privacy-officer@example.org"


def reviewed_policy(stack: Stack, name: str, *, model: str = MODEL, **approval: Any) -> Path:
    """The reviewed approval policy, with a test's model name (and approval changes)."""
    policy = yaml.safe_load((ROOT / "configs" / "policy-approval.yaml").read_text())
    policy["registered_model_name"] = model
    policy["approval"] |= approval
    path = stack.root / name
    path.write_text(yaml.safe_dump(policy))
    return path


def own_data_config(stack: Stack, *, seed: int) -> dict[str, Any]:
    """The form's default config on a demo table of its own (its own ledger entry)."""
    train, test = write_demo_data(stack.home / f"approval-demo-{seed}", rows=ROWS, seed=seed)
    manual = stack.get(
        f"/deployments/{stack.deployment_id('privacy-gated-training/manual-training')}"
    )
    config = copy.deepcopy(manual["parameter_openapi_schema"]["properties"]["config"]["default"])
    config["data"] |= {"train_path": str(train), "test_path": str(test)}
    return config


def start_approved_training(stack: Stack, config: dict[str, Any], policy: Path) -> str:
    """Start an `approved-training` run under `policy`; return its id."""
    body = {
        "parameters": {"config": config},
        # The deployment's policy file, as an operator would point a run at a copy.
        "job_variables": {"env": {"PRIVGATE_POLICY": str(policy)}},
    }
    return stack.post(f"/deployments/{stack.deployment_id(DEPLOYMENT)}/create_flow_run", body)["id"]


def wait_paused(stack: Stack, run_id: str, *, after: str | None = None) -> dict[str, Any]:
    """Wait until the run is paused for input (a new pause when `after` names the last)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        run = stack.get(f"/flow_runs/{run_id}")
        state = run["state"]
        keyset = (state.get("state_details") or {}).get("run_input_keyset")
        if state["type"] == "PAUSED" and keyset and keyset["response"] != after:
            return run
        if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            raise AssertionError(f"run ended before pausing: {state['message']}")
        time.sleep(2)
    raise TimeoutError(f"flow run {run_id} did not pause")


def form(stack: Stack, run: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return the form's JSON schema and its Markdown description, as the UI reads them."""
    keyset = run["state"]["state_details"]["run_input_keyset"]

    def text(key: str) -> str:  # run inputs are served as plain text
        response = httpx.get(f"{stack.api}/flow_runs/{run['id']}/input/{key}", timeout=30)
        response.raise_for_status()
        return response.text

    return json.loads(text(keyset["schema"])), text(keyset["description"])


def resume(stack: Stack, run_id: str, run_input: dict[str, Any]) -> dict[str, Any]:
    """Resume with the form's values, as the UI's Resume dialog posts them."""
    return stack.post(f"/flow_runs/{run_id}/resume", {"run_input": run_input})


@pytest.fixture(scope="module")
def decided(stack: Stack) -> dict[str, Any]:
    config = own_data_config(stack, seed=11)
    reviewed = reviewed_policy(stack, "policy-approval-test.yaml")
    hurried = reviewed_policy(stack, "policy-approval-20s.yaml", timeout="20s")

    approve = start_approved_training(stack, config, reviewed)
    reject = start_approved_training(stack, config, reviewed)
    timeout = start_approved_training(stack, config, hurried)

    # approve: first an approver the policy does not list, then one it does
    paused = wait_paused(stack, approve)
    schema, description = form(stack, paused)
    digest = schema["properties"]["evidence_sha256"]["default"]
    unlisted = {"approver": "mallory@example.org", "decision": "approve",
                "rationale": "looks fine", "evidence_sha256": digest}  # fmt: skip
    resume(stack, approve, unlisted)
    first_key = paused["state"]["state_details"]["run_input_keyset"]["response"]
    again = wait_paused(stack, approve, after=first_key)
    _, refused_note = form(stack, again)
    resume(stack, approve, unlisted | {"approver": APPROVER,
           "rationale": "epsilon 3 and k 5 accepted for this census extract"})  # fmt: skip

    # reject: first an approval of other evidence, then a rejection of this one
    paused_reject = wait_paused(stack, reject)
    reject_digest = form(stack, paused_reject)[0]["properties"]["evidence_sha256"]["default"]
    resume(stack, reject, {"approver": APPROVER, "decision": "approve",
                           "rationale": "ok", "evidence_sha256": "0" * 64})  # fmt: skip
    key = paused_reject["state"]["state_details"]["run_input_keyset"]["response"]
    wait_paused(stack, reject, after=key)
    resume(stack, reject, {"approver": "dpo@example.org", "decision": "reject",
                           "rationale": "utility cost too high for this use",
                           "evidence_sha256": reject_digest})  # fmt: skip

    return {
        "client": MlflowClient(tracking_uri=stack.mlflow_url),
        "schema": schema,
        "description": description,
        "digest": digest,
        "refused_note": refused_note,
        "approve": stack.wait_for_run(approve),
        "reject": stack.wait_for_run(reject),
        "timeout": stack.wait_for_run(timeout),
        "approvals": stack.cli(
            str(ROOT / ".venv" / "bin" / "privgate"), "approvals", "list", MODEL, "--json"
        ),
        "verify": stack.cli(str(ROOT / ".venv" / "bin" / "privgate"), "models", "verify", MODEL),
    }


def _version(decided: dict[str, Any], run: dict[str, Any]) -> Any:
    client: MlflowClient = decided["client"]
    version = run["state"]["message"]
    found = [
        mv
        for mv in client.search_model_versions(f"name='{MODEL}'")
        if (mv.tags or {}).get("privgate.run_key") == run["id"]
    ]
    assert len(found) == 1, version
    return found[0]


def test_when_the_run_pauses_then_the_form_shows_the_evidence_and_its_digest(
    decided: dict[str, Any],
) -> None:
    schema = decided["schema"]
    assert set(schema["properties"]) == {"approver", "decision", "rationale", "evidence_sha256"}
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject"]
    description = decided["description"]
    assert "Every privacy gate passed" in description
    assert decided["digest"] in description
    assert "epsilon" in description
    assert "model card" in description
    assert "refused: the approver is not one the policy lists" in decided["refused_note"]
    assert "mallory" not in decided["refused_note"]


def test_when_a_listed_approver_approves_then_the_version_is_promoted_and_signed(
    decided: dict[str, Any], stack: Stack
) -> None:
    run = decided["approve"]
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    mv = _version(decided, run)
    client: MlflowClient = decided["client"]
    assert mv.tags["privgate.status"] == "approved"
    assert client.get_model_version_by_alias(MODEL, "champion").version == mv.version
    folder = str(stack.root)
    statement = client.download_artifacts(mv.run_id, f"attestation/v{mv.version}.json", folder)
    signed = attestation.Attestation.from_payload(Path(statement).read_bytes())
    report = client.download_artifacts(mv.run_id, "reports/gate_report.json", folder)
    assert signed.approval is not None
    assert signed.approval["approver"] == APPROVER
    assert signed.approval["decision"] == "approve"
    assert "census extract" in signed.approval["rationale"]
    assert signed.approval["evidence_sha256"] == decided["digest"]
    assert attestation.sha256_bytes(Path(report).read_bytes()) == decided["digest"]
    card = client.download_artifacts(mv.run_id, f"model_card/v{mv.version}.md", str(stack.root))
    card_text = Path(card).read_text()
    assert "## Approval" in card_text
    assert APPROVER in card_text
    rows = json.loads(decided["approvals"].stdout)
    mine = [r for r in rows if r["version"] == mv.version]
    assert mine
    assert mine[0]["signed"] is True
    assert mine[0]["approver"] == APPROVER
    assert f"approved by {APPROVER}" in decided["verify"].stdout


def test_when_the_approver_rejects_then_the_version_is_rejected_with_the_reason(
    decided: dict[str, Any],
) -> None:
    run = decided["reject"]
    assert run["state"]["type"] == "FAILED"
    assert "rejected by dpo@example.org" in run["state"]["message"]
    mv = _version(decided, run)
    assert mv.tags["privgate.status"] == "rejected"
    assert "utility cost too high" in mv.tags["privgate.rejected_reason"]
    assert mv.tags["privgate.approval.approver"] == "dpo@example.org"
    assert not mv.aliases
    rows = json.loads(decided["approvals"].stdout)
    mine = [r for r in rows if r["version"] == mv.version]
    assert mine
    assert mine[0]["signed"] is False
    assert mine[0]["decision"] == "reject"


def test_when_nobody_decides_in_time_then_the_version_is_blocked(decided: dict[str, Any]) -> None:
    run = decided["timeout"]
    assert run["state"]["type"] == "FAILED"
    assert "no approval within 20s" in run["state"]["message"]
    mv = _version(decided, run)
    assert mv.tags["privgate.status"] == "rejected"
    assert "no approval within 20s" in mv.tags["privgate.rejected_reason"]
    assert not mv.aliases
