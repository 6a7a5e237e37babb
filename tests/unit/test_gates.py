"""Gates: each compares one measured value with one policy threshold, and fails closed."""

from __future__ import annotations

import json
import math

import pytest

from audits import gates
from audits.gates import Evidence, GateResult, gate_names, register_gate, run_gate, run_gates
from privgate.config import PrivacyPolicy

POLICY = PrivacyPolicy(
    registered_model_name="m",
    max_epsilon=3.0,
    max_delta=1e-5,
    lifetime_epsilon=10.0,
    lifetime_delta=1e-4,
    min_k=5,
    max_residual_pii_findings=0,
    residual_pii_entities=["PERSON"],
    residual_pii_score_threshold=0.4,
    quasi_identifiers=["age"],
    min_accuracy=0.8,
    max_mia_auc=0.6,
    max_mia_tpr_at_1pct_fpr=0.03,
    min_audit_power_epsilon=0.25,
)
PASSING = Evidence(
    residual_pii_findings=0,
    residual_pii_by_verifier={"presidio_rescan": 0, "cross_column": 0, "shapes": 0},
    k_achieved=5,
    epsilon=2.9,
    delta=1e-5,
    n_train=20_000,
    accuracy=0.83,
    mia_auc=0.51,
    mia_tpr_at_1pct_fpr=0.011,
    strongest_attack="rmia",
    empirical_epsilon_lower_bound=0.2,
    claimed_epsilon=2.9,
    dp_violations=0,
    audit_power_epsilon=0.8,
)


def _with(**changes: object) -> Evidence:
    return Evidence(**{**PASSING.__dict__, **changes})


def test_when_every_measure_is_within_policy_then_every_gate_passes() -> None:
    report = run_gates(PASSING, POLICY)

    assert report.passed
    assert [r.name for r in report.results] == gate_names()


def test_when_the_independent_verifier_did_not_run_then_the_residual_gate_fails_closed() -> None:
    # A Presidio re-scan alone, 0 findings: the redactor's own engine confirming itself.
    evidence = _with(residual_pii_by_verifier={"presidio_rescan": 0})

    result = run_gates(evidence, POLICY, ["residual_pii"]).results[0]

    assert not result.passed
    assert "independent residual verifier did not run" in result.details


def test_when_the_verifiers_find_residuals_then_the_gate_names_verifier_pair_and_entity() -> None:
    evidence = _with(
        residual_pii_findings=7,
        residual_pii_by_verifier={
            "presidio_rescan": 0,
            "cross_column": 5,
            "shapes": 2,
            "cross_column_pairs": {"phone -> notes": 5},
            "shape_entities": {"PHONE_NUMBER": 2},
        },
    )

    result = run_gates(evidence, POLICY, ["residual_pii"]).results[0]

    assert not result.passed
    assert result.value == 7
    assert "Presidio re-scan 0" in result.details
    assert "cross-column leaks 5 (phone -> notes 5)" in result.details
    assert "shapes 2 (PHONE_NUMBER 2)" in result.details


@pytest.mark.parametrize(
    ("change", "gate"),
    [
        ({"residual_pii_findings": 1}, "residual_pii"),
        ({"k_achieved": 4}, "k_anonymity"),
        ({"epsilon": 3.01}, "privacy_budget"),
        ({"delta": 2e-5}, "privacy_delta"),
        ({"accuracy": 0.79}, "utility"),
        ({"mia_auc": 0.61}, "membership_inference_auc"),
        ({"mia_tpr_at_1pct_fpr": 0.05}, "membership_inference_tpr"),
        ({"empirical_epsilon_lower_bound": 2.95}, "dp_consistency"),
        ({"dp_violations": 1}, "dp_consistency"),
        ({"audit_power_epsilon": 0.2}, "audit_power"),
    ],
)
def test_when_one_measure_exceeds_its_threshold_then_only_its_gate_fails(
    change: dict[str, float], gate: str
) -> None:
    report = run_gates(_with(**change), POLICY)

    assert not report.passed
    assert [r.name for r in report.failed] == [gate]


