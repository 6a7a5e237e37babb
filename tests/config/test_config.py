"""Config tests: every valid/ file loads, every invalid/ file raises a ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from privgate.config import PipelineConfig, apply_overrides, load_config, load_policy
from privgate.errors import ConfigError

HERE = Path(__file__).parent
VALID = sorted((HERE / "valid").glob("*.yaml"))
INVALID = sorted((HERE / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_when_config_is_valid_then_it_loads(path: Path) -> None:
    config = load_config(path)

    assert isinstance(config, PipelineConfig)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_when_config_is_invalid_then_a_config_error_names_the_file(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert path.name in str(caught.value)


def test_when_a_key_is_misspelled_then_the_error_names_it() -> None:
    with pytest.raises(ConfigError, match=r"training\.epoch"):
        load_config(HERE / "invalid" / "unknown_key.yaml")


def test_when_dp_is_disabled_by_override_then_the_config_says_so() -> None:
    config = load_config(HERE / "valid" / "demo.yaml", ["training.dp.enabled=false"])

    assert config.training.dp.enabled is False


def test_when_an_override_sets_a_list_then_it_is_parsed_as_yaml() -> None:
    config = load_config(HERE / "valid" / "minimal.yaml", ["training.features=[age, sex]"])

    assert config.training.features == ["age", "sex"]


def test_when_an_override_has_no_equals_sign_then_it_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        apply_overrides({}, ["training.epochs"])


def test_when_an_override_walks_into_a_scalar_then_it_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"training": {"epochs": 3}}, ["training.epochs.x=1"])


def test_when_an_override_value_is_invalid_then_the_error_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"training\.dp\.target_epsilon"):
        load_config(HERE / "valid" / "demo.yaml", ["training.dp.target_epsilon=zero"])


def test_when_the_config_file_is_missing_then_the_error_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_when_the_config_changes_then_its_hash_changes() -> None:
    base = load_config(HERE / "valid" / "demo.yaml")
    other = load_config(HERE / "valid" / "demo.yaml", ["anonymization.k=10"])

    assert base.sha256() != other.sha256()
    assert base.sha256() == load_config(HERE / "valid" / "demo.yaml").sha256()


def test_when_the_bundled_policy_loads_then_every_threshold_is_set() -> None:
    policy = load_policy()

    assert policy.max_epsilon == 3.0
    assert policy.min_k == 5
    assert policy.max_residual_pii_findings == 0


def test_when_the_policy_has_an_unknown_key_then_it_is_rejected(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        (HERE.parents[1] / "configs" / "policy.yaml").read_text() + "\nallow_unapproved: true\n"
    )
    with pytest.raises(ConfigError, match="allow_unapproved"):
        load_policy(policy)


def test_when_an_override_names_a_policy_file_then_it_is_refused() -> None:
    with pytest.raises(ConfigError, match="policy_file"):
        load_config(HERE / "valid" / "demo.yaml", ["policy_file=/tmp/weak.yaml"])


def test_every_config_field_is_described_for_the_ui_form() -> None:
    def undescribed(model: type, prefix: str = "") -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                missing += undescribed(annotation, f"{prefix}{name}.")
            elif not field.description:
                missing.append(prefix + name)
        return missing

    assert undescribed(PipelineConfig) == []
