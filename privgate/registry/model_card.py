"""Model cards: one per registered model version, as Markdown and as standalone HTML.

A card is rendered from "facts", a JSON-ready dict of aggregates the pipeline already
reports (counts, shares, metrics, hashes, settings), never from rows: whoever can read
the registry can read the card. Sections, in order:

    title + verdict   model name, version, APPROVED / REJECTED (naming failed gates)
    Gates             one row per gate: result, value, rule, details
    Data              PII per column and its treatment, k-anonymity, generalization
    Training          DP-SGD settings and the (epsilon, delta) the accountant certifies
    Audit             membership-inference attack metrics, ROC plot if any
    Utility           accuracy against the non-private baseline
    Lineage           input, config and policy hashes, code version
    Notes             free sentences from the pipeline

Every value may be missing: the card says "not measured" instead of failing, since a
card is most needed for the runs that went wrong. Every string from facts goes through
`escape_markdown`: column names come from the raw table's header, which privgate does
not control, and Python-Markdown passes raw HTML through untouched.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import markdown

NOT_MEASURED = "not measured"
NOT_APPLICABLE = "not applicable (no DP)"
INFINITY = "∞"

# Metacharacters Python-Markdown honours a backslash escape for (the tables extension
# adds `|`). Parentheses stay readable: without `[` no link can open.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#+!|])")
# At the start of a list item, "- x" or "1. x" would open a nested list.
_LIST_BULLET = re.compile(r"^-")
_LIST_NUMBER = re.compile(r"^(\d+)\.")

_COMPARISONS = {"<=": "≤", ">=": "≥", "<": "&lt;", ">": "&gt;", "==": "="}

_DECIDED_BY = {
    "declared": "config (declared action)",
    "scan": "PII scan",
    "quasi_identifier": "k-anonymity (quasi-identifier)",
    "target": "pipeline (target column)",
}

_STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.5; color: #1b1b1b;
       max-width: 62rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.75rem 0 1.25rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.3rem 0.65rem; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f2f2f2; }
tbody tr:nth-child(even) { background: #fafafa; }
img { max-width: 100%; }
"""


def render_model_card(facts: Mapping[str, Any]) -> tuple[str, str]:
    """Render the model card of one registered model version.

    Args:
        facts: JSON-ready aggregates with the sections `model`, `data`, `training`,
            `audit`, `utility`, `gates`, `lineage` and `notes`. Any section or value may
            be missing or None; unknown keys are ignored. `utility.accuracy_cost` is a
            difference of accuracies (baseline minus private, e.g. 0.012); when absent it
            is computed from the two accuracies.

    Returns:
        The card as Markdown, and as a standalone HTML5 document that renders offline
        (no scripts, no external resources).
    """
    model = _mapping(facts.get("model"))
    gates = [_mapping(gate) for gate in _sequence(facts.get("gates"))]
    lines = [
        *_title_lines(model, gates),
        *_gates_lines(gates),
        *_data_lines(_mapping(facts.get("data"))),
        *_training_lines(_mapping(facts.get("training"))),
        *_encrypted_lines(_mapping(facts.get("training")).get("encrypted_inference")),
        *_audit_lines(_mapping(facts.get("audit"))),
        *_utility_lines(_mapping(facts.get("utility"))),
        *_approval_lines(facts.get("approval")),
        *_lineage_lines(_mapping(facts.get("lineage"))),
        *_notes_lines(facts.get("notes")),
    ]
    text = "\n".join(lines).rstrip() + "\n"
    return text, _html_document(title=_plain_title(model), body_markdown=text)


def escape_markdown(value: object) -> str:
    """Return `value` as one line of text that Markdown and HTML both show literally.

    Whitespace runs (newlines included) collapse to one space, so a value cannot end a
    table row or start a block. Control characters are dropped: Python-Markdown uses
    STX/ETX internally to mark escaped and stashed text. `&`, `<`, `>` become entities,
    since Markdown passes raw HTML through; the other metacharacters get backslashes.

    Args:
        value: Anything; it is converted with `str`.

    Returns:
        The escaped text, e.g. `&lt;b&gt;a\\|b&lt;/b&gt;` for `<b>a|b</b>`.
    """
    text = html.escape(_clean(value), quote=False)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


