"""Plots of audit aggregates (never of per-record scores)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from audits.membership_inference import MembershipInferenceResult


def plot_roc(results: Sequence[MembershipInferenceResult], path: Path) -> Path:
    """Write every attack's ROC curve on log-log axes, where low-FPR behaviour shows."""
    import matplotlib

    matplotlib.use("Agg")  # no display; also keeps matplotlib from probing for one
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    floor = 1e-4
    for result in results:
        axes.loglog(
            [max(f, floor) for f in result.roc_fpr],
            [max(t, floor) for t in result.roc_tpr],
            label=f"{result.attack} (AUC {result.mia_auc:.3f})",
        )
    axes.loglog([floor, 1], [floor, 1], linestyle="--", color="grey", label="chance")
    axes.set_xlabel("false-positive rate")
    axes.set_ylabel("true-positive rate")
    axes.set_title("Membership inference ROC")
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
