"""End to end: `privgate federated` on 3 silos, Flower's Deployment Engine on loopback.

Real SuperLink and SuperNodes (processes of .venv-flower), SecAgg+ on every round,
privgate's DP-SGD in every silo, the central audit in every silo, the gates, MLflow,
the signed attestation. Two runs on one state home:
  1. the demo split into 3 regional silos promotes a signed model listing every silo;
  2. a plan whose second silo's table fails its expectation suite is blocked before
     anything is trained, and says which silo.
Canary identifiers planted in the table reach nothing the runs wrote but the inputs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from privgate.data.demo_data import write_demo_data
from tests.e2e.cli_runner import Run, leaks, run_cli

pytestmark = pytest.mark.e2e

ROWS = 6000
# 4 rounds x 2 local epochs: the 8 epochs of the central demo, so the audit has its power.
ARGS = ("--rounds", "4", "--local-epochs", "2", "--set", "training.batch_size=128", "--json")
CANARIES = {
    "full_name": "Vexmoor Quillane",
    "email": "vexmoor.canary5519@example.org",
    "phone": "(312) 555-5519",
    "ssn": "372-45-5519",
    "street_address": "5519 Canaryfield Road",
}
NEEDLES = ["Vexmoor", "Quillane", "canary5519", "555-5519", "372-45-5519", "Canaryfield"]
BAD_CATEGORY = "Zorblax-FEDERATED-4471"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    home = tmp_path_factory.mktemp("privgate-federated")
    train, test = write_demo_data(home / "demo", rows=ROWS)
    frame = pd.read_csv(train, dtype=str, keep_default_na=False)
    for row in range(20, 26):
        for column, value in CANARIES.items():
            frame.loc[row, column] = value
        frame.loc[row, "ssn"] = f"372-45-{5499 + row}"  # 5519 in row 20
        frame.loc[row, "notes"] = f"Call Vexmoor Quillane at (312) 555-5519 about row {row}."
    frame.to_csv(train, index=False)
    results: dict[str, object] = {"home": home}
    results["promoted"] = run_cli(
        home, "federated", "--silos", "3", "--record-coordinator-view", *ARGS, timeout=1500
    )
    split = home / "federated" / "split"
    bad = home / "bad-silo"
    bad.mkdir()
    broken = pd.read_csv(split / "silo-2" / "train.csv", dtype=str, keep_default_na=False)
    broken.loc[3, "sex"] = BAD_CATEGORY
    broken.to_csv(bad / "train.csv", index=False)
    plan = {
        "rounds": 1,
        "silos": [
            {
                "name": "north",
                "train_path": str(split / "silo-1" / "train.csv"),
                "test_path": str(split / "silo-1" / "test.csv"),
            },
            {
                "name": "south",
                "train_path": str(bad / "train.csv"),
                "test_path": str(split / "silo-2" / "test.csv"),
            },
            {
                "name": "west",
                "train_path": str(split / "silo-3" / "train.csv"),
                "test_path": str(split / "silo-3" / "test.csv"),
            },
        ],
    }
    (home / "plan.yaml").write_text(yaml.safe_dump(plan))
    results["blocked"] = run_cli(
        home, "federated", "--plan", str(home / "plan.yaml"), *ARGS, timeout=900
    )
    results["verify"] = run_cli(home, "models", "verify", "privgate-adult-income", "--json")
    results["load"] = run_cli(home, "models", "load", "privgate-adult-income", "--json")
    results["inputs"] = [train, test, bad / "train.csv", home / "plan.yaml", *split.rglob("*.csv")]
    return results


def test_when_three_silos_train_then_a_signed_model_is_promoted(runs: dict) -> None:
    run: Run = runs["promoted"]

    assert run.code == 0, run.stderr[-3000:]
    data = run.json()
    assert data["promoted"] is True
    assert data["passed"] is True
    assert len(data["silos"]) == 3
    assert all(s["blocked"] is None for s in data["silos"])
    # Per record: the largest silo epsilon, each within the target it was calibrated for.
    per_silo = data["epsilon_per_silo"]
    assert data["epsilon"] == max(per_silo.values())
    assert all(0 < eps <= 3.0 + 1e-9 for eps in per_silo.values())
    rounds = data["federation"]["rounds"]
    assert [r["summed"] for r in rounds] == [["silo-1", "silo-2", "silo-3"]] * 4
    assert data["federation"]["dropped"] == data["federation"]["excluded"] == []
    assert data["federation"]["bytes_received"] > 0
    # Every silo's own gates were judged, and named after it.
    names = {g["name"] for g in data["gates"]["gates"]}
    for silo in ("silo-1", "silo-2", "silo-3"):
        assert {f"{silo}/k_anonymity", f"{silo}/audit_power", f"{silo}/privacy_budget"} <= names
    assert {"federation/well_formed_updates", "federation/participation"} <= names


def test_when_the_champion_is_verified_then_its_attestation_lists_every_silo(runs: dict) -> None:
    verify: Run = runs["verify"]

    assert verify.code == 0, verify.stderr[-2000:]
    (row,) = verify.json()
    listed = {s["silo"]: s for s in row["silos"]}
    assert set(listed) == {"silo-1", "silo-2", "silo-3"}
    split = Path(runs["home"]) / "federated" / "split"
    for name, entry in listed.items():
        table = (split / name / "train.csv").read_bytes()
        assert entry["train_sha256"] == hashlib.sha256(table).hexdigest()
        assert entry["gates_passed"] is True
        assert entry["k_achieved"] >= 5
        assert 0 < entry["epsilon"] <= 3.0 + 1e-9
        assert entry["rounds_summed"] == [1, 2, 3, 4]
    loaded: Run = runs["load"]
    assert loaded.code == 0, loaded.stderr[-2000:]


def test_when_a_silo_fails_its_suite_then_the_run_is_blocked_and_names_it(runs: dict) -> None:
    run: Run = runs["blocked"]

    assert run.code == 2, run.stderr[-2000:]
    data = run.json()
    assert data["promoted"] is False
    assert "silo south: validation" in data["message"]
    assert "expect_column_values_to_be_in_set(sex)" in data["message"]
    blocked = {s["silo"]: s["blocked"] for s in data["silos"]}
    assert blocked["north"] is None
    assert blocked["west"] is None
    # Nothing was trained: no silo spent budget, no federation ran.
    assert "epsilon_per_silo" not in data


def _flat(path: Path, *, skip: int = 0) -> np.ndarray:
    """Return the arrays saved in `path` (np.savez order), flattened, after the first `skip`."""
    with np.load(path) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    return np.concatenate([a.ravel() for a in arrays[skip:]])


def test_when_the_coordinator_sums_then_it_never_holds_one_silos_update(runs: dict) -> None:
    home = Path(runs["home"])
    (run,) = [p for p in (home / "federated" / "runs").iterdir() if (p / "federation").exists()]
    out, silos = run / "federation" / "out", run / "silos"
    received = sorted(out.glob("received-1-*.npz"))
    assert len(received) == 3
    updates = {n: _flat(silos / n / "update-1.npz") for n in ("silo-1", "silo-2", "silo-3")}
    # SecAgg+ sends the silo's weight factor first, then the masked parameters.
    masked = [_flat(path, skip=1) for path in received]
    # What arrives for a silo is uniform noise mod the ring: no correlation with any update.
    for vector in masked:
        for update in updates.values():
            assert vector.shape == update.shape
            assert abs(np.corrcoef(vector.astype(np.float64), update)[0, 1]) < 0.1
    # And yet the sum is exact: the global step is the members-weighted mean update.
    step = _flat(out / "global-1.npz") - _flat(out.parent / "initial.npz")
    sizes = {s["silo"]: s["members"] for s in runs["promoted"].json()["silos"]}
    total = sum(sizes.values())
    expected = sum(updates[name] * sizes[name] / total for name in updates)
    assert np.max(np.abs(step - expected)) < 1e-3
    assert np.max(np.abs(expected)) > 1e-2  # the silos did move the model


def _written_files(runs: dict) -> list[Path]:
    inputs = {Path(p).resolve() for p in runs["inputs"]}
    return [
        p
        for p in Path(runs["home"]).rglob("*")
        if p.is_file() and not p.is_symlink() and p.resolve() not in inputs
    ]


def test_when_runs_finish_then_no_canary_reaches_anything_written(runs: dict) -> None:
    planted = b"".join(Path(p).read_bytes() for p in runs["inputs"])
    assert all(needle.encode() in planted for needle in [*NEEDLES, BAD_CATEGORY])
    files = _written_files(runs)
    assert any(p.name == "superlink.log" for p in files)
    assert any(p.name == "train.npz" for p in files)

    assert leaks(Path(runs["home"]), files, [*NEEDLES, BAD_CATEGORY]) == []
    printed = "".join(r.stdout + r.stderr for r in runs.values() if isinstance(r, Run))
    assert [n for n in [*NEEDLES, BAD_CATEGORY] if n in printed] == []
