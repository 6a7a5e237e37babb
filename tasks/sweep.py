"""The sweep's task: the pipeline from anonymization to the gates, at one grid point."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.runtime import flow_run

from audits.gates import GateReport
from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.data.validation import ValidationReport
from privgate.pii.engine import ScanReport
from privgate.sweep import GridPoint, PointResult, point_config
from tasks._options import IN_MEMORY


@dataclass
class PointOutcome:
    """One point's verdict, and what registering it would need (memory only)."""

    result: PointResult
    config: PipelineConfig
    evidence: stages.RunEvidence | None = None
    gates: GateReport | None = None


@task(name="sweep-point", **IN_MEMORY)
def run_sweep_point(
    tables: stages.Tables,
    validation: ValidationReport,
    scan: ScanReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    point: GridPoint,
) -> PointOutcome:
    """Anonymize to the point's k, verify, train at its epsilon, audit, judge every gate.

    A point blocked by a data gate is not trained. A point that crashes is recorded with
    its stage and error class only (its message may quote data) and never chosen; the
    sweep goes on with the others. Each DP training is charged to the ledger under its
    own run key, so a retried point finds its reservation instead of paying twice.
    """
    config = point_config(config, point)
    started = time.perf_counter()
    stage = "anonymize"
    try:
        anonymized = stages.anonymize(tables, scan, config)
        stage = "verify"
        # The points redact and re-scan the same texts: the flow clears the cache at the end.
        verification = stages.verify(anonymized, config, policy, keep_cache=True)
        data_gates = stages.judge_data(verification, policy)
        if not data_gates.passed:
            return PointOutcome(
                _result(point, data_gates, started=started), config, gates=data_gates
            )
        stage = "train"
        trained = stages.train(
            anonymized, tables, config, policy, run_key=f"{flow_run.id}:{point.label}"
        )
        stage = "audit"
        audit = stages.run_audit(trained, config)
        gates = stages.judge(verification, trained, audit, policy)
    except Exception as exc:  # recorded, not raised: the other points still count
        get_run_logger().warning(
            "sweep point %s failed in %s with %s", point.label, stage, type(exc).__name__
        )
        error = f"{stage}: {type(exc).__name__}"
        result = PointResult(point=point, error=error, seconds=time.perf_counter() - started)
        return PointOutcome(result, config)
    dp = trained.model.dp
    result = PointResult(
        point=point,
        epsilon_spent=dp.epsilon_spent,
        delta=dp.delta if config.training.dp.enabled else None,
        accuracy=trained.test_accuracy,
        mia_auc=audit.mia_auc,
        mia_tpr_at_1pct_fpr=audit.mia_tpr_at_1pct_fpr,
        empirical_epsilon_lower_bound=audit.empirical_epsilon_lower_bound,
        gates={r.name: r.status for r in gates.results},
        seconds=time.perf_counter() - started,
    )
    evidence = stages.RunEvidence(
        tables, validation, scan, anonymized, verification, trained, audit
    )
    get_run_logger().info(
        "sweep point %s: accuracy %.4f, epsilon %.3g, MIA AUC %.3f, %s",
        point.label,
        trained.test_accuracy,
        dp.epsilon_spent,
        audit.mia_auc,
        "every gate passed" if gates.passed else "blocked",
    )
    return PointOutcome(result, config, evidence, gates)


def _result(point: GridPoint, gates: GateReport, *, started: float) -> PointResult:
    return PointResult(
        point=point,
        gates={r.name: r.status for r in gates.results},
        seconds=time.perf_counter() - started,
    )
