"""Train a tabular classifier with Opacus DP-SGD, and evaluate it.

The epsilon reported is the accountants', for the loop that actually ran: the noise is
calibrated so that both the configured accountant and a cross-check (PRV and RDP) meet
the target for the planned steps, and Opacus's Poisson-sampling data loader replaces
the plain one, which is what the accountants assume (a custom sampler silently breaks
that assumption, Opacus issue #813; `check_loader` and `check_accounting` refuse it).
"""

from __future__ import annotations

import functools
import math
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privgate.config import DpConfig, TrainingConfig
from privgate.dp.activations import QuadraticActivation
from privgate.dp.clipping import BookKeepingClipper
from privgate.errors import AccountingError, ConfigError

# Expected warnings, silenced once for the process (`warnings.catch_warnings` is not
# thread-safe, and the audit trains models in parallel threads). Opacus's hooks see no
# gradient w.r.t. the first layer's input (it is data) and torch warns about it; Opacus
# warns that secure_mode=False is insecure, which the config documents.
warnings.filterwarnings("ignore", message="Full backward hook is firing")
warnings.filterwarnings("ignore", message="Secure RNG turned off")


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
    # How the clipped per-sample gradient sum was computed (bookkeeping, ghost, hooks).
    clipping: str
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

    @classmethod
    def from_mlflow_params(cls, params: dict[str, str]) -> DpReport:
        """Rebuild the report from `mlflow_params` (a registered run's lineage).

        Raises:
            KeyError: naming a missing `dp.` param.
        """
        values: dict[str, Any] = {}
        for name, kind in cls.__annotations__.items():
            text = params[f"dp.{name}"]
            if kind == "bool":
                values[name] = text == "True"
            elif kind == "int":
                values[name] = int(text)
            elif kind == "float":
                values[name] = float(text)
            else:
                values[name] = text
        return cls(**values)


@dataclass(frozen=True)
class AuditHooks:
    """What an audit run changes in production training; everything else is the same.

    Attributes:
        canaries: Gradient canaries (`audits.gradient_canaries.GradientCanaries`) the
            book-keeping clipper clips and sums with every batch (its `extra_rows`
            seam); they are told the network and the sample rate before the first step.
        noise: False for the audit's control: the same recipe (clipping, Poisson
            sampling, canaries) with the noise off, which claims nothing.
    """

    canaries: Any = None
    noise: bool = True


@dataclass(frozen=True)
class LocalSchedule:
    """One stretch of a DP-SGD chain that runs in several parts (federated rounds).

    A silo trains `training.epochs` local epochs per round, starting from the global
    weights. Its noise multiplier is calibrated once for `plan_epochs` (every round's
    local epochs), so the same (sigma, q) holds for the whole chain, and its accountant
    composes `prior_steps` (the earlier rounds') with this stretch's: the report's
    epsilon is the silo's total so far, never one round's.

    Attributes:
        initial_state: The weights to start from (`state_dict` names to arrays).
        plan_epochs: The chain's local epochs in all, which the noise is calibrated for.
        prior_steps: Noised steps the chain took before this stretch.
    """

    initial_state: dict[str, np.ndarray]
    plan_epochs: int
    prior_steps: int = 0

    def load_into(self, network: nn.Module) -> None:
        """Copy the starting weights into `network` (names and shapes must match).

        Raises:
            ConfigError: naming the first weight whose name or shape differs.
        """
        own = network.state_dict()
        if set(own) != set(self.initial_state):
            raise ConfigError("the starting weights do not name the network's layers")
        for name, tensor in own.items():
            value = np.asarray(self.initial_state[name], dtype=np.float32)
            if value.shape != tuple(tensor.shape) or not np.all(np.isfinite(value)):
                raise ConfigError(f"the starting weight {name!r} has the wrong shape or values")
        network.load_state_dict(
            {
                name: torch.from_numpy(np.asarray(v, dtype=np.float32))
                for name, v in self.initial_state.items()
            }
        )


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
    if model == "mlp_poly":  # HE-ready: see privgate.dp.activations
        return nn.Sequential(
            nn.Linear(input_width, hidden_units),
            QuadraticActivation(),
            nn.Linear(hidden_units, 1),
        )
    raise ConfigError(f"unknown training.model {model!r}; choose logistic, mlp or mlp_poly")


