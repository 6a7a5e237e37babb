"""`privgate check`: what would fail is found before anything trains or is charged."""

from __future__ import annotations

from pathlib import Path

import pytest

from privgate import stages
from privgate.cli import main
from privgate.config import PipelineConfig, load_config, load_policy
from privgate.data.demo_data import write_demo_data
from privgate.dp.ledger import PrivacyLedger
from privgate.preflight import CheckReport, preflight

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    write_demo_data(home / "demo", rows=3000)
    return home


@pytest.fixture
def home(demo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The demo tables are shared; the ledger is each test's own.
    monkeypatch.setenv("PRIVGATE_HOME", str(demo_home))
    monkeypatch.setattr(
        "privgate.preflight.PrivacyLedger", lambda: PrivacyLedger(tmp_path / "ledger.sqlite3")
    )
    return demo_home


def _check(*overrides: str, policy: dict | None = None) -> tuple[CheckReport, PipelineConfig]:
    config = load_config(ROOT / "configs" / "demo.yaml", list(overrides))
    chosen = load_policy().model_copy(update=policy or {})
    return preflight(stages.ingest(config), config, chosen), config


def _messages(report: CheckReport, level: str = "error") -> str:
    return "\n".join(f"{f.check}: {f.message}" for f in report.findings if f.level == level)


def test_when_the_demo_is_checked_then_nothing_stops_it_and_the_costliest_qi_is_named(
    home: Path,
) -> None:
    report, _ = _check()

    assert report.ok, _messages(report)
    notes = _messages(report, "note")
    assert "the costliest quasi-identifier is" in notes
    assert "always predicting the majority class scores" in notes


def test_when_the_batch_is_larger_than_half_the_test_table_then_check_says_so_up_front(
    home: Path,
) -> None:
    # The newcomer's failure 66 s into a run, after the ledger was charged.
    report, _ = _check("training.batch_size=1024", "data.sample_rows=2000")

    assert "reference models train on halves of the test table" in _messages(report)
    assert "fewer than training.batch_size=1024" in _messages(report)


def test_when_a_named_column_is_missing_then_the_key_is_named(home: Path) -> None:
    report, _ = _check("training.features=[age, shoe_size]")

    assert "training.features names ['shoe_size'], not in the training table" in _messages(report)


def test_when_k_cannot_be_reached_then_check_fails_before_training(home: Path) -> None:
    report, _ = _check("anonymization.k=5000", "anonymization.max_suppression=0.0")

    assert "k=5000 (l=1) is not reachable" in _messages(report)


def test_when_the_ledger_has_no_room_then_check_fails_with_the_numbers(
    home: Path, tmp_path: Path
) -> None:
    config = load_config(ROOT / "configs" / "demo.yaml")
    tables = stages.ingest(config)
    PrivacyLedger(tmp_path / "ledger.sqlite3").reserve(
        dataset_sha256=tables.train_sha256,
        privacy_unit="record",
        epsilon=8.0,
        delta=1e-5,
        lifetime_epsilon=10.0,
        lifetime_delta=1e-4,
        run_key="earlier",
    )

    report = preflight(tables, config, load_policy())

    assert "has epsilon 2, delta" in _messages(report)


def test_when_the_utility_floor_is_below_the_majority_class_then_check_warns(home: Path) -> None:
    report, _ = _check(policy={"min_accuracy": 0.5, "min_accuracy_lift": None})

    assert report.ok
    assert "a model that learned nothing passes it" in _messages(report, "warning")


def test_when_dp_is_off_and_the_policy_refuses_it_then_check_fails(home: Path) -> None:
    report, _ = _check("training.dp.enabled=false", policy={"allow_non_private": False})

    assert "the policy refuses it (allow_non_private: false)" in _messages(report)


def test_when_init_marks_are_left_then_check_lists_their_lines(home: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    text = (ROOT / "configs" / "demo.yaml").read_text()
    config_file.write_text(text.replace("target: income", "target: income  # REVIEW: binary?"))
    config = load_config(config_file)

    report = preflight(stages.ingest(config), config, load_policy(), files=(config_file,))

    line = 1 + text.splitlines().index("  target: income")
    assert f"config.yaml: 1 line(s) marked REVIEW by privgate init (lines {line})" in _messages(
        report, "warning"
    )


def test_when_check_runs_from_the_cli_then_it_exits_1_on_an_error_and_0_when_ready(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"]) == 0
    assert "check: ready to run" in capsys.readouterr().out
    assert main(["check", "--set", "training.dp.target_epsilon=5"]) == 1
    assert "above the policy's max_epsilon 3" in capsys.readouterr().out
