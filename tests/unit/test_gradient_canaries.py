"""The white-box audit: gradient canaries through the production clipper, plan, limits.

Small real trainings (`train_model`, book-keeping clipping, Opacus's accountant and
noise) on a synthetic table; the three broken implementations the audit must catch are
planted with monkeypatch into the production classes, never into a copy of the loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import privgate.dp.optimizer
from audits.canaries import make_canaries
from audits.empirical_epsilon import one_run_epsilon_for_counts
from audits.gradient_canaries import (
    CANARY_SCALE,
    INPUT_SCALE,
    GradientCanaries,
    idealized_bound,
    plan,
    weight_capacity,
    white_box_bound,
)
from privgate.config import load_config
from privgate.dp.clipping import BookKeepingClipper
from privgate.dp.training import AuditHooks, build_network, train_model
from privgate.errors import ConfigError

DELTA = 1e-5
ROWS = 4_000
# Encoded like a real table: eight one-hot categorical features and three numeric ones.
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


def _table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, _ = make_canaries(SPEC, ROWS, seed=seed)
    logit = 3 * x[:, 0] - 2 * x[:, 5] + 2 * x[:, -1] - 1
    y = (np.random.default_rng(seed).random(ROWS) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def _training(epsilon: float = 2.0):
    config = load_config(
        None,
        [
            "training.hidden_units=32",
            "training.epochs=8",
            "training.batch_size=256",
            f"training.dp.target_epsilon={epsilon}",
        ],
    )
    return config.training


def _audit(training, *, noise: bool, canaries: int = 1_000, seed: int = 3):
    x, y = _table()
    torch.manual_seed(training.seed)
    network = build_network(model="mlp", input_width=WIDTH, hidden_units=training.hidden_units)
    guess_plan = plan(training.dp.target_epsilon, canaries=canaries, delta=DELTA, confidence=0.95)
    gradient = GradientCanaries(
        network, guess_plan.canaries, max_grad_norm=training.dp.max_grad_norm, seed=seed
    )
    model = train_model(x, y, training=training, audit=AuditHooks(canaries=gradient, noise=noise))
    result = white_box_bound(
        gradient,
        guess_plan,
        claimed_epsilon=model.dp.epsilon_spent,
        noise=noise,
        delta=DELTA,
        confidence=0.95,
    )
    return result, model


def test_when_a_claim_is_planned_then_its_needed_guesses_all_right_just_prove_it() -> None:
    guess_plan = plan(3.0, canaries=1_000, delta=DELTA, confidence=0.95)

    assert guess_plan.claim_provable
    needed = guess_plan.needed_guesses
    assert needed is not None
    assert guess_plan.grid[0] == needed
    assert guess_plan.canaries >= 4 * needed
    level = 1 - 0.05 / 4
    proved = one_run_epsilon_for_counts(
        guesses=needed, correct=needed, delta=DELTA, canaries=guess_plan.canaries, confidence=level
    )
    short = one_run_epsilon_for_counts(
        guesses=needed - 1,
        correct=needed - 1,
        delta=DELTA,
        canaries=guess_plan.canaries,
        confidence=level,
    )
    assert short < 3.0 <= proved


def test_when_a_claim_is_beyond_any_one_run_audit_then_the_plan_says_so() -> None:
    guess_plan = plan(12.0, canaries=1_000, delta=DELTA, confidence=0.95)

    assert not guess_plan.claim_provable
    assert guess_plan.needed_guesses is None
    assert guess_plan.canaries == 8_000  # it tried the most canaries first


def test_when_the_network_holds_fewer_weights_than_wanted_then_the_plan_stops_there() -> None:
    network = build_network(model="mlp", input_width=WIDTH, hidden_units=8)
    capacity = weight_capacity(network)

    small = plan(12.0, canaries=1_000, delta=DELTA, confidence=0.95, capacity=capacity)
    asked = plan(3.0, canaries=5_000, delta=DELTA, confidence=0.95, capacity=capacity)

    assert capacity == WIDTH * 8 + 8
    assert small.canaries == asked.canaries == capacity
    with pytest.raises(ValueError, match="capacity"):
        plan(3.0, canaries=10, delta=DELTA, confidence=0.95, capacity=0)


def test_when_a_canary_row_is_clipped_then_its_gradient_is_exactly_the_clipping_norm() -> None:
    torch.manual_seed(0)
    network = build_network(model="mlp", input_width=WIDTH, hidden_units=8)
    clipper = BookKeepingClipper(network, max_grad_norm=1.5, loss=lambda out, y: out.sum(1) * 0)
    canaries = GradientCanaries(network, 1, max_grad_norm=1.5, seed=0, included=np.array([True]))
    canaries.attach(sample_rate=1.0)
    clipper.extra_rows = canaries

    clipper.clipped_gradient_sum(torch.zeros((0, WIDTH)), torch.zeros(0))

    assert canaries.rows_added == 1
    assert float(clipper.flat.norm()) == pytest.approx(1.5, rel=1e-4)
    assert canaries.scale == CANARY_SCALE * 1.5


def test_when_a_canary_is_excluded_then_it_never_enters_a_batch() -> None:
    network = build_network(model="mlp", input_width=WIDTH, hidden_units=8)
    canaries = GradientCanaries(
        network, 50, max_grad_norm=1.0, seed=1, included=np.zeros(50, dtype=bool)
    )
    canaries.attach(sample_rate=1.0)

    assert canaries.rows() is None


def test_when_the_noise_is_off_then_the_control_proves_the_claim() -> None:
    result, model = _audit(_training(2.0), noise=False)

    assert model.dp.epsilon_spent == math.inf
    assert model.dp.clipping == "bookkeeping"
    assert result.bound.epsilon >= 2.0


def test_when_dp_runs_as_claimed_then_the_white_box_bound_stays_below_the_claim() -> None:
    result, model = _audit(_training(2.0), noise=True)

    assert model.dp.epsilon_spent <= 2.0
    assert result.bound.epsilon < model.dp.epsilon_spent


def test_when_the_noise_is_halved_then_the_bound_rises_towards_the_idealized_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = privgate.dp.optimizer._generate_noise

    def half(std: float, reference: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return original(std=std / 2, reference=reference, **kwargs)

    correct, _ = _audit(_training(2.0), noise=True, seed=5)
    monkeypatch.setattr(privgate.dp.optimizer, "_generate_noise", half)
    broken, model = _audit(_training(2.0), noise=True, seed=5)

    assert broken.bound.epsilon > correct.bound.epsilon
    ideal = np.mean(
        [
            idealized_bound(
                canaries=broken.plan.canaries,
                steps=model.dp.steps,
                sample_rate=model.dp.sample_rate,
                noise_multiplier=model.dp.noise_multiplier / 2,
                grid=broken.plan.grid,
                delta=DELTA,
                confidence=0.95,
                seed=seed,
            ).epsilon
            for seed in range(5)
        ]
    )
    # The transcript score is the idealized mechanism's observation: one run lands
    # within its seed-to-seed spread of the limit (about +-0.4 here), on either side.
    assert abs(broken.bound.epsilon - ideal) < 0.6


def test_when_clipping_is_skipped_for_a_layer_then_the_white_box_bound_refutes_the_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bug: the hidden layer's rows are summed unclipped (the norm still counts it).
    def unclipped_first_layer(self, inputs, output_grads):
        norms = self._norms(inputs, output_grads)
        clip = (self.max_grad_norm / (norms + 1e-6)).clamp_(max=1.0).unsqueeze(1)
        views = iter(self.views)
        for index, (layer, a, g) in enumerate(zip(self.linears, inputs, output_grads, strict=True)):
            weighted = g if index == 0 else g * clip
            next(views).addmm_(weighted.T, a)
            if layer.bias is not None:
                next(views).add_(weighted.sum(0))

    monkeypatch.setattr(BookKeepingClipper, "_clip_and_add", unclipped_first_layer)

    result, model = _audit(_training(2.0), noise=True)

    assert result.bound.epsilon > model.dp.epsilon_spent


def test_when_the_noise_is_off_then_a_score_counts_samplings_whatever_the_data_does() -> None:
    # The records move every weight during training; the score removes their part, so
    # an excluded canary scores exactly 0 and an included one its clipped samplings.
    training = _training(2.0)
    x, y = _table()
    network = build_network(model="mlp", input_width=WIDTH, hidden_units=training.hidden_units)
    canaries = GradientCanaries(network, 300, max_grad_norm=training.dp.max_grad_norm, seed=2)

    model = train_model(x, y, training=training, audit=AuditHooks(canaries=canaries, noise=False))

    scores = canaries.scores()
    on_weight = INPUT_SCALE / math.sqrt(INPUT_SCALE**2 + 1)  # the bias takes the rest
    samplings = scores[canaries.included] / on_weight
    assert canaries.steps_observed == model.dp.steps
    assert np.abs(scores[~canaries.included]).max() < 1e-3
    assert np.abs(samplings - np.round(samplings)).max() < 1e-3
    assert np.round(samplings).sum() == canaries.rows_added
    assert samplings.mean() == pytest.approx(model.dp.steps * model.dp.sample_rate, rel=0.2)


def test_when_dp_is_on_then_an_excluded_canary_scores_the_noise_of_every_step() -> None:
    training = _training(2.0)
    x, y = _table()
    network = build_network(model="mlp", input_width=WIDTH, hidden_units=training.hidden_units)
    canaries = GradientCanaries(network, 600, max_grad_norm=training.dp.max_grad_norm, seed=4)

    model = train_model(x, y, training=training, audit=AuditHooks(canaries=canaries, noise=True))

    excluded = canaries.scores()[~canaries.included]
    expected = model.dp.noise_multiplier * math.sqrt(model.dp.steps)
    assert float(np.std(excluded)) == pytest.approx(expected, rel=0.15)
    assert abs(float(np.mean(excluded))) < 4 * expected / math.sqrt(len(excluded))


def test_when_a_sum_is_released_without_the_records_sum_then_the_canaries_refuse() -> None:
    network = build_network(model="mlp", input_width=WIDTH, hidden_units=8)
    canaries = GradientCanaries(network, 10, max_grad_norm=1.0, seed=0)
    weights = [layer.weight.detach() for layer in network if isinstance(layer, torch.nn.Linear)]

    with pytest.raises(RuntimeError, match="without the records' sum"):
        canaries.released(weights)
    with pytest.raises(RuntimeError, match="not attached"):
        canaries.scores()


def test_when_the_audit_asks_for_what_only_bookkeeping_does_then_training_refuses() -> None:
    training = _training().model_copy(
        update={"dp": _training().dp.model_copy(update={"clipping": "hooks"})}
    )
    x, y = _table()

    with pytest.raises(ConfigError, match="clipping=bookkeeping"):
        train_model(x, y, training=training, audit=AuditHooks(noise=False))


def test_when_the_mechanism_is_ideal_then_the_limit_grows_as_the_noise_falls() -> None:
    kwargs = {"canaries": 2_000, "steps": 400, "sample_rate": 0.02, "grid": (100, 200, 400, 800)}

    noisy = idealized_bound(noise_multiplier=1.0, delta=DELTA, confidence=0.95, seed=0, **kwargs)
    quiet = idealized_bound(noise_multiplier=0.25, delta=DELTA, confidence=0.95, seed=0, **kwargs)

    assert 0.0 <= noisy.epsilon < quiet.epsilon


@pytest.mark.parametrize("seed", range(5))
def test_when_the_canaries_fill_the_network_then_each_has_a_weight_of_its_own(seed: int) -> None:
    # A small table's network (15 inputs, 64 hidden: 1,024 weights) audited with m = its
    # capacity. A random split per layer once put 70 canaries on the 64 output weights:
    # shared weights, an excluded canary scoring its neighbour's signal, a control
    # proving 1.77 of a claimed 3.
    network = build_network(model="mlp", input_width=15, hidden_units=64)
    count = weight_capacity(network)

    canaries = GradientCanaries(network, count, max_grad_norm=1.0, seed=seed)

    cells = {
        (layer, int(row), int(col))
        for layer, (_, rows, cols) in enumerate(canaries._cells)
        for row, col in zip(rows, cols, strict=True)
    }
    assert len(cells) == count
