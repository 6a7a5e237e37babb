"""The white-box one-run audit: gradient canaries through the production clipper.

Steinke, Nasr and Jagielski (2023, "Privacy auditing with one (1) training run",
section 6, white box): m canary *gradients* each take part in a separate audit run of
the production training code with probability 1/2, independently; a canary that takes
part is Poisson-sampled at every step with the records' sample rate, clipped with them
and summed with them before the noise (the book-keeping clipper's `extra_rows` seam,
`privgate.dp.clipping.ExtraRows`), so it is a record in all but its data. No record of
anyone is involved, and it costs the privacy ledger nothing.

Each canary is a Dirac gradient in one Linear layer: the row `g = s e_i`, `a = 10 e_j`
in the clipper's terms, so its gradient sits on weight (i, j) alone (its bias share is
under 1%), the form a record's gradient has in that layer. `s` is a thousand clipping
norms C, so correct clipping brings each to C, the most DP allows a record, while a
layer that skips clipping lets thousands of times that through. Distinct weights make
canaries exactly orthogonal to one another.

A canary's score is read off the transcript DP-SGD's accountant counts as released,
the noised gradient sum of every step: at each step, the released sum on the canary's
weight less the records' clipped sum on it (the seam shows both), summed over the
steps, in clipping norms. DP holds against an auditor who knows every other record, so
removing the records' part is post-processing; what is left is the canary's clipped
gradient each time it was sampled plus the noise, `Binomial(T, q) x 0.995 + N(0, T
sigma^2)` when it is included and the noise alone when not: exactly the Gaussian
mechanism `idealized_bound` simulates, whatever the optimizer (Adam would otherwise
flatten a 1000x breach into one learning-rate step) and however the data moves the
weight. Half the guesses are "included" on the highest scores, half "excluded" on the
lowest (`one_run_epsilon_lower_bound`).

How many guesses, and so how many canaries, a claim needs is fixed before training
(`plan`): proving epsilon takes at least r guesses all right with
`expit(epsilon)^r <= alpha` (the binomial tail), and the one-run test's delta term
grows with m. The control (same recipe, noise off) shows whether this audit could
prove the claim at all; `idealized_bound` shows what a perfect one-run audit with the
same canaries, steps and noise could prove, so a weak bound can be told from a weak
audit.

Directions, inclusion and scores stay here: results carry counts and epsilon.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from audits.empirical_epsilon import (
    EpsilonLowerBound,
    one_run_epsilon_for_counts,
    one_run_epsilon_lower_bound,
)

# A canary's output gradient before clipping, in clipping norms: any correct clipper
# brings it to C; one that skips a layer lets it through whole (see the docstring).
CANARY_SCALE = 1000.0
# Guess counts tried: the claim's minimum r and three doublings (capped at m), fixed in
# advance so the Bonferroni split is known before any score is.
GRID_POINTS = 4
# Guesses from both ends of the ranking: the excluded canaries' scores are the noise
# alone, so the lowest are as telling as the highest (more proof for the same m).
INCLUDED_SHARE = 0.5
# Exact ties (the control's excluded canaries all score 0) are broken by this much.
TIE_JITTER = 1e-6
# A canary row's input is this long: a row's bias gradient is its output gradient, so
# with a unit input half the clipped norm would go to the bias; at 10, 99.5% of it
# lands on the canary's weight, where it is scored.
INPUT_SCALE = 10.0
# Canaries: at least this many times the minimum guesses (guesses come from both ends
# of the ranking, and not every guess can be right), at most MAX_CANARIES.
CANARIES_PER_GUESS = 4
MAX_CANARIES = 8_000


@dataclass(frozen=True)
class GuessPlan:
    """How many canaries and guesses the audit of one claim uses, fixed before training.

    Attributes:
        canaries: m.
        needed_guesses: The fewest guesses that, all right, prove the claim at this
            confidence (None: not even m guesses all right would; no claim: None).
        grid: The guess counts tried.
        claim_provable: Whether m canaries can prove the claim at all.
    """

    canaries: int
    needed_guesses: int | None
    grid: tuple[int, ...]
    claim_provable: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {**asdict(self), "grid": list(self.grid)}


def plan(
    claimed_epsilon: float,
    *,
    canaries: int,
    delta: float,
    confidence: float,
    capacity: int | None = None,
) -> GuessPlan:
    """Choose m and the guess counts from the claim (see the module docstring).

    Starts from `canaries` (the configured m) and doubles it, up to MAX_CANARIES and the
    network's `capacity` (`weight_capacity`: two canaries on one weight would each
    carry the other's signal), until m >= CANARIES_PER_GUESS x the guesses needed. A
    claim of infinity (no DP) gets the configured m and a grid of fractions of it.

    Raises:
        ValueError: when `canaries` or `capacity` is not positive.
    """
    if canaries <= 0:
        raise ValueError(f"the white-box audit needs at least one canary, got {canaries}")
    if capacity is not None and capacity <= 0:
        raise ValueError(f"the network must hold at least one canary, got capacity {capacity}")
    most = MAX_CANARIES if capacity is None else min(MAX_CANARIES, capacity)
    m = min(canaries, most)
    if not math.isfinite(claimed_epsilon):
        grid = tuple(sorted({max(1, round(f * m)) for f in (0.05, 0.2, 0.5, 1.0)}))
        return GuessPlan(m, None, grid, claim_provable=False)
    level = 1.0 - (1.0 - confidence) / GRID_POINTS
    while True:
        needed = _needed_guesses(claimed_epsilon, canaries=m, delta=delta, level=level)
        if (needed is not None and CANARIES_PER_GUESS * needed <= m) or m >= most:
            break
        m = min(most, 2 * m)
    if needed is None:
        grid = tuple(sorted({max(1, round(f * m)) for f in (0.05, 0.2, 0.5, 1.0)}))
        return GuessPlan(m, None, grid, claim_provable=False)
    grid = tuple(sorted({min(m, needed * 2**k) for k in range(GRID_POINTS)}))
    return GuessPlan(m, needed, grid, claim_provable=True)


def weight_capacity(network: nn.Module) -> int:
    """Return how many Dirac canaries `network` holds on distinct weights."""
    return sum(layer.weight.numel() for layer in network if isinstance(layer, nn.Linear))


def _needed_guesses(claim: float, *, canaries: int, delta: float, level: float) -> int | None:
    """Return the fewest r whose r-of-r correct proves `claim`, or None if r = m can't."""

    def proves(r: int) -> bool:
        bound = one_run_epsilon_for_counts(
            guesses=r, correct=r, delta=delta, canaries=canaries, confidence=level
        )
        return bound >= claim

    if not proves(canaries):
        return None
    low, high = 1, canaries  # proves(high) holds
    while low < high:
        middle = (low + high) // 2
        if proves(middle):
            high = middle
        else:
            low = middle + 1
    return low


