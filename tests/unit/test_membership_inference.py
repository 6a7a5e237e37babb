"""The loss-threshold attack and its metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audits.membership_inference import (
    MembershipInferenceResult,
    balanced_sample,
    evaluate_scores,
    tpr_at_fpr,
)
from audits.plots import plot_roc


def _loss_threshold(
    member_losses: np.ndarray, non_member_losses: np.ndarray
) -> MembershipInferenceResult:
    # The loss-threshold attack (Yeom et al. 2018): low loss suggests a member.
    return evaluate_scores(-member_losses, -non_member_losses, attack="loss_threshold")


def test_when_members_have_lower_loss_then_the_attack_detects_them() -> None:
    rng = np.random.default_rng(0)
    members = rng.exponential(0.1, 2000)
    non_members = rng.exponential(1.0, 2000)

    result = _loss_threshold(members, non_members)

    assert result.mia_auc > 0.85
    assert result.mia_tpr_at_1pct_fpr > 0.05
    assert result.members == result.non_members == 2000


def test_when_losses_share_one_distribution_then_auc_is_near_one_half() -> None:
    rng = np.random.default_rng(1)

    result = _loss_threshold(rng.exponential(1, 5000), rng.exponential(1, 5000))

    assert abs(result.mia_auc - 0.5) < 0.03
    assert result.mia_tpr_at_1pct_fpr < 0.03


def test_when_scores_separate_perfectly_then_tpr_at_any_fpr_is_one() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])

    assert tpr_at_fpr(labels, scores, 0.0) == 1.0


def test_when_scores_are_reversed_then_low_fpr_tpr_is_zero() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])

    assert tpr_at_fpr(labels, scores, 0.01) == 0.0


def test_when_scores_are_not_finite_then_the_audit_refuses() -> None:
    with pytest.raises(ValueError, match="finite"):
        evaluate_scores(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), attack="x")


def test_when_there_are_no_non_members_then_the_audit_refuses() -> None:
    with pytest.raises(ValueError, match="non-members"):
        evaluate_scores(np.array([1.0]), np.array([]), attack="x")


def test_when_sampling_then_both_sides_get_equal_distinct_indices() -> None:
    members, non_members = balanced_sample(1000, 300, limit=500, seed=3)

    assert len(members) == len(non_members) == 300
    assert len(set(members)) == 300
    assert members.max() < 1000
    assert non_members.max() < 300


def test_when_an_attack_is_summarized_then_its_roc_is_a_monotone_aggregate_and_plots(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(2)
    result = _loss_threshold(rng.exponential(0.5, 3000), rng.exponential(1.0, 3000))

    png = plot_roc([result], tmp_path / "roc.png")

    assert len(result.roc_fpr) == len(result.roc_tpr) < 100  # a grid, not one point per record
    assert list(result.roc_tpr) == sorted(result.roc_tpr)
    assert 0.01 in result.roc_fpr
    assert 0.001 in result.roc_fpr
    assert png.read_bytes().startswith(b"\x89PNG")
