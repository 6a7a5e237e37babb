"""The task that registers the model and moves the alias only when every gate passed."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.runtime import flow_run

from audits.gates import GateReport
from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.errors import withheld
from privgate.registry import Registration
from tasks._options import IN_MEMORY


@task(name="register-model", **IN_MEMORY)
def register_model(
    *,
    evidence: stages.RunEvidence,
    gates: GateReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
) -> Registration:
    """Log the run to MLflow, register a version, tag its verdict, move the alias if approved."""
    # The flow run's id keys the registration: a retry finds its version, never a second.
    with withheld("register-model"):
        registration = stages.register(evidence, gates, config, policy, run_key=str(flow_run.id))
    get_run_logger().info(
        "registered %s version %s (%s)",
        registration.model_name,
        registration.version,
        "promoted to " + config.registry.alias if registration.promoted else "not promoted",
    )
    return registration
