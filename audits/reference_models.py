"""Reference models for membership inference, trained together as one stacked ensemble.

A reference-model attack (RMIA, LiRA) compares the target model's confidence on a
record with that of models trained the same way on data without that record. Training
K small MLPs one by one is dominated by per-step overhead; stacking their weights
((K, out, in) tensors) and training them with batched matrix products makes K models
cost a few times one. Each model draws its own Poisson batches from its own subset of
the population data, and, when the target was trained with DP-SGD, clips every
per-sample gradient to C (book-keeping: norms from activations and output gradients,
as `privgate.dp.clipping` does for one model) and adds N(0, (sigma C)^2) noise with the
target's sigma, so the reference models follow the target's recipe.

Reference models are audit instruments: they never leave the audit, and nothing about
them is registered.
"""

from __future__ import annotations

import itertools
import math
import secrets
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from audits.membership_inference import true_label_probability
from privgate.dp.activations import quadratic


@dataclass(frozen=True)
class Recipe:
    """How the target was trained; the reference models are trained the same way.

    `noise_multiplier` 0 and `max_grad_norm` inf mean non-private training.
    """

    hidden_units: int  # 0 for the logistic model
    learning_rate: float
    batch_size: int  # expected (Poisson) batch size
    steps: int
    noise_multiplier: float = 0.0
    max_grad_norm: float = math.inf
    # The hidden layer's activation: relu (training.model mlp) or quadratic (mlp_poly).
    activation: str = "relu"

    @property
    def private(self) -> bool:
        """Return whether per-sample clipping and noise are applied."""
        return math.isfinite(self.max_grad_norm)


class StackedMLP(nn.Module):
    """K independent one-logit MLPs (or logistic models) evaluated with batched matmuls."""

    def __init__(
        self,
        models: int,
        input_width: int,
        hidden_units: int,
        *,
        seed: int,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in ("relu", "quadratic"):
            raise ValueError(f"unknown activation {activation!r}; choose relu or quadratic")
        self.activation = torch.relu if activation == "relu" else quadratic
        generator = torch.Generator().manual_seed(seed)
        widths = [input_width, hidden_units, 1] if hidden_units else [input_width, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(widths):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialization
            weight = (torch.rand(models, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            bias = (torch.rand(models, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))

    def forward_layers(self, x: torch.Tensor) -> tuple[torch.Tensor, list, list]:
        """Return logits (K, B) and each linear layer's inputs and outputs, for (K, B, d)."""
        inputs, outputs = [], []
        h = x
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            inputs.append(h)
            h = torch.baddbmm(bias, h, weight)
            outputs.append(h)
            if index < last:
                h = self.activation(h)
        return h.squeeze(-1), inputs, outputs

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return every model's logit for every row of x (N, d): shape (K, N)."""
        expanded = x.unsqueeze(0).expand(len(self.weights[0]), -1, -1)
        return self.forward_layers(expanded)[0]


def train_reference_models(
    x: np.ndarray,
    y: np.ndarray,
    memberships: np.ndarray,
    recipe: Recipe,
    *,
    seed: int,
) -> StackedMLP:
    """Train one model per row of `memberships` (K, N) bool: model k trains on its rows.

    Poisson sampling per model at rate batch_size / |subset|; with DP, per-sample
    clipping and Gaussian noise exactly as DP-SGD (noise drawn from fresh secrets,
    like the target's).

    Raises:
        ValueError: when a subset is empty or smaller than the batch size.
    """
    memberships = np.asarray(memberships, dtype=bool)
    models, n = memberships.shape
    if n != len(x):
        raise ValueError(f"memberships has {n} columns but x has {len(x)} rows")
    sizes = memberships.sum(axis=1)
    if sizes.min() < recipe.batch_size:
        raise ValueError(
            f"a reference model's subset holds {int(sizes.min())} rows, fewer than the "
            f"batch size {recipe.batch_size}"
        )
    # Every draw below uses its own generator: the global one is left alone, since
    # groups of reference models train in parallel threads.
    stacked = StackedMLP(
        models, x.shape[1], recipe.hidden_units, seed=seed, activation=recipe.activation
    )
    optimizer = torch.optim.Adam(stacked.parameters(), lr=recipe.learning_rate)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rates = torch.from_numpy(recipe.batch_size / sizes).float().unsqueeze(1)  # (K, 1)
    member_mask = torch.from_numpy(memberships)
    sampling = torch.Generator().manual_seed(secrets.randbits(63))
    for _ in range(recipe.steps):
        # Poisson sampling per model over its own subset; batches padded to the largest.
        drawn = (torch.rand(models, n, generator=sampling) < rates) & member_mask
        counts = drawn.sum(1)
        width = max(int(counts.max()), 1)
        order = torch.argsort(drawn.to(torch.int8), dim=1, descending=True, stable=True)
        index = order[:, :width]  # (K, width): drawn rows first, then padding
        valid = torch.arange(width).unsqueeze(0) < counts.unsqueeze(1)  # (K, width)
        _step(stacked, optimizer, xt[index], yt[index], valid.float(), recipe, sampling)
    return stacked


def _step(
    stacked: StackedMLP,
    optimizer: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    valid: torch.Tensor,
    recipe: Recipe,
    noise: torch.Generator,
) -> None:
    logits, inputs, outputs = stacked.forward_layers(xb)
    losses = nn.functional.binary_cross_entropy_with_logits(logits, yb, reduction="none")
    optimizer.zero_grad()
    if not recipe.private:
        counts = valid.sum(1, keepdim=True).clamp(min=1)
        ((losses * valid) / counts).sum().backward()
        optimizer.step()
        return
    grads = torch.autograd.grad((losses * valid).sum(), outputs)
    squared = torch.zeros_like(valid)
    for a, g in zip(inputs, grads, strict=True):
        a = a.detach()
        squared += (g * g).sum(-1) * ((a * a).sum(-1) + 1.0)
    clip = (recipe.max_grad_norm / (squared.sqrt() + 1e-6)).clamp(max=1.0) * valid
    std = recipe.noise_multiplier * recipe.max_grad_norm
    for a, g, weight, bias in zip(inputs, grads, stacked.weights, stacked.biases, strict=True):
        weighted = g * clip.unsqueeze(-1)  # (K, B, out)
        weight_sum = torch.bmm(a.detach().transpose(1, 2), weighted)  # (K, in, out)
        bias_sum = weighted.sum(1, keepdim=True)
        weight.grad = (weight_sum + std * torch.randn(weight.shape, generator=noise)) / (
            recipe.batch_size
        )
        bias.grad = (bias_sum + std * torch.randn(bias.shape, generator=noise)) / (
            recipe.batch_size
        )
    optimizer.step()


def reference_probabilities(
    population: tuple[np.ndarray, np.ndarray],
    records: tuple[np.ndarray, np.ndarray],
    recipe: Recipe,
    *,
    models: int,
    seed: int,
) -> np.ndarray:
    """Train `models` reference models on random halves of `population`; score `records`.

    Returns each model's probability of each record's true label, shape (models, n).
    `population` must be disjoint from `records` (offline attacks).

    Raises:
        ValueError: when half the population is smaller than the recipe's batch size.
    """
    pop_x, pop_y = population
    memberships = np.random.default_rng(seed).random((models, len(pop_x))) < 0.5
    stacked = train_reference_models(pop_x, pop_y, memberships, recipe, seed=seed)
    x, y = records
    return true_label_probability(stacked.logits(torch.from_numpy(x)).numpy(), y[np.newaxis, :])
