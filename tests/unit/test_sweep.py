"""The sweep's pure core: grid, accuracy cost, Pareto front, choice, ledger charge, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from privgate.sweep import (
    CHOSEN_MARK,
    PARETO_MARK,
    Choice,
    GridPoint,
    PointResult,
    SweepConfig,
    accuracy_cost,
    choose,
    ledger_charge,
    pareto_front,
    plot_sweep,
    to_dict,
    to_markdown,
)

PASSED = {"privacy_budget": "passed", "utility": "passed", "membership_inference_tpr": "passed"}
NO_BUDGET = {**PASSED, "privacy_budget": "failed"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(
    target: float | None,
    k: int,
    *,
    spent: float | None = None,
    accuracy: float | None = None,
    gates: dict[str, str] | None = None,
    error: str | None = None,
    clip: float | None = None,
) -> PointResult:
    return PointResult(
        point=GridPoint(target, k, clip),
        epsilon_spent=spent,
        delta=None if spent is None else 1e-5,
        accuracy=accuracy,
        mia_auc=None if accuracy is None else 0.52,
        mia_tpr_at_1pct_fpr=None if accuracy is None else (0.3 if target is None else 0.012),
        empirical_epsilon_lower_bound=None if accuracy is None else 0.1,
        gates=PASSED if gates is None else gates,
        error=error,
        seconds=1.5,
    )


EPS1_K5 = _result(1.0, 5, spent=0.98, accuracy=0.80)
EPS2_K5 = _result(2.0, 5, spent=1.97, accuracy=0.82)
# Dominated by EPS2_K5: more epsilon, less accuracy.
EPS4_K5 = _result(4.0, 5, spent=3.9, accuracy=0.81, gates=NO_BUDGET)
# Dominated by EPS1_K5; no non-private point at k=10.
EPS2_K10 = _result(2.0, 10, spent=1.95, accuracy=0.79)
NON_PRIVATE_K5 = _result(None, 5, accuracy=0.85, gates=NO_BUDGET)
CRASHED_BEFORE_TRAINING = _result(8.0, 5, gates={}, error="train: RuntimeError")
CRASHED_AFTER_TRAINING = _result(8.0, 10, spent=7.9, gates={}, error="audit: MemoryError")
SWEEP = [
    NON_PRIVATE_K5,
    EPS4_K5,
    EPS2_K10,
    CRASHED_BEFORE_TRAINING,
    EPS1_K5,
    CRASHED_AFTER_TRAINING,
    EPS2_K5,
]


# --------------------------------------------------------------------------- grid


def test_when_grid_is_built_then_epsilon_ascends_with_the_baseline_last_then_k() -> None:
    config = SweepConfig(epsilons=[2.0, None, 0.5], ks=[10, 2])

    labels = [p.label for p in config.points()]

    assert labels == [
        "eps=0.5 k=2",
        "eps=0.5 k=10",
        "eps=2 k=2",
        "eps=2 k=10",
        "non-private k=2",
        "non-private k=10",
    ]


def test_when_clipping_norms_are_swept_then_the_baseline_runs_once_per_k() -> None:
    config = SweepConfig(epsilons=[None, 1.0], ks=[5], max_grad_norms=[1.0, 0.5])

    labels = [p.label for p in config.points()]

    assert labels == ["eps=1 k=5 C=0.5", "eps=1 k=5 C=1.0", "non-private k=5"]


def test_when_defaults_are_used_then_grid_holds_six_dp_points_and_two_baselines() -> None:
    points = SweepConfig().points()

    assert len(points) == 8
    assert sum(p.target_epsilon is None for p in points) == 2
    assert SweepConfig().workers == 2


def test_when_grid_is_planned_then_charge_sums_every_dp_target() -> None:
    config = SweepConfig()

    epsilon, delta = config.planned_charge(1e-5)

    assert epsilon == pytest.approx(2 * (0.5 + 1 + 2))
    assert delta == pytest.approx(6 * 1e-5)


def test_when_the_default_grid_is_planned_then_it_fits_the_demo_policys_lifetime_budget() -> None:
    from privgate.config import load_policy

    policy = load_policy(Path(__file__).resolve().parents[2] / "configs" / "policy.yaml")

    epsilon, delta = SweepConfig().planned_charge(policy.max_delta)

    assert epsilon <= policy.lifetime_epsilon
    assert delta <= policy.lifetime_delta


@pytest.mark.parametrize(
    "fields",
    [
        {"epsilons": [1.0, 1.0]},
        {"epsilons": [None, 1.0, None]},
        {"ks": [5, 2, 5]},
        {"max_grad_norms": [1.0, 1.0]},
        {"epsilons": [0.0]},
        {"epsilons": [-1.0]},
        {"epsilons": [math.nan]},
        {"epsilons": [math.inf]},
        {"epsilons": []},
        {"ks": []},
        {"ks": [0]},
        {"max_grad_norms": []},
        {"max_grad_norms": [0.0]},
        {"workers": 0},
        {"seed": 1},
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_when_grid_setting_is_invalid_then_config_is_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SweepConfig.model_validate(fields)


def test_when_a_value_repeats_then_the_error_names_it() -> None:
    with pytest.raises(ValidationError, match=r"repeated: 5"):
        SweepConfig(ks=[5, 2, 5])


def test_when_point_has_a_clip_then_label_names_it() -> None:
    assert GridPoint(1.0, 5).label == "eps=1 k=5"
    assert GridPoint(None, 5).label == "non-private k=5"
    assert GridPoint(0.5, 2, 1.0).label == "eps=0.5 k=2 C=1.0"


# --------------------------------------------------------------------------- results


def test_when_accountant_reports_infinity_then_point_counts_as_non_private() -> None:
    result = PointResult(GridPoint(None, 5), epsilon_spent=math.inf, accuracy=0.85)

    assert result.epsilon_spent is None


@pytest.mark.parametrize(
    "fields",
    [
        {"epsilon_spent": math.nan, "delta": 1e-5},
        {"epsilon_spent": 0.0, "delta": 1e-5},
        {"epsilon_spent": 1.0, "delta": None},
        {"gates": {"utility": "ok"}},
    ],
)
def test_when_result_is_inconsistent_then_it_is_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="eps=1 k=5"):
        PointResult(GridPoint(1.0, 5), **fields)  # type: ignore[arg-type]


def test_when_a_gate_is_not_passed_or_the_point_crashed_then_point_has_not_passed() -> None:
    assert EPS2_K5.passed
    assert not EPS4_K5.passed
    assert not CRASHED_AFTER_TRAINING.passed
    assert not _result(1.0, 5, spent=1.0, accuracy=0.9, gates={}).passed
    assert not _result(1.0, 5, spent=1.0, accuracy=0.9, error="audit: ValueError").passed


# --------------------------------------------------------------------------- cost, front


def test_when_baseline_shares_k_then_cost_is_its_accuracy_minus_the_point_s() -> None:
    costs = accuracy_cost(SWEEP)

    assert costs[EPS2_K5.point] == pytest.approx(0.03)
    assert costs[EPS1_K5.point] == pytest.approx(0.05)
    assert costs[NON_PRIVATE_K5.point] == 0.0
    assert costs[EPS2_K10.point] is None  # no non-private point at k=10
    assert costs[CRASHED_BEFORE_TRAINING.point] is None


def test_when_clip_has_no_own_baseline_then_cost_uses_the_k_baseline() -> None:
    clipped = _result(2.0, 5, spent=1.9, accuracy=0.8, clip=0.5)

    costs = accuracy_cost([NON_PRIVATE_K5, clipped])

    assert costs[clipped.point] == pytest.approx(0.05)


def test_when_points_are_dominated_then_they_leave_the_pareto_front() -> None:
    front = pareto_front(SWEEP)

    assert [r.point.label for r in front] == ["eps=1 k=5", "eps=2 k=5", "non-private k=5"]


def test_when_only_the_baseline_measured_accuracy_then_it_is_the_whole_front() -> None:
    front = pareto_front([NON_PRIVATE_K5, CRASHED_BEFORE_TRAINING])

    assert front == [NON_PRIVATE_K5]


# --------------------------------------------------------------------------- choice


def test_when_several_points_pass_then_the_most_accurate_is_chosen() -> None:
    choice = choose(SWEEP)

    assert choice.result is EPS2_K5
    assert choice.reason == (
        "eps=2 k=5 is the most accurate of the 3 of 7 points that passed every gate: "
        "accuracy 0.82, epsilon spent 1.97 at delta 1e-05, MIA AUC 0.52."
    )


def test_when_accuracy_ties_then_smaller_epsilon_then_larger_k_wins() -> None:
    cheap = _result(1.0, 5, spent=0.99, accuracy=0.82)
    cheap_more_anonymous = _result(1.0, 10, spent=0.99, accuracy=0.82)

    assert choose([EPS2_K5, cheap]).result is cheap
    assert choose([cheap, cheap_more_anonymous, EPS2_K5]).result is cheap_more_anonymous


def test_when_the_most_accurate_point_fails_a_gate_then_it_is_not_chosen() -> None:
    choice = choose([NON_PRIVATE_K5, EPS4_K5, EPS1_K5])

    assert choice.result is EPS1_K5


def test_when_no_point_passes_then_reason_names_the_gate_that_blocked_most() -> None:
    no_tpr = {**PASSED, "membership_inference_tpr": "failed"}
    results = [
        _result(1.0, 5, spent=1.0, accuracy=0.78, gates={**no_tpr, "utility": "failed"}),
        _result(2.0, 5, spent=2.0, accuracy=0.81, gates=no_tpr),
        _result(4.0, 5, spent=4.0, accuracy=0.82, gates={**no_tpr, "privacy_budget": "failed"}),
        CRASHED_BEFORE_TRAINING,
    ]

    choice = choose(results)

    assert choice.result is None
    assert choice.reason == (
        "No point passed every gate (0 of 4): membership_inference_tpr blocked 3 of 4 "
        "points, privacy_budget 1, utility 1; 1 point crashed."
    )


def test_when_sweep_is_empty_then_nothing_is_chosen() -> None:
    assert choose([]) == Choice(None, "No point was chosen: the sweep has no results.")


# --------------------------------------------------------------------------- ledger


def test_when_charged_then_every_dp_point_that_trained_counts_even_if_it_failed() -> None:
    epsilon, delta = ledger_charge(SWEEP)

    # 0.98 + 1.97 + 3.9 + 1.95 + 7.9: the crash before training and the baseline are free.
    assert epsilon == pytest.approx(16.7)
    assert delta == pytest.approx(5e-5)


def test_when_nothing_trained_with_dp_then_charge_is_zero() -> None:
    assert ledger_charge([NON_PRIVATE_K5, CRASHED_BEFORE_TRAINING]) == (0.0, 0.0)


# --------------------------------------------------------------------------- reports


def test_when_rendered_then_markdown_marks_the_choice_and_lists_every_point() -> None:
    markdown = to_markdown(SWEEP, choose(SWEEP))
    rows = {line.split("`")[1]: line for line in markdown.splitlines() if "`" in line}

    assert set(rows) == {r.point.label for r in SWEEP}
    assert f"| {CHOSEN_MARK}{PARETO_MARK} | `eps=2 k=5` | 1.97 |" in rows["eps=2 k=5"]
    assert rows["eps=1 k=5"].startswith(f"| {PARETO_MARK} |")
    assert rows["eps=4 k=5"].startswith("|  |")
    assert "| ∞ | 5 | 0.85 | +0 |" in rows["non-private k=5"]
    assert "| +0.03 |" in rows["eps=2 k=5"]
    assert rows["eps=4 k=5"].endswith("| failed: privacy_budget |")
    assert rows["eps=8 k=5"].endswith("| crashed (train: RuntimeError) |")
    assert "| — |" in rows["eps=8 k=5"]
    assert rows["eps=2 k=5"].endswith("| all passed |")
    assert "**Choice:** eps=2 k=5 is the most accurate" in markdown
    assert "**Ledger charge:** epsilon 16.7, delta 5e-05 over 5 DP training runs" in markdown


def test_when_summarized_then_dict_is_json_serializable() -> None:
    summary = to_dict(SWEEP, choose(SWEEP))

    text = json.dumps(summary, allow_nan=False)

    assert json.loads(text)["chosen"] == "eps=2 k=5"
    assert summary["pareto"] == ["eps=1 k=5", "eps=2 k=5", "non-private k=5"]
    assert summary["ledger_charge"]["epsilon"] == pytest.approx(16.7)
    assert [p["label"] for p in summary["points"]][-1] == "non-private k=5"
    assert summary["points"][-1]["epsilon_spent"] is None
    assert summary["points"][0]["accuracy_cost"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    "results",
    [SWEEP, [NON_PRIVATE_K5], [CRASHED_BEFORE_TRAINING], []],
    ids=["sweep", "baseline-only", "all-crashed", "empty"],
)
def test_when_plotted_then_three_pngs_are_written(
    results: list[PointResult], tmp_path: Path
) -> None:
    directory = tmp_path / "plots"

    paths = plot_sweep(results, directory)

    assert [p.name for p in paths] == [
        "accuracy_vs_epsilon.png",
        "mia_tpr_vs_epsilon.png",
        "pareto_front.png",
    ]
    for path in paths:
        assert path.parent == directory
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_when_a_point_is_applied_then_the_config_carries_its_k_epsilon_and_clip() -> None:
    from privgate.config import load_config
    from privgate.sweep import point_config

    base = load_config(None, [])

    private = point_config(base, GridPoint(target_epsilon=0.5, k=25, max_grad_norm=2.0))
    public = point_config(base, GridPoint(target_epsilon=None, k=2))

    assert (private.anonymization.k, private.training.dp.target_epsilon) == (25, 0.5)
    assert (private.training.dp.enabled, private.training.dp.max_grad_norm) == (True, 2.0)
    assert (public.anonymization.k, public.training.dp.enabled) == (2, False)
    assert public.training.dp.max_grad_norm == base.training.dp.max_grad_norm
    assert base.anonymization.k == load_config(None, []).anonymization.k  # base untouched
