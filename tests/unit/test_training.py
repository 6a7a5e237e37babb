"""Feature encoding from declared domains, and DP-SGD training with real Opacus."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from privgate.config import GroupHierarchy, IntervalHierarchy, TrainingConfig
from privgate.data.features import build_feature_spec, encode, encode_labels, input_width
from privgate.data.validation import ColumnDomain
from privgate.dp.training import accuracy, build_network, predict_logits, train_model
from privgate.errors import ConfigError

DOMAINS = {
    "age": ColumnDomain(kind="numeric", values=None, min_value=17, max_value=90),
    "sex": ColumnDomain(
        kind="categorical", values=("Female", "Male"), min_value=None, max_value=None
    ),
    "gain": ColumnDomain(kind="numeric", values=None, min_value=0, max_value=99999),
}


def test_when_a_category_never_occurs_in_the_data_then_it_still_has_a_column() -> None:
    spec = build_feature_spec(features=["sex"], domains=DOMAINS, quasi_identifiers={}, levels={})

    x = encode(pd.DataFrame({"sex": ["Male", "Male"]}), spec, generalized=False)

    assert x.tolist() == [[0.0, 1.0], [0.0, 1.0]]  # vocabulary from the domain, not the rows


def test_when_a_value_is_out_of_vocabulary_then_it_encodes_as_zeros() -> None:
    spec = build_feature_spec(features=["sex"], domains=DOMAINS, quasi_identifiers={}, levels={})

    assert encode(pd.DataFrame({"sex": ["Other"]}), spec, generalized=False).tolist() == [
        [0.0, 0.0]
    ]


def test_when_a_numeric_feature_is_log_scaled_then_it_maps_into_unit_range() -> None:
    spec = build_feature_spec(
        features=["gain"], domains=DOMAINS, quasi_identifiers={}, levels={}, log_scaled=["gain"]
    )

    x = encode(pd.DataFrame({"gain": [0, 99999, 500_000]}), spec, generalized=False)

    assert x[:, 0].tolist() == pytest.approx([0.0, 1.0, 1.0])


def test_when_a_quasi_identifier_is_generalized_then_raw_and_generalized_inputs_agree() -> None:
    hierarchy = IntervalHierarchy(widths=[10])
    spec = build_feature_spec(
        features=["age", "sex"],
        domains=DOMAINS,
        quasi_identifiers={"age": hierarchy},
        levels={"age": 1},
    )

    raw = encode(
        pd.DataFrame({"age": [37, 52], "sex": ["Female", "Male"]}), spec, generalized=False
    )
    pre = encode(
        pd.DataFrame({"age": ["30-39", "50-59"], "sex": ["Female", "Male"]}), spec, generalized=True
    )

    assert np.array_equal(raw, pre)
    assert input_width(spec) == raw.shape[1] == 9 + 2  # ranges 10-19 .. 90-99, and sex


def test_when_a_group_hierarchy_is_at_top_level_then_the_feature_is_constant() -> None:
    spec = build_feature_spec(
        features=["sex"],
        domains=DOMAINS,
        quasi_identifiers={"sex": GroupHierarchy()},
        levels={"sex": 1},
    )

    assert spec["features"][0]["vocabulary"] == ["*"]


def test_when_a_feature_has_no_declared_domain_then_the_error_names_it() -> None:
    with pytest.raises(ConfigError, match="'zip'"):
        build_feature_spec(features=["zip"], domains=DOMAINS, quasi_identifiers={}, levels={})


def test_when_labels_are_encoded_then_only_positive_labels_are_one() -> None:
    labels = encode_labels(pd.Series([">50K", "<=50K", ">50K.", " >50K"]), [">50K", ">50K."])

    assert labels.tolist() == [1.0, 0.0, 1.0, 1.0]


def _toy(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    return x, y


def test_when_training_with_dp_then_epsilon_meets_the_target_and_noise_is_added() -> None:
    x, y = _toy()
    config = TrainingConfig(
        features=["f"], model="logistic", epochs=3, batch_size=128, learning_rate=0.1
    )

    trained = train_model(x, y, training=config)

    dp = trained.dp
    assert dp.enabled
    assert dp.poisson_sampling
    assert 0 < dp.epsilon <= config.dp.target_epsilon * 1.01
    assert dp.noise_multiplier > 0
    assert dp.sample_rate == pytest.approx(1 / math.ceil(2000 / 128))  # Opacus: 1 / len(loader)
    assert dp.steps > 0
    assert len(trained.epoch_loss) == 3
    assert accuracy(trained.network, x, y) > 0.8


def test_when_dp_is_disabled_then_epsilon_is_infinite() -> None:
    x, y = _toy()
    config = TrainingConfig(
        features=["f"], model="mlp", epochs=2, batch_size=128, dp={"enabled": False}
    )

    trained = train_model(x, y, training=config)

    assert math.isinf(trained.dp.epsilon)
    assert not trained.dp.enabled
    assert trained.dp.mlflow_params()["dp.epsilon"] == "inf"


def test_when_dp_is_off_then_the_same_seed_reproduces_the_model() -> None:
    x, y = _toy()
    config = TrainingConfig(
        features=["f"], model="mlp", epochs=1, batch_size=256, dp={"enabled": False}
    )

    first = predict_logits(train_model(x, y, training=config).network, x)
    second = predict_logits(train_model(x, y, training=config).network, x)

    assert np.allclose(first, second)


def test_when_dp_is_on_then_the_published_seed_does_not_reproduce_the_noise() -> None:
    # The config seed is public; DP noise and Poisson sampling predictable from it would
    # let anyone subtract the noise. Two runs with one seed must differ.
    x, y = _toy()
    config = TrainingConfig(features=["f"], model="logistic", epochs=1, batch_size=256)

    first = predict_logits(train_model(x, y, training=config).network, x)
    second = predict_logits(train_model(x, y, training=config).network, x)

    assert not np.allclose(first, second)


def test_when_there_are_fewer_rows_than_a_batch_then_training_refuses() -> None:
    x, y = _toy(n=50)

    with pytest.raises(ConfigError, match="batch_size"):
        train_model(x, y, training=TrainingConfig(features=["f"], batch_size=128))


def test_when_the_network_is_built_then_it_holds_no_batchnorm() -> None:
    network = build_network(model="mlp", input_width=10, hidden_units=8)

    assert not any("BatchNorm" in type(m).__name__ for m in network.modules())