class GradientCanaries:
    """m Dirac canary gradients over a network's Linear layers (`ExtraRows`).

    Args:
        network: The `nn.Sequential` under audit (its shapes; weights are read later).
        count: m.
        max_grad_norm: The clipping norm C.
        seed: Draws the directions, the inclusion and the per-step sampling.
        included: Inclusion of each canary; default a fresh coin flip each (seeded).
    """

    def __init__(
        self,
        network: nn.Module,
        count: int,
        *,
        max_grad_norm: float,
        seed: int,
        included: np.ndarray | None = None,
    ) -> None:
        if count <= 0:
            raise ValueError(f"the white-box audit needs at least one canary, got {count}")
        linears = [layer for layer in network if isinstance(layer, nn.Linear)]
        if not linears:
            raise ValueError("the white-box audit needs a network with a Linear layer")
        rng = np.random.default_rng(seed)
        sizes = np.array([layer.weight.numel() for layer in linears], dtype=np.int64)
        self.layer_of = rng.permutation(
            np.repeat(np.arange(len(linears)), _per_layer(count, sizes))
        )
        self.included = (
            rng.random(count) < 0.5 if included is None else np.asarray(included, dtype=bool)
        )
        if self.included.shape != (count,):
            raise ValueError(f"included must hold one flag per canary ({count})")
        self.widths = [(layer.in_features, layer.out_features) for layer in linears]
        self.scale = CANARY_SCALE * max_grad_norm
        self.g, self.a = [], []
        for index, (in_w, out_w) in enumerate(self.widths):
            g, a = _dirac(rng, count, in_w, out_w, np.flatnonzero(self.layer_of == index))
            self.g.append(g)
            self.a.append(a)
        self._generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        self.tie_seed = int(rng.integers(2**62))
        # Each canary's weight: (layer, output row, input column).
        self._cells = [
            (
                torch.from_numpy(np.flatnonzero(self.layer_of == index)),
                torch.from_numpy(np.argmax(self.g[index][self.layer_of == index], axis=1)),
                torch.from_numpy(np.argmax(self.a[index][self.layer_of == index], axis=1)),
            )
            for index in range(len(linears))
        ]
        self.max_grad_norm = max_grad_norm
        self.sample_rate: float | None = None
        self.rows_added = 0
        self.steps_observed = 0
        self._records: np.ndarray | None = None
        self._sums = np.zeros(count)

    def __len__(self) -> int:
        return len(self.layer_of)

    def attach(self, *, sample_rate: float) -> None:
        """Take the records' sample rate (before step one)."""
        self.sample_rate = sample_rate

    def rows(self) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """Poisson-sample the included canaries; return their rows per layer (or None)."""
        if self.sample_rate is None:
            raise RuntimeError("gradient canaries were not attached to a training loop")
        draw = torch.rand(len(self), generator=self._generator).numpy() < self.sample_rate
        chosen = np.flatnonzero(draw & self.included)
        if not len(chosen):
            return None
        self.rows_added += len(chosen)
        inputs, grads = [], []
        for index, (in_w, out_w) in enumerate(self.widths):
            a = torch.zeros((len(chosen), in_w))
            g = torch.zeros((len(chosen), out_w))
            mine = self.layer_of[chosen] == index
            a[mine] = torch.from_numpy(self.a[index][chosen[mine]]) * INPUT_SCALE
            g[mine] = torch.from_numpy(self.g[index][chosen[mine]]) * self.scale
            inputs.append(a)
            grads.append(g)
        return inputs, grads

    def records_summed(self, weights: list[torch.Tensor]) -> None:
        """Keep the records' clipped sum on every canary's weight (this step's)."""
        self._records = self._on_canaries(weights)

    def released(self, weights: list[torch.Tensor]) -> None:
        """Add the released sum less the records' on every canary's weight to its score.

        Raises:
            RuntimeError: when no records' sum was seen for this step.
        """
        if self._records is None:
            raise RuntimeError("a released gradient sum came without the records' sum")
        self._sums += self._on_canaries(weights) - self._records
        self._records = None
        self.steps_observed += 1

    def _on_canaries(self, weights: list[torch.Tensor]) -> np.ndarray:
        values = np.empty(len(self))
        for weight, (rows, out, col) in zip(weights, self._cells, strict=True):
            values[rows.numpy()] = weight[out, col].double().numpy()
        return values

    def scores(self) -> np.ndarray:
        """Return each canary's score, in clipping norms (see the module docstring).

        Raises:
            RuntimeError: before any training step was observed.
        """
        if not self.steps_observed:
            raise RuntimeError("gradient canaries were not attached to a training loop")
        return self._sums / self.max_grad_norm