_GLOBAL_RNG = threading.Lock()


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    training: TrainingConfig,
    audit: AuditHooks | None = None,
    schedule: LocalSchedule | None = None,
) -> TrainedModel:
    """Train on (x, y) with DP-SGD (or without, when `training.dp.enabled` is false).

    `audit` is for the white-box audit's runs only (never for a model that is released):
    gradient canaries, and for its control the noise off. `schedule` makes this run one
    stretch of a longer DP-SGD chain (a federated silo's local rounds, see
    `LocalSchedule`): it starts from given weights, its noise is calibrated for the whole
    chain, and its report accounts for every step of the chain so far.

    Raises:
        ConfigError: when the model fails Opacus validation or the data is too small, or
            `audit` asks for what only book-keeping clipping with DP on can do.
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
    dp = training.dp
    seed = secrets.randbits(63) if dp.enabled else training.seed
    # torch initializes layers from its global generator; the audit trains models in
    # parallel threads, so seeding and drawing happen under one lock.
    with _GLOBAL_RNG:
        torch.manual_seed(training.seed)
        network = build_network(
            model=training.model, input_width=x.shape[1], hidden_units=training.hidden_units
        )
    if schedule is not None:
        schedule.load_into(network)
    loader = table_loader(
        x, y, batch_size=training.batch_size, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)
    if audit is not None and not (dp.enabled and dp.clipping == "bookkeeping"):
        raise ConfigError(
            "the white-box audit needs training.dp.enabled=true and "
            f"training.dp.clipping=bookkeeping (got clipping={dp.clipping})"
        )
    if dp.enabled:
        loop = privatize(
            network,
            optimizer,
            loader,
            dp=dp,
            epochs=training.epochs,
            max_physical_batch_size=training.max_physical_batch_size,
            audit=audit,
            plan_epochs=None if schedule is None else schedule.plan_epochs,
        )
    else:
        loop = TrainingLoop(network, network, optimizer, loader, plain_step(network, optimizer))
    epoch_loss, steps = run_epochs(loop, epochs=training.epochs)
    network = loop.model
    network.eval()
    if loop.engine is not None and not loop.noise_off:
        report = _dp_report(
            loop,
            dp=dp,
            loop_steps=steps,
            prior_steps=0 if schedule is None else schedule.prior_steps,
        )
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
            poisson_sampling=loop.noise_off,
            secure_mode=False,
            clipping=dp.clipping if loop.noise_off else "none",
        )
    return TrainedModel(
        network=network,
        dp=report,
        n_train=n,
        epoch_loss=epoch_loss,
        seconds=time.perf_counter() - started,
    )


def _dp_report(
    loop: TrainingLoop, *, dp: DpConfig, loop_steps: int, prior_steps: int = 0
) -> DpReport:
    """Return what the accountants certify for the steps the optimizer actually took.

    `prior_steps` are the chain's earlier noised steps with the same (sigma, q), taken by
    earlier runs (a silo's previous rounds): the report covers all of them.
    """
    engine, optimizer = loop.engine, loop.optimizer
    # The accountant's own history is the truth: it counts the noised steps that ran.
    steps = sum(int(entry[2]) for entry in engine.accountant.history)
    if steps != loop_steps:
        raise AccountingError(
            f"the accountant counted {steps} noised steps but the loop took {loop_steps}; "
            "the reported epsilon would not describe the training"
        )
    sample_rate = float(loop.loader.sample_rate)
    sigma = float(optimizer.noise_multiplier)
    if prior_steps:
        steps += prior_steps
        epsilon = _finite_positive(
            accountant_epsilon(
                accountant=dp.accountant,
                noise_multiplier=sigma,
                sample_rate=sample_rate,
                steps=steps,
                delta=dp.target_delta,
            ),
            dp.accountant,
        )
    else:
        epsilon = _finite_positive(float(engine.get_epsilon(dp.target_delta)), dp.accountant)
    cross_name, cross_epsilon = cross_check_epsilon(
        accountant=dp.accountant,
        noise_multiplier=sigma,
        sample_rate=sample_rate,
        steps=steps,
        delta=dp.target_delta,
    )
    return DpReport(
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
        clipping=dp.clipping,
        epsilon_cross_check=cross_epsilon,
        accountant_cross_check=cross_name,
    )


class TableDataset(TensorDataset):
    """In-memory rows that a DataLoader fetches a whole batch at a time.

    `__getitems__` lets the loader index the tensors once per batch instead of collating
    one row at a time, which would cost more than the DP-SGD step it feeds.
    """

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(tensor[index] for tensor in self.tensors)


def _batch_as_is(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


def table_loader(
    x: np.ndarray, y: np.ndarray, *, batch_size: int, generator: torch.Generator
) -> DataLoader:
    """Return a shuffling loader over in-memory rows (Opacus swaps in Poisson sampling)."""
    dataset = TableDataset(torch.from_numpy(x), torch.from_numpy(y))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=_batch_as_is,
    )


Step = Callable[[torch.Tensor, torch.Tensor], float]


@dataclass
class TrainingLoop:
    """What one training run iterates: the loader, and the step taken per batch.

    `network` is what the step trains (possibly Opacus-wrapped); `model` the plain
    module kept for inference and saving.
    """

    network: nn.Module
    model: nn.Module
    optimizer: Any
    loader: Any
    step: Step
    engine: Any = None
    # The audit's control: DP-SGD's clipping and sampling with the noise off.
    noise_off: bool = False


def _bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), y, reduction="none")


def plain_step(network: nn.Module, optimizer: Any) -> Step:
    """Return a step on the batch's mean loss (non-private, or Opacus `hooks` mode)."""

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        optimizer.zero_grad()
        losses = _bce(network(xb), yb)
        # Poisson sampling can draw an empty batch. It still takes a step: Opacus adds
        # noise to a zero gradient, and skipping it would make the number of noised
        # steps depend on the data.
        (losses.mean() if len(xb) else losses.sum()).backward()
        optimizer.step()
        return float(losses.detach().sum())

    return step


def privatize(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    dp: DpConfig,
    epochs: int,
    max_physical_batch_size: int = 4096,
    audit: AuditHooks | None = None,
    plan_epochs: int | None = None,
) -> TrainingLoop:
    """Wrap model, optimizer and loader for DP-SGD, refusing what the accounting can't see.

    Opacus does the accounting, the Poisson sampling, the validation and the noise in
    every mode; `dp.clipping` only chooses how the clipped per-sample gradient sum is
    computed (see `privgate.dp.clipping`).

    Raises:
        AccountingError: for a custom sampler, a model Opacus cannot train privately, or
            a loop whose sampling rate differs from the one the accountant is told.
        ConfigError: for secure_mode without torchcsprng, or book-keeping clipping on a
            model it cannot treat exactly.
    """
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
    engine = _privacy_engine(dp)
    noise_multiplier = calibrated_noise_multiplier(
        target_epsilon=dp.target_epsilon,
        target_delta=dp.target_delta,
        sample_rate=1.0 / len(loader),
        # A stretch of a longer chain is calibrated for the whole chain.
        steps=(plan_epochs or epochs) * len(loader),
        accountant=dp.accountant,
    )
    noise_generator = (
        None if dp.secure_mode else torch.Generator().manual_seed(secrets.randbits(63))
    )
    if dp.clipping == "bookkeeping":
        loop = _bookkeeping_loop(
            engine,
            network,
            optimizer,
            loader,
            dp=dp,
            noise_multiplier=noise_multiplier,
            noise_generator=noise_generator,
            max_physical_batch_size=max_physical_batch_size,
            audit=audit,
        )
    elif dp.clipping == "ghost":
        wrapped, dp_optimizer, criterion, private_loader = engine.make_private(
            module=network,
            optimizer=optimizer,
            criterion=nn.BCEWithLogitsLoss(),
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_generator,
            grad_sample_mode="ghost",
        )
        step = _ghost_step(wrapped, dp_optimizer, criterion)
        loop = TrainingLoop(wrapped, network, dp_optimizer, private_loader, step, engine)
    else:
        wrapped, dp_optimizer, private_loader = engine.make_private(
            module=network,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_generator,
        )
        step = _chunked(plain_step(wrapped, dp_optimizer), dp_optimizer, max_physical_batch_size)
        loop = TrainingLoop(wrapped, network, dp_optimizer, private_loader, step, engine)
    check_accounting(loop.loader, loop.optimizer, n=len(loader.dataset))  # type: ignore[arg-type]
    return loop


@functools.lru_cache(maxsize=64)
def calibrated_noise_multiplier(
    *, target_epsilon: float, target_delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """Return the sigma at which both `accountant` and its cross-check meet the target.

    The budget gate judges the larger of the two epsilons, so sigma is the larger of the
    two calibrations. Pure and slow (seconds, the PRV search), hence cached.
    """
    from opacus.accountants.utils import get_noise_multiplier

    return max(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=target_delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=name,
        )
        for name in (accountant, _cross_check_name(accountant))
    )


def _privacy_engine(dp: DpConfig) -> Any:
    from opacus import PrivacyEngine

    try:
        return PrivacyEngine(accountant=dp.accountant, secure_mode=dp.secure_mode)
    except ImportError as error:
        raise ConfigError(
            "training.dp.secure_mode=true needs the torchcsprng package, which is not "
            "installed (it publishes no wheel for this torch); set secure_mode=false or "
            "install torchcsprng"
        ) from error


def _bookkeeping_loop(
    engine: Any,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    dp: DpConfig,
    noise_multiplier: float,
    noise_generator: torch.Generator | None,
    max_physical_batch_size: int,
    audit: AuditHooks | None = None,
) -> TrainingLoop:
    """Wire Opacus's Poisson loader, noise and accountant around book-keeping clipping.

    The same pieces `PrivacyEngine.make_private(grad_sample_mode="ghost")` assembles,
    with the module left unwrapped: `BookKeepingClipper` writes the clipped sum into
    `p.grad` and `BookKeepingDPOptimizer` noises, scales and accounts for it.
    """
    from opacus.data_loader import DPDataLoader
    from opacus.validators import ModuleValidator

    from privgate.dp.optimizer import BookKeepingDPOptimizer

    ModuleValidator.validate(network, strict=True)
    clipper = BookKeepingClipper(
        network,
        max_grad_norm=dp.max_grad_norm,
        loss=_bce,
        max_physical_batch_size=max_physical_batch_size,
    )
    private_loader = DPDataLoader.from_data_loader(loader, generator=engine.secure_rng)
    sample_rate = 1.0 / len(private_loader)
    noise_off = audit is not None and not audit.noise
    if audit is not None and audit.canaries is not None:
        audit.canaries.attach(sample_rate=sample_rate)
        clipper.extra_rows = audit.canaries
    dp_optimizer = BookKeepingDPOptimizer(
        optimizer,
        clipper=clipper,
        noise_multiplier=0.0 if noise_off else noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=int(len(loader.dataset) * sample_rate),  # type: ignore[arg-type]
        loss_reduction="mean",
        generator=engine.secure_rng if dp.secure_mode else noise_generator,
        secure_mode=dp.secure_mode,
    )
    if not noise_off:  # with no noise there is nothing to account for
        dp_optimizer.attach_step_hook(
            engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate)
        )

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        # No zero_grad: the clipper overwrites its buffer, which the gradients view.
        loss = clipper.clipped_gradient_sum(xb, yb)
        dp_optimizer.step()
        return loss

    return TrainingLoop(
        network, network, dp_optimizer, private_loader, step, engine, noise_off=noise_off
    )


