"""Faults of the team stack, on the real servers, each on a table of its own.

1. A worker host killed with SIGKILL while its flow run trains (the worker and the
   flow-run process at once, as a lost machine or an evicted pod): the run ends
   `Crashed` (the stack's zombie automation, `infra/prefect/automations.py`, once
   heartbeats stop), no alias moves, no version is registered, the ledger keeps the
   run's debit (the noise was drawn: the budget was at risk), a rerun promotes.
2. The MLflow server killed while a run trains, and started again once the run's
   registration has failed on it and waits to retry: the calls are retried within
   their bounds (`MLFLOW_HTTP_REQUEST_*` in `prefect.yaml`, then the task's retries),
   and the run ends `Completed` with exactly one new version, signed and promoted (a
   retry finds the version its first attempt made, never a second).
3. A full disk under the artifact store (an MLflow server whose files may not grow past
   12 kB, less than the model's weights, 14.5 kB): the upload fails, the run ends
   `Failed`, and no version exists there to be signed or promoted; the stack's champion
   is untouched.
4. The Prefect server killed while a run trains and started again 10 s later, on the
   same database: the run ends `Completed`, once, with one new version promoted.
Each uses a copy of the demo table less one row: another dataset to the ledger, so the
budget the other server tests spent is not in the way.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.server.stack import TERMINAL, Stack, free_port

pytestmark = pytest.mark.server

MODEL = "privgate-adult-income"
DEPLOYMENT = "privacy-gated-training/manual-training"


def _champion(client: MlflowClient) -> str | None:
    with contextlib.suppress(MlflowException):
        return str(client.get_model_version_by_alias(MODEL, "champion").version)
    return None


def _versions(client: MlflowClient) -> int:
    return len(client.search_model_versions(f"name='{MODEL}'"))


def _wait_for_task(stack: Stack, flow_run_id: str, task: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        if any(r["name"].startswith(task) and r["state"]["type"] == "RUNNING" for r in runs):
            return
        if stack.get(f"/flow_runs/{flow_run_id}")["state"]["type"] != "RUNNING" and runs:
            state = stack.get(f"/flow_runs/{flow_run_id}")["state"]
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED"):
                raise AssertionError(f"the run ended before {task}: {state}")
        time.sleep(1)
    raise TimeoutError(f"{task} did not start within {timeout} s")


def _ledger(stack: Stack, run_key: str) -> list[tuple[str, float]]:
    with contextlib.closing(sqlite3.connect(stack.home / "ledger.sqlite3")) as db:
        return list(db.execute("SELECT status, epsilon FROM entries WHERE run_key = ?", (run_key,)))


def _config_on_own_table(stack: Stack, row: int) -> dict[str, Any]:
    """The form's default config on a copy of the demo table without data row `row`."""
    train = stack.home / "demo" / "adult_train.csv"
    copy = stack.home / "demo" / f"adult_train_without_{row}.csv"
    lines = train.read_text().splitlines(keepends=True)
    copy.write_text("".join([*lines[:row], *lines[row + 1 :]]))
    manual = stack.get(f"/deployments/{stack.deployment_id(DEPLOYMENT)}")
    config = dict(manual["parameter_openapi_schema"]["properties"]["config"]["default"])
    config["data"] = {**config["data"], "train_path": str(copy)}
    return config


@pytest.fixture(scope="module")
def killed(stack: Stack) -> dict[str, Any]:
    client = MlflowClient(tracking_uri=stack.mlflow_url)
    before = {"champion": _champion(client), "versions": _versions(client)}
    deployment = stack.deployment_id(DEPLOYMENT)
    parameters = {"parameters": {"config": _config_on_own_table(stack, 1)}}
    run = stack.post(f"/deployments/{deployment}/create_flow_run", parameters)
    _wait_for_task(stack, run["id"], "train-dp-model")
    time.sleep(3)  # into the training loop: the debit is written before the first step
    killed_at = time.monotonic()
    stack.kill_worker()
    final = stack.wait_for_run(run["id"], timeout=400)
    detected_s = time.monotonic() - killed_at
    after = {"champion": _champion(client), "versions": _versions(client)}
    debit = _ledger(stack, run["id"])
    stack.start_worker()
    rerun = stack.wait_for_run(
        stack.post(f"/deployments/{deployment}/create_flow_run", parameters)["id"], timeout=900
    )
    return {
        "before": before,
        "after": after,
        "final": final,
        "detected_s": detected_s,
        "debit": debit,
        "rerun": rerun,
        "champion_after_rerun": _champion(client),
        "versions_after_rerun": _versions(client),
    }


def test_when_the_worker_is_killed_during_training_then_the_run_ends_crashed(
    killed: dict[str, Any],
) -> None:
    state = killed["final"]["state"]

    assert state["type"] == "CRASHED", state
    assert "no heartbeat" in (state["message"] or "")
    assert killed["detected_s"] < 300


def test_when_the_run_crashed_then_no_alias_moved_and_nothing_was_registered(
    killed: dict[str, Any],
) -> None:
    assert killed["after"] == killed["before"]


def test_when_the_run_crashed_then_its_ledger_debit_is_kept(killed: dict[str, Any]) -> None:
    assert len(killed["debit"]) == 1
    status, epsilon = killed["debit"][0]
    assert status in ("reserved", "spent")
    assert epsilon > 0


