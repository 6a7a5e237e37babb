"""Membership-inference attacks on a trained model, judged by TPR at low FPR.

An attack gives every record a score (higher = "this record was trained on"); the
audit compares the scores of members (training rows) with those of non-members
(held-out rows from the same table). Per-record scores never leave this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


@dataclass(frozen=True)
class MembershipInferenceResult:
    """Aggregate attack metrics (no per-record scores)."""

    attack: str
    mia_auc: float
    mia_tpr_at_1pct_fpr: float
    mia_tpr_at_0_1pct_fpr: float
    attacker_advantage: float
    members: int
    non_members: int
    # The ROC curve sampled on a fixed log-spaced FPR grid: an aggregate, not the scores.
    roc_fpr: tuple[float, ...] = ()
    roc_tpr: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_limit: float) -> float:
    """Return the best true-positive rate with false-positive rate <= `fpr_limit`."""
    fpr, tpr, _ = roc_curve(labels, scores)
    allowed = fpr <= fpr_limit
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def evaluate_scores(
    member_scores: np.ndarray, non_member_scores: np.ndarray, *, attack: str
) -> MembershipInferenceResult:
    """Summarize an attack's scores as AUC, TPR at 1% and 0.1% FPR and advantage."""
    if len(member_scores) == 0 or len(non_member_scores) == 0:
        raise ValueError("a membership-inference audit needs members and non-members")
    labels = np.concatenate([np.ones(len(member_scores)), np.zeros(len(non_member_scores))])
    scores = np.concatenate([member_scores, non_member_scores]).astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("attack scores must be finite")
    fpr, tpr, _ = roc_curve(labels, scores)
    grid = np.unique(np.concatenate([np.logspace(-4, 0, 60), [0.001, 0.01]]))
    return MembershipInferenceResult(
        attack=attack,
        mia_auc=float(roc_auc_score(labels, scores)),
        mia_tpr_at_1pct_fpr=tpr_at_fpr(labels, scores, 0.01),
        mia_tpr_at_0_1pct_fpr=tpr_at_fpr(labels, scores, 0.001),
        attacker_advantage=float(np.max(tpr - fpr)),
        members=len(member_scores),
        non_members=len(non_member_scores),
        roc_fpr=tuple(float(f) for f in grid),
        roc_tpr=tuple(tpr_at_fpr(labels, scores, float(f)) for f in grid),
    )


def balanced_sample(
    n_members: int, n_non_members: int, *, limit: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return equally many member and non-member indices, at most `limit` each."""
    size = min(n_members, n_non_members, limit)
    if size == 0 or math.isnan(size):
        raise ValueError("a membership-inference audit needs members and non-members")
    rng = np.random.default_rng(seed)
    return (
        np.sort(rng.choice(n_members, size=size, replace=False)),
        np.sort(rng.choice(n_non_members, size=size, replace=False)),
    )


def true_label_probability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return each row's model probability of its true label, kept inside (0, 1)."""
    p_positive = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    p_true = np.where(np.asarray(labels) >= 0.5, p_positive, 1.0 - p_positive)
    return np.clip(p_true, 1e-12, 1.0 - 1e-12)


def rmia_scores(target_p: np.ndarray, reference_p: np.ndarray, *, offline_a: float) -> np.ndarray:
    """Return RMIA scores (Zarifzadeh et al. 2024): Pr(x | target) / Pr(x), in logs.

    `reference_p` (K, n) holds reference models' true-label probabilities, none of
    which trained on the records (offline). Pr(x) is their mean, corrected for that with
    `offline_a` as the paper does: Pr(x) = ((1 + a) Pr_out(x) + (1 - a)) / 2. RMIA then
    compares this ratio with the ratios of population records z at threshold gamma;
    for a fixed gamma that comparison is monotone in the ratio of x, so the ratio
    itself ranks records identically and yields the same ROC curve.
    """
    marginal = 0.5 * ((1.0 + offline_a) * reference_p.mean(axis=0) + (1.0 - offline_a))
    return np.log(target_p) - np.log(marginal)


def lira_offline_scores(target_p: np.ndarray, reference_p: np.ndarray) -> np.ndarray:
    """Return offline LiRA scores (Carlini et al. 2022): how far above the OUT Gaussian.

    Confidences are logit-scaled, log(p / (1 - p)); with fewer than 16 reference models
    one global standard deviation replaces the per-record ones, as the paper advises.
    """
    phi = np.log(target_p) - np.log1p(-target_p)
    reference_phi = np.log(reference_p) - np.log1p(-reference_p)
    mean = reference_phi.mean(axis=0)
    if reference_phi.shape[0] >= 16:
        std = reference_phi.std(axis=0) + 1e-6
    else:
        std = float(reference_phi.std(axis=0).mean()) + 1e-6
    return (phi - mean) / std
