"""DP-SGD keeps its promise: accounting matches the loop, noise matches sigma.

Real Opacus throughout; tests in the manner of Opacus's own grad_sample and noise-level
tests.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.data_loader import DPDataLoader
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from privgate.config import DpConfig, TrainingConfig
from privgate.dp.training import (
    build_network,
    check_accounting,
    privatize,
    rdp_epsilon,
    train_model,
)
from privgate.errors import AccountingError


def _dataset(n: int = 512, width: int = 6, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, width, generator=generator)
    return TensorDataset(x, (x[:, 0] > 0).float())


def test_when_the_rdp_accountant_is_asked_a_known_case_then_it_reproduces_it() -> None:
    # sigma 1.5, sample rate 0.04, 2,250 steps, delta 1e-5: RDP epsilon 7.329.
    epsilon = rdp_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5)

    assert epsilon == pytest.approx(7.329, abs=5e-4)


def test_when_training_with_dp_then_both_accountants_meet_the_target() -> None:
    dataset = _dataset(n=2000)
    x, y = dataset.tensors
    config = TrainingConfig(features=["f"], model="logistic", epochs=2, batch_size=128)

    dp = train_model(x.numpy(), y.numpy(), training=config).dp

    assert dp.accountant == "prv"
    assert dp.accountant_cross_check == "rdp"
    assert 0 < dp.epsilon <= config.dp.target_epsilon
    assert 0 < dp.epsilon_cross_check <= config.dp.target_epsilon * 1.001
    assert dp.epsilon_spent == max(dp.epsilon, dp.epsilon_cross_check)
    assert "dp.epsilon_cross_check" in dp.mlflow_params()


def test_when_the_loader_has_a_weighted_sampler_then_privatize_refuses() -> None:
    dataset = _dataset()
    weights = torch.ones(len(dataset))
    loader = DataLoader(
        dataset, batch_size=32, sampler=WeightedRandomSampler(weights, num_samples=len(dataset))
    )
    network = build_network(model="logistic", input_width=6, hidden_units=1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)

    with pytest.raises(AccountingError, match="WeightedRandomSampler"):
        privatize(network, optimizer, loader, dp=DpConfig(), epochs=1)


def test_when_the_model_has_batchnorm_then_privatize_refuses_and_suggests_groupnorm() -> None:
    loader = DataLoader(_dataset(), batch_size=32)
    network = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)

    with pytest.raises(AccountingError, match="GroupNorm"):
        privatize(network, optimizer, loader, dp=DpConfig(), epochs=1)


def test_when_the_sampler_rate_differs_from_the_accountants_then_the_run_is_refused() -> None:
    # 0.3 draws ceil(1/0.3) = 3 batches per epoch: the accountant would be told 1/3.
    loader = DPDataLoader(_dataset(), sample_rate=0.3)

    with pytest.raises(
        AccountingError, match=r"probability 0\.3 but the accountant is told 0\.333"
    ):
        check_accounting(loader, SimpleNamespace(expected_batch_size=154), n=512)


def test_when_the_expected_batch_does_not_match_rate_times_n_then_the_run_is_refused() -> None:
    loader = DPDataLoader(_dataset(), sample_rate=0.125)

    with pytest.raises(AccountingError, match="expected batch size 32"):
        check_accounting(loader, SimpleNamespace(expected_batch_size=32), n=512)


def test_when_the_private_loop_is_not_poisson_then_the_run_is_refused() -> None:
    with pytest.raises(AccountingError, match="Poisson"):
        check_accounting(DataLoader(_dataset(), batch_size=32), SimpleNamespace(), n=512)


@pytest.mark.parametrize(
    ("clipping", "physical"),
    [("bookkeeping", 4096), ("bookkeeping", 50), ("ghost", 4096), ("hooks", 4096), ("hooks", 50)],
)
def test_when_gradients_are_zero_then_the_update_is_exactly_the_calibrated_noise(
    clipping: str, physical: int
) -> None:
    # With zero inputs every per-sample gradient is zero, so one SGD step (lr 1) moves
    # each weight by noise / expected batch size: N(0, (sigma * C / B)^2). A batch split
    # into physical chunks must still be noised once (sqrt(chunks) times more would show).
    n, width, batch = 4096, 2000, 256
    loader = DataLoader(TensorDataset(torch.zeros(n, width), torch.zeros(n)), batch_size=batch)
    network = nn.Sequential(nn.Linear(width, 1, bias=False))
    nn.init.zeros_(network[0].weight)
    optimizer = torch.optim.SGD(network.parameters(), lr=1.0)
    dp = DpConfig(target_epsilon=3.0, max_grad_norm=2.0, clipping=clipping)
    loop = privatize(network, optimizer, loader, dp=dp, epochs=1, max_physical_batch_size=physical)

    x, y = next(iter(loop.loader))
    loop.step(x, y)

    optimizer = loop.optimizer
    expected = optimizer.noise_multiplier * dp.max_grad_norm / optimizer.expected_batch_size
    assert float(loop.model[0].weight.detach().std()) == pytest.approx(expected, rel=0.08)
    assert loop.optimizer.expected_batch_size == pytest.approx(n * loop.loader.sample_rate, abs=1)
    assert sum(entry[2] for entry in loop.engine.accountant.history) == 1


def test_when_per_sample_gradients_are_computed_then_they_equal_microbatch_gradients() -> None:
    torch.manual_seed(3)
    network = build_network(model="mlp", input_width=6, hidden_units=16)
    x, y = _dataset(n=8).tensors
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    reference = []
    for i in range(len(x)):
        network.zero_grad()
        loss_fn(network(x[i : i + 1]).squeeze(-1), y[i : i + 1]).backward()
        reference.append([p.grad.detach().clone() for p in network.parameters()])

    wrapped = GradSampleModule(network, loss_reduction="sum")
    wrapped.zero_grad()
    loss_fn(wrapped(x).squeeze(-1), y).backward()

    for index, parameter in enumerate(wrapped.parameters()):
        expected = torch.stack([grads[index] for grads in reference])
        assert torch.allclose(parameter.grad_sample, expected, atol=1e-6, rtol=1e-5)


def test_when_epsilon_is_not_finite_then_the_accountant_result_is_rejected() -> None:
    from privgate.dp.training import _finite_positive

    for bad in (math.nan, math.inf, 0.0, -1.0):
        with pytest.raises(AccountingError, match="finite positive"):
            _finite_positive(bad, "prv")
    assert _finite_positive(np.float64(2.5), "prv") == 2.5
