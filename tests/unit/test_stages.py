"""Stage-level guarantees that a config cannot weaken."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from audits.residual_pii import IdentifierIndex
from privgate import stages
from privgate.config import load_config, load_policy

ROOT = Path(__file__).resolve().parents[2]


def _anonymized(frame: pd.DataFrame) -> stages.Anonymized:
    return stages.Anonymized(frame=frame, report=None, identifiers=IdentifierIndex({}))  # type: ignore[arg-type]


def test_when_the_config_declares_no_quasi_identifiers_then_k_is_still_judged_on_the_policys() -> (
    None
):
    config = load_config(ROOT / "configs" / "demo.yaml", ["anonymization.quasi_identifiers={}"])
    policy = load_policy()
    frame = pd.DataFrame({"age": [20 + i for i in range(30)], "income": ["<=50K"] * 30})

    verification = stages.verify(_anonymized(frame), config, policy)

    assert verification.k_measured == 1


def test_when_a_kept_column_holds_bare_phone_numbers_then_the_rescan_counts_them() -> None:
    config = load_config(ROOT / "configs" / "demo.yaml")
    policy = load_policy()
    frame = pd.DataFrame(
        {
            "backup_phone": [f"617-555-{1000 + i:04d}" for i in range(10)],
            "income": ["<=50K"] * 10,
        }
    )

    verification = stages.verify(_anonymized(frame), config, policy)

    assert verification.residual_findings == {"backup_phone": 10}


def test_when_columns_are_tokens_or_masks_then_the_rescan_passes_them_cell_by_cell() -> None:
    config = load_config(ROOT / "configs" / "demo.yaml")
    policy = load_policy()
    frame = pd.DataFrame(
        {
            "email": ["tok_" + "ab12" * 5] * 5,
            "phone": ["(***) ***-****"] * 5,
            "income": ["<=50K"] * 5,
        }
    )

    verification = stages.verify(_anonymized(frame), config, policy)

    assert verification.residual_total == 0
    assert verification.residual_findings == {}


def test_when_a_retry_would_overspend_the_lifetime_budget_then_it_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from privgate.dp import training
    from privgate.dp.ledger import PrivacyLedger
    from privgate.errors import BudgetExceededError

    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    config = load_config(
        ROOT / "configs" / "demo.yaml", ["training.batch_size=32", "training.epochs=1"]
    )
    policy = load_policy().model_copy(update={"lifetime_epsilon": 5.0})
    tables = stages.Tables(pd.DataFrame(), pd.DataFrame(), "ab" * 32, "cd" * 32)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    stages._train_charged(x, y, tables, config, policy, run_key="flow-run-1")
    trained_again: list[bool] = []
    monkeypatch.setattr(training, "train_model", lambda *a, **k: trained_again.append(True))
    monkeypatch.setattr(stages, "train_model", lambda *a, **k: trained_again.append(True))

    with pytest.raises(BudgetExceededError, match=r"lifetime limit 5\.0"):
        stages._train_charged(x, y, tables, config, policy, run_key="flow-run-1")

    assert trained_again == []
    balance = PrivacyLedger().balance(dataset_sha256="ab" * 32, privacy_unit="record")
    assert balance.entries == 1
    assert 2.9 < balance.spent_epsilon <= 3.0


@pytest.mark.parametrize(("keep_cache", "remembered"), [(False, False), (True, True)])
def test_when_verify_ends_then_the_engine_forgets_raw_texts_unless_a_sweep_keeps_them(
    keep_cache: bool, remembered: bool
) -> None:
    config = load_config(ROOT / "configs" / "demo.yaml")
    policy = load_policy()
    note = "Follow-up call scheduled, nothing else of note for this member today."
    frame = pd.DataFrame({"notes": [note] * 3, "income": ["<=50K"] * 3})
    engine = stages.engine_for(config)
    engine.clear_cache()

    stages.verify(_anonymized(frame), config, policy, keep_cache=keep_cache)

    assert any(key[0] == note for key in engine._cache) is remembered
    engine.clear_cache()


def test_when_the_demo_tables_are_missing_then_the_error_names_the_command_that_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privgate.errors import DataError

    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))

    with pytest.raises(DataError, match=r"data.train_path.*`privgate demo-data` writes it"):
        stages.ingest(load_config(ROOT / "configs" / "demo.yaml"))


def _split_config(tmp_path: Path, frame: pd.DataFrame, fraction: float = 0.25):
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return load_config(
        ROOT / "configs" / "demo.yaml",
        [
            f"data.train_path={path}",
            "data.test_path=null",
            f"data.test_fraction={fraction}",
            "data.target=label",
            "data.positive_labels=[pos]",
            "data.string_columns=[]",
        ],
    ), path


def test_when_no_test_file_is_given_then_a_seeded_stratified_split_is_the_test_table(
    tmp_path: Path,
) -> None:
    from privgate.data.ingest import sha256_file

    labels = ["pos"] * 100 + ["neg"] * 300
    frame = pd.DataFrame({"x": range(400), "label": labels})
    config, path = _split_config(tmp_path, frame)

    first, again = stages.ingest(config), stages.ingest(config)

    assert (len(first.train), len(first.test)) == (300, 100)
    assert (first.test["label"] == "pos").sum() == 25  # stratified: the file's 1 in 4
    assert set(first.train["x"]).isdisjoint(first.test["x"])
    assert first.train_sha256 == sha256_file(path)  # the ledger charges the whole file
    assert first.test_sha256 == again.test_sha256 != first.train_sha256
    assert first.test.equals(again.test)


def test_when_a_class_is_too_rare_to_split_then_the_error_names_the_target(
    tmp_path: Path,
) -> None:
    from privgate.errors import DataError

    frame = pd.DataFrame({"x": range(50), "label": ["pos"] + ["neg"] * 49})
    config, _ = _split_config(tmp_path, frame)

    with pytest.raises(DataError, match=r"'label' \(data.target\) has a class with 1 row"):
        stages.ingest(config)


def test_when_both_or_neither_test_source_is_given_then_the_config_is_refused() -> None:
    from privgate.errors import ConfigError

    for overrides in (["data.test_fraction=0.2"], ["data.test_path=null"]):
        with pytest.raises(ConfigError, match=r"exactly one of data\.test_path"):
            load_config(ROOT / "configs" / "demo.yaml", overrides)


def test_when_the_policy_refuses_non_private_training_then_it_is_recorded_and_nothing_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    import numpy as np

    from privgate.dp.ledger import PrivacyLedger
    from privgate.errors import PolicyRefusedError

    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    config = load_config(
        ROOT / "configs" / "demo.yaml", ["training.dp.enabled=false", "training.batch_size=16"]
    )
    refusing = load_policy().model_copy(update={"allow_non_private": False})
    digest = hashlib.sha256(b"table").hexdigest()
    tables = stages.Tables(pd.DataFrame(), pd.DataFrame(), digest, digest)
    x, y = np.zeros((64, 3), np.float32), np.tile([0.0, 1.0], 32).astype(np.float32)

    with pytest.raises(PolicyRefusedError, match="allow_non_private: false"):
        stages._train_charged(x, y, tables, config, refusing, run_key="r")

    model = stages._train_charged(x, y, tables, config, load_policy(), run_key="r2")
    assert not model.dp.enabled
    decisions = [r.decision for r in PrivacyLedger().non_private(dataset_sha256=digest)]
    assert decisions == ["refused", "allowed"]
