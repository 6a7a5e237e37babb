"""Book-keeping clipping gives Opacus's clipped per-sample gradient sums, faster.

The reference is Opacus itself: `GradSampleModule` per-sample gradients clipped and
summed by `DPOptimizer.clip_and_accumulate`, and Opacus's ghost clipping.
"""

from __future__ import annotations

import copy

import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from privgate.config import DpConfig, TrainingConfig
from privgate.dp.clipping import BookKeepingClipper, supports
from privgate.dp.training import _bce, build_network, privatize, train_model
from privgate.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def _batch(n: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # Rows of very different scale: some per-sample norms fall below C, most above.
    scale = torch.logspace(-2, 1, n).unsqueeze(1)
    x = torch.randn(n, width, generator=generator) * scale
    return x, (torch.rand(n, generator=generator) > 0.5).float()


def _opacus_clipped_sums(network: nn.Module, x, y, *, max_grad_norm: float) -> list[torch.Tensor]:
    wrapped = GradSampleModule(copy.deepcopy(network), loss_reduction="sum")
    optimizer = DPOptimizer(
        torch.optim.SGD(wrapped.parameters(), lr=1.0),
        noise_multiplier=0.0,
        max_grad_norm=max_grad_norm,
        expected_batch_size=len(x),
        loss_reduction="sum",
    )
    _bce(wrapped(x), y).sum().backward()
    optimizer.clip_and_accumulate()
    return [p.summed_grad for p in wrapped.parameters()]


def _bookkeeping_sums(network: nn.Module, x, y, **kwargs) -> list[torch.Tensor]:
    clipper = BookKeepingClipper(copy.deepcopy(network), loss=_bce, **kwargs)
    clipper.clipped_gradient_sum(x, y)
    return [p.grad for layer in clipper.linears for p in layer.parameters()]


def _relative_errors(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> list[float]:
    return [float((a - b).norm() / b.norm()) for a, b in zip(ours, reference, strict=True)]


@pytest.mark.parametrize(
    ("model", "hidden", "physical"),
    [("mlp", 64, 4096), ("mlp", 256, 37), ("logistic", 1, 4096), ("mlp_poly", 32, 4096)],
)
def test_when_clipping_by_bookkeeping_then_the_sums_equal_opacus_to_1e_5(
    model: str, hidden: int, physical: int
) -> None:
    torch.manual_seed(1)
    network = build_network(model=model, input_width=108, hidden_units=hidden)
    x, y = _batch(300, 108)

    reference = _opacus_clipped_sums(network, x, y, max_grad_norm=0.5)
    ours = _bookkeeping_sums(network, x, y, max_grad_norm=0.5, max_physical_batch_size=physical)

    assert max(_relative_errors(ours, reference)) < 1e-5


def test_when_norms_are_computed_then_they_equal_opacus_per_sample_gradient_norms() -> None:
    torch.manual_seed(2)
    network = build_network(model="mlp", input_width=20, hidden_units=16)
    x, y = _batch(64, 20)
    wrapped = GradSampleModule(copy.deepcopy(network), loss_reduction="sum")
    _bce(wrapped(x), y).sum().backward()
    expected = torch.stack(
        [p.grad_sample.reshape(len(x), -1).norm(dim=1) for p in wrapped.parameters()], dim=1
    ).norm(dim=1)

    clipper = BookKeepingClipper(network, max_grad_norm=1.0, loss=_bce)
    norms = clipper.per_sample_norms(x, y)

    assert torch.allclose(norms, expected, rtol=1e-5, atol=1e-7)
    assert (norms < 1.0).any()  # both sides of C are exercised
    assert (norms > 1.0).any()


def test_when_one_private_step_runs_on_each_path_then_bookkeeping_agrees_with_opacus() -> None:
    # The two fast paths against each other, through the whole private step: same init,
    # same batch, noise drawn from the same seed, one SGD step each.
    x, y = _batch(256, 30, seed=4)
    dataset = torch.utils.data.TensorDataset(x, y)
    weights = {}
    for clipping in ("bookkeeping", "ghost", "hooks"):
        torch.manual_seed(5)
        network = build_network(model="mlp", input_width=30, hidden_units=8)
        loader = torch.utils.data.DataLoader(dataset, batch_size=64)
        loop = privatize(
            network,
            torch.optim.SGD(network.parameters(), lr=1.0),
            loader,
            dp=DpConfig(clipping=clipping, max_grad_norm=0.3),
            epochs=1,
        )
        loop.optimizer.noise_multiplier = 0.0  # compare the clipped sums, not the noise
        loop.step(x, y)
        weights[clipping] = [p.detach().clone() for p in loop.model.parameters()]

    for other in ("ghost", "hooks"):
        assert max(_relative_errors(weights["bookkeeping"], weights[other])) < 1e-5


def test_when_the_batch_is_empty_then_the_gradient_sum_is_zero() -> None:
    network = build_network(model="mlp", input_width=5, hidden_units=4)
    clipper = BookKeepingClipper(network, max_grad_norm=1.0, loss=_bce)

    loss = clipper.clipped_gradient_sum(torch.zeros(0, 5), torch.zeros(0))

    assert loss == 0.0
    assert all(float(p.grad.abs().sum()) == 0.0 for p in network.parameters())


def test_when_the_model_has_a_layer_bookkeeping_cannot_treat_then_it_names_it() -> None:
    network = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))

    assert not supports(network)
    with pytest.raises(ConfigError, match=r"LayerNorm layer\. Use clipping=hooks"):
        BookKeepingClipper(network, max_grad_norm=1.0, loss=_bce)