def _per_layer(count: int, sizes: np.ndarray) -> np.ndarray:
    """Split `count` canaries over layers in proportion to their weights, each within its size.

    A fixed split, not a random draw: drawn layer by layer, a layer near its capacity
    gets more canaries than weights now and then, two canaries share a weight, and an
    excluded one scores its neighbour's signal (a wrong guess in the control). At least
    one canary per layer while there are enough; beyond the capacity, canaries share.
    """
    capacity = int(sizes.sum())
    share = count * sizes / capacity
    counts = np.minimum(np.floor(share).astype(np.int64), sizes)
    if count >= len(sizes):
        counts = np.maximum(counts, 1)
    while counts.sum() > count:  # the minimum of one took from the largest layers
        counts[np.argmax(counts - share)] -= 1
    spare = count - int(counts.sum())
    while spare > 0:
        room = counts < sizes if count <= capacity else np.ones_like(counts, dtype=bool)
        order = np.argsort(-(share - counts) + np.where(room, 0.0, np.inf), kind="stable")
        for index in order[:spare]:
            if room[index]:
                counts[index] += 1
                spare -= 1
    return counts


def _dirac(
    rng: np.random.Generator, count: int, in_w: int, out_w: int, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return unit `g` and `a` rows putting each canary of `rows` on its own weight.

    Dirac canaries: distinct weights while the layer has enough, so the weight parts of
    two canaries are exactly orthogonal and one canary's score holds no other's signal.
    """
    g = np.zeros((count, out_w), dtype=np.float32)
    a = np.zeros((count, in_w), dtype=np.float32)
    cells = in_w * out_w
    picks = rng.choice(cells, size=len(rows), replace=len(rows) > cells)
    g[rows, picks // in_w] = 1.0
    a[rows, picks % in_w] = 1.0
    return g, a


def _untied(scores: np.ndarray, seed: int) -> np.ndarray:
    """Break exact ties with a seeded jitter far below any canary's signal.

    With the noise off (the control), every excluded canary scores exactly 0, and the
    one-run test abstains on a tie group straddling a cut-off: the "excluded" guesses
    would all be abstentions. The jitter is independent of the inclusion, so the test
    stays valid; against a signal of at least 0.995 it decides only ties.
    """
    return scores + np.random.default_rng(seed).uniform(-TIE_JITTER, TIE_JITTER, len(scores))


@dataclass(frozen=True)
class WhiteBoxAudit:
    """One white-box run's aggregates: the bound, the claim, the plan, its cost."""

    bound: EpsilonLowerBound
    claimed_epsilon: float
    noise: bool
    plan: GuessPlan
    canary_rows_added: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (an infinite claim, the control's, is null)."""
        claimed = self.claimed_epsilon if math.isfinite(self.claimed_epsilon) else None
        return {
            "bound": self.bound.to_dict(),
            "claimed_epsilon": claimed,
            "noise": self.noise,
            "plan": self.plan.to_dict(),
            "canary_rows_added": self.canary_rows_added,
        }


def white_box_bound(
    canaries: GradientCanaries,
    guess_plan: GuessPlan,
    *,
    claimed_epsilon: float,
    noise: bool,
    delta: float,
    confidence: float,
) -> WhiteBoxAudit:
    """Bound epsilon from the trained canaries' scores, on the planned guess counts."""
    bound = one_run_epsilon_lower_bound(
        _untied(canaries.scores(), canaries.tie_seed),
        canaries.included,
        delta=delta,
        confidence=confidence,
        guess_counts=guess_plan.grid,
        included_share=INCLUDED_SHARE,
    )
    return WhiteBoxAudit(
        bound=bound,
        claimed_epsilon=claimed_epsilon,
        noise=noise,
        plan=guess_plan,
        canary_rows_added=canaries.rows_added,
    )


def idealized_bound(
    *,
    canaries: int,
    steps: int,
    sample_rate: float,
    noise_multiplier: float,
    grid: tuple[int, ...],
    delta: float,
    confidence: float,
    seed: int,
) -> EpsilonLowerBound:
    """What a perfect one-run audit could prove with these canaries (the test's limit).

    The same m, steps, sample rate, noise and guesses, in an ideal model: canaries
    exactly orthogonal, all of a clipped canary on its weight. A canary's score, in
    clipping norms, is the times it was sampled plus the noise on its direction,
    N(0, steps x sigma^2): the Gaussian mechanism the accountant analyses.
    """
    rng = np.random.default_rng(seed)
    included = rng.random(canaries) < 0.5
    sampled = rng.binomial(steps, sample_rate, size=canaries) * included
    scores = sampled + rng.normal(0.0, noise_multiplier * math.sqrt(steps), size=canaries)
    return one_run_epsilon_lower_bound(
        _untied(scores, seed),
        included,
        delta=delta,
        confidence=confidence,
        guess_counts=grid,
        included_share=INCLUDED_SHARE,
    )