def test_when_the_model_was_trained_without_dp_then_the_budget_gate_fails() -> None:
    result = run_gate("privacy_budget", _with(epsilon=math.inf), POLICY)

    assert not result.passed
    assert "without DP" in result.details


@pytest.mark.parametrize("epsilon", [math.nan, 0.0, -1.0])
def test_when_epsilon_is_not_a_positive_finite_number_then_the_budget_gate_fails(
    epsilon: float,
) -> None:
    assert not run_gate("privacy_budget", _with(epsilon=epsilon), POLICY).passed


def test_when_delta_is_not_below_one_over_n_then_the_delta_gate_fails() -> None:
    result = run_gate("privacy_delta", _with(delta=1e-5, n_train=200_000), POLICY)

    assert not result.passed
    assert "1/n" in result.details


def test_when_the_lower_bound_exceeds_the_claim_then_dp_consistency_blocks() -> None:
    result = run_gate(
        "dp_consistency", _with(empirical_epsilon_lower_bound=1.7, claimed_epsilon=1.0), POLICY
    )

    assert not result.passed
    assert not result.inconclusive
    assert (result.value, result.threshold) == (1.7, 1.0)
    assert "claimed" in result.details


def test_when_an_attack_breaks_the_dp_definition_then_dp_consistency_names_it() -> None:
    # The bound alone sits below the claim; the definitional check still blocks.
    result = run_gate("dp_consistency", _with(dp_violations=2), POLICY)

    assert not result.passed
    assert "2 test(s) beat TPR <= e^eps FPR + delta" in result.details


def test_when_there_is_no_dp_claim_then_dp_consistency_has_nothing_to_refute() -> None:
    result = run_gate("dp_consistency", _with(claimed_epsilon=math.inf), POLICY)

    assert result.passed
    assert "without DP" in result.details


@pytest.mark.parametrize("power", [0.1, None])
def test_when_the_control_shows_no_signal_then_the_audit_is_inconclusive_not_passed(
    power: float | None,
) -> None:
    report = run_gates(_with(audit_power_epsilon=power), POLICY)

    result = next(r for r in report.results if r.name == "audit_power")
    assert not result.passed
    assert result.status == "inconclusive"
    assert not report.passed
    assert "inconclusive" in report.to_markdown()
    assert report.to_dict()["gates"][-1]["status"] == "inconclusive"
    assert "INCONCLUSIVE" in report.failure_message()


@pytest.mark.parametrize(
    ("plan", "knobs"),
    [
        (
            {"canaries": 2000, "needed_guesses": 128, "claim_provable": True},
            ["training.epochs", "audit.gradient_canaries, now 2000"],
        ),
        (
            {"canaries": 3456, "needed_guesses": None, "claim_provable": False},
            ["3456 gradient canaries cannot prove epsilon 2.9", "target_delta"],
        ),
        (None, ["training.dp.clipping=bookkeeping"]),
    ],
)
def test_when_the_audit_lacks_power_then_it_names_the_knob_and_never_a_non_private_run(
    plan: dict[str, object] | None, knobs: list[str]
) -> None:
    # The claim is the bar (no policy floor): the control proved 1.2 < 2.9.
    policy = POLICY.model_copy(update={"min_audit_power_epsilon": None})
    power = None if plan is None else 1.2

    report = run_gates(_with(audit_power_epsilon=power, white_box_plan=plan), policy)

    result = next(r for r in report.results if r.name == "audit_power")
    assert result.status == "inconclusive"
    for knob in knobs:
        assert knob in result.details
    assert "enabled=false" not in result.details
    assert "non-private" not in result.details
    assert "without DP" not in result.details


def test_when_evidence_is_missing_then_the_gate_fails_closed() -> None:
    # min_l 2: l-diversity required, so that every gate has something to judge.
    report = run_gates(Evidence(), POLICY.model_copy(update={"min_l": 2}))

    assert not report.passed
    assert len(report.failed) == len(gate_names())


