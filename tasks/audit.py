"""Tasks that audit the model and judge every gate.

Reference models train in parallel groups (`train-reference-models`, one task per
group, each a stacked ensemble) while the canary audit and its non-private control run
as two more tasks; `audit-membership-inference` combines them. All of it stays in
memory: per-record probabilities never become Prefect results.
"""

from __future__ import annotations

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from audits.canaries import CanaryAudit
from audits.gates import GateReport
from audits.suite import AuditReport
from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.errors import withheld
from tasks._options import IN_MEMORY


@task(name="train-reference-models", **IN_MEMORY)
def train_reference_models(
    trained: stages.Trained, config: PipelineConfig, group: int
) -> np.ndarray:
    """Train one group of reference models with the target's recipe on the test table."""
    with withheld("train-reference-models"):
        return stages.reference_predictions(trained, config, group=group)


@task(name="canary-audit", **IN_MEMORY)
def run_canary_audit(
    trained: stages.Trained, config: PipelineConfig, private: bool
) -> CanaryAudit | None:
    """Train once with canaries (DP, or without for the control) and bound epsilon."""
    with withheld("canary-audit"):
        result = stages.canary_run(trained, config, private=private)
    if result is not None:
        logger = get_run_logger()
        for kind, bound in (
            ("black box", result.bound),
            ("white box", result.white_box and result.white_box.bound),
        ):
            if bound is not None:
                logger.info(
                    "canary audit, %s (%s): epsilon >= %.3f from %d of %d guesses, %.1f s",
                    kind,
                    "DP" if private else "control, noise off",
                    bound.epsilon,
                    bound.correct,
                    bound.guesses,
                    result.seconds,
                )
    return result


@task(name="audit-membership-inference", **IN_MEMORY)
def audit_membership_inference(
    trained: stages.Trained,
    config: PipelineConfig,
    reference_parts: list[np.ndarray],
    canary: CanaryAudit | None,
    control: CanaryAudit | None,
    seconds: float,
) -> AuditReport:
    """Attack the model: can it tell its training rows from held-out rows?"""
    with withheld("audit-membership-inference"):
        report = stages.audit(
            trained,
            config,
            reference_parts=reference_parts,
            canary=canary,
            control=control,
            seconds=seconds,
        )
    create_markdown_artifact(key="audit-report", markdown=report.to_markdown())
    get_run_logger().info(
        "membership inference, strongest %s: AUC %.4f, TPR@1%%FPR %.4f; epsilon >= %.3f",
        report.strongest.attack,
        report.mia_auc,
        report.mia_tpr_at_1pct_fpr,
        report.empirical_epsilon_lower_bound,
    )
    return report


@task(name="evaluate-gates", **IN_MEMORY)
def evaluate_gates(
    verification: stages.Verification,
    policy: PrivacyPolicy,
    trained: stages.Trained | None = None,
    audit: AuditReport | None = None,
) -> GateReport:
    """Judge the gates (only the data gates before training) and publish the report."""
    with withheld("evaluate-gates"):
        if trained is None or audit is None:
            report = stages.judge_data(verification, policy)
        else:
            report = stages.judge(verification, trained, audit, policy)
    create_markdown_artifact(key="gate-report", markdown=report.to_markdown())
    logger = get_run_logger()
    for result in report.results:
        logger.info(result.describe())
    return report
