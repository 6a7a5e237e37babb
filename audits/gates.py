"""Privacy and utility gates: small functions behind one registry.

A gate reads the evidence a run gathered and the policy's threshold and returns a
`GateResult`; the flow decides what a failure means (no promotion). A gate fails
closed: missing evidence, a non-finite value or an exception inside the gate is a
failure, never a pass. Adding a gate is one function with `@register_gate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from privgate.config import PrivacyPolicy

Comparison = Literal["<=", ">=", "<"]


@dataclass(frozen=True)
class Evidence:
    """Aggregates measured by the pipeline; None means not measured (the gate fails)."""

    residual_pii_findings: int | None = None
    # Counts per verifier ("presidio_rescan", "cross_column", "shapes") and their parts.
    residual_pii_by_verifier: dict[str, Any] | None = None
    k_achieved: int | None = None
    l_achieved: int | None = None
    epsilon: float | None = None
    delta: float | None = None
    n_train: int | None = None
    accuracy: float | None = None
    # The references the policy may judge accuracy against (None: not measured).
    majority_rate: float | None = None
    baseline_accuracy: float | None = None
    mia_auc: float | None = None
    mia_tpr_at_1pct_fpr: float | None = None
    strongest_attack: str | None = None
    empirical_epsilon_lower_bound: float | None = None
    claimed_epsilon: float | None = None
    dp_violations: int | None = None
    audit_power_epsilon: float | None = None
    # The white-box control's plan: canaries, guesses the claim needs, whether provable.
    white_box_plan: dict[str, Any] | None = None


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: metric, threshold, passed, and a reason without raw values."""

    name: str
    passed: bool
    value: float | None
    threshold: float
    comparison: Comparison
    details: str = ""
    # Not a pass: the measurement could not have seen a failure (blocks like one).
    inconclusive: bool = False

    @property
    def status(self) -> str:
        """Return "passed", "failed" or "inconclusive"."""
        if self.passed:
            return "passed"
        return "inconclusive" if self.inconclusive else "failed"

    def describe(self) -> str:
        """Return e.g. `privacy_budget: epsilon=inf, must be <= 3.0`."""
        value = "not measured" if self.value is None else f"{self.value:.6g}"
        verdict = {"passed": "passed", "failed": "FAILED", "inconclusive": "INCONCLUSIVE"}[
            self.status
        ]
        text = f"{self.name} {verdict}: {value}, must be {self.comparison} {self.threshold:.6g}"
        return f"{text} ({self.details})" if self.details else text


GateFn = Callable[[Evidence, PrivacyPolicy], GateResult]
_GATES: dict[str, GateFn] = {}


def register_gate(name: str) -> Callable[[GateFn], GateFn]:
    """Register a gate function under `name` (its MLflow tag is `privgate.gate.<name>`)."""

    def decorate(fn: GateFn) -> GateFn:
        if name in _GATES:
            raise ValueError(f"gate {name!r} is registered twice")
        _GATES[name] = fn
        return fn

    return decorate


def gate_names() -> list[str]:
    """Return the registered gate names in registration order."""
    return list(_GATES)


def _compare(value: float | None, comparison: Comparison, threshold: float) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if comparison == "<=":
        return value <= threshold
    if comparison == ">=":
        return value >= threshold
    return value < threshold


def _verdict(
    name: str, value: float | None, comparison: Comparison, threshold: float, details: str = ""
) -> GateResult:
    passed = _compare(value, comparison, threshold)
    if value is None:
        details = details or "no evidence: the stage that measures it did not run"
    elif not math.isfinite(value):
        details = details or "not a finite number"
    return GateResult(name, passed, value, threshold, comparison, details)