# --------------------------------------------------------------------------- sections


def _title_lines(model: Mapping[str, Any], gates: list[Mapping[str, Any]]) -> list[str]:
    name, version = model.get("name"), model.get("version")
    failed = [escape_markdown(g.get("name") or "unnamed gate") for g in gates if not _passed(g)]
    status = model.get("status")
    # Fail closed: APPROVED needs the registry's word (without one, a gate report) and
    # no failed gate.
    vouched = bool(gates) if status is None else status == "approved"
    approved = vouched and not failed
    if approved:
        verdict = "**Verdict: APPROVED**: every gate passed."
    elif failed:
        verdict = f"**Verdict: REJECTED**: failed gates: {', '.join(failed)}."
        if status == "approved":
            verdict += " (The registry status says approved; the gate report does not.)"
    else:
        verdict = "**Verdict: REJECTED**: no failed gate recorded."
    return [
        f"# Model card: {_text(name, missing='unnamed model')}, "
        f"version {_text(version, missing='not recorded')}",
        "",
        verdict,
        "",
        f"Run {_text(model.get('run_id'))}, created {_text(model.get('created_utc'))} (UTC), "
        f"registry status {_text(status)}.",
        "",
    ]


def _gates_lines(gates: list[Mapping[str, Any]]) -> list[str]:
    lines = ["## Gates", ""]
    if not gates:
        return [*lines, f"Gate results: {NOT_MEASURED}.", ""]
    rows = [
        [
            _text(g.get("name")),
            "✅ passed" if _passed(g) else "❌ FAILED",
            _metric(g.get("value")),
            _rule(g.get("comparison"), g.get("threshold")),
            _text(g.get("details"), missing=""),
        ]
        for g in gates
    ]
    return [*lines, *_table(["gate", "result", "value", "rule", "details"], rows)]


def _data_lines(data: Mapping[str, Any]) -> list[str]:
    lines = ["## Data", "", "### PII found per column", ""]
    columns = [_mapping(c) for c in _sequence(data.get("columns"))]
    if columns:
        rows = [
            [
                _text(c.get("name")),
                _text(c.get("kind")),
                _entities(c.get("entities")),
                _text(c.get("action")),
                _decided_by(c.get("source")),
            ]
            for c in columns
        ]
        header = ["column", "kind", "PII found (share of scanned cells)", "action", "decided by"]
        lines += _table(header, rows)
    else:
        lines += [f"PII scan: {NOT_MEASURED}.", ""]
    rows_in = data.get("rows_in")
    lines += ["### Anonymization", ""]
    lines += _table(
        ["measure", "value"],
        [
            ["rows in", _count(rows_in)],
            ["rows out", _count(data.get("rows_out"))],
            ["k target", _count(data.get("k_target"))],
            ["k achieved", _count(data.get("k_achieved"))],
            ["suppressed rows", _suppressed(data.get("suppressed_rows"), rows_in)],
            ["information loss", _metric(data.get("information_loss"))],
        ],
    )
    lines += ["### Generalization levels", ""]
    levels = data.get("levels")
    if isinstance(levels, Mapping) and levels:
        rows = [[escape_markdown(column), _text(label)] for column, label in levels.items()]
        lines += _table(["column", "level"], rows)
    elif isinstance(levels, Mapping):
        lines += ["No column was generalized.", ""]
    else:
        lines += [f"Generalization levels: {NOT_MEASURED}.", ""]
    return lines