def test_when_a_gate_raises_then_it_fails_closed_naming_the_exception() -> None:
    @register_gate("test_exploding_gate")
    def exploding(evidence: Evidence, policy: PrivacyPolicy) -> GateResult:
        raise RuntimeError("boom")

    try:
        result = run_gate("test_exploding_gate", PASSING, POLICY)
    finally:
        gates._GATES.pop("test_exploding_gate")

    assert not result.passed
    assert "RuntimeError" in result.details


def test_when_a_gate_name_is_registered_twice_then_registration_fails() -> None:
    with pytest.raises(ValueError, match="twice"):
        register_gate("utility")(gates.utility_gate)


def test_when_no_gate_ran_then_the_report_does_not_pass() -> None:
    assert not gates.GateReport(()).passed


def test_when_a_report_has_infinite_values_then_its_json_is_strict() -> None:
    report = run_gates(_with(epsilon=math.inf), POLICY)

    text = json.dumps(report.to_dict(), allow_nan=False)

    assert '"value": null' in text


def test_when_gates_fail_then_the_message_names_each_with_value_and_threshold() -> None:
    report = run_gates(_with(epsilon=4.5, accuracy=0.7), POLICY)

    message = report.failure_message()

    assert "privacy_budget FAILED: 4.5, must be <= 3" in message
    assert "utility FAILED: 0.7, must be >= 0.8" in message
    assert "| `privacy_budget` | ❌ failed | 4.5 |" in report.to_markdown()


@pytest.mark.parametrize(
    ("l_achieved", "passed"), [(3, True), (2, True), (1, False), (None, False)]
)
def test_when_the_policy_asks_for_l_diversity_then_the_gate_judges_the_smallest_class(
    l_achieved: int | None, passed: bool
) -> None:
    policy = POLICY.model_copy(update={"min_l": 2})

    result = run_gate("l_diversity", _with(l_achieved=l_achieved), policy)

    assert result.passed is passed
    assert result.threshold == 2.0


def test_when_the_policy_asks_for_no_l_diversity_then_the_gate_passes_even_unmeasured() -> None:
    result = run_gate("l_diversity", _with(l_achieved=None), POLICY)

    assert result.passed
    assert "not required" in result.details


def _utility(evidence: Evidence, **policy: object) -> GateResult:
    return run_gate("utility", evidence, POLICY.model_copy(update=policy))


def test_when_the_majority_class_is_nearly_the_floor_then_the_lift_floor_binds() -> None:
    # The newcomer's table: always predicting the majority scores 0.797, min_accuracy 0.80.
    evidence = _with(accuracy=0.7966, majority_rate=0.797, baseline_accuracy=0.8028)

    result = _utility(evidence, min_accuracy=0.0, min_accuracy_lift=0.01)

    assert not result.passed
    assert result.threshold == pytest.approx(0.807)
    assert "binding floor: majority class" in result.details
    assert "non-private baseline 0.8028" in result.details  # reported though not judged


def test_when_the_cost_against_the_baseline_is_within_policy_then_utility_passes() -> None:
    evidence = _with(accuracy=0.84, majority_rate=0.76, baseline_accuracy=0.85)

    passed = _utility(evidence, allow_non_private=True, max_accuracy_cost=0.02)
    failed = _utility(evidence, allow_non_private=True, max_accuracy_cost=0.005)

    assert passed.passed
    assert passed.threshold == pytest.approx(0.83)
    assert not failed.passed
    assert failed.threshold == pytest.approx(0.845)


def test_when_a_relative_floor_has_no_reference_then_utility_fails_closed() -> None:
    result = _utility(
        _with(accuracy=0.99, baseline_accuracy=None), allow_non_private=True, max_accuracy_cost=0.1
    )

    assert not result.passed
    assert "non-private baseline not measured" in result.details


def test_when_a_cost_floor_is_set_without_allowing_the_baseline_then_the_policy_is_refused() -> (
    None
):
    with pytest.raises(ValueError, match="max_accuracy_cost compares the model"):
        PrivacyPolicy.model_validate(
            {**POLICY.model_dump(), "max_accuracy_cost": 0.01, "allow_non_private": False}
        )
