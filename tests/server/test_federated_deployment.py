"""A deployed federation: each silo on its own work pool, its own worker, its own state home.

On the stack of `stack.py`, deployed from the project's own `prefect.yaml`:
`federated-training` (the coordinator, on `privgate-process`) and `silo-1..3` (the
`federated-silo` flow, each on `privgate-silo-N`, polled by a worker whose
`PRIVGATE_HOME` is that silo's alone and holds its table). The coordinator's run starts
every silo step on the silo's deployment, runs the SuperLink, and the silos' SuperNodes
dial it from their own workers. Checked: the model is promoted with every silo's table
hash in its attestation; every silo step ran on the silo's own pool; the encoded rows
and ledger entries are in the silo homes and nowhere in the coordinator's; planted
canaries reach no log, run record or result.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from privgate.data.demo_data import write_demo_data
from privgate.federated.plan import split_demo
from tests.server.stack import BIN, Stack

pytestmark = pytest.mark.server

MODEL = "privgate-adult-income"
ALIAS = "federated"  # not the champion the other server tests follow
CANARY_NAME = "Ulvarne Pexthorpe"
CANARY_SSN = "373-46-8842"
SILOS = ("silo-1", "silo-2", "silo-3")


@pytest.fixture(scope="module")
def federation(stack: Stack) -> dict[str, Any]:
    prefect = str(BIN / "prefect")
    for name in SILOS:
        created = stack.cli(prefect, "work-pool", "create", f"privgate-{name}", "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
    names = [arg for name in ("federated-training", *SILOS) for arg in ("--name", name)]
    deployed = stack.cli(prefect, "--no-prompt", "deploy", *names)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    train, test = write_demo_data(stack.root / "federated-demo", rows=6000)
    frame = pd.read_csv(train, dtype=str, keep_default_na=False)
    for row in range(30, 34):
        frame.loc[row, ["full_name", "ssn"]] = [CANARY_NAME, f"373-46-{8812 + row}"]
        frame.loc[row, "notes"] = f"Ring {CANARY_NAME} about SSN {CANARY_SSN}."
    frame.to_csv(train, index=False)
    homes = {}
    for silo in split_demo(train, test, stack.root / "federated-split", silos=3):
        home = stack.root / f"{silo.name}-home"
        (home / "silo-data").mkdir(parents=True)
        shutil.copy(silo.train_path, home / "silo-data" / "train.csv")
        shutil.copy(silo.test_path, home / "silo-data" / "test.csv")
        homes[silo.name] = home
        stack.start(
            f"worker-{silo.name}",
            [prefect, "worker", "start", "--pool", f"privgate-{silo.name}"],
            stack.env(PRIVGATE_HOME=str(home), PREFECT_WORKER_QUERY_SECONDS="1"),
        )
    overrides = ["training.batch_size=128", f"registry.alias={ALIAS}"]
    deployment = stack.deployment_id("federated-training-from-file/federated-training")
    run = stack.post(
        f"/deployments/{deployment}/create_flow_run", {"parameters": {"overrides": overrides}}
    )
    finished = stack.wait_for_run(run["id"], timeout=1800)
    steps = stack.post(
        "/flow_runs/filter", {"flow_runs": {"tags": {"all_": ["federated"]}}, "limit": 200}
    )
    (coordinator,) = stack.post(
        "/flow_runs/filter",
        {
            "flows": {"name": {"any_": ["federated-training"]}},
            "flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}},
        },
    )
    verify = stack.cli(str(BIN / "privgate"), "models", "verify", MODEL, "--json")
    return {
        "run": finished,
        "coordinator": coordinator,
        "steps": steps,
        "homes": homes,
        "verify": verify,
    }


def test_when_silos_run_on_their_own_pools_then_the_model_is_promoted(
    federation: dict[str, Any],
) -> None:
    run = federation["run"]

    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    coordinator = federation["coordinator"]["state"]
    assert coordinator["message"].startswith("promoted version"), coordinator["message"]
    verify = federation["verify"]
    (row,) = [r for r in json.loads(verify.stdout) if r["alias"] == ALIAS]  # other aliases aside
    assert row["ok"] is True, row["reason"]
    listed = {s["silo"]: s for s in row["silos"]}
    assert set(listed) == set(SILOS)
    for name, home in federation["homes"].items():
        table = (home / "silo-data" / "train.csv").read_bytes()
        assert listed[name]["train_sha256"] == hashlib.sha256(table).hexdigest()
        assert listed[name]["rounds_summed"] == [1, 2, 3, 4]
        assert listed[name]["gates_passed"] is True


def test_when_a_silo_step_runs_then_it_runs_on_that_silos_pool(federation: dict[str, Any]) -> None:
    steps = [r for r in federation["steps"] if r["parameters"].get("step")]
    by_silo: dict[str, list[str]] = {}
    for step in steps:
        silo = step["parameters"]["silo_entry"]["name"]
        assert step["work_pool_name"] == f"privgate-{silo}"
        assert step["state"]["type"] == "COMPLETED", step["state"]["message"]
        by_silo.setdefault(silo, []).append(step["parameters"]["step"])

    assert {s: sorted(v) for s, v in by_silo.items()} == {
        s: ["audit", "prepare", "propose", "reserve", "serve"] for s in SILOS
    }


def test_when_silos_keep_their_rows_then_the_coordinator_holds_none(
    stack: Stack, federation: dict[str, Any]
) -> None:
    run_id = federation["coordinator"]["id"]  # the federated-training (sub)flow's run
    for name, home in federation["homes"].items():
        folder = home / "federated" / "runs" / run_id / "silos" / name
        assert (folder / "train.npz").is_file()  # the encoded rows, in the silo
        assert json.loads((folder / "ledger.json").read_text())["entry_id"]
        assert (folder / "flower" / "supernode.log").is_file()  # its SuperNode ran there
    coordinator = stack.home / "federated" / "runs" / run_id
    assert (coordinator / "federation" / "superlink.log").is_file()
    assert not list(coordinator.rglob("train.npz"))
    assert not list(coordinator.rglob("*.csv"))


def _written(stack: Stack, federation: dict[str, Any]) -> list[Path]:
    roots = [stack.root / "prefect-client", stack.home / "federated", *federation["homes"].values()]
    return [
        path
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and "silo-data" not in path.parts
    ]


def test_when_the_federation_finishes_then_no_canary_reaches_prefect_or_a_result(
    stack: Stack, federation: dict[str, Any]
) -> None:
    logs = stack.run_logs()
    records = [str(logs), str(federation["steps"]), str(federation["run"])]
    records += [stack.log(f"worker-{name}") for name in SILOS]
    written = _written(stack, federation)
    planted = (stack.root / "federated-demo").rglob("*.csv")

    assert any(CANARY_SSN.encode() in p.read_bytes() for p in planted)
    assert any("storage" in p.parts for p in written)  # the steps' persisted results
    for needle in ("Ulvarne", "Pexthorpe", CANARY_SSN):
        assert not [r for r in records if needle in r]
        assert not [p.name for p in written if needle.encode() in p.read_bytes()]
