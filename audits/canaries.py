"""The one-run canary audit (Steinke, Nasr and Jagielski 2023), black box, input space.

m synthetic canary records are drawn from the feature spec's public domains (one value
per categorical feature, a uniform value per numeric one) with coin-flip labels, so no
real person is among them and each is unlike the population in a way a model must
memorize to fit. Each canary joins a separate *audit run* independently with probability
1/2; the audit run trains with the target's training function (the production code:
same clipping, noise, sampler and accountant) on the population table plus the included
canaries. The trained model scores every canary by its log-odds of the canary's label;
`one_run_epsilon_lower_bound` turns the guesses on the extreme scores into an epsilon
lower bound. A bound above the epsilon the audit run claims means the training code does
not deliver its guarantee.

The same canaries trained without DP form the control: if even that run proves little,
the audit has no power on this recipe and says so.

Canaries, their inclusion and their scores stay here: results carry counts and epsilon.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from audits.empirical_epsilon import EpsilonLowerBound, one_run_epsilon_lower_bound
from audits.gradient_canaries import WhiteBoxAudit
from audits.membership_inference import true_label_probability

# Trains on (x, y) and returns the network and the epsilon its accountant claims.
TrainFn = Callable[[np.ndarray, np.ndarray], tuple[nn.Module, float]]


@dataclass(frozen=True)
class CanaryAudit:
    """One canary run's aggregates: the bound, the claim it is judged against, its cost."""

    # None when the run carried gradient canaries only (audit.canaries = 0).
    bound: EpsilonLowerBound | None
    claimed_epsilon: float
    private: bool
    rows_trained: int
    seconds: float
    # The white-box audit of the same run (gradient canaries), when it ran.
    white_box: WhiteBoxAudit | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (an infinite claim, a non-private run, is null)."""
        claimed = self.claimed_epsilon if np.isfinite(self.claimed_epsilon) else None
        return {
            **asdict(self),
            "bound": None if self.bound is None else self.bound.to_dict(),
            "claimed_epsilon": claimed,
            "white_box": None if self.white_box is None else self.white_box.to_dict(),
        }


def make_canaries(
    feature_spec: dict[str, Any], count: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return `count` synthetic encoded records and coin-flip labels from the public domains.

    Raises:
        ValueError: when `count` is not positive.
    """
    if count <= 0:
        raise ValueError(f"the canary audit needs at least one canary, got {count}")
    rng = np.random.default_rng(seed)
    blocks = []
    for feature in feature_spec["features"]:
        if feature["kind"] == "onehot":
            width = len(feature["vocabulary"])
            block = np.zeros((count, width), dtype=np.float32)
            block[np.arange(count), rng.integers(width, size=count)] = 1.0
        else:  # numeric features are encoded into [0, 1]
            block = rng.random((count, 1), dtype=np.float32)
        blocks.append(block)
    labels = rng.integers(2, size=count).astype(np.float32)
    return np.hstack(blocks), labels


def canary_audit(
    population: tuple[np.ndarray, np.ndarray],
    canaries: tuple[np.ndarray, np.ndarray],
    train: TrainFn,
    *,
    private: bool,
    delta: float,
    confidence: float,
    seed: int,
) -> CanaryAudit:
    """Train once on the population plus a random half of the canaries; bound epsilon.

    Args:
        population: Encoded rows the audit run trains on besides the canaries.
        canaries: From `make_canaries`.
        train: The training function under audit.
        private: Whether `train` claims a DP guarantee (False for the control).
        delta: The delta at which epsilon is bounded (the claim's delta).
        confidence: Confidence of the bound.
        seed: Draws which canaries are included.
    """
    started = time.perf_counter()
    (pop_x, pop_y), (canary_x, canary_y) = population, canaries
    included = np.random.default_rng(seed).random(len(canary_x)) < 0.5
    x = np.concatenate([pop_x, canary_x[included]])
    y = np.concatenate([pop_y, canary_y[included]])
    network, claimed = train(x, y)
    bound = one_run_epsilon_lower_bound(
        canary_scores(network, canary_x, canary_y), included, delta=delta, confidence=confidence
    )
    return CanaryAudit(
        bound=bound,
        claimed_epsilon=claimed,
        private=private,
        rows_trained=len(x),
        seconds=time.perf_counter() - started,
    )


def canary_scores(network: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the model's log-odds of each canary's own label (higher: more memorized)."""
    with torch.no_grad():
        network.eval()
        logits = network(torch.from_numpy(x)).squeeze(-1).numpy()
    p = true_label_probability(logits, y)
    return np.log(p) - np.log1p(-p)
