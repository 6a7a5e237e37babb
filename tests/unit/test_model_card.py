"""Model cards: every section from aggregates only, missing facts stated, facts escaped."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import Any

import pytest

from privgate.registry.model_card import escape_markdown, render_model_card

SECTIONS = ["Gates", "Data", "Training", "Audit", "Utility", "Lineage", "Notes"]
PAYLOAD = "<script>alert(1)</script>"


def _facts() -> dict[str, Any]:
    """Return the complete facts of an approved run (a fresh copy for each test)."""
    return copy.deepcopy(
        {
            "model": {
                "name": "privgate-adult-income",
                "version": "3",
                "run_id": "0f1e2d3c",
                "status": "approved",
                "created_utc": "2026-05-09T07:35:25Z",
            },
            "data": {
                "rows_in": 32_561,
                "rows_out": 32_400,
                "columns": [
                    {
                        "name": "email",
                        "kind": "direct_identifier",
                        "entities": {"EMAIL_ADDRESS": 0.98765, "PERSON": 0.0123},
                        "action": "drop",
                        "source": "scan",
                    },
                    {
                        "name": "age",
                        "kind": "quasi_identifier",
                        "entities": {},
                        "action": "generalize",
                        "source": "quasi_identifier",
                    },
                ],
                "k_target": 5,
                "k_achieved": 7,
                "suppressed_rows": 161,
                "information_loss": 0.234567,
                "levels": {"age": "interval width 10"},
            },
            "training": {
                "model": "logistic_regression",
                "epochs": 5,
                "batch_size": 256,
                "dp": {
                    "enabled": True,
                    "epsilon": 2.99123,
                    "delta": 1e-5,
                    "accountant": "prv",
                    "noise_multiplier": 0.912345,
                    "max_grad_norm": 1.0,
                    "steps": 635,
                    "sample_rate": 0.0078125,
                    "poisson_sampling": True,
                    "secure_mode": False,
                },
            },
            "audit": {
                "attack": "loss_threshold",
                "mia_auc": 0.512345,
                "mia_tpr_at_1pct_fpr": 0.0112,
                "mia_tpr_at_0_1pct_fpr": 0.00123456,
                "attacker_advantage": 0.0234567,
                "members": 10_000,
                "non_members": 10_000,
                "empirical_epsilon_lower_bound": 0.12345,
                "claimed_epsilon": 2.94,
                "audit_power_epsilon": 3.14,
                "white_box_epsilon_lower_bound": 0.31,
                "black_box_canary_epsilon_lower_bound": 0.12,
                "attacks": [
                    {
                        "attack": "rmia",
                        "mia_auc": 0.5123,
                        "mia_tpr_at_1pct_fpr": 0.0112,
                        "mia_tpr_at_0_1pct_fpr": 0.0011,
                    },
                    {
                        "attack": "<b>x</b>",
                        "mia_auc": 0.501,
                        "mia_tpr_at_1pct_fpr": 0.01,
                        "mia_tpr_at_0_1pct_fpr": 0.001,
                    },
                ],
                "roc_plot": None,
            },
            "utility": {"accuracy": 0.8312, "baseline_accuracy": 0.8456, "accuracy_cost": None},
            "gates": [
                {
                    "name": "privacy_budget",
                    "passed": True,
                    "value": 2.99123,
                    "threshold": 3.0,
                    "comparison": "<=",
                    "details": "",
                },
                {
                    "name": "membership_inference_auc",
                    "passed": True,
                    "value": 0.512345,
                    "threshold": 0.6,
                    "comparison": "<=",
                    "details": "",
                },
                {
                    "name": "utility",
                    "passed": True,
                    "value": 0.8312,
                    "threshold": 0.8,
                    "comparison": ">=",
                    "details": "test accuracy",
                },
            ],
            "lineage": {
                "train_sha256": "a" * 64,
                "test_sha256": "b" * 64,
                "config_sha256": "c" * 64,
                "policy_sha256": "d" * 64,
                "code_version": "0.1.0",
            },
            "notes": ["Epsilon covers the model weights, not the reported aggregates."],
            "unknown_extra_section": {"ignored": True},
        }
    )


def _row(markdown: str, label: str) -> str:
    """Return the Markdown table row whose first cell is `label`."""
    return next(line for line in markdown.splitlines() if line.startswith(f"| {label} |"))


def _verdict(markdown: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith("**Verdict"))


def test_when_facts_are_complete_then_every_section_renders_in_order() -> None:
    facts = _facts()

    markdown, html = render_model_card(facts)

    assert markdown.startswith("# Model card: privgate-adult-income, version 3\n")
    md_positions = [markdown.index(f"\n## {name}\n") for name in SECTIONS]
    html_positions = [html.index(f"<h2>{name}</h2>") for name in SECTIONS]
    assert md_positions == sorted(md_positions)
    assert html_positions == sorted(html_positions)
    assert "not measured" not in markdown
    assert "<b>x</b>" not in markdown
    assert "<b>x</b>" not in html


def test_when_a_gate_failed_then_the_card_is_rejected_and_names_the_failed_gates() -> None:
    approved_facts = _facts()
    rejected_facts = _facts()
    rejected_facts["model"]["status"] = "rejected"
    for gate in rejected_facts["gates"]:
        if gate["name"] in {"privacy_budget", "utility"}:
            gate["passed"] = False

    approved, _ = render_model_card(approved_facts)
    rejected, _ = render_model_card(rejected_facts)

    assert "APPROVED" in _verdict(approved)
    assert "REJECTED" in _verdict(rejected)
    assert "privacy\\_budget" in _verdict(rejected)
    assert "utility" in _verdict(rejected)
    assert "membership" not in _verdict(rejected)
    assert "❌ FAILED" in _row(rejected, "privacy\\_budget")


def test_when_the_status_says_approved_but_a_gate_failed_then_the_card_is_rejected() -> None:
    facts = _facts()
    facts["gates"][0]["passed"] = False

    markdown, _ = render_model_card(facts)

    assert "REJECTED" in _verdict(markdown)
    assert "privacy\\_budget" in _verdict(markdown)


def test_when_a_gate_verdict_is_missing_then_it_counts_as_failed() -> None:
    facts = _facts()
    del facts["gates"][1]["passed"]

    markdown, _ = render_model_card(facts)

    assert "REJECTED" in _verdict(markdown)
    assert "membership\\_inference\\_auc" in _verdict(markdown)


def test_when_dp_is_disabled_then_the_card_says_without_dp_and_epsilon_is_infinite() -> None:
    facts = _facts()
    facts["training"]["dp"].update(
        enabled=False, epsilon=None, delta=1.0, accountant="none", max_grad_norm=None
    )

    markdown, html = render_model_card(facts)

    assert "trained WITHOUT differential privacy" in markdown
    assert _row(markdown, "epsilon (ε)") == "| epsilon (ε) | ∞ |"
    assert "not applicable" in _row(markdown, "clipping norm (`max_grad_norm`)")
    assert "WITHOUT differential privacy" in html


def test_when_epsilon_is_infinite_then_it_shows_as_infinity_not_inf() -> None:
    facts = _facts()
    facts["gates"][0]["value"] = math.inf

    markdown, _ = render_model_card(facts)

    assert "| ∞ |" in _row(markdown, "privacy\\_budget")


def test_when_facts_are_empty_then_every_section_renders_not_measured() -> None:
    facts: dict[str, Any] = {}

    markdown, html = render_model_card(facts)

    assert all(f"## {name}" in markdown for name in SECTIONS)
    assert _row(markdown, "ROC AUC") == "| ROC AUC | not measured |"
    assert _row(markdown, "training table SHA-256") == "| training table SHA-256 | not measured |"
    assert "Gate results: not measured." in markdown
    assert "REJECTED" in _verdict(markdown)
    assert html.startswith("<!doctype html>")


@pytest.mark.parametrize(
    "section", ["model", "data", "training", "audit", "utility", "gates", "lineage", "notes"]
)
def test_when_a_section_is_none_then_the_card_still_renders(section: str) -> None:
    facts = _facts()
    facts[section] = None

    markdown, _ = render_model_card(facts)

    assert all(f"## {name}" in markdown for name in SECTIONS)


def test_when_values_are_none_then_they_render_not_measured() -> None:
    facts = _facts()
    for name in ("data", "audit", "lineage"):
        facts[name] = {key: None for key in facts[name]}
    facts["training"]["dp"] = {key: None for key in facts["training"]["dp"]}
    facts["gates"] = [{key: None for key in facts["gates"][0]}]

    markdown, _ = render_model_card(facts)

    assert _row(markdown, "k achieved") == "| k achieved | not measured |"
    assert _row(markdown, "suppressed rows") == "| suppressed rows | not measured |"
    assert _row(markdown, "epsilon (ε)") == "| epsilon (ε) | not measured |"
    assert (
        _row(markdown, "empirical epsilon lower bound")
        == "| empirical epsilon lower bound | not measured |"
    )
    assert "Generalization levels: not measured." in markdown
    assert "❌ FAILED" in _row(markdown, "not measured")


def test_when_a_column_name_holds_a_script_tag_then_the_html_has_none() -> None:
    facts = _facts()
    facts["data"]["columns"][0]["name"] = PAYLOAD
    facts["data"]["columns"][1]["name"] = "income | net"

    _, html = render_model_card(facts)

    assert html.startswith("<!doctype html>")
    assert "<table>" in html
    assert "<script" not in html.lower()
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html
    assert "<td>income | net</td>" in html


@pytest.mark.parametrize(
    "inject",
    [
        lambda f: f["model"].update(name=PAYLOAD, version=PAYLOAD),
        lambda f: f["gates"][0].update(name=PAYLOAD, details=PAYLOAD, passed=False),
        lambda f: f["data"]["columns"][0].update(kind=PAYLOAD, action=PAYLOAD, source=PAYLOAD),
        lambda f: f["data"]["columns"][0].update(entities={PAYLOAD: 0.5}),
        lambda f: f["data"].update(levels={PAYLOAD: PAYLOAD}),
        lambda f: f["lineage"].update(code_version=PAYLOAD),
        lambda f: f.update(notes=[PAYLOAD, f"line one\n\n{PAYLOAD}"]),
        lambda f: f["audit"].update(roc_plot=f'x.png" onerror="{PAYLOAD}'),
    ],
    ids=["title", "gate", "column", "entity", "levels", "lineage", "notes", "roc_plot"],
)
def test_when_any_string_fact_holds_a_script_tag_then_the_html_has_none(
    inject: Callable[[dict[str, Any]], object],
) -> None:
    facts = _facts()
    inject(facts)

    _, html = render_model_card(facts)

    assert "<script" not in html.lower()
    assert "onerror=" not in html.lower()


def test_when_a_column_name_holds_markdown_syntax_then_it_shows_literally() -> None:
    facts = _facts()
    facts["data"]["columns"][0]["name"] = "`x` *y* _z_ [a](b)\nnext"

    markdown, html = render_model_card(facts)

    assert "<td>`x` *y* _z_ [a](b) next</td>" in html
    pii_table = html.split("<h3>PII found per column</h3>")[1].split("<h3>")[0]
    assert not re.search(r"<(code|em|strong|a)\b", pii_table)
    assert all(line.count(" | ") == 4 for line in markdown.splitlines() if "next" in line)


def test_when_escaping_then_metacharacters_are_neutralised() -> None:
    text = "<b>a|b</b> & `c`"

    escaped = escape_markdown(text)

    assert escaped == "&lt;b&gt;a\\|b&lt;/b&gt; &amp; \\`c\\`"


def test_when_numbers_are_rendered_then_they_follow_the_house_formats() -> None:
    facts = _facts()

    markdown, _ = render_model_card(facts)

    # Percentages to 1 decimal.
    assert "EMAIL\\_ADDRESS 98.8%, PERSON 1.2%" in _row(markdown, "email")
    assert _row(markdown, "suppressed rows") == "| suppressed rows | 161 (0.5% of rows in) |"
    # Metrics to 4 significant digits.
    assert _row(markdown, "ROC AUC") == "| ROC AUC | 0.5123 |"
    assert _row(markdown, "TPR at 0.1% FPR") == "| TPR at 0.1% FPR | 0.001235 |"
    assert _row(markdown, "information loss") == "| information loss | 0.2346 |"
    # Epsilon to 3 decimals.
    assert _row(markdown, "epsilon (ε)") == "| epsilon (ε) | 2.991 |"
    assert (
        _row(markdown, "empirical epsilon lower bound")
        == "| empirical epsilon lower bound | 0.123 |"
    )
    # Counts with thousands separators, the accuracy cost in percentage points.
    assert _row(markdown, "rows in") == "| rows in | 32,561 |"
    assert "1.4 percentage points" in _row(markdown, "accuracy cost of privacy")


def test_when_epsilon_is_round_then_it_keeps_three_decimals() -> None:
    facts = _facts()
    facts["training"]["dp"]["epsilon"] = 1.5

    markdown, _ = render_model_card(facts)

    assert _row(markdown, "epsilon (ε)") == "| epsilon (ε) | 1.500 |"


def test_when_no_baseline_was_trained_then_the_card_says_so() -> None:
    facts = _facts()
    facts["utility"] = {"accuracy": 0.8312, "baseline_accuracy": None, "accuracy_cost": None}

    markdown, _ = render_model_card(facts)

    assert "baseline not trained" in _row(markdown, "non-private baseline accuracy")
    assert "baseline not trained" in _row(markdown, "accuracy cost of privacy")


def test_when_a_roc_plot_is_given_then_the_html_embeds_it_as_an_image() -> None:
    facts = _facts()
    facts["audit"]["roc_plot"] = "audit/roc.png"

    markdown, html = render_model_card(facts)

    assert "](audit/roc.png)" in markdown
    assert re.search(r'<img alt="[^"]*" src="audit/roc.png" />', html)


@pytest.mark.parametrize(
    "path", ["//evil.example/roc.png", "/etc/roc.png", "../../roc.png", "audit/../../roc.png"]
)
def test_when_the_roc_plot_is_not_an_artifact_path_then_no_image_is_embedded(path: str) -> None:
    facts = _facts()
    facts["audit"]["roc_plot"] = path

    _, html = render_model_card(facts)

    assert "<img" not in html
    assert "not shown" in html


def test_when_the_roc_plot_has_a_scheme_then_the_image_stays_relative() -> None:
    facts = _facts()
    facts["audit"]["roc_plot"] = "javascript:alert(1)"

    _, html = render_model_card(facts)

    assert 'src="javascript%3Aalert%281%29"' in html


def test_when_rendered_then_the_html_is_standalone_and_offline() -> None:
    facts = _facts()

    _, html = render_model_card(facts)

    assert html.startswith("<!doctype html>")
    assert "<title>Model card: privgate-adult-income, version 3</title>" in html
    assert "<style>" in html
    assert html.rstrip().endswith("</html>")
    assert not re.search(r"https?://|<script|<link", html)
