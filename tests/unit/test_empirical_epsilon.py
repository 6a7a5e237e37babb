"""Empirical epsilon lower bounds: Clopper-Pearson, threshold audits, one-run audits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from audits.empirical_epsilon import (
    EpsilonLowerBound,
    clopper_pearson,
    dp_violations,
    epsilon_lower_bound_from_scores,
    one_run_epsilon_for_counts,
    one_run_epsilon_lower_bound,
)


def randomized_response(m: int, epsilon: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return scores of an exactly epsilon-DP mechanism on m canaries, and the truth.

    Each canary is included with probability 1/2; its score is the true bit with
    probability e^eps / (1 + e^eps), else the flipped bit, plus a tiny jitter that
    only breaks ties.
    """
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    truthful = rng.random(m) < math.exp(epsilon) / (1 + math.exp(epsilon))
    reported = np.where(truthful, included, ~included).astype(np.float64)
    return reported + 1e-6 * rng.standard_normal(m), included


def separated_scores() -> tuple[np.ndarray, np.ndarray]:
    """Return 1,000 member scores all above 1,000 non-member scores."""
    return np.linspace(2.0, 3.0, 1000), np.linspace(0.0, 1.0, 1000)


def p_value_by_the_papers_loop(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Steinke et al.'s bound on P[correct >= v], written as the paper's loop."""
    q = 1 / (1 + math.exp(-eps))
    tail = stats.binom.sf(v - 1, r, q)
    alpha, window = 0.0, 0.0
    for i in range(1, v + 1):
        window += stats.binom.pmf(v - i, r, q)
        alpha = max(alpha, window / i)
    return min(1.0, tail + alpha * delta * 2 * m)


def assert_aggregates_only(record: dict[str, Any]) -> None:
    for value in record.values():
        assert value is None or isinstance(value, str | int | float)


@pytest.mark.parametrize(
    ("successes", "trials", "confidence"),
    [(0, 10, 0.95), (10, 10, 0.95), (3, 10, 0.9), (1, 1000, 0.99), (517, 1000, 0.95)],
)
def test_when_interval_is_computed_then_it_matches_scipys_exact_interval(
    successes: int, trials: int, confidence: float
) -> None:
    expected = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=confidence, method="exact"
    )

    lower, upper = clopper_pearson(successes, trials, alpha=1 - confidence)

    assert lower == pytest.approx(expected.low, abs=1e-9)
    assert upper == pytest.approx(expected.high, abs=1e-9)
    assert (lower == 0.0) == (successes == 0)
    assert (upper == 1.0) == (successes == trials)


def test_when_scores_separate_perfectly_then_epsilon_is_clearly_positive() -> None:
    members, non_members = separated_scores()
    # By hand: 9 grid points x 2 intervals share 5%, so a = 0.05 / 18 per side. At
    # FPR 0.001 (1 false positive of 1,000) TPR >= a^(1/1000) = 0.99414 and
    # FPR <= 0.0081, so the complement gives log(0.9919 / 0.00586) = 5.13.
    a = 0.05 / 18
    tpr_lower = a ** (1 / 1000)
    fpr_upper = stats.beta.ppf(1 - a, 2, 999)
    by_hand = math.log((1 - fpr_upper - 1e-5) / (1 - tpr_lower))

    bound = epsilon_lower_bound_from_scores(members, non_members, delta=1e-5)

    assert 4.5 < bound.epsilon < 5.5  # measured 5.13
    assert bound.epsilon == pytest.approx(by_hand, rel=1e-9)
    assert bound.tests == 18
    assert bound.target_fpr == 0.001
    assert bound.tpr == 1.0
    assert bound.method == "clopper_pearson"


def test_when_members_and_non_members_share_one_distribution_then_epsilon_is_zero() -> None:
    rng = np.random.default_rng(0)

    bound = epsilon_lower_bound_from_scores(
        rng.normal(size=1000), rng.normal(size=1000), delta=1e-5
    )

    assert bound.epsilon < 0.05  # measured 0.0


def test_when_a_bound_is_exported_then_it_carries_aggregates_only() -> None:
    members, non_members = separated_scores()

    record = epsilon_lower_bound_from_scores(members, non_members, delta=1e-5).to_dict()

    assert_aggregates_only(record)
    assert record["members"] == record["non_members"] == 1000


@pytest.mark.parametrize(("epsilon", "power"), [(1.0, 0.5), (4.0, 2.0)])
def test_when_the_mechanism_is_epsilon_dp_then_the_one_run_bound_is_valid_and_useful(
    epsilon: float, power: float
) -> None:
    scores, included = randomized_response(5000, epsilon, seed=1)

    bound = one_run_epsilon_lower_bound(scores, included, delta=1e-5)

    # measured 0.873 at eps = 1 and 3.58 at eps = 4
    assert power < bound.epsilon <= epsilon
    assert bound.method == "one_run_canaries"
    assert bound.canaries == 5000
    assert bound.tests == 7
    assert_aggregates_only(bound.to_dict())


@pytest.mark.parametrize("epsilon", [1.0, 4.0])
def test_when_randomized_response_is_audited_classically_then_the_bound_is_valid(
    epsilon: float,
) -> None:
    scores, included = randomized_response(5000, epsilon, seed=1)

    bound = epsilon_lower_bound_from_scores(scores[included], scores[~included], delta=1e-5)

    # measured 0.822 at eps = 1 and 3.72 at eps = 4
    assert 0.0 < bound.epsilon <= epsilon


def test_when_the_one_run_audit_is_repeated_then_at_most_one_in_twenty_overclaims() -> None:
    epsilon = 1.0

    bounds = [
        one_run_epsilon_lower_bound(*randomized_response(1000, epsilon, seed), delta=1e-5)
        for seed in range(100, 120)
    ]

    # measured: all 20 in [0.70, 0.93]
    assert sum(bound.epsilon > epsilon for bound in bounds) <= 2
    assert all(bound.epsilon > 0.3 for bound in bounds)


def test_when_scores_separate_perfectly_then_a_small_claimed_epsilon_is_violated() -> None:
    members, non_members = separated_scores()

    violations = dp_violations(members, non_members, epsilon=1.0, delta=1e-5)

    assert violations
    for violation in violations:
        assert_aggregates_only(violation)
        assert violation["observed"] > violation["allowed"]


def test_when_distributions_are_identical_then_no_violation_is_reported() -> None:
    rng = np.random.default_rng(0)

    violations = dp_violations(
        rng.normal(size=1000), rng.normal(size=1000), epsilon=1.0, delta=1e-5
    )

    assert violations == []


@pytest.mark.parametrize("claimed", [4.0, 5.0, 5.2, 6.0])
def test_when_violations_exist_then_the_lower_bound_exceeds_the_claim(claimed: float) -> None:
    members, non_members = separated_scores()

    violations = dp_violations(members, non_members, epsilon=claimed, delta=1e-5)
    bound = epsilon_lower_bound_from_scores(members, non_members, delta=1e-5)

    assert bool(violations) == (bound.epsilon > claimed)


def test_when_every_guess_is_correct_then_the_pure_dp_bound_matches_the_binomial() -> None:
    # P[Binomial(100, q) >= 100] = q^100 = 0.05 at q = 0.05^(1/100), eps = logit(q).
    q = 0.05 ** (1 / 100)

    epsilon = one_run_epsilon_for_counts(guesses=100, correct=100, delta=0.0, canaries=1000)

    assert epsilon == pytest.approx(math.log(q / (1 - q)), abs=1e-5)  # 3.49


@pytest.mark.parametrize(
    ("canaries", "guesses", "correct", "delta"),
    [(1000, 100, 100, 1e-5), (5000, 5000, 3607, 1e-5), (5000, 500, 480, 1e-4)],
)
def test_when_delta_is_positive_then_the_bound_is_the_papers_root(
    canaries: int, guesses: int, correct: int, delta: float
) -> None:
    significance = 0.05

    epsilon = one_run_epsilon_for_counts(
        guesses=guesses, correct=correct, delta=delta, canaries=canaries
    )
    pure = one_run_epsilon_for_counts(
        guesses=guesses, correct=correct, delta=0.0, canaries=canaries
    )

    assert 0.0 < epsilon < pure
    p_value = p_value_by_the_papers_loop(canaries, guesses, correct, epsilon, delta)
    assert p_value == pytest.approx(significance, abs=1e-4)
    assert p_value_by_the_papers_loop(canaries, guesses, correct, epsilon + 0.01, delta) > (
        significance
    )


def test_when_delta_is_large_then_the_one_run_audit_proves_much_less() -> None:
    # 2 m delta = 10 multiplies the spread term: the guarantee allows many lucky runs.
    small = one_run_epsilon_for_counts(guesses=500, correct=480, delta=1e-5, canaries=5000)
    large = one_run_epsilon_for_counts(guesses=500, correct=480, delta=1e-3, canaries=5000)

    assert large < small - 0.5


def test_when_half_the_guesses_are_correct_then_nothing_is_proved() -> None:
    epsilon = one_run_epsilon_for_counts(guesses=1000, correct=500, delta=0.0, canaries=1000)

    assert epsilon == 0.0


def test_when_canaries_are_reordered_by_truth_then_tied_scores_leak_nothing() -> None:
    # Without jitter the scores are tied 0/1: guesses must depend on scores alone, not
    # on the array order, or sorting by `included` would fake a perfect attack.
    scores, included = randomized_response(1000, 1.0, seed=3)
    tied = np.round(scores)
    order = np.argsort(~included, kind="stable")

    shuffled = one_run_epsilon_lower_bound(tied, included, delta=1e-5)
    sorted_by_truth = one_run_epsilon_lower_bound(tied[order], included[order], delta=1e-5)

    assert sorted_by_truth == shuffled
    assert sorted_by_truth.epsilon <= 1.0


def test_when_guess_counts_are_given_then_the_correction_uses_them() -> None:
    scores, included = randomized_response(1000, 1.0, seed=4)

    bound = one_run_epsilon_lower_bound(scores, included, delta=0.0, guess_counts=[1000])

    assert bound.tests == 1
    assert bound.guesses == 1000
    assert bound.epsilon == pytest.approx(
        one_run_epsilon_for_counts(
            guesses=1000, correct=bound.correct or 0, delta=0.0, canaries=1000
        )
    )


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"successes": 1, "trials": 0, "alpha": 0.05}, "trials"),
        ({"successes": 11, "trials": 10, "alpha": 0.05}, "successes"),
        ({"successes": -1, "trials": 10, "alpha": 0.05}, "successes"),
        ({"successes": 1, "trials": 10, "alpha": 1.0}, "alpha"),
        ({"successes": 1.5, "trials": 10, "alpha": 0.05}, "successes"),
    ],
)
def test_when_interval_inputs_are_bad_then_the_argument_is_named(
    kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        clopper_pearson(**kwargs)


@pytest.mark.parametrize(
    ("members", "non_members", "kwargs", "argument"),
    [
        ([], [0.0], {"delta": 0.0}, "member_scores"),
        ([1.0], [], {"delta": 0.0}, "non_member_scores"),
        ([1.0, math.nan], [0.0], {"delta": 0.0}, "member_scores"),
        ([1.0], [math.inf], {"delta": 0.0}, "non_member_scores"),
        ([1.0], [0.0], {"delta": 1.0}, "delta"),
        ([1.0], [0.0], {"delta": -1e-5}, "delta"),
        ([1.0], [0.0], {"delta": 0.0, "confidence": 1.0}, "confidence"),
        ([1.0], [0.0], {"delta": 0.0, "fpr_grid": [0.0, 0.1]}, "fpr_grid"),
    ],
)
def test_when_score_audit_inputs_are_bad_then_the_argument_is_named(
    members: list[float], non_members: list[float], kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        epsilon_lower_bound_from_scores(members, non_members, **kwargs)


def test_when_the_claimed_epsilon_is_negative_then_violations_refuse() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        dp_violations([1.0], [0.0], epsilon=-1.0, delta=0.0)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"guesses": 10, "correct": 11, "canaries": 100}, "correct"),
        ({"guesses": 101, "correct": 1, "canaries": 100}, "guesses"),
        ({"guesses": 0, "correct": 0, "canaries": 0}, "canaries"),
        ({"guesses": 10, "correct": 5, "canaries": 100, "confidence": 0.0}, "confidence"),
    ],
)
def test_when_one_run_counts_are_bad_then_the_argument_is_named(
    kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        one_run_epsilon_for_counts(delta=0.0, **kwargs)


@pytest.mark.parametrize(
    ("scores", "included", "kwargs", "argument"),
    [
        ([], [], {}, "canary_scores"),
        ([1.0, math.nan], [True, False], {}, "canary_scores"),
        ([1.0, 0.0], [True], {}, "included"),
        ([1.0, 0.0], [2, 0], {}, "included"),
        ([1.0, 0.0], [True, False], {"guess_counts": [3]}, "guess_counts"),
        ([1.0, 0.0], [True, False], {"guess_counts": []}, "guess_counts"),
    ],
)
def test_when_one_run_inputs_are_bad_then_the_argument_is_named(
    scores: list[float], included: list[Any], kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        one_run_epsilon_lower_bound(scores, included, delta=0.0, **kwargs)


def test_when_results_are_compared_then_they_are_frozen_values() -> None:
    bound = EpsilonLowerBound(
        epsilon=0.0, confidence=0.95, delta=1e-5, method="one_run_canaries", tests=1
    )

    with pytest.raises(AttributeError):
        bound.epsilon = 1.0  # type: ignore[misc]
