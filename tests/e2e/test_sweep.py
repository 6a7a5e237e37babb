"""End to end: `privgate sweep` with the real Prefect, Presidio, Opacus and MLflow.

A two-point grid (epsilon 3 and the non-private baseline, k = 5) on a demo sample: the DP
point is the only one that can pass, so it is chosen, registered and promoted; the table
and the plots land in MLflow. A grid whose spend would exceed the ledger's budget is
refused before anything trains.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from privgate.data.demo_data import write_demo_data
from privgate.dp.ledger import PrivacyLedger
from tests.e2e.cli_runner import run_cli

pytestmark = pytest.mark.e2e

ROWS = 4000


CANARY_NAME = "Quorvath Zelbrandt"
CANARY_SSN = "371-44-7731"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("privgate-sweep-home")
    train, _ = write_demo_data(home / "demo", rows=ROWS)
    frame = pd.read_csv(train, dtype=str, keep_default_na=False)
    for row in range(10, 14):
        frame.loc[row, ["full_name", "ssn"]] = [CANARY_NAME, CANARY_SSN]
        frame.loc[row, "notes"] = f"Spoke with {CANARY_NAME} about the claim, SSN {CANARY_SSN}."
    frame.to_csv(train, index=False)
    return home


def test_when_a_grid_is_swept_then_the_best_passing_point_is_promoted_and_reported(
    home: Path,
) -> None:
    done = run_cli(home, "sweep", "--epsilons", "3,none", "--ks", "5", "--json")

    assert done.code == 0, done.stderr[-3000:]
    summary = done.json()
    assert [p["label"] for p in summary["points"]] == ["eps=3 k=5", "non-private k=5"]
    assert summary["chosen"] == "eps=3 k=5"
    assert summary["promoted"] is True
    assert summary["version"] == "1"
    private, public = summary["points"]
    assert all(status == "passed" for status in private["gates"].values())
    assert public["gates"]["privacy_budget"] == "failed"
    assert 0 < private["epsilon_spent"] <= 3.0
    assert summary["ledger_charge"]["epsilon"] == pytest.approx(private["epsilon_spent"])
    written = [p for p in home.rglob("*") if p.is_file() and "demo" not in p.parts]
    assert {"sweep.md", "sweep.json", "accuracy_vs_epsilon.png"} <= {p.name for p in written}
    assert {"mia_tpr_vs_epsilon.png", "pareto_front.png"} <= {p.name for p in written}
    for needle in ("Quorvath", "Zelbrandt", CANARY_SSN):
        assert needle not in done.stdout + done.stderr
        assert not [p.name for p in written if needle.encode() in p.read_bytes()]


def test_when_a_grid_is_swept_then_prefect_shows_the_table_and_every_plot(home: Path) -> None:
    # Runs after the sweep above, in the same state home: read what Prefect stored.
    with sqlite3.connect(home / "prefect" / "prefect.db") as db:
        artifacts = dict(db.execute("SELECT key, type FROM artifact WHERE key LIKE '%sweep%'"))
        images = dict(db.execute("SELECT key, data FROM artifact WHERE type = 'image'"))

    assert artifacts == {
        "privacy-utility-sweep": "markdown",
        "sweep-accuracy-vs-epsilon": "image",
        "sweep-mia-tpr-vs-epsilon": "image",
        "sweep-pareto-front": "image",
    }
    for data in images.values():
        url = json.loads(data)
        assert url.startswith("file://"), url  # no tracking server here: the file itself
        assert Path(urlparse(url).path).is_file()


def test_when_the_grid_would_overspend_the_budget_then_nothing_trains(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(home))
    ledger = PrivacyLedger()
    before = len(ledger.entries())

    done = run_cli(home, "sweep", "--epsilons", "4,8", "--ks", "5", "--json")

    assert done.code == 2, done.stderr[-3000:]
    error = done.json()["error"]
    assert "would spend epsilon 12" in error
    assert "lifetime" in error
    assert len(ledger.entries()) == before
