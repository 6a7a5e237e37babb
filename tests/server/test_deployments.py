"""The deployments of `prefect.yaml` against real servers, started the ways users start them.

In order, on one stack (see `stack.py`):
  1. `nightly-training` runs as its schedule would: no parameters, the reviewed config file;
  2. `manual-training` is started through the REST API the way the UI's form does: the
     whole config object, one field changed;
  3. `champion-reaudit` re-verifies and re-audits the champion, which still passes;
  4. the champion's registered weights are tampered with in the artifact store, and the
     next `champion-reaudit` demotes it: the alias is gone, the version tagged why.
Canary values planted in the raw table must reach no log, artifact or run record.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.server.stack import Stack

pytestmark = pytest.mark.server

MODEL = "privgate-adult-income"
EXPERIMENT = "privgate-manual-from-the-form"
CANARY_NAME = "Quorvath Zelbrandt"
CANARY_SSN = "371-44-7731"


def _start(stack: Stack, deployment: str, parameters: dict[str, Any] | None = None) -> dict:
    body = {"parameters": parameters} if parameters is not None else {}
    run = stack.post(f"/deployments/{stack.deployment_id(deployment)}/create_flow_run", body)
    return stack.wait_for_run(run["id"])


@pytest.fixture(scope="module")
def runs(stack: Stack) -> dict[str, Any]:
    train = stack.home / "demo" / "adult_train.csv"
    frame = pd.read_csv(train, dtype=str, keep_default_na=False)
    for row in range(10, 14):
        # One SSN per person (data.person_key): the canary's in row 10.
        frame.loc[row, ["full_name", "ssn"]] = [CANARY_NAME, f"371-44-{7721 + row}"]
        frame.loc[row, "notes"] = f"Call {CANARY_NAME} back, SSN {CANARY_SSN}."
    frame.to_csv(train, index=False)
    client = MlflowClient(tracking_uri=stack.mlflow_url)

    nightly = _start(stack, "privacy-gated-training-from-file/nightly-training")
    after_nightly = client.get_model_version_by_alias(MODEL, "champion").version

    manual = stack.get(
        f"/deployments/{stack.deployment_id('privacy-gated-training/manual-training')}"
    )
    config = copy.deepcopy(manual["parameter_openapi_schema"]["properties"]["config"]["default"])
    config["registry"]["experiment"] = EXPERIMENT  # the one field changed in the form
    form = _start(stack, "privacy-gated-training/manual-training", {"config": config})
    champion = client.get_model_version_by_alias(MODEL, "champion")

    reaudit = _start(stack, "champion-reaudit/champion-reaudit")
    weights = list((stack.root / "mlflow-artifacts").rglob("weights.pt"))
    for path in weights:
        path.write_bytes(path.read_bytes() + b"\x00")
    tampered = _start(stack, "champion-reaudit/champion-reaudit")
    return {
        "client": client,
        "nightly": nightly,
        "after_nightly": after_nightly,
        "form": form,
        "champion": champion,
        "reaudit": reaudit,
        "tampered": tampered,
        "weights": weights,
    }


def test_when_nightly_training_runs_then_its_config_file_promotes_a_champion(
    stack: Stack, runs: dict[str, Any]
) -> None:
    deployment = stack.get(
        f"/deployments/{stack.deployment_id('privacy-gated-training-from-file/nightly-training')}"
    )

    assert runs["nightly"]["state"]["type"] == "COMPLETED", runs["nightly"]["state"]["message"]
    assert runs["nightly"]["parameters"] == {"config_file": "configs/demo.yaml"}
    assert runs["after_nightly"] == "1"
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 2 * * *"]


def test_when_the_form_starts_manual_training_then_its_model_is_the_champion_in_mlflow(
    stack: Stack, runs: dict[str, Any]
) -> None:
    client: MlflowClient = runs["client"]
    champion = runs["champion"]

    assert runs["form"]["state"]["type"] == "COMPLETED", runs["form"]["state"]["message"]
    assert champion.version == "2"
    run = client.get_run(champion.run_id)
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert champion.tags["privgate.status"] == "approved"
    assert run.data.tags["privgate.lineage.config_sha256"]
    artifacts = stack.post(
        "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [runs["form"]["id"]]}}}
    )
    assert {"gate-report", "audit-report"} <= {a["key"] for a in artifacts}
    tasks = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [runs["form"]["id"]]}}})
    states = {t["name"].rsplit("-", 1)[0]: t["state"]["name"] for t in tasks}
    # The nightly run scanned the same table with the same settings: reused, by content hash.
    assert states["scan-pii"] == states["validate"] == "Cached"
    assert states["register-model"] == "Completed"


def test_when_models_are_promoted_then_postgres_holds_the_registry_and_a_global_limit_guards_it(
    stack: Stack, runs: dict[str, Any]
) -> None:
    models = stack.query("mlflow", "SELECT name FROM registered_models")
    flows = stack.query("prefect", "SELECT name FROM flow")
    limit = stack.get(f"/v2/concurrency_limits/privgate-promote-{MODEL}")

    assert (MODEL,) in models
    assert ("privacy-gated-training",) in flows
    assert limit["limit"] == 1
    assert limit["active_slots"] == 0  # released after each promotion


def test_when_the_champion_still_passes_then_the_reaudit_keeps_it(runs: dict[str, Any]) -> None:
    reaudit = runs["reaudit"]

    assert reaudit["state"]["type"] == "COMPLETED", reaudit["state"]["message"]
    assert "version 2 still passes" in reaudit["state"]["message"]
    tags = runs["client"].get_run(runs["champion"].run_id).data.tags
    assert tags["privgate.reaudit.passed"] == "true"


def test_when_the_champion_was_tampered_with_then_the_reaudit_demotes_it(
    runs: dict[str, Any],
) -> None:
    client: MlflowClient = runs["client"]
    tampered = runs["tampered"]

    assert runs["weights"]  # the store held the weights the test changed
    assert tampered["state"]["type"] == "FAILED"
    assert "demoted" in tampered["state"]["message"]
    assert "registry verification" in tampered["state"]["message"]
    assert "champion" not in client.get_registered_model(MODEL).aliases
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["privgate.status"] == "demoted"
    assert "artifacts/weights.pt" in tags["privgate.demoted_reason"]


def test_when_runs_finish_then_no_canary_reaches_prefect_or_mlflow(
    stack: Stack, runs: dict[str, Any]
) -> None:
    # Everything the server holds (subflow runs included), not only the runs started here.
    logs = stack.run_logs()
    records = [
        str(logs),
        str(stack.post("/artifacts/filter", {})),
        str(stack.post("/task_runs/filter", {})),
        str(stack.post("/flow_runs/filter", {})),
        str(stack.query("mlflow", "SELECT key, value FROM tags")),
        str(stack.query("mlflow", "SELECT key, value FROM params")),
        str(stack.query("mlflow", "SELECT key, value FROM model_version_tags")),
        stack.log("worker"),
        stack.log("prefect-server"),
        stack.log("mlflow-server"),
    ]
    # Files the runs wrote: MLflow's artifacts, the worker's Prefect results, the state
    # home (its raw demo tables, the input, aside).
    written = [
        path
        for folder in ("mlflow-artifacts", "prefect-client", "privgate-home")
        for path in (stack.root / folder).rglob("*")
        if path.is_file() and "demo" not in path.relative_to(stack.root).parts
    ]

    assert len(logs) > 100  # the search reads real records
    assert any("storage" in path.parts for path in written)  # persisted results included
    for needle in ("Quorvath", "Zelbrandt", CANARY_SSN):
        assert not [r for r in records if needle in r]
        assert not [p.name for p in written if needle.encode() in p.read_bytes()]
