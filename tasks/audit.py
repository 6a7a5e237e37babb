"""Tasks that audit the model and judge every gate."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from audits.gates import GateReport
from audits.membership_inference import MembershipInferenceResult
from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.errors import withheld
from tasks._options import IN_MEMORY


@task(name="audit-membership-inference", **IN_MEMORY)
def audit_membership_inference(
    trained: stages.Trained, config: PipelineConfig
) -> MembershipInferenceResult:
    """Attack the model: can it tell its training rows from held-out rows?"""
    with withheld("audit-membership-inference"):
        result = stages.audit(trained, config)
    get_run_logger().info(
        "membership inference (%s): AUC %.4f, TPR@1%%FPR %.4f",
        result.attack,
        result.mia_auc,
        result.mia_tpr_at_1pct_fpr,
    )
    return result


@task(name="evaluate-gates", **IN_MEMORY)
def evaluate_gates(
    verification: stages.Verification,
    policy: PrivacyPolicy,
    trained: stages.Trained | None = None,
    attack: MembershipInferenceResult | None = None,
) -> GateReport:
    """Judge the gates (only the data gates before training) and publish the report."""
    with withheld("evaluate-gates"):
        if trained is None or attack is None:
            report = stages.judge_data(verification, policy)
        else:
            report = stages.judge(verification, trained, attack, policy)
    create_markdown_artifact(key="gate-report", markdown=report.to_markdown())
    logger = get_run_logger()
    for result in report.results:
        logger.info(result.describe())
    return report
