"""The audit stage: canary audit through the production training code, attacks, gates.

The canary tests train real models with `privgate.dp.training.train_model` (Opacus
accountant, book-keeping clipping, the DP optimizer's noise) on a small synthetic table
with a recipe that memorizes (wide MLP, many epochs, small batches): the regime in which
a broken noise step must show.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import privgate.dp.optimizer
from audits.canaries import make_canaries
from audits.gates import Evidence, run_gate, run_gates
from audits.suite import AuditReport, attack_names, run_attacks
from privgate import stages
from privgate.config import PipelineConfig, load_config, load_policy
from privgate.dp.training import train_model
from privgate.errors import ConfigError

SPEC = {
    "version": 1,
    "features": [
        *({"name": f"c{i}", "kind": "onehot", "vocabulary": list("abcdef")} for i in range(8)),
        *(
            {"name": f"n{i}", "kind": "numeric", "min": 0.0, "max": 1.0, "log": False}
            for i in range(3)
        ),
    ],
}
WIDTH = 8 * 6 + 3


def _config(*overrides: str, **training: object) -> PipelineConfig:
    return load_config(None, [*overrides, *(f"training.{k}={v}" for k, v in training.items())])


# A recipe that memorizes: the audit's power is measured on it.
MEMORIZING = {
    "hidden_units": 256,
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 0.01,
    "dp.target_epsilon": 1.0,
}


def _table(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, _ = make_canaries(SPEC, rows, seed=seed)
    logit = 3 * x[:, 0] - 2 * x[:, 5] + 2 * x[:, -1] - 1
    y = (np.random.default_rng(seed).random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def _trained(config: PipelineConfig, *, population_rows: int = 400) -> stages.Trained:
    members, non_members = _table(600, 1), _table(600, 2)
    model = train_model(*members, training=config.training)
    return stages.Trained(
        model=model,
        feature_spec=SPEC,
        test_accuracy=0.0,
        baseline_accuracy=None,
        members=members,
        non_members=non_members,
        population=_table(population_rows, 3),
    )


def _no_noise(std: float, reference: torch.Tensor, **_: object) -> torch.Tensor:
    return torch.zeros_like(reference)


def test_when_the_noise_is_switched_off_while_claiming_epsilon_1_then_the_gate_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config("audit.attacks=[loss_threshold]", **MEMORIZING)
    trained = _trained(config)
    # The bug under test: the DP optimizer adds no noise; the accountant still claims.
    monkeypatch.setattr(privgate.dp.optimizer, "_generate_noise", _no_noise)

    canary = stages.canary_run(trained, config, private=True)
    report = stages.audit(trained, config, reference_parts=[], canary=canary, control=None)

    assert canary is not None
    assert canary.claimed_epsilon <= 1.0
    assert canary.bound.canaries == 1000
    evidence = stages_evidence(report)
    result = run_gate("dp_consistency", evidence, load_policy())
    assert not result.passed
    # Both canary audits see it; the gate reports the bound that refutes the claim most.
    assert canary.white_box is not None
    assert canary.white_box.bound.epsilon > 1.0
    assert result.value == pytest.approx(max(canary.bound.epsilon, canary.white_box.bound.epsilon))


def test_when_dp_is_on_at_epsilon_1_then_the_canary_bound_stays_below_the_claim() -> None:
    config = _config("audit.attacks=[loss_threshold]", **MEMORIZING)
    trained = _trained(config)

    canary = stages.canary_run(trained, config, private=True)
    control = stages.canary_run(trained, config, private=False)
    report = stages.audit(trained, config, reference_parts=[], canary=canary, control=control)

    assert canary is not None
    assert control is not None
    assert canary.bound.epsilon < canary.claimed_epsilon <= 1.0
    assert canary.white_box is not None
    assert canary.white_box.bound.epsilon < canary.claimed_epsilon
    # The same recipe with the noise off proves more than the claim: the audit could
    # have caught a breach of it.
    assert control.white_box is not None
    assert control.white_box.bound.epsilon >= 1.0
    assert control.claimed_epsilon == math.inf
    evidence = stages_evidence(report)
    assert run_gate("dp_consistency", evidence, load_policy()).passed
    assert run_gate("audit_power", evidence, load_policy()).passed


def stages_evidence(report: AuditReport) -> Evidence:
    return Evidence(epsilon=report.claimed_epsilon, **stages.audit_evidence(report))


def test_when_canaries_are_drawn_then_each_is_a_valid_record_of_the_public_domains() -> None:
    x, y = make_canaries(SPEC, 500, seed=0)

    assert x.shape == (500, WIDTH)
    assert x.dtype == np.float32
    for block in range(8):
        onehot = x[:, 6 * block : 6 * block + 6]
        assert np.all(onehot.sum(1) == 1)
        assert set(np.unique(onehot)) == {0.0, 1.0}
    assert x[:, 48:].min() >= 0
    assert x[:, 48:].max() <= 1
    assert 0.4 < y.mean() < 0.6
    with pytest.raises(ValueError, match="at least one canary"):
        make_canaries(SPEC, 0, seed=0)


def test_when_the_full_audit_runs_then_every_attack_reports_aggregates_only() -> None:
    config = _config(
        "audit.canaries=200", "audit.max_records=300", hidden_units=16, epochs=2, batch_size=64
    )
    trained = _trained(config)

    report = stages.run_audit(trained, config)

    assert [a.attack for a in report.attacks] == ["loss_threshold", "rmia", "lira_offline"]
    assert report.reference_models == 4
    assert report.worst_decile is not None
    assert report.worst_decile.members >= 10
    assert report.canary is not None
    assert report.control is not None
    payload = report.to_dict()  # the CLI's key contract is checked end to end
    assert payload["mia_auc"] == max(a["mia_auc"] for a in payload["attacks"])
    # No per-record array anywhere: the longest list is the fixed ROC grid.
    assert _longest_list(payload) < 100
    json.dumps(payload, allow_nan=False)
    gates = run_gates(stages_evidence(report), load_policy(), ["dp_consistency"])
    assert gates.passed


def _longest_list(node: object) -> int:
    if isinstance(node, dict):
        return max((_longest_list(v) for v in node.values()), default=0)
    if isinstance(node, list | tuple):
        return max([len(node), *(_longest_list(v) for v in node)])
    return 0


def test_when_the_test_table_is_too_small_for_reference_models_then_the_error_names_it() -> None:
    config = _config(hidden_units=8, epochs=1, batch_size=64, **{"dp.enabled": "false"})
    trained = _trained(config, population_rows=100)

    with pytest.raises(ConfigError, match=r"data\.test_path.*training\.batch_size=64"):
        stages.reference_predictions(trained, config, group=0)


def test_when_attacks_are_misnamed_or_lack_references_then_run_attacks_refuses() -> None:
    p = np.full(20, 0.7)
    kwargs = {"members": 10, "claimed_epsilon": 1.0, "delta": 1e-5, "confidence": 0.95}

    with pytest.raises(ValueError, match="unknown attack 'nope'"):
        run_attacks(p, None, attacks=["nope"], **kwargs)
    with pytest.raises(ValueError, match="need reference-model probabilities"):
        run_attacks(p, None, attacks=["rmia"], **kwargs)
    assert set(attack_names()) >= {"loss_threshold", "rmia", "lira_offline"}


def test_when_reference_groups_exceed_models_then_the_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="reference_groups"):
        load_config(None, ["audit.reference_models=2", "audit.reference_groups=3"])


def test_when_models_are_split_into_groups_then_every_model_is_trained_once() -> None:
    config = load_config(None, ["audit.reference_models=7", "audit.reference_groups=3"])

    assert stages.reference_group_sizes(config) == [3, 2, 2]
    only_loss = load_config(None, ["audit.attacks=[loss_threshold]"])
    assert stages.reference_group_sizes(only_loss) == []
    assert math.isfinite(config.audit.confidence)
