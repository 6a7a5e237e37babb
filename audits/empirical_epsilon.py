"""Empirical lower bounds on epsilon: what an attack proves a mechanism cannot be.

A differential-privacy accountant gives an *upper* bound on epsilon. An audit gives a
*lower* bound: if an attack tells members from non-members better than
(epsilon, delta)-DP allows, the mechanism is not (epsilon, delta)-DP, with a stated
confidence. A lower bound far below the accountant's epsilon is normal (the attack is
weak); a lower bound above it means a bug in the mechanism or in its accounting.

Two audits live here:

- `epsilon_lower_bound_from_scores`: the classic audit (Jagielski et al. 2020,
  Nasr et al. 2021). Every score comes from an independent trial on neighbouring
  datasets (with or without the record). Threshold tests on a fixed FPR grid, exact
  Clopper-Pearson intervals, a Bonferroni correction over the grid.
- `one_run_epsilon_lower_bound`: the one-run audit of Steinke, Nasr and Jagielski,
  "Privacy Auditing with One (1) Training Run" (NeurIPS 2023, arXiv 2305.08846).
  Many canaries, each included independently with probability 1/2, in a single
  training run; the auditor guesses inclusion for the extreme scores.

Per-record scores never leave this module: results carry counts, rates and epsilon.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

# Fixed before any data is seen: that is what makes a Bonferroni correction over its
# points valid. Denser grids cost confidence per point; these span the regime
# (low FPR) where strong attacks show their evidence.
DEFAULT_FPR_GRID: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
# Fractions of the canaries guessed in the one-run audit, half top and half bottom.
DEFAULT_GUESS_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# The search range for epsilon; the bound reports MAX_EPSILON if even that is refuted.
MAX_EPSILON = 50.0


@dataclass(frozen=True)
class EpsilonLowerBound:
    """An empirical lower bound on epsilon at a given delta (aggregates only).

    The statement is: with probability at least `confidence` over the audit's
    randomness, the audited mechanism is not (epsilon', delta)-DP for any
    epsilon' < `epsilon`. An `epsilon` of 0.0 means the evidence proves nothing.

    Attributes:
        epsilon: The lower bound, >= 0.
        confidence: The confidence of the overall statement, after correction.
        delta: The delta at which epsilon is bounded.
        method: "clopper_pearson" or "one_run_canaries".
        tests: How many one-sided tests shared the error budget (Bonferroni).
        target_fpr: Classic audit: the grid FPR that gave the best bound.
        fpr: Classic audit: the measured FPR at that threshold.
        tpr: Classic audit: the measured TPR at that threshold.
        members: Classic audit: how many member scores were given.
        non_members: Classic audit: how many non-member scores were given.
        guesses: One-run audit: how many guesses the best point made (at most).
        correct: One-run audit: how many of them were correct.
        canaries: One-run audit: how many canaries were randomized.
    """

    epsilon: float
    confidence: float
    delta: float
    method: str
    tests: int
    target_fpr: float | None = None
    fpr: float | None = None
    tpr: float | None = None
    members: int | None = None
    non_members: int | None = None
    guesses: int | None = None
    correct: int | None = None
    canaries: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def clopper_pearson(successes: int, trials: int, *, alpha: float) -> tuple[float, float]:
    """Return the exact two-sided (1 - alpha) Clopper-Pearson interval of a proportion.

    Each side misses with probability at most alpha / 2, so one end of the interval
    at `alpha` is a one-sided bound at level alpha / 2.

    Args:
        successes: Observed successes, in [0, trials].
        trials: Number of trials, > 0.
        alpha: One minus the confidence level, in (0, 1).

    Returns:
        (lower, upper); lower is 0.0 when successes == 0 and upper is 1.0 when
        successes == trials.

    Raises:
        ValueError: If trials <= 0, successes is outside [0, trials] or alpha is
            outside (0, 1).
    """
    trials = _as_int(trials, "trials")
    successes = _as_int(successes, "successes")
    if trials <= 0:
        raise ValueError(f"trials must be > 0, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, trials={trials}], got {successes}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    lower = 0.0
    if successes > 0:
        lower = float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    upper = 1.0
    if successes < trials:
        upper = float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return lower, upper


@dataclass(frozen=True)
class _ThresholdTest:
    """Counts of one threshold test; `fp_bound` is the count its FPR bound uses."""

    target_fpr: float
    tp: int
    fp: int
    fp_bound: int
    members: int
    non_members: int


@dataclass(frozen=True)
class _RateBounds:
    """One-sided bounds on a threshold test's TPR and FPR."""

    test: _ThresholdTest
    tpr_lower: float
    fpr_upper: float


def epsilon_lower_bound_from_scores(
    member_scores: ArrayLike,
    non_member_scores: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    fpr_grid: Sequence[float] | None = None,
) -> EpsilonLowerBound:
    """Bound epsilon from below with threshold tests on member and non-member scores.

    Higher score means "member". For each target FPR of the grid, the threshold is the
    non-member score with that fraction of non-members above it; TPR is bounded from
    below and FPR from above by one-sided Clopper-Pearson intervals. (epsilon, delta)-DP
    implies, for every test, TPR <= e^eps FPR + delta and, on the complement,
    1 - FPR <= e^eps (1 - TPR) + delta. Solving each for epsilon with the conservative
    end of each interval gives the bound.

    The threshold is a non-member order statistic, so the FP count is not binomial;
    but the true FPR above the (k+1)-th largest of n continuous scores is
    Beta(k + 1, n - k), whose upper quantile is exactly the Clopper-Pearson bound for
    k false positives (ties only make the true FPR smaller). Members are counted
    against that threshold independently of it.

    Both inequalities grow with TPR and shrink with FPR, so at each grid point the two
    one-sided intervals (TPR lower, FPR upper) cover both. The grid is fixed before the
    data is seen, so a Bonferroni split of 1 - confidence over 2 x len(grid) intervals
    makes the overall statement hold at `confidence`.

    Assumes each score comes from an independent trial of neighbouring datasets. On
    many canaries of a single training run use `one_run_epsilon_lower_bound`.

    Args:
        member_scores: Attack scores of records that were trained on.
        non_member_scores: Attack scores of records that were not.
        delta: The delta at which epsilon is bounded, in [0, 1).
        confidence: Confidence of the overall statement, in (0, 1).
        fpr_grid: Target FPRs in (0, 1), fixed before looking at the scores.

    Returns:
        The bound, with the rates of the grid point that gave it.

    Raises:
        ValueError: If a score array is empty or not finite, or delta, confidence or
            fpr_grid is out of range.
    """
    bounds, tests, members, non_members = _bounded_threshold_tests(
        member_scores, non_member_scores, delta=delta, confidence=confidence, fpr_grid=fpr_grid
    )
    best_epsilon = -math.inf
    best: _RateBounds | None = None
    for point in bounds:
        candidate = _epsilon_at(point, delta)
        if candidate is not None and candidate > best_epsilon:
            best_epsilon, best = candidate, point
    return EpsilonLowerBound(
        epsilon=max(0.0, best_epsilon),
        confidence=confidence,
        delta=delta,
        method="clopper_pearson",
        tests=tests,
        target_fpr=None if best is None else best.test.target_fpr,
        fpr=None if best is None else best.test.fp / best.test.non_members,
        tpr=None if best is None else best.test.tp / best.test.members,
        members=members,
        non_members=non_members,
    )


def dp_violations(
    member_scores: ArrayLike,
    non_member_scores: ArrayLike,
    *,
    epsilon: float,
    delta: float,
    confidence: float = 0.95,
    fpr_grid: Sequence[float] | None = None,
) -> list[dict[str, float | str]]:
    """Return the grid points where the attack beats what (epsilon, delta)-DP allows.

    (epsilon, delta)-DP lets no test reach TPR > e^eps FPR + delta, nor
    1 - FPR > e^eps (1 - TPR) + delta. A point is a violation when the lower end of
    the left side exceeds the upper end of the right side, with the same intervals
    and Bonferroni correction as `epsilon_lower_bound_from_scores`: all reported
    violations are real at `confidence`. There are violations exactly when that
    function's bound exceeds `epsilon`.

    Args:
        member_scores: Attack scores of records that were trained on.
        non_member_scores: Attack scores of records that were not.
        epsilon: The claimed epsilon, >= 0.
        delta: The claimed delta, in [0, 1).
        confidence: Confidence of the overall statement, in (0, 1).
        fpr_grid: Target FPRs in (0, 1), fixed before looking at the scores.

    Returns:
        One dict per violated inequality (aggregates only): `inequality`,
        `target_fpr`, measured `tpr` and `fpr`, their bounds `tpr_lower` and
        `fpr_upper`, the `observed` lower end and the `allowed` upper end.

    Raises:
        ValueError: If a score array is empty or not finite, or epsilon, delta,
            confidence or fpr_grid is out of range.
    """
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be finite and >= 0, got {epsilon}")
    bounds, _, _, _ = _bounded_threshold_tests(
        member_scores, non_member_scores, delta=delta, confidence=confidence, fpr_grid=fpr_grid
    )
    violations: list[dict[str, float | str]] = []
    for point in bounds:
        checks = (
            ("tpr <= e^eps * fpr + delta", point.tpr_lower, point.fpr_upper),
            ("1 - fpr <= e^eps * (1 - tpr) + delta", 1 - point.fpr_upper, 1 - point.tpr_lower),
        )
        for inequality, observed, base in checks:
            allowed = math.exp(epsilon) * base + delta
            if observed > allowed:
                violations.append(
                    {
                        "inequality": inequality,
                        "target_fpr": point.test.target_fpr,
                        "tpr": point.test.tp / point.test.members,
                        "fpr": point.test.fp / point.test.non_members,
                        "tpr_lower": point.tpr_lower,
                        "fpr_upper": point.fpr_upper,
                        "observed": observed,
                        "allowed": allowed,
                    }
                )
    return violations


def one_run_epsilon_for_counts(
    *, guesses: int, correct: int, delta: float, canaries: int, confidence: float = 0.95
) -> float:
    """Return the one-run audit's epsilon lower bound for one count of correct guesses.

    Steinke, Nasr and Jagielski (2023): if the mechanism is (eps, delta)-DP, m canaries
    are included independently with probability 1/2 and at most r guesses are made,
    then P[correct >= v] <= f(v) + 2 m delta max_{1<=i<=v} (f(v - i) - f(v)) / i,
    where f(v) = P[Binomial(r, e^eps / (1 + e^eps)) >= v]. With delta = 0 this is the
    plain binomial tail. The formula is the paper's reference code (Appendix D), as
    also implemented in google-deepmind/jax_privacy (`jax_privacy/auditing.py`,
    `_one_run_p_value`). Any eps whose p-value is <= 1 - confidence is refuted, and so
    is every smaller eps, since (eps, delta)-DP implies (eps', delta)-DP for eps' >= eps.

    Args:
        guesses: Upper bound r on the number of guesses, in [0, canaries].
        correct: Correct guesses v, in [0, guesses].
        delta: The delta at which epsilon is bounded, in [0, 1).
        canaries: Number m of randomized canaries, > 0.
        confidence: Confidence of the statement, in (0, 1); apply any multiple-testing
            correction before calling.

    Returns:
        The largest refuted eps in [0, MAX_EPSILON] found by root search; 0.0 if
        even eps = 0 is not refuted.

    Raises:
        ValueError: If a count, delta or confidence is out of range.
    """
    canaries = _as_int(canaries, "canaries")
    guesses = _as_int(guesses, "guesses")
    correct = _as_int(correct, "correct")
    if canaries <= 0:
        raise ValueError(f"canaries must be > 0, got {canaries}")
    if not 0 <= guesses <= canaries:
        raise ValueError(f"guesses must be in [0, canaries={canaries}], got {guesses}")
    if not 0 <= correct <= guesses:
        raise ValueError(f"correct must be in [0, guesses={guesses}], got {correct}")
    _check_delta(delta)
    _check_confidence(confidence)
    significance = 1.0 - confidence

    def excess(eps: float) -> float:
        return _one_run_p_value(canaries, guesses, correct, eps, delta) - significance

    if correct == 0 or excess(0.0) > 0:
        return 0.0
    if excess(MAX_EPSILON) <= 0:
        return MAX_EPSILON
    # The p-value grows with eps in the region that matters (v above r/2); should it
    # not, brentq still returns a refuted eps, never one beyond the largest refuted.
    return float(optimize.brentq(excess, 0.0, MAX_EPSILON, xtol=1e-6))


def one_run_epsilon_lower_bound(
    canary_scores: ArrayLike,
    included: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    guess_counts: Sequence[int] | None = None,
    included_share: float = 0.5,
) -> EpsilonLowerBound:
    """Bound epsilon from below with the one-run canary audit (Steinke et al. 2023).

    Each canary must have been included in the single training run independently with
    probability 1/2. For every number of guesses r in a grid fixed in advance, the
    auditor guesses "included" for the ceil(r/2) highest scores and "excluded" for the
    floor(r/2) lowest, abstains on the rest, and counts correct guesses. A tie group
    straddling a cut-off is abstained on, so guesses depend on scores alone (never on
    the order of the arrays); add a tiny random jitter to scores to have ties guessed.
    A Bonferroni split of 1 - confidence over the grid keeps the best point valid.

    Args:
        canary_scores: One attack score per canary; higher means "included".
        included: Whether each canary was really trained on (booleans).
        delta: The delta at which epsilon is bounded, in [0, 1).
        confidence: Confidence of the overall statement, in (0, 1).
        guess_counts: Numbers of guesses to try, each in [1, len(canary_scores)];
            default: 1%, 2%, 5%, 10%, 20%, 50% and 100% of the canaries.
        included_share: Share of each r guessed "included" (on the highest scores), the
            rest "excluded" on the lowest; fixed in advance. 0.5 suits scores shifted
            alike both ways; 1.0 suits an included canary whose score varies more than
            an excluded one's (the white-box audit's: it was sampled a random number of
            times), whose low end mixes with the excluded ones.

    Returns:
        The bound, with the guess and correct counts of the grid point that gave it.

    Raises:
        ValueError: If the inputs are empty, of different lengths, not finite or not
            boolean, or delta, confidence or guess_counts is out of range.
    """
    scores = _finite_scores(canary_scores, "canary_scores")
    truth = np.asarray(included)
    if truth.ndim != 1 or len(truth) != len(scores):
        raise ValueError(
            f"included must be 1-D with one entry per canary ({len(scores)}), "
            f"got shape {truth.shape}"
        )
    if truth.dtype != np.bool_:
        if not np.all(np.isin(truth, (0, 1))):
            raise ValueError("included must hold booleans (True = trained on)")
        truth = truth.astype(bool)
    _check_delta(delta)
    _check_confidence(confidence)
    if not 0.0 <= included_share <= 1.0:
        raise ValueError(f"included_share must be in [0, 1], got {included_share}")
    m = len(scores)
    grid = _guess_grid(guess_counts, m)
    level = 1.0 - (1.0 - confidence) / len(grid)

    order = np.sort(scores)
    best_epsilon, best_r, best_v = -1.0, 0, 0
    for r in grid:
        top = r if included_share == 1.0 else math.ceil(r * included_share)
        bottom = r - top
        positive = _top_guesses(scores, order, top)
        negative = _top_guesses(-scores, -order[::-1], bottom)
        v = int(np.count_nonzero(truth & positive) + np.count_nonzero(~truth & negative))
        eps = one_run_epsilon_for_counts(
            guesses=r, correct=v, delta=delta, canaries=m, confidence=level
        )
        if eps > best_epsilon:
            best_epsilon, best_r, best_v = eps, r, v
    return EpsilonLowerBound(
        epsilon=best_epsilon,
        confidence=confidence,
        delta=delta,
        method="one_run_canaries",
        tests=len(grid),
        guesses=best_r,
        correct=best_v,
        canaries=m,
    )


def _bounded_threshold_tests(
    member_scores: ArrayLike,
    non_member_scores: ArrayLike,
    *,
    delta: float,
    confidence: float,
    fpr_grid: Sequence[float] | None,
) -> tuple[list[_RateBounds], int, int, int]:
    """Validate inputs and bound the rates of the grid's threshold tests.

    Returns:
        The bounded tests, the number of one-sided intervals sharing the error
        budget, and the numbers of members and non-members.
    """
    members = _finite_scores(member_scores, "member_scores")
    non_members = _finite_scores(non_member_scores, "non_member_scores")
    _check_delta(delta)
    _check_confidence(confidence)
    grid = _fpr_grid(fpr_grid)
    # Two one-sided intervals per grid point share the error budget; grid points
    # skipped for too few non-members still count, so the split never looks at data.
    tests = 2 * len(grid)
    two_sided_alpha = 2 * (1.0 - confidence) / tests
    bounds = []
    for test in _threshold_tests(members, non_members, grid):
        tpr_lower, _ = clopper_pearson(test.tp, test.members, alpha=two_sided_alpha)
        _, fpr_upper = clopper_pearson(test.fp_bound, test.non_members, alpha=two_sided_alpha)
        bounds.append(_RateBounds(test=test, tpr_lower=tpr_lower, fpr_upper=fpr_upper))
    return bounds, tests, len(members), len(non_members)


def _threshold_tests(
    members: np.ndarray, non_members: np.ndarray, grid: Sequence[float]
) -> list[_ThresholdTest]:
    """Count TP and FP for a threshold at each grid FPR's non-member order statistic."""
    n = len(non_members)
    ordered = np.sort(non_members)
    tests = []
    for target in grid:
        # The tolerance keeps 0.001 * 1000 from flooring to 0 in binary floating point.
        k = math.floor(target * n + 1e-9)
        if k >= n:
            continue
        threshold = ordered[n - k - 1]
        tests.append(
            _ThresholdTest(
                target_fpr=target,
                tp=int(np.count_nonzero(members > threshold)),
                fp=int(np.count_nonzero(non_members > threshold)),
                fp_bound=k,
                members=len(members),
                non_members=n,
            )
        )
    return tests


def _epsilon_at(point: _RateBounds, delta: float) -> float | None:
    """Return the larger epsilon both DP inequalities force at one point, if defined."""
    candidates = []
    if point.tpr_lower > delta and point.fpr_upper > 0:
        candidates.append(math.log((point.tpr_lower - delta) / point.fpr_upper))
    if 1 - point.fpr_upper > delta and point.tpr_lower < 1:
        candidates.append(math.log((1 - point.fpr_upper - delta) / (1 - point.tpr_lower)))
    return max(candidates) if candidates else None


def _one_run_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Return the bound on P[correct >= v] under (eps, delta)-DP (Steinke et al.)."""
    q = float(special.expit(eps))
    tail = float(stats.binom.sf(v - 1, r, q))
    if delta == 0 or v == 0:
        return tail
    i = np.arange(1, v + 1)
    # window[i - 1] = P[v - i <= Binomial(r, q) < v]
    window = np.cumsum(stats.binom.pmf(v - i, r, q))
    return min(1.0, tail + 2 * m * delta * float(np.max(window / i)))


def _top_guesses(scores: np.ndarray, ascending: np.ndarray, count: int) -> np.ndarray:
    """Mark the `count` highest scores, leaving out a tie group cut by the boundary."""
    if count == 0:
        return np.zeros(len(scores), dtype=bool)
    cutoff = ascending[len(ascending) - count]
    at_or_above = scores >= cutoff
    if np.count_nonzero(at_or_above) == count:
        return at_or_above
    return scores > cutoff


def _guess_grid(guess_counts: Sequence[int] | None, m: int) -> list[int]:
    """Return the distinct numbers of guesses to try, validated against m canaries."""
    if guess_counts is None:
        return sorted({max(1, round(fraction * m)) for fraction in DEFAULT_GUESS_FRACTIONS})
    counts = [_as_int(count, "guess_counts") for count in guess_counts]
    if not counts or not all(1 <= count <= m for count in counts):
        raise ValueError(f"guess_counts must be non-empty, each in [1, {m}], got {counts}")
    return sorted(set(counts))


def _fpr_grid(fpr_grid: Sequence[float] | None) -> list[float]:
    """Return the distinct target FPRs, validated."""
    grid = list(DEFAULT_FPR_GRID if fpr_grid is None else fpr_grid)
    if not grid or not all(0.0 < f < 1.0 for f in grid):
        raise ValueError(f"fpr_grid must be non-empty, each in (0, 1), got {grid}")
    return sorted(set(grid))


def _finite_scores(scores: ArrayLike, name: str) -> np.ndarray:
    """Return `scores` as a 1-D float array, refusing empty or non-finite input."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite; drop or repair NaN and inf scores first")
    return array


def _check_delta(delta: float) -> None:
    """Refuse a delta outside [0, 1)."""
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")


def _check_confidence(confidence: float) -> None:
    """Refuse a confidence outside (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _as_int(value: int, name: str) -> int:
    """Return `value` as an int, refusing floats and other non-integers."""
    try:
        return operator.index(value)
    except TypeError as error:
        raise ValueError(f"{name} must be an integer, got {value!r}") from error