def test_when_a_worker_is_back_then_a_rerun_promotes(killed: dict[str, Any]) -> None:
    assert killed["rerun"]["state"]["type"] == "COMPLETED", killed["rerun"]["state"]
    assert killed["versions_after_rerun"] == killed["before"]["versions"] + 1
    assert killed["champion_after_rerun"] == str(killed["versions_after_rerun"])


# --------------------------------------------------------------------------- MLflow down


def _signed(client: MlflowClient, version: str) -> bool:
    return bool(client.get_model_version(MODEL, version).tags.get("privgate.signature"))


@pytest.fixture(scope="module")
def outage(stack: Stack) -> dict[str, Any]:
    client = MlflowClient(tracking_uri=stack.mlflow_url)
    before = _versions(client)
    deployment = stack.deployment_id(DEPLOYMENT)
    parameters = {"parameters": {"config": _config_on_own_table(stack, 2)}}
    run = stack.post(f"/deployments/{deployment}/create_flow_run", parameters)
    _wait_for_task(stack, run["id"], "train-dp-model")
    assert stack.mlflow is not None
    stack.stop_process(stack.mlflow)
    down_at = time.monotonic()
    retrying = _wait_for_retry(stack, run["id"], "register-model")
    down_s = time.monotonic() - down_at
    stack.start_mlflow()
    final = stack.wait_for_run(run["id"], timeout=900)
    return {
        "final": final,
        "before": before,
        "client": client,
        "retrying": retrying,
        "down_s": down_s,
    }


def _wait_for_retry(stack: Stack, flow_run_id: str, task: str, timeout: float = 600) -> str:
    """Wait until `task` failed once and waits to retry; return its state's name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        for task_run in runs:
            if task_run["name"].startswith(task) and task_run["state"]["name"] in (
                "AwaitingRetry",
                "Retrying",
            ):
                return str(task_run["state"]["name"])
        if stack.get(f"/flow_runs/{flow_run_id}")["state"]["type"] in TERMINAL:
            raise AssertionError("the run ended before its registration retried")
        time.sleep(1)
    raise TimeoutError(f"{task} did not retry within {timeout} s")


def test_when_mlflow_is_down_for_30_s_during_a_run_then_it_completes_with_one_version(
    outage: dict[str, Any],
) -> None:
    client = outage["client"]

    assert outage["retrying"] in ("AwaitingRetry", "Retrying")  # the outage was met
    assert outage["final"]["state"]["type"] == "COMPLETED", outage["final"]["state"]
    assert _versions(client) == outage["before"] + 1
    champion = _champion(client)
    assert champion == str(outage["before"] + 1)
    assert _signed(client, champion)


# --------------------------------------------------------------------------- disk full


@pytest.fixture(scope="module")
def disk_full(stack: Stack) -> dict[str, Any]:
    main = MlflowClient(tracking_uri=stack.mlflow_url)
    champion_before = _champion(main)
    server, url = stack.start_mlflow(
        "mlflow-full-disk", port=free_port(), database="mlflow_faults", max_file_bytes=12_000
    )
    deployment = stack.get(f"/deployments/{stack.deployment_id(DEPLOYMENT)}")
    env = {**deployment["job_variables"].get("env", {}), "MLFLOW_TRACKING_URI": url}
    body = {
        "parameters": {"config": _config_on_own_table(stack, 3)},
        "job_variables": {"env": env},
    }
    run = stack.post(f"/deployments/{deployment['id']}/create_flow_run", body)
    final = stack.wait_for_run(run["id"], timeout=900)
    full = MlflowClient(tracking_uri=url)
    versions = full.search_model_versions(f"name='{MODEL}'")
    stack.stop_process(server)
    return {
        "final": final,
        "versions": versions,
        "champion_before": champion_before,
        "champion_after": _champion(main),
    }


def test_when_the_artifact_disk_is_full_then_the_run_fails_and_nothing_is_registered(
    disk_full: dict[str, Any],
) -> None:
    state = disk_full["final"]["state"]

    assert state["type"] == "FAILED", state
    assert "register-model" in (state["message"] or "")
    assert disk_full["versions"] == []
    assert disk_full["champion_after"] == disk_full["champion_before"]


# --------------------------------------------------------------------------- Prefect restart


@pytest.fixture(scope="module")
def restarted(stack: Stack) -> dict[str, Any]:
    client = MlflowClient(tracking_uri=stack.mlflow_url)
    before = _versions(client)
    deployment = stack.deployment_id(DEPLOYMENT)
    parameters = {"parameters": {"config": _config_on_own_table(stack, 4)}}
    run = stack.post(f"/deployments/{deployment}/create_flow_run", parameters)
    _wait_for_task(stack, run["id"], "train-dp-model")
    stack.restart_prefect(down_s=10)
    final = stack.wait_for_run(run["id"], timeout=900)
    runs = stack.post("/flow_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    return {"final": final, "before": before, "client": client, "copies": len(runs)}


def test_when_the_prefect_server_restarts_mid_run_then_the_run_ends_once_promoted_once(
    restarted: dict[str, Any],
) -> None:
    client = restarted["client"]

    assert restarted["final"]["state"]["type"] == "COMPLETED", restarted["final"]["state"]
    assert restarted["copies"] == 1
    assert _versions(client) == restarted["before"] + 1
    champion = _champion(client)
    assert champion == str(restarted["before"] + 1)
    assert _signed(client, champion)