def _training_lines(training: Mapping[str, Any]) -> list[str]:
    dp = _mapping(training.get("dp"))
    enabled = dp.get("enabled")
    lines = ["## Training", ""]
    if enabled is False:
        lines += [
            "**This model was trained WITHOUT differential privacy**: epsilon is ∞, its "
            "weights carry no formal privacy guarantee.",
            "",
        ]
    elif enabled is None:
        lines += [f"Differential privacy: {NOT_MEASURED}.", ""]

    def dp_only(text: str) -> str:
        # Without DP these settings do not exist; printing Opacus defaults would mislead.
        return NOT_APPLICABLE if enabled is False else text

    epsilon = INFINITY if enabled is False else _epsilon(dp.get("epsilon"))
    rows = [
        ["model", _text(training.get("model"))],
        ["epochs", _count(training.get("epochs"))],
        ["batch size", _count(training.get("batch_size"))],
        ["epsilon (ε)", epsilon],
        ["delta (δ)", dp_only(_metric(dp.get("delta")))],
        ["accountant", dp_only(_text(dp.get("accountant")))],
        ["noise multiplier", dp_only(_metric(dp.get("noise_multiplier")))],
        ["clipping norm (`max_grad_norm`)", dp_only(_metric(dp.get("max_grad_norm")))],
        ["steps", _count(dp.get("steps"))],
        ["Poisson sampling", _yes_no(dp.get("poisson_sampling"))],
        ["sample rate", _metric(dp.get("sample_rate"))],
        ["`secure_mode`", dp_only(_yes_no(dp.get("secure_mode")))],
    ]
    return [*lines, *_table(["setting", "value"], rows)]


def _approval_lines(approval: object) -> list[str]:
    if not isinstance(approval, Mapping):
        return []  # the policy asks for no sign-off: the gates decide alone
    lines = ["## Approval", ""]
    status = approval.get("status")
    if status == "pending":
        approvers = ", ".join(escape_markdown(a) for a in _sequence(approval.get("approvers")))
        return [*lines, f"**Pending**: waiting for a decision by one of {approvers}.", ""]
    if approval.get("refusal"):
        lines += [f"**Blocked**: {escape_markdown(approval.get('refusal'))}", ""]
    if not approval.get("approver"):
        return lines
    rows = [
        ["decision", _text(approval.get("decision"))],
        ["approver", _text(approval.get("approver"))],
        ["rationale", _text(approval.get("rationale"))],
        ["decided (UTC)", _text(approval.get("decided_utc"))],
        ["evidence (gate report SHA-256)", f"`{_text(approval.get('evidence_sha256'))}`"],
    ]
    note = (
        "Signed into the version's attestation."
        if status == "approved"
        else "Recorded on the version's tags; the version never gets the alias."
    )
    return [*lines, *_table(["record", "value"], rows), note, ""]


def _encrypted_lines(encrypted: object) -> list[str]:
    lines = ["## Encrypted inference", ""]
    if not isinstance(encrypted, Mapping):
        return [*lines, "Not HE-ready: this model family has no encrypted circuit.", ""]
    params = _mapping(encrypted.get("parameters"))
    targets = _mapping(encrypted.get("targets"))
    verdict = (
        "**HE-ready**: `privgate encrypted serve` scores encrypted records with it."
        if encrypted.get("ready")
        else "**Not HE-ready**: its encrypted scores missed the targets below, so "
        "`privgate encrypted serve` refuses it."
    )
    primes = "-".join(str(b) for b in _sequence(params.get("coeff_mod_bit_sizes")))
    rows = [
        ["records compared (test table)", _count(encrypted.get("records"))],
        [
            "max abs probability difference",
            f"{_metric(encrypted.get('max_abs_probability_difference'))} "
            f"(target <= {_metric(targets.get('max_abs_probability_difference'))})",
        ],
        [
            "same predicted class",
            f"{_percent(encrypted.get('class_agreement'))} "
            f"(target >= {_percent(targets.get('class_agreement'))})",
        ],
        [
            "CKKS parameters",
            f"N = {_count(params.get('poly_modulus_degree'))}, primes {primes} bits, "
            f"scale 2^{_text(params.get('scale_bits'))}",
        ],
        ["security", f"{_text(params.get('security_bits'))}-bit"],
        ["records per ciphertext", _count(params.get("slots"))],
    ]
    return [verdict, "", *_table(["measure", "value"], rows)]


