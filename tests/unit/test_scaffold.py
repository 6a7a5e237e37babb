"""`privgate init`: what it proposes, what it releases about the table, what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.dp.ledger import PrivacyLedger
from privgate.errors import ConfigError, DataError
from privgate.scaffold import (
    _batch_size,
    _outward,
    _release_domains,
    _widths,
    init_project,
    release_cost,
)
from tests.onboarding_table import clinic_table


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path / "home"))
    return tmp_path


def _table(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


def test_when_a_category_is_held_by_few_rows_then_its_name_is_not_released() -> None:
    frame = pd.DataFrame({"plan": ["Basic"] * 3000 + ["Gold"] * 2000 + ["Platinum-for-Ana"] * 2})

    released = _release_domains(frame, ["plan"], epsilon=1.0)
    epsilon, delta = release_cost(1, 1.0)

    assert set(released["plan"]) == {"Basic", "Gold"}
    assert epsilon == pytest.approx(1.0)
    assert 0 < delta <= 1e-6


def test_when_ranges_are_proposed_then_they_round_outward_to_one_significant_figure() -> None:
    assert _outward(pd.Series([17, 43, 90])) == (10, 90)
    assert _outward(pd.Series([0.4, 51234.0])) == (0.4, 60000)
    assert _widths(10, 90) == [5, 10, 20]
    assert _batch_size(members=3763, test_rows=1200) == 128


def test_when_init_runs_then_the_files_load_identifiers_are_treated_and_the_release_is_charged(
    home: Path,
) -> None:
    frame = clinic_table(3000)
    table = _table(home, frame)

    proposal = init_project(table, target="readmitted", out=home / "project")

    config = PipelineConfig.model_validate(
        yaml.safe_load(proposal.files["config.yaml"].read_text())
    )
    policy = PrivacyPolicy.model_validate(yaml.safe_load(proposal.files["policy.yaml"].read_text()))
    assert config.data.test_fraction == 0.2
    assert config.data.positive_labels == ["yes"]
    columns = config.anonymization.columns
    assert columns["patient_name"] == "drop"
    assert columns["email"] == "pseudonymize"
    assert columns["clinician_note"] == "redact"
    assert "age" in config.anonymization.quasi_identifiers
    assert set(policy.quasi_identifiers) == set(config.anonymization.quasi_identifiers)
    assert not {"patient_name", "email", "phone", "clinician_note"} & set(config.training.features)
    suite = json.loads(proposal.files["suite.json"].read_text())
    assert all("REVIEW" in e["meta"]["notes"] for e in suite["expectations"] if "meta" in e)
    assert proposal.lines_marked == len(proposal.review) > 0
    records = PrivacyLedger().entries()
    assert [(r.run_key, r.epsilon) for r in records] == [("privgate-init", pytest.approx(1.0))]
    written = "".join(p.read_text() for p in proposal.files.values())
    assert not [name for name in frame["patient_name"] if name in written]


def test_when_a_column_name_is_hostile_then_the_config_stays_one_mapping(home: Path) -> None:
    hostile = 'plan": keep, evil: "drop #{0}'
    frame = clinic_table(3000).rename(columns={"plan": hostile})

    proposal = init_project(_table(home, frame), target="readmitted", out=home / "p")

    config = yaml.safe_load(proposal.files["config.yaml"].read_text())
    assert hostile in config["training"]["features"]
    assert "evil" not in config["anonymization"]["columns"]


def test_when_a_column_name_holds_a_line_break_then_init_refuses_by_position(home: Path) -> None:
    frame = clinic_table(3000).rename(columns={"plan": 'plan": keep\n  evil: "drop'})

    with pytest.raises(DataError, match=r"column \d+'s name holds a control") as caught:
        init_project(_table(home, frame), target="readmitted", out=home / "p")
    assert "evil" not in str(caught.value)
    assert not (home / "p").exists()


def test_when_the_target_is_not_binary_or_files_exist_then_init_refuses(home: Path) -> None:
    frame = clinic_table(3000)
    frame["readmitted"] = np.random.default_rng(0).choice(["a", "b", "c"], len(frame))
    table = _table(home, frame)

    with pytest.raises(DataError, match="privgate trains binary classifiers"):
        init_project(table, target="readmitted", out=home / "p")
    with pytest.raises(DataError, match=r"target column 'nope' \(--target\) is missing"):
        init_project(table, target="nope", out=home / "p")
    (home / "p").mkdir(exist_ok=True)
    (home / "p" / "config.yaml").write_text("mine")
    with pytest.raises(ConfigError, match="init would overwrite"):
        init_project(table, target="readmitted", out=home / "p")
    assert (home / "p" / "config.yaml").read_text() == "mine"
