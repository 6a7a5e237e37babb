"""End to end: `privgate sweep` with the real Prefect, Presidio, Opacus and MLflow.

A two-point grid (epsilon 3 and the non-private baseline, k = 5) on a demo sample: the DP
point is the only one that can pass, so it is chosen, registered and promoted; the table
and the plots land in MLflow. A grid whose spend would exceed the ledger's budget is
refused before anything trains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from privgate.demo_data import write_demo_data
from privgate.ledger import PrivacyLedger

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROWS = 4000


def _privgate(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRIVGATE_HOME": str(home)}
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "privgate.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("privgate-sweep-home")
    write_demo_data(home / "demo", rows=ROWS)
    return home


def test_when_a_grid_is_swept_then_the_best_passing_point_is_promoted_and_reported(
    home: Path,
) -> None:
    done = _privgate(home, "sweep", "--epsilons", "3,none", "--ks", "5", "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert [p["point"]["label"] for p in summary["points"]] == ["eps=3 k=5", "non-private k=5"]
    assert summary["chosen"] == "eps=3 k=5"
    assert summary["promoted"] is True
    assert summary["version"] == "1"
    private, public = summary["points"]
    assert all(status == "passed" for status in private["gates"].values())
    assert public["gates"]["privacy_budget"] == "failed"
    assert 0 < private["epsilon_spent"] <= 3.0
    assert summary["ledger_charge"]["epsilon"] == pytest.approx(private["epsilon_spent"])
    written = {p.name for p in home.rglob("*") if p.is_file()}
    assert {"sweep.md", "sweep.json", "accuracy_vs_epsilon.png"} <= written
    assert {"mia_tpr_vs_epsilon.png", "pareto_front.png"} <= written


def test_when_the_grid_would_overspend_the_budget_then_nothing_trains(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(home))
    ledger = PrivacyLedger()
    before = len(ledger.entries())

    done = _privgate(home, "sweep", "--epsilons", "4,8", "--ks", "5", "--json")

    assert done.returncode == 2, done.stderr[-3000:]
    error = json.loads(done.stdout)["error"]
    assert "would spend epsilon 12" in error
    assert "lifetime" in error
    assert len(ledger.entries()) == before
