"""Train a tabular classifier with Opacus DP-SGD, and evaluate it.

The epsilon reported is the accountant's, for the loop that actually ran: Opacus's
`make_private_with_epsilon` calibrates the noise for the configured epochs and swaps in
its Poisson-sampling data loader, which is what the accountants assume (a custom
sampler silently breaks that assumption, Opacus issue #813).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privgate.config import TrainingConfig
from privgate.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DpReport:
    """What the privacy accountant certifies for the training run."""

    enabled: bool
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str
    poisson_sampling: bool
    secure_mode: bool

    def mlflow_params(self) -> dict[str, str]:
        """Return the run params, named as Opacus names them, under `dp.`."""
        return {f"dp.{key}": str(value) for key, value in asdict(self).items()}


@dataclass
class TrainedModel:
    """A trained network with its privacy report and learning curve."""

    network: nn.Module
    dp: DpReport
    n_train: int
    epoch_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def build_network(*, model: str, input_width: int, hidden_units: int) -> nn.Module:
    """Return the classifier: one logit. No BatchNorm: it mixes samples, breaking DP."""
    if model == "logistic":
        return nn.Sequential(nn.Linear(input_width, 1))
    if model == "mlp":
        return nn.Sequential(
            nn.Linear(input_width, hidden_units), nn.ReLU(), nn.Linear(hidden_units, 1)
        )
    raise ConfigError(f"unknown training.model {model!r}; choose logistic or mlp")


def train_model(x: np.ndarray, y: np.ndarray, *, training: TrainingConfig) -> TrainedModel:
    """Train on (x, y) with DP-SGD (or without, when `training.dp.enabled` is false).

    Raises:
        ConfigError: when the model fails Opacus validation or the data is too small.
    """
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    started = time.perf_counter()
    n = len(x)
    if n < training.batch_size:
        raise ConfigError(
            f"{n} training rows is fewer than training.batch_size={training.batch_size}"
        )
    # The config seed makes initialization and splits reproducible. It must not drive
    # DP-SGD's randomness: the seed is published in the config, and noise or a Poisson
    # sample reproducible from it would protect no one. Those draw from fresh secrets.
    torch.manual_seed(training.seed)
    dp = training.dp
    seed = secrets.randbits(63) if dp.enabled else training.seed
    generator = torch.Generator().manual_seed(seed)
    network = build_network(
        model=training.model, input_width=x.shape[1], hidden_units=training.hidden_units
    )
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = DataLoader(dataset, batch_size=training.batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)
    engine = None
    if dp.enabled:
        ModuleValidator.validate(network, strict=True)
        with warnings.catch_warnings():
            # Opacus warns that secure_mode=False is insecure; the config documents it.
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            engine = PrivacyEngine(accountant=dp.accountant, secure_mode=dp.secure_mode)
            network, optimizer, loader = engine.make_private_with_epsilon(
                module=network,
                optimizer=optimizer,
                data_loader=loader,
                target_epsilon=dp.target_epsilon,
                target_delta=dp.target_delta,
                epochs=training.epochs,
                max_grad_norm=dp.max_grad_norm,
                poisson_sampling=True,
                noise_generator=None
                if dp.secure_mode
                else torch.Generator().manual_seed(secrets.randbits(63)),
            )
    with warnings.catch_warnings():
        # Opacus's hooks see no gradient w.r.t. the first layer's input (it is data) and
        # torch warns about it; that is expected here.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        epoch_loss, steps = _run_epochs(network, optimizer, loader, epochs=training.epochs)
    network.eval()
    if engine is not None:
        epsilon = float(engine.get_epsilon(dp.target_delta))
        report = DpReport(
            enabled=True,
            epsilon=epsilon,
            delta=dp.target_delta,
            noise_multiplier=float(optimizer.noise_multiplier),
            # The rate the Poisson loader draws with, hence the one the accountant uses.
            sample_rate=float(loader.sample_rate),
            steps=steps,
            max_grad_norm=dp.max_grad_norm,
            accountant=dp.accountant,
            poisson_sampling=True,
            secure_mode=dp.secure_mode,
        )
        network = network._module  # unwrap GradSampleModule for inference and saving
    else:
        report = DpReport(
            enabled=False,
            epsilon=math.inf,
            delta=1.0,
            noise_multiplier=0.0,
            sample_rate=training.batch_size / n,
            steps=steps,
            max_grad_norm=math.inf,
            accountant="none",
            poisson_sampling=False,
            secure_mode=False,
        )
    return TrainedModel(
        network=network,
        dp=report,
        n_train=n,
        epoch_loss=epoch_loss,
        seconds=time.perf_counter() - started,
    )


def _run_epochs(
    network: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, epochs: int
) -> tuple[list[float], int]:
    loss_fn = nn.BCEWithLogitsLoss()
    epoch_loss: list[float] = []
    steps = 0
    network.train()
    for _ in range(epochs):
        total, seen = 0.0, 0
        for xb, yb in loader:
            # Poisson sampling can draw an empty batch. It still takes a step: Opacus adds
            # noise to a zero gradient, and skipping it would make the number of noised
            # steps depend on the data.
            optimizer.zero_grad()
            logits = network(xb).squeeze(-1)
            loss = loss_fn(logits, yb) if len(xb) else logits.sum()
            loss.backward()
            optimizer.step()
            steps += 1
            total += float(loss.detach()) * len(xb)
            seen += len(xb)
        epoch_loss.append(total / max(seen, 1))
    return epoch_loss, steps


@torch.no_grad()
def predict_proba(network: nn.Module, x: np.ndarray) -> np.ndarray:
    """Return P(positive) for each row."""
    network.eval()
    return torch.sigmoid(network(torch.from_numpy(x)).squeeze(-1)).numpy()


@torch.no_grad()
def per_example_loss(network: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return each row's cross-entropy loss (stays inside the audit)."""
    network.eval()
    logits = network(torch.from_numpy(x)).squeeze(-1)
    loss = nn.functional.binary_cross_entropy_with_logits(
        logits, torch.from_numpy(y), reduction="none"
    )
    return loss.numpy()


def accuracy(network: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Return the share of rows classified right at threshold 0.5."""
    if len(x) == 0:
        return math.nan
    return float(np.mean((predict_proba(network, x) >= 0.5) == (y >= 0.5)))


def state_summary(model: TrainedModel) -> dict[str, Any]:
    """Return aggregates fit for logs and reports."""
    return {"n_train": model.n_train, "seconds": round(model.seconds, 3), **asdict(model.dp)}
