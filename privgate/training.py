"""Train a tabular classifier with Opacus DP-SGD, and evaluate it.

The epsilon reported is the accountants', for the loop that actually ran: the noise is
calibrated so that both the configured accountant and a cross-check (PRV and RDP) meet
the target for the planned steps, and Opacus's Poisson-sampling data loader replaces
the plain one, which is what the accountants assume (a custom sampler silently breaks
that assumption, Opacus issue #813; `check_loader` and `check_accounting` refuse it).
"""

from __future__ import annotations

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

from privgate.config import DpConfig, TrainingConfig
from privgate.errors import AccountingError, ConfigError


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
    # A second accountant's epsilon for the same (sigma, q, steps); gates use the larger.
    epsilon_cross_check: float = math.inf
    accountant_cross_check: str = "none"

    @property
    def epsilon_spent(self) -> float:
        """Return the larger of the two accountants' epsilons (what the gate judges)."""
        return max(self.epsilon, self.epsilon_cross_check) if self.enabled else math.inf

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
        network, optimizer, loader, engine = privatize(
            network, optimizer, loader, dp=dp, epochs=training.epochs
        )
    with warnings.catch_warnings():
        # Opacus's hooks see no gradient w.r.t. the first layer's input (it is data) and
        # torch warns about it; that is expected here.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        epoch_loss, steps = _run_epochs(network, optimizer, loader, epochs=training.epochs)
    network.eval()
    if engine is not None:
        sample_rate = float(loader.sample_rate)
        epsilon = _finite_positive(float(engine.get_epsilon(dp.target_delta)), dp.accountant)
        cross_name, cross_epsilon = cross_check_epsilon(
            accountant=dp.accountant,
            noise_multiplier=float(optimizer.noise_multiplier),
            sample_rate=sample_rate,
            steps=steps,
            delta=dp.target_delta,
        )
        report = DpReport(
            enabled=True,
            epsilon=epsilon,
            delta=dp.target_delta,
            noise_multiplier=float(optimizer.noise_multiplier),
            # The rate the Poisson loader draws with, hence the one the accountant uses.
            sample_rate=sample_rate,
            steps=steps,
            max_grad_norm=dp.max_grad_norm,
            accountant=dp.accountant,
            poisson_sampling=True,
            secure_mode=dp.secure_mode,
            epsilon_cross_check=cross_epsilon,
            accountant_cross_check=cross_name,
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


def privatize(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    dp: DpConfig,
    epochs: int,
) -> tuple[nn.Module, Any, Any, Any]:
    """Wrap model, optimizer and loader for DP-SGD, refusing what the accounting can't see.

    Raises:
        AccountingError: for a custom sampler, a model Opacus cannot train privately, or
            a loop whose sampling rate differs from the one the accountant is told.
    """
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.validators import ModuleValidator

    check_loader(loader)
    problems = ModuleValidator.validate(network, strict=False)
    if problems:
        kinds = sorted({type(p).__name__ for p in problems})
        raise AccountingError(
            f"the model cannot be trained with DP-SGD as it is ({', '.join(kinds)}): layers "
            "such as BatchNorm mix samples, so one record's gradient is no longer its own; "
            "use GroupNorm or LayerNorm instead (opacus.validators.ModuleValidator.fix)"
        )
    # Calibrate sigma so that both the configured accountant and its cross-check meet
    # target_epsilon: the budget gate judges the larger of the two.
    sample_rate, steps = 1.0 / len(loader), epochs * len(loader)
    noise_multiplier = max(
        get_noise_multiplier(
            target_epsilon=dp.target_epsilon,
            target_delta=dp.target_delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=name,
        )
        for name in {dp.accountant, _cross_check_name(dp.accountant)}
    )
    with warnings.catch_warnings():
        # Opacus warns that secure_mode=False is insecure; the config documents it.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=dp.accountant, secure_mode=dp.secure_mode)
        network, optimizer, private_loader = engine.make_private(
            module=network,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            poisson_sampling=True,
            noise_generator=None
            if dp.secure_mode
            else torch.Generator().manual_seed(secrets.randbits(63)),
        )
    check_accounting(private_loader, optimizer, n=len(loader.dataset))  # type: ignore[arg-type]
    return network, optimizer, private_loader, engine


def check_loader(loader: DataLoader) -> None:
    """Refuse a data loader whose sampling DP-SGD's accountant would not see.

    The accountants assume every record enters each batch independently with the same
    probability (Poisson sampling). Opacus replaces a plain loader by such a sampler,
    but a custom sampler (weighted, stratified) silently changes who is sampled how often
    and can inflate the true epsilon by orders of magnitude (Opacus issue #813).

    Raises:
        AccountingError: naming the sampler.
    """
    from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

    sampler, batch_sampler = loader.sampler, loader.batch_sampler
    if (
        not isinstance(sampler, RandomSampler | SequentialSampler)
        or type(batch_sampler) is not BatchSampler
    ):
        used = (
            type(sampler).__name__
            if not isinstance(sampler, RandomSampler | SequentialSampler)
            else type(batch_sampler).__name__
        )
        raise AccountingError(
            f"the training data loader samples with {used}; DP-SGD's accountant assumes "
            "Poisson sampling of every record with the same probability. Remove the custom "
            "sampler (put class weights in the loss instead)"
        )


def check_accounting(loader: Any, optimizer: Any, *, n: int) -> None:
    """Refuse a private loop whose sampling differs from what the accountant is told.

    Raises:
        AccountingError: naming the measured and the expected values.
    """
    from opacus.data_loader import DPDataLoader
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    sampler = getattr(loader, "batch_sampler", None)
    if not isinstance(loader, DPDataLoader) or not isinstance(
        sampler, UniformWithReplacementSampler
    ):
        raise AccountingError(
            f"DP-SGD needs Poisson sampling but the loop draws batches with "
            f"{type(sampler).__name__}; the accountant's epsilon would not hold"
        )
    accountant_rate = 1.0 / len(loader)  # what make_private tells the accountant
    if not math.isclose(sampler.sample_rate, accountant_rate, rel_tol=1e-9):
        raise AccountingError(
            f"the loop samples each record with probability {sampler.sample_rate:.6g} but "
            f"the accountant is told {accountant_rate:.6g}"
        )
    expected_batch = optimizer.expected_batch_size
    if not math.isclose(expected_batch, sampler.sample_rate * n, rel_tol=0.0, abs_tol=1.0):
        raise AccountingError(
            f"expected batch size {expected_batch} is not sample rate x N = "
            f"{sampler.sample_rate:.6g} x {n}; noise would be scaled for the wrong batch"
        )


def cross_check_epsilon(
    *, accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> tuple[str, float]:
    """Return a second accountant's name and epsilon for the same mechanism.

    PRV is tight but numerical; RDP is a closed-form upper bound. Computing both guards
    against one accountant's numerical failure quietly under-reporting epsilon.
    """
    from opacus.accountants import PRVAccountant, RDPAccountant

    name = _cross_check_name(accountant)
    other = RDPAccountant() if name == "rdp" else PRVAccountant()
    other.history = [(noise_multiplier, sample_rate, steps)]
    return name, _finite_positive(float(other.get_epsilon(delta)), name)


def _cross_check_name(accountant: str) -> str:
    return "prv" if accountant == "rdp" else "rdp"


def rdp_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Return the RDP accountant's epsilon for a Poisson-subsampled Gaussian mechanism."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    return float(accountant.get_epsilon(delta))


def _finite_positive(epsilon: float, accountant: str) -> float:
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise AccountingError(
            f"the {accountant} accountant returned epsilon={epsilon}; only a finite positive "
            "epsilon is a privacy guarantee"
        )
    return epsilon


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