def _audit_lines(audit: Mapping[str, Any]) -> list[str]:
    rows = [
        ["strongest attack", _text(audit.get("attack"))],
        ["ROC AUC", _metric(audit.get("mia_auc"))],
        ["TPR at 1% FPR", _metric(audit.get("mia_tpr_at_1pct_fpr"))],
        ["TPR at 0.1% FPR", _metric(audit.get("mia_tpr_at_0_1pct_fpr"))],
        ["attacker advantage", _metric(audit.get("attacker_advantage"))],
        ["members", _count(audit.get("members"))],
        ["non-members", _count(audit.get("non_members"))],
        ["empirical epsilon lower bound", _epsilon(audit.get("empirical_epsilon_lower_bound"))],
        ["claimed epsilon", _epsilon(audit.get("claimed_epsilon"))],
        [
            "white-box canary audit (gradient canaries) lower bound",
            _epsilon(audit.get("white_box_epsilon_lower_bound")),
        ],
        [
            "black-box canary audit (input canaries) lower bound",
            _epsilon(audit.get("black_box_canary_epsilon_lower_bound")),
        ],
        [
            "audit power (white-box control, noise off)",
            _epsilon(audit.get("audit_power_epsilon")),
        ],
    ]
    lines = ["## Audit", "", *_table(["measure", "value"], rows)]
    attacks = [a for a in audit.get("attacks") or () if isinstance(a, Mapping)]
    if attacks:
        lines += _table(
            ["attack", "ROC AUC", "TPR at 1% FPR", "TPR at 0.1% FPR"],
            [
                [
                    _text(a.get("attack")),
                    _metric(a.get("mia_auc")),
                    _metric(a.get("mia_tpr_at_1pct_fpr")),
                    _metric(a.get("mia_tpr_at_0_1pct_fpr")),
                ]
                for a in attacks
            ],
        )
    plot = audit.get("roc_plot")
    if plot is not None:
        link = _relative_link(plot)
        if link is None:
            lines += [f"ROC plot {escape_markdown(plot)} not shown: not an artifact path.", ""]
        else:
            lines += [f"![ROC curve of the membership-inference attack]({link})", ""]
    return lines


def _utility_lines(utility: Mapping[str, Any]) -> list[str]:
    accuracy, baseline = utility.get("accuracy"), utility.get("baseline_accuracy")
    cost = utility.get("accuracy_cost")
    # Percentage points, not percent: the cost is a difference of two accuracies.
    if cost is None and _number(accuracy) is not None and _number(baseline) is not None:
        cost = float(baseline) - float(accuracy)
    if _number(cost) is not None:
        cost_text = f"{100 * float(cost):.1f} percentage points"
    elif baseline is None:
        cost_text = "baseline not trained"
    else:
        cost_text = _metric(cost)
    rows = [
        ["test accuracy", _metric(accuracy)],
        [
            "non-private baseline accuracy",
            "baseline not trained" if baseline is None else _metric(baseline),
        ],
        ["accuracy cost of privacy", cost_text],
    ]
    majority = utility.get("majority_rate")
    if majority is not None:
        rows.append(["always predicting the majority class", _metric(majority)])
    return ["## Utility", "", *_table(["measure", "value"], rows)]


def _lineage_lines(lineage: Mapping[str, Any]) -> list[str]:
    rows = [
        ["training table SHA-256", _text(lineage.get("train_sha256"))],
        ["test table SHA-256", _text(lineage.get("test_sha256"))],
        ["config SHA-256", _text(lineage.get("config_sha256"))],
        ["policy SHA-256", _text(lineage.get("policy_sha256"))],
        ["code version", _text(lineage.get("code_version"))],
    ]
    if lineage.get("test_split") is not None:  # recorded since test_fraction exists
        rows.insert(2, ["test table", _text(lineage["test_split"])])
    return ["## Lineage", "", *_table(["input", "value"], rows)]


