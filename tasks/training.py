"""The differentially private training task."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.runtime import flow_run

from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.errors import withheld
from tasks._options import IN_MEMORY


@task(name="train-dp-model", **IN_MEMORY)
def train_dp_model(
    anonymized: stages.Anonymized,
    tables: stages.Tables,
    config: PipelineConfig,
    policy: PrivacyPolicy,
) -> stages.Trained:
    """Charge the privacy ledger, train with Opacus DP-SGD, evaluate on the test table."""
    # Each attempt, retries included, is charged under this flow run's id.
    with withheld("train-dp-model"):
        trained = stages.train(anonymized, tables, config, policy, run_key=str(flow_run.id))
    dp = trained.model.dp
    get_run_logger().info(
        "trained %s on %d rows in %.1f s: epsilon=%.4g delta=%.3g sigma=%.4g, test accuracy %.4f",
        config.training.model,
        trained.model.n_train,
        trained.model.seconds,
        dp.epsilon,
        dp.delta,
        dp.noise_multiplier,
        trained.test_accuracy,
    )
    return trained