def test_when_rows_are_not_two_dimensional_then_bookkeeping_refuses() -> None:
    clipper = BookKeepingClipper(nn.Sequential(nn.Linear(4, 1)), max_grad_norm=1.0, loss=_bce)

    with pytest.raises(ValueError, match=r"2-D rows, got shape \(2, 3, 4\)"):
        clipper.clipped_gradient_sum(torch.zeros(2, 3, 4), torch.zeros(2))


def test_when_secure_mode_is_asked_without_torchcsprng_then_the_config_is_named() -> None:
    try:
        import torchcsprng  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torchcsprng is installed here")
    x, y = _batch(200, 4)
    training = TrainingConfig(
        features=["f"], model="logistic", epochs=1, batch_size=50, dp=DpConfig(secure_mode=True)
    )

    with pytest.raises(ConfigError, match=r"secure_mode.*torchcsprng"):
        train_model(x.numpy(), y.numpy(), training=training)


@pytest.mark.parametrize("clipping", ["bookkeeping", "ghost", "hooks"])
def test_when_training_through_each_clipping_path_then_the_accountant_counts_every_step(
    clipping: str,
) -> None:
    x, y = _batch(1200, 6, seed=7)
    y = (x[:, 0] > 0).float()
    training = TrainingConfig(
        features=["f"],
        model="mlp",
        hidden_units=8,
        epochs=2,
        batch_size=300,
        max_physical_batch_size=128,
        dp=DpConfig(clipping=clipping),
    )

    trained = train_model(x.numpy(), y.numpy(), training=training)

    assert trained.dp.clipping == clipping
    assert trained.dp.steps == 2 * 4  # epochs x (1 / sample rate), one per logical batch
    assert 0 < trained.dp.epsilon_spent <= 3.0 * 1.001
    assert trained.epoch_loss[-1] < trained.epoch_loss[0]


def test_when_the_optimizer_steps_twice_on_one_clipped_sum_then_it_refuses() -> None:
    # Noising the same sum twice (or a stale one) would break the noise calibration.
    x, y = _batch(400, 5)
    network = build_network(model="logistic", input_width=5, hidden_units=1)
    loop = privatize(
        network,
        torch.optim.SGD(network.parameters(), lr=0.1),
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=100),
        dp=DpConfig(),
        epochs=1,
    )
    loop.step(x[:100], y[:100])

    with pytest.raises(RuntimeError, match="no fresh clipped gradient sum"):
        loop.optimizer.step()