def run_gate(name: str, evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """Run one gate; an exception inside it is a failure, never a pass."""
    try:
        return _GATES[name](evidence, policy)
    except Exception as exc:  # fail closed, whatever went wrong
        return GateResult(name, False, None, math.nan, "<=", f"gate raised {type(exc).__name__}")


def run_gates(
    evidence: Evidence, policy: PrivacyPolicy, names: Iterable[str] | None = None
) -> GateReport:
    """Run the named gates (all by default) and collect a report."""
    return GateReport(tuple(run_gate(n, evidence, policy) for n in (names or gate_names())))


@dataclass(frozen=True)
class GateReport:
    """The verdicts of every gate of a run."""

    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """True only when there is at least one gate and every gate passed."""
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[GateResult, ...]:
        """The gates that failed."""
        return tuple(r for r in self.results if not r.passed)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON report."""
        return {
            "passed": self.passed,
            "gates": [
                {
                    **asdict(r),
                    "status": r.status,
                    "value": json_number(r.value),
                    "threshold": json_number(r.threshold),
                }
                for r in self.results
            ],
        }

    def to_markdown(self) -> str:
        """Return the report as a Markdown table."""
        lines = [
            f"## Privacy gates: {'all passed' if self.passed else 'BLOCKED'}",
            "",
            "| gate | result | value | rule | details |",
            "|---|---|---|---|---|",
        ]
        for r in self.results:
            value = "—" if r.value is None else f"{r.value:.6g}"
            mark = {"passed": "✅ passed", "failed": "❌ failed", "inconclusive": "⚠️ inconclusive"}[
                r.status
            ]
            rule = f"{r.comparison} {r.threshold:.6g}"
            lines.append(f"| `{r.name}` | {mark} | {value} | {rule} | {r.details} |")
        return "\n".join(lines) + "\n"

    def failure_message(self) -> str:
        """Return one line naming each failed gate with its value and threshold."""
        return "; ".join(r.describe() for r in self.failed)


def json_number(value: float | None) -> float | None:
    """Return `value`, or None when it is missing or not finite (JSON has no inf/nan)."""
    return value if value is not None and math.isfinite(value) else None


# --------------------------------------------------------------------------- the gates


@register_gate("residual_pii")
def residual_pii_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """Identifier cells found in the anonymized table must be <= max_residual_pii_findings.

    The count is the sum of three verifiers: the Presidio re-scan, and the independent
    verifier's cross-column leaks and identifier shapes (`audits.residual_pii`), which
    share no recognizer with the redactor. Without the independent verifier's count the
    gate fails: a re-scan by the redactor's own engine only confirms its decisions.
    """
    value = evidence.residual_pii_findings
    by = evidence.residual_pii_by_verifier or {}
    if value is None or "cross_column" not in by:
        return _verdict(
            "residual_pii",
            None,
            "<=",
            float(policy.max_residual_pii_findings),
            "no evidence: the independent residual verifier did not run",
        )
    parts = [
        f"Presidio re-scan {by['presidio_rescan']}",
        f"cross-column leaks {by['cross_column']}" + _listed(by.get("cross_column_pairs", {})),
        f"shapes {by['shapes']}" + _listed(by.get("shape_entities", {})),
    ]
    return _verdict(
        "residual_pii",
        float(value),
        "<=",
        float(policy.max_residual_pii_findings),
        "identifier cells in the anonymized table: " + "; ".join(parts),
    )


def _listed(counts: dict[str, int]) -> str:
    """Return ` (a 3, b 1)` for non-empty counts, else the empty string."""
    shown = [f"{name} {count}" for name, count in counts.items() if count]
    return f" ({', '.join(shown)})" if shown else ""


@register_gate("k_anonymity")
def k_anonymity_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """The smallest quasi-identifier equivalence class must hold >= min_k rows."""
    value = evidence.k_achieved
    return _verdict(
        "k_anonymity", None if value is None else float(value), ">=", float(policy.min_k)
    )


@register_gate("l_diversity")
def l_diversity_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """Every class must hold >= min_l distinct values of the sensitive attribute."""
    if policy.min_l <= 1:
        value = None if evidence.l_achieved is None else float(evidence.l_achieved)
        return GateResult("l_diversity", True, value, 1.0, ">=", "not required (min_l = 1)")
    value = evidence.l_achieved
    return _verdict(
        "l_diversity",
        None if value is None else float(value),
        ">=",
        float(policy.min_l),
        "" if value is None else "distinct sensitive values in the smallest class",
    )


@register_gate("privacy_budget")
def privacy_budget_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """Epsilon spent must be a positive finite number <= max_epsilon."""
    epsilon = evidence.epsilon
    if epsilon is not None and math.isfinite(epsilon) and epsilon <= 0:
        return GateResult(
            "privacy_budget", False, epsilon, policy.max_epsilon, "<=", "epsilon must be > 0"
        )
    details = "" if epsilon is None or math.isfinite(epsilon) else "trained without DP"
    return _verdict("privacy_budget", epsilon, "<=", policy.max_epsilon, details)


@register_gate("privacy_delta")
def privacy_delta_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """Delta must be <= max_delta, and < 1/n for the n training rows."""
    delta, n = evidence.delta, evidence.n_train
    if delta is not None and (n is None or n <= 0 or delta >= 1.0 / n):
        where = "training size unknown" if not n else f"1/n = {1.0 / n:.3g} for n={n}"
        return GateResult(
            "privacy_delta", False, delta, policy.max_delta, "<=", f"delta must be < 1/n; {where}"
        )
    return _verdict("privacy_delta", delta, "<=", policy.max_delta)


@register_gate("utility")
def utility_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """Held-out accuracy must clear every floor the policy states, the strictest binding.

    `min_accuracy` (absolute), the majority-class rate plus `min_accuracy_lift`, and the
    non-private baseline less `max_accuracy_cost`. A relative floor whose reference was
    not measured fails the gate: the floor the policy asked for is unknown.
    """
    floors = [("min_accuracy", policy.min_accuracy)]
    notes = ["test accuracy"]
    missing = []
    for reference, value, margin, key, sign in (
        ("majority class", evidence.majority_rate, policy.min_accuracy_lift, "lift", 1.0),
        (
            "non-private baseline",
            evidence.baseline_accuracy,
            policy.max_accuracy_cost,
            "cost",
            -1.0,
        ),
    ):
        if margin is None:
            if value is not None and math.isfinite(value):
                notes.append(f"{reference} {value:.4g}")
            continue
        if value is None or not math.isfinite(value):
            missing.append(reference)
            continue
        floors.append((reference, value + sign * margin))
        notes.append(f"{reference} {value:.4g} {'+' if sign > 0 else '-'} {key} {margin:.4g}")
    binding, threshold = max(floors, key=lambda floor: floor[1])
    if missing:
        detail = f"{', '.join(missing)} not measured, so the policy's floor is unknown"
        return GateResult("utility", False, evidence.accuracy, threshold, ">=", detail)
    if len(floors) > 1 or binding != "min_accuracy":
        notes.append(f"binding floor: {binding}")
    return _verdict("utility", evidence.accuracy, ">=", threshold, "; ".join(notes))


def _strongest(evidence: Evidence) -> str:
    return (
        f"strongest of the attacks run, {evidence.strongest_attack} by TPR at 1% FPR"
        if (evidence.strongest_attack)
        else ""
    )


@register_gate("membership_inference_auc")
def membership_inference_auc_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """The highest ROC AUC of any membership-inference attack must be <= max_mia_auc."""
    return _verdict(
        "membership_inference_auc",
        evidence.mia_auc,
        "<=",
        policy.max_mia_auc,
        "highest AUC of the attacks run",
    )


@register_gate("membership_inference_tpr")
def membership_inference_tpr_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """The highest TPR at 1% FPR of any attack must be <= max_mia_tpr_at_1pct_fpr."""
    return _verdict(
        "membership_inference_tpr",
        evidence.mia_tpr_at_1pct_fpr,
        "<=",
        policy.max_mia_tpr_at_1pct_fpr,
        f"TPR at 1% FPR, {_strongest(evidence)}".rstrip(", "),
    )


@register_gate("dp_consistency")
def dp_consistency_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """No empirical epsilon lower bound may exceed the claimed epsilon.

    A bound above the claim, or any attack beating TPR <= e^eps FPR + delta beyond its
    confidence interval, proves the training code does not deliver its guarantee:
    promotion is blocked whatever else passed.
    """
    bound, claimed, violations = (
        evidence.empirical_epsilon_lower_bound,
        evidence.claimed_epsilon,
        evidence.dp_violations,
    )
    if bound is None or claimed is None or violations is None:
        return _verdict("dp_consistency", None, "<=", math.nan)
    if violations > 0:
        return GateResult(
            "dp_consistency",
            False,
            bound,
            claimed,
            "<=",
            f"{violations} test(s) beat TPR <= e^eps FPR + delta at the claimed epsilon",
        )
    if math.isinf(claimed):
        no_claim = "no DP claim to check (trained without DP)"
        return GateResult("dp_consistency", True, bound, claimed, "<=", no_claim)
    return _verdict(
        "dp_consistency",
        bound,
        "<=",
        claimed,
        "empirical epsilon lower bound vs the accountant's claimed epsilon",
    )


@register_gate("audit_power")
def audit_power_gate(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
    """The white-box audit's control must prove at least the claimed epsilon.

    The control is the same recipe with the noise off. If even it cannot prove the
    claim, the audit could not have caught a breach of the claim, and its other verdicts
    say nothing about it: the result is inconclusive, never a pass. The policy's
    `min_audit_power_epsilon`, when set, replaces the claim with a fixed floor.
    """
    override = policy.min_audit_power_epsilon
    claim = evidence.epsilon
    required = override if override is not None else claim
    what = "epsilon lower bound the white-box control (noise off) proves"
    if required is None:
        return _verdict("audit_power", None, ">=", math.nan)
    if math.isinf(required):
        return GateResult(
            "audit_power", True, evidence.audit_power_epsilon, required, ">=",
            "no DP claim to audit (trained without DP)",
        )  # fmt: skip
    value = evidence.audit_power_epsilon
    result = _verdict("audit_power", value, ">=", required, f"{what} vs the claim")
    if result.passed:
        return result
    return GateResult(
        "audit_power",
        False,
        value,
        required,
        ">=",
        f"inconclusive: {_power_advice(value, required, evidence.white_box_plan)}",
        inconclusive=True,
    )


def _power_advice(value: float | None, required: float, plan: dict[str, Any] | None) -> str:
    """Say why the audit lacks power for this claim and which knob would give it some."""
    if value is None or plan is None:
        return (
            "no white-box control ran; it needs audit.gradient_canaries > 0 and "
            "training.dp.clipping=bookkeeping"
        )
    if not plan.get("claim_provable"):
        return (
            f"{plan['canaries']} gradient canaries cannot prove epsilon {required:.3g} in one "
            "run even with every guess right (the one-run test's limit); a smaller claim, "
            "a smaller training.dp.target_delta, or more canaries (audit.gradient_canaries, "
            "up to 8000 and the network's weight count: training.hidden_units) would; or set "
            "a reviewed min_audit_power_epsilon in the policy"
        )
    return (
        f"the control proved {value:.3g} < {required:.3g}: {plan['needed_guesses']} guesses "
        "must all be right, and an included canary that was never sampled looks excluded; "
        "each is sampled training.epochs times on average, so more epochs, or more canaries "
        f"(audit.gradient_canaries, now {plan['canaries']}) to choose the tail from, give "
        "the audit power"
    )