def _ghost_step(network: nn.Module, optimizer: Any, criterion: Any) -> Step:
    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        optimizer.zero_grad()
        logits = network(xb).squeeze(-1)
        loss = criterion(logits, yb)
        loss.backward()
        optimizer.step()
        return float(loss.detach()) * len(xb)

    return step


def _chunked(step: Step, optimizer: Any, max_physical_batch_size: int) -> Step:
    """Split a large logical batch into physical ones, stepping once (Opacus hooks mode).

    Opacus's `BatchMemoryManager` does this for a whole loader; here the same
    `signal_skip_step` protocol is applied per batch, so that each logical batch is one
    noised step whatever its size.
    """

    def chunked(xb: torch.Tensor, yb: torch.Tensor) -> float:
        if len(xb) <= max_physical_batch_size:
            return step(xb, yb)
        total = 0.0
        starts = range(0, len(xb), max_physical_batch_size)
        for index, start in enumerate(starts):
            optimizer.signal_skip_step(do_skip=index < len(starts) - 1)
            stop = start + max_physical_batch_size
            total += step(xb[start:stop], yb[start:stop])
        return total

    return chunked


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


def accountant_epsilon(
    *, accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> float:
    """Return `accountant`'s epsilon for `steps` Poisson-sampled Gaussian steps."""
    from opacus.accountants import create_accountant

    acct = create_accountant(mechanism=accountant)
    acct.history = [(noise_multiplier, sample_rate, steps)]
    return float(acct.get_epsilon(delta=delta))


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


def run_epochs(loop: TrainingLoop, *, epochs: int) -> tuple[list[float], int]:
    """Run `epochs` passes of `loop`; return the mean loss per epoch and the steps taken."""
    epoch_loss: list[float] = []
    steps = 0
    loop.network.train()
    for _ in range(epochs):
        total, seen = 0.0, 0
        for xb, yb in loop.loader:
            total += loop.step(xb, yb)
            steps += 1
            seen += len(xb)
        epoch_loss.append(total / max(seen, 1))
    return epoch_loss, steps


@torch.no_grad()
def predict_logits(network: nn.Module, x: np.ndarray) -> np.ndarray:
    """Return the positive-class logit of each row (no saturation, unlike probabilities)."""
    network.eval()
    return network(torch.from_numpy(x)).squeeze(-1).numpy()


@torch.no_grad()
def predict_proba(network: nn.Module, x: np.ndarray) -> np.ndarray:
    """Return P(positive) for each row."""
    return torch.sigmoid(torch.from_numpy(predict_logits(network, x))).numpy()


def accuracy(network: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Return the share of rows classified right at threshold 0.5."""
    if len(x) == 0:
        return math.nan
    return float(np.mean((predict_proba(network, x) >= 0.5) == (y >= 0.5)))