def _notes_lines(notes: object) -> list[str]:
    items = [escape_markdown(n) for n in _sequence(notes) if n is not None and _clean(n)]
    items = [_LIST_NUMBER.sub(r"\1\\.", _LIST_BULLET.sub(r"\\-", n)) for n in items]
    return ["## Notes", "", *([f"- {n}" for n in items] or ["None."]), ""]


# --------------------------------------------------------------------------- formatting


def _clean(value: object) -> str:
    text = " ".join(str(value).split())
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc")


def _text(value: object, *, missing: str = NOT_MEASURED) -> str:
    return missing if value is None or not _clean(value) else escape_markdown(value)


def _number(value: object) -> float | None:
    # bool is an int subclass, but True is not a measurement.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _formatted(value: object, spec: str) -> str:
    number = _number(value)
    if number is None:
        # A string where a number belongs is shown as given, never silently hidden.
        return NOT_MEASURED if value is None else escape_markdown(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return INFINITY if number > 0 else f"-{INFINITY}"
    return format(number, spec)


def _metric(value: object) -> str:
    return _formatted(value, ".4g")


def _epsilon(value: object) -> str:
    return _formatted(value, ".3f")


def _percent(fraction: object) -> str:
    number = _number(fraction)
    if number is None or not math.isfinite(number):
        return _metric(fraction)
    return f"{100 * number:.1f}%"


def _count(value: object) -> str:
    # Counts may arrive as floats: MLflow stores every metric as one.
    number = _number(value)
    if number is not None and number.is_integer():
        return f"{int(number):,}"
    return _metric(value)


def _yes_no(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _text(value)


def _rule(comparison: object, threshold: object) -> str:
    if comparison is None and threshold is None:
        return NOT_MEASURED
    symbol = _COMPARISONS.get(comparison) if isinstance(comparison, str) else None
    return f"{symbol or _text(comparison)} {_metric(threshold)}"


def _entities(entities: object) -> str:
    if not isinstance(entities, Mapping):
        return NOT_MEASURED
    if not entities:
        return "none"
    return ", ".join(f"{escape_markdown(e)} {_percent(f)}" for e, f in entities.items())


def _decided_by(source: object) -> str:
    if isinstance(source, str) and source in _DECIDED_BY:
        return _DECIDED_BY[source]
    return _text(source)


def _suppressed(rows: object, rows_in: object) -> str:
    count, total = _number(rows), _number(rows_in)
    if count is None or total is None or total <= 0:
        return _count(rows)
    return f"{_count(rows)} ({_percent(count / total)} of rows in)"


def _passed(gate: Mapping[str, Any]) -> bool:
    # Only an explicit True passes: a missing or garbled verdict is a failure.
    return gate.get("passed") is True


def _relative_link(path: object) -> str | None:
    """Return `path` percent-encoded as a relative URL, or None if it is not one."""
    text = _clean(path)
    segments = text.replace("\\", "/").split("/")
    # Absolute and protocol-relative paths would point outside the artifacts, or online.
    if not text or text.startswith(("/", "\\")) or ".." in segments:
        return None
    # Percent-encoding `:` also rules out schemes such as javascript: or https:.
    return quote(text, safe="/")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Return a Markdown table; every cell must already be escaped."""
    return [
        f"| {' | '.join(header)} |",
        f"|{'---|' * len(header)}",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
    ]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> list[Any]:
    # A bare string is a sequence too, but never a list of notes, gates or columns.
    return list(value) if isinstance(value, list | tuple) else []


def _plain_title(model: Mapping[str, Any]) -> str:
    name, version = model.get("name"), model.get("version")
    name_text = _clean(name) if name is not None else ""
    version_text = _clean(version) if version is not None else ""
    return f"Model card: {name_text or 'unnamed model'}, version {version_text or 'not recorded'}"


def _html_document(*, title: str, body_markdown: str) -> str:
    body = markdown.markdown(body_markdown, extensions=["tables"])
    # Inline style, no fonts, scripts or links: the card opens offline from any artifact
    # store. The title is not Markdown, so it gets HTML escaping only.
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{_STYLE}</style>\n"
        f"</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
