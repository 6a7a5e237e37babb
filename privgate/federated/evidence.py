"""The global view the gates judge, combined from the silos' aggregates.

Records are in exactly one silo, and each silo's DP-SGD chain touches only its own
records: by parallel composition the global model is (max epsilon, max delta)-DP per
record, the averaging being post-processing. The global view takes each measure at its
weakest silo: the smallest k and l, the largest residual count, epsilon and attack
success, the weakest audit power. Promotion needs the global view and every silo's own
view to pass; a gate of silo `s` is reported as `s/<gate>`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from audits.gates import Evidence, GateReport, GateResult, run_gates
from privgate.config import PrivacyPolicy
from privgate.federated.silo import SiloAudit, SiloEvidence

PER_RECORD_STATEMENT = (
    "Assuming each person's records are in one silo (the silos are disjoint, as the demo's "
    "split guarantees), only that silo's DP-SGD steps touch them; the global model averages "
    "the silos' updates (post-processing), so it is (epsilon, delta)-DP per record with "
    "epsilon and delta the largest of any silo's (parallel composition). A person held by "
    "several silos is protected by the sum of their epsilons. SecAgg+ hides each silo's "
    "update from the coordinator; it adds no DP of its own. The shared generalization "
    "levels, the counts, the audit figures and the accuracy are released outside the "
    "guarantee."
)


def _worst(values: list[Any], pick: Any) -> Any:
    present = [v for v in values if v is not None]
    return pick(present) if present else None


def combined_residuals(silos: list[SiloEvidence]) -> dict[str, Any] | None:
    """Sum the silos' residual counts per verifier (None unless every verifier ran in all)."""
    parts = [s.residual_by_verifier for s in silos]
    if not parts or any("cross_column" not in p for p in parts):
        return None
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                merged = out.setdefault(key, {})
                for name, count in value.items():
                    merged[name] = merged.get(name, 0) + count
            else:
                out[key] = out.get(key, 0) + value
    return out


def global_evidence(silos: list[SiloEvidence], audits: list[SiloAudit]) -> Evidence:
    """Return the global model's evidence: every measure at its weakest silo."""
    ev = [a.audit for a in audits]

    def field(name: str) -> list[Any]:
        return [e.get(f"gate_evidence.{name}") for e in ev]

    rows = sum(a.test_rows for a in audits)
    positive = sum(a.test_positive for a in audits)
    strongest = max(audits, key=lambda a: a.audit.get("gate_evidence.mia_auc") or 0.0)
    weakest_power = min(
        audits,
        key=lambda a: a.audit.get("gate_evidence.audit_power_epsilon") or 0.0,
    )
    return Evidence(
        residual_pii_findings=_worst([s.residual_pii for s in silos], sum),
        residual_pii_by_verifier=combined_residuals(silos),
        k_achieved=_worst([s.k_achieved for s in silos], min),
        l_achieved=_worst([s.l_achieved for s in silos], min),
        epsilon=_worst([a.dp["epsilon_spent"] for a in audits], max),
        delta=_worst([a.dp["delta"] for a in audits], max),
        n_train=sum(s.members for s in silos),
        accuracy=sum(a.test_correct for a in audits) / rows if rows else None,
        majority_rate=max(positive, rows - positive) / rows if rows else None,
        baseline_accuracy=None,
        mia_auc=_worst(field("mia_auc"), max),
        mia_tpr_at_1pct_fpr=_worst(field("mia_tpr_at_1pct_fpr"), max),
        strongest_attack=f"{strongest.silo}/{strongest.audit.get('gate_evidence.strongest_attack')}",
        empirical_epsilon_lower_bound=_worst(field("empirical_epsilon_lower_bound"), max),
        claimed_epsilon=_worst(field("claimed_epsilon"), max),
        dp_violations=_worst(field("dp_violations"), sum),
        audit_power_epsilon=weakest_power.audit.get("gate_evidence.audit_power_epsilon"),
        white_box_plan=weakest_power.audit.get("gate_evidence.white_box_plan"),
    )


def _results(silo: str, report: dict[str, Any]) -> list[GateResult]:
    return [
        GateResult(
            name=f"{silo}/{g['name']}",
            passed=bool(g["passed"]),
            value=g["value"],
            threshold=math.nan if g["threshold"] is None else float(g["threshold"]),
            comparison=g["comparison"],
            details=g.get("details", ""),
            inconclusive=bool(g.get("inconclusive", False)),
        )
        for g in report["gates"]
    ]


def federation_gates(rounds: list[dict[str, Any]], required: int) -> list[GateResult]:
    """Judge the protocol's own record of the rounds (a signal the silos' audits lack).

    - `federation/well_formed_updates`: no silo's masked vector was malformed in any
      round. The coordinator left such a vector out of the sum, so the model is not
      corrupted, but a silo sending one is broken or hostile: a person decides.
    - `federation/participation`: every round summed at least the silos the plan
      requires (the ServerApp enforces it too; this reads its record independently).
    """
    excluded = sorted({f"{name} (round {r['round']})" for r in rounds for name in r["excluded"]})
    fewest = min((len(r["summed"]) for r in rounds), default=0)
    return [
        GateResult(
            name="federation/well_formed_updates",
            passed=not excluded,
            value=float(len(excluded)),
            threshold=0.0,
            comparison="<=",
            details="malformed: " + ", ".join(excluded) if excluded else "",
        ),
        GateResult(
            name="federation/participation",
            passed=bool(rounds) and fewest >= required,
            value=float(fewest),
            threshold=float(required),
            comparison=">=",
            details=f"silos summed in the weakest of {len(rounds)} rounds",
        ),
    ]


def judge_federation(
    silos: list[SiloEvidence],
    audits: list[SiloAudit],
    policy: PrivacyPolicy,
    protocol: Sequence[GateResult] = (),
) -> GateReport:
    """Return the global gates, the protocol's, then every silo's own, in one report."""
    report = run_gates(global_evidence(silos, audits), policy)
    results = [*report.results, *protocol]
    for audit in audits:
        results.extend(_results(audit.silo, audit.gates))
    return GateReport(tuple(results))


def blocked_before_training(silos: list[SiloEvidence]) -> GateReport:
    """Return the data gates of every silo (named by silo), for a run that stops early."""
    results: list[GateResult] = []
    for silo in silos:
        results.extend(_results(silo.silo, silo.data_gates))
    return GateReport(tuple(results))


def attestation_silos(
    silos: list[SiloEvidence],
    audits: list[SiloAudit],
    rounds: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Return each silo's evidence as the attestation lists it (aggregates only).

    Each silo lists the rounds whose sum holds its update (a silo that dropped out or
    was excluded is missing from those rounds).
    """
    by_name = {a.silo: a for a in audits}
    out = []
    for silo in silos:
        audit = by_name[silo.silo]
        out.append(
            {
                "silo": silo.silo,
                "rounds_summed": [r["round"] for r in rounds if silo.silo in r["summed"]],
                "train_sha256": silo.train_sha256,
                "epsilon": audit.dp["epsilon_spent"],
                "delta": audit.dp["delta"],
                "steps": audit.dp["steps"],
                "noise_multiplier": audit.dp["noise_multiplier"],
                "k_achieved": silo.k_achieved,
                "l_achieved": silo.l_achieved,
                "rows_out": silo.rows_out,
                "members": silo.members,
                "gates_passed": audit.passed,
                "gates": {g["name"]: g["status"] for g in audit.gates["gates"]},
            }
        )
    return out
