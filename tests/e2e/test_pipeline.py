"""End to end: the real CLI, Prefect, GX, Presidio, Opacus and MLflow on a demo sample.

One state home, three runs in order, then assertions on what they left behind:
  1. the default config promotes a model;
  2. `--set training.dp.enabled=false` is blocked by the privacy-budget gate;
  3. a raw table failing its expectation suite stops before anything is trained;
then `privgate audit` re-audits the champion from its recorded lineage.
Canary values planted in the identifier and notes columns must appear in nothing the
pipeline wrote under PRIVGATE_HOME (the raw input files aside), nor on its terminal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from privgate.data.demo_data import write_demo_data
from tests.e2e.cli_runner import Run, leaks, run_cli

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROWS = 4000
CANARY_ROWS = range(10, 16)
CANARIES = {
    "full_name": "Quorvath Zelbrandt",
    "email": "quorvath.canary7731@example.net",
    "phone": "(415) 555-7731",
    "ssn": "371-44-7731",
    "street_address": "7731 Canarywood Lane",
    "date_of_birth": "1931-07-31",
}
NOTE = (
    "Spoke with Quorvath Zelbrandt about the claim; reach quorvath.canary7731@example.net "
    "or call (415) 555-7731, SSN 371-44-7731."
)
# Fragments searched for, raw bytes, in every file the runs wrote.
NEEDLES = ["Quorvath", "Zelbrandt", "canary7731", "555-7731", "371-44-7731", "Canarywood"]
BAD_CATEGORY = "Zorblax-CANARY-9931"
CACHED = re.compile(r"Task run '([a-z-]+)-\w+' - Finished in state Cached")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    home = tmp_path_factory.mktemp("privgate-home")
    train, test = write_demo_data(home / "demo", rows=ROWS)
    frame = pd.read_csv(train, dtype=str, keep_default_na=False)
    for row in CANARY_ROWS:
        for column, value in CANARIES.items():
            frame.loc[row, column] = value
        # One SSN per person (data.person_key): the canary's in row 10, its neighbours'
        # next to it.
        frame.loc[row, "ssn"] = f"371-44-{7721 + row}"
        frame.loc[row, "notes"] = NOTE
    frame.to_csv(train, index=False)
    bad = home / "bad"
    bad.mkdir()
    broken = frame.copy()
    broken.loc[3, "sex"] = BAD_CATEGORY
    broken.to_csv(bad / "train.csv", index=False)

    results = {
        "promoted": run_cli(home, "run", "--json"),
        "no_dp": run_cli(home, "run", "--json", "--set", "training.dp.enabled=false"),
    }
    # The same path and config, other content: the cached validation must not be reused.
    original = Path(train).read_bytes()
    Path(train).write_bytes((bad / "train.csv").read_bytes())
    results["invalid"] = run_cli(home, "run", "--json")
    Path(train).write_bytes(original)
    results["show"] = run_cli(home, "models", "show", "privgate-adult-income", "--json")
    results["list"] = run_cli(home, "models", "list", "--json")
    results["load"] = run_cli(home, "models", "load", "privgate-adult-income", "--json")
    results["load_strict"] = run_cli(
        home, "models", "load", "privgate-adult-income", "--max-epsilon", "0.5", "--json"
    )
    results["verify"] = run_cli(home, "models", "verify", "--json")
    results["audit"] = run_cli(home, "audit", "privgate-adult-income", "--json")
    results["audit_missing"] = run_cli(
        home, "audit", "privgate-adult-income", "--version", "99", "--json"
    )
    last_row = Path(test).read_text().splitlines()[-1]
    with Path(test).open("a") as table:  # one more row: the lineage no longer matches
        table.write(last_row + "\n")
    results["audit_changed"] = run_cli(home, "audit", "privgate-adult-income", "--json")
    return {"home": home, "inputs": {train, test, bad / "train.csv"}, **results}


def test_when_the_default_config_runs_then_the_model_is_promoted(runs: dict) -> None:
    run: Run = runs["promoted"]

    assert run.code == 0, run.stderr[-3000:]
    summary = run.json()
    assert summary["promoted"] is True
    assert summary["version"] == "1"
    assert all(g["passed"] for g in summary["gates"])
    assert {g["name"] for g in summary["gates"]} >= {
        "residual_pii",
        "k_anonymity",
        "privacy_budget",
        "privacy_delta",
        "utility",
        "membership_inference_auc",
        "membership_inference_tpr",
        "dp_consistency",
        "audit_power",
    }
    assert 0 < summary["epsilon"] <= 3.0
    assert 0 <= summary["empirical_epsilon_lower_bound"] <= summary["epsilon"]
    assert summary["delta"] == 1e-5
    for key in ("model_name", "accuracy", "mia_auc", "duration_s"):
        assert summary[key] is not None
    # Where the time went: the CLI's phases, then every task read back from Prefect.
    timings = summary["timings"]
    phases = [phase["phase"] for phase in timings["phases"]]
    assert phases[-1] == "flow run"
    assert "waiting for Prefect's temporary server" in phases
    tasks = [task["task"] for task in timings["tasks"]]
    assert tasks[:4] == ["ingest", "validate", "preflight", "scan-pii"]
    assert {"anonymize", "train-dp-model", "train-reference-models", "register-model"} <= set(tasks)
    assert tasks.count("evaluate-gates") == 2  # the data gates, then every gate
    flow = timings["phases"][-1]["seconds"]
    assert 0 < max(task["seconds"] for task in timings["tasks"]) <= flow
    assert sum(phase["seconds"] for phase in timings["phases"]) <= timings["total_s"]


def test_when_dp_is_disabled_then_the_budget_gate_blocks_and_champion_stays(runs: dict) -> None:
    run: Run = runs["no_dp"]

    assert run.code == 2, run.stderr[-3000:]
    summary = run.json()
    assert summary["promoted"] is False
    assert summary["version"] == "2"
    assert "privacy_budget" in summary["blocked_by"]
    assert summary["epsilon"] is None  # infinite: no DP
    listing = {v["version"]: v for v in runs["list"].json()[0]["versions"]}
    assert listing["2"]["status"] == "rejected"
    assert listing["2"]["aliases"] == []
    assert listing["1"]["status"] == "approved"
    assert listing["1"]["aliases"] == ["champion"]


def test_when_a_version_is_shown_then_it_carries_gates_dp_params_and_lineage(runs: dict) -> None:
    shown = runs["show"].json()

    assert shown["version"] == "1"
    assert shown["resolved_by"] == "alias champion"
    assert shown["status"] == "approved"
    assert set(shown["gates"].values()) == {"passed"}
    assert {
        "dp.epsilon",
        "dp.delta",
        "dp.noise_multiplier",
        "dp.sample_rate",
        "dp.steps",
        "dp.max_grad_norm",
        "dp.accountant",
    } <= set(shown["dp"])
    assert float(shown["dp"]["dp.noise_multiplier"]) > 0
    assert len(shown["lineage"]["privgate.lineage.train_sha256"]) == 64
    assert len(shown["lineage"]["privgate.lineage.config_sha256"]) == 64


def test_when_the_same_data_runs_again_then_validation_and_scan_come_from_the_cache(
    runs: dict,
) -> None:
    first: Run = runs["promoted"]
    again: Run = runs["no_dp"]  # another training config, the same data and PII settings

    assert CACHED.findall(first.stderr) == []
    assert sorted(CACHED.findall(again.stderr)) == ["scan-pii", "validate"]


def test_when_the_raw_table_fails_validation_then_nothing_is_trained(runs: dict) -> None:
    run: Run = runs["invalid"]

    # Same path and config as the runs before: the content hash keyed a new validation.
    assert CACHED.findall(run.stderr) == []
    assert run.code == 1
    assert "expect_column_values_to_be_in_set(sex)" in run.json()["error"]
    versions = runs["list"].json()[0]["versions"]
    assert len(versions) == 2  # no third version: the invalid run registered nothing


def _written_files(runs: dict) -> list[Path]:
    inputs = {p.resolve() for p in runs["inputs"]}
    return [p for p in Path(runs["home"]).rglob("*") if p.is_file() and p.resolve() not in inputs]


def test_when_runs_finish_then_no_canary_reaches_anything_written(runs: dict) -> None:
    # The search works: every needle is in the raw inputs it was planted in.
    planted = b"".join(Path(p).read_bytes() for p in runs["inputs"])
    assert all(needle.encode() in planted for needle in [*NEEDLES, BAD_CATEGORY])
    files = _written_files(runs)
    assert any(p.name == "mlflow.db" for p in files)
    assert any(p.name.startswith("prefect.db") for p in files)
    assert any("mlartifacts" in p.parts for p in files)

    assert leaks(Path(runs["home"]), files, [*NEEDLES, BAD_CATEGORY]) == []


def test_when_runs_finish_then_no_canary_reaches_the_terminal(runs: dict) -> None:
    printed = "".join(run.stdout + run.stderr for key, run in runs.items() if isinstance(run, Run))

    assert [n for n in [*NEEDLES, BAD_CATEGORY] if n in printed] == []


def test_when_a_consumer_loads_the_champion_then_signature_and_digests_check_out(
    runs: dict,
) -> None:
    loaded: Run = runs["load"]

    assert loaded.code == 0, loaded.stderr[-2000:]
    summary = loaded.json()
    assert summary["loaded"] is True
    assert summary["version"] == "1"
    assert summary["artifacts_verified"] >= 5
    assert runs["verify"].code == 0
    assert [row["ok"] for row in runs["verify"].json()] == [True]


def test_when_the_consumer_limits_epsilon_below_the_spend_then_load_refuses(runs: dict) -> None:
    refused: Run = runs["load_strict"]

    assert refused.code == 2
    assert "max-epsilon" in refused.json()["error"]


def test_when_a_version_is_registered_then_its_model_card_is_logged(runs: dict) -> None:
    # Keyed by file name: the folders above them are random run ids.
    cards = {c.name: c.read_text() for c in Path(runs["home"]).rglob("model_card/v*.md")}

    assert sorted(cards) == ["v1.md", "v2.md"]
    approved, rejected = cards["v1.md"], cards["v2.md"]
    assert "APPROVED" in approved
    assert "Utility" in approved
    assert "baseline" in approved
    assert "REJECTED" in rejected
    assert "WITHOUT differential privacy" in rejected
    assert any(Path(runs["home"]).rglob("model_card/v1.html"))


def test_when_a_run_is_audited_then_its_report_and_plot_are_logged(runs: dict) -> None:
    home = Path(runs["home"])
    reports = [json.loads(p.read_text()) for p in home.rglob("reports/audit/audit_report.json")]

    assert len(reports) == 2  # the promoted run and the one without DP
    approved = next(r for r in reports if r["claimed_epsilon"] is not None)
    assert [a["attack"] for a in approved["attacks"]] == ["loss_threshold", "rmia", "lira_offline"]
    assert approved["reference_models"] == 4
    assert approved["canary_audit"]["bound"]["canaries"] == 1000
    # The white-box control (noise off) proves the claim: the audit has power for it.
    white = approved["control"]["white_box"]
    assert white["bound"]["epsilon"] >= approved["claimed_epsilon"] - 0.01
    assert white["plan"]["claim_provable"] is True
    assert set(approved["canary_epsilon_lower_bounds"]) == {"black_box", "white_box"}
    for named in approved["canary_epsilon_lower_bounds"].values():
        assert named["epsilon"] < named["claimed_epsilon"]
    without_dp = next(r for r in reports if r["claimed_epsilon"] is None)
    assert without_dp["canary_audit"] is None  # no claim to check
    assert len(list(home.rglob("reports/audit/audit_report.md"))) == 2
    assert len(list(home.rglob("reports/audit/roc.png"))) == 2


def test_when_the_champion_is_re_audited_then_its_lineage_rebuilds_the_audit(runs: dict) -> None:
    run: Run = runs["audit"]

    assert run.code == 0, run.stderr[-3000:]
    result = run.json()
    assert (result["version"], result["passed"]) == ("1", True)
    assert {
        "mia_auc",
        "mia_tpr_at_1pct_fpr",
        "mia_tpr_at_0_1pct_fpr",
        "empirical_epsilon_lower_bound",
        "claimed_epsilon",
        "attacks",
        "gates",
    } <= set(result)
    assert [g["name"] for g in result["gates"]] == [
        "privacy_budget",
        "privacy_delta",
        "utility",
        "membership_inference_auc",
        "membership_inference_tpr",
        "dp_consistency",
        "audit_power",
    ]
    assert 0 < result["claimed_epsilon"] <= 3.0
    assert len(list(Path(runs["home"]).rglob("reports/reaudit/*.json"))) == 1
    assert run.stdout.count("\n") == 1  # one JSON object, nothing else


def test_when_a_re_audit_cannot_rebuild_its_lineage_then_it_says_why(runs: dict) -> None:
    missing: Run = runs["audit_missing"]
    changed: Run = runs["audit_changed"]

    assert missing.code == 1
    assert "version 99 of model 'privgate-adult-income' not found" in missing.json()["error"]
    assert changed.code == 1
    error = changed.json()["error"]
    assert "adult_test.csv changed since version 1 was trained" in error


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_when_the_champion_is_served_then_it_answers_a_prediction_request(runs: dict) -> None:
    import time
    import urllib.request

    home = Path(runs["home"])
    port = _free_port()
    # mlflow serve starts `uvicorn` from PATH, as in an activated virtualenv.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/privgate-adult-income@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-2000:] if server.stderr else ""
                time.sleep(1)
        records = {
            "age": [37, 52],
            "education": ["Bachelors", "HS-grad"],
            "marital_status": ["Married-civ-spouse", "Never-married"],
            "race": ["White", "Black"],
            "sex": ["Male", "Female"],
            "native_country": ["United-States", "Mexico"],
            "workclass": ["Private", "State-gov"],
            "occupation": ["Exec-managerial", "Sales"],
            "relationship": ["Husband", "Not-in-family"],
            "capital_gain": [0, 2174],
            "capital_loss": [0, 0],
            "hours_per_week": [45, 40],
        }
        body = json.dumps(
            {
                "dataframe_split": {
                    "columns": list(records),
                    "data": list(zip(*records.values(), strict=True)),
                }
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=30)

    predictions = answer["predictions"]
    assert len(predictions) == 2
    assert all(0.0 <= p["probability"] <= 1.0 for p in predictions)
    assert {p["prediction"] for p in predictions} <= {0, 1}
