"""The run summary: what `privgate run --json` prints and the flow returns."""

from __future__ import annotations

import time
from typing import Any

from audits.gates import GateReport, json_number
from audits.suite import AuditReport
from privgate.config import PrivacyPolicy
from privgate.registry.versions import Registration


def run_summary(
    *,
    policy: PrivacyPolicy,
    gates: GateReport,
    started: float,
    trained: Any | None = None,
    audit: AuditReport | None = None,
    registration: Registration | None = None,
) -> dict[str, Any]:
    """Return the JSON-ready summary of a run (aggregates only).

    Non-finite numbers are null: a model trained without DP reports epsilon null.
    """
    dp = trained.model.dp if trained is not None else None
    return {
        "model_name": policy.registered_model_name,
        "version": registration.version if registration else None,
        "run_id": registration.run_id if registration else None,
        "promoted": bool(registration and registration.promoted),
        "blocked_by": [r.name for r in gates.failed],
        "gates": [
            {
                "name": r.name,
                "passed": r.passed,
                "status": r.status,
                "value": json_number(r.value),
                "threshold": json_number(r.threshold),
                "comparison": r.comparison,
                "details": r.details,
            }
            for r in gates.results
        ],
        "dp_enabled": dp.enabled if dp else None,
        "epsilon": json_number(dp.epsilon_spent) if dp else None,
        "epsilon_accountant": json_number(dp.epsilon) if dp else None,
        "epsilon_cross_check": json_number(dp.epsilon_cross_check) if dp else None,
        "delta": json_number(dp.delta) if dp else None,
        "accuracy": json_number(trained.test_accuracy) if trained is not None else None,
        "mia_auc": json_number(audit.mia_auc) if audit else None,
        "mia_tpr_at_1pct_fpr": json_number(audit.mia_tpr_at_1pct_fpr) if audit else None,
        "mia_tpr_at_0_1pct_fpr": json_number(audit.mia_tpr_at_0_1pct_fpr) if audit else None,
        "empirical_epsilon_lower_bound": json_number(audit.empirical_epsilon_lower_bound)
        if audit
        else None,
        "duration_s": round(time.perf_counter() - started, 3),
    }
