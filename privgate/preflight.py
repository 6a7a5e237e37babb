"""`privgate check`: everything that can be known about a run before anything trains.

A run that would fail on a batch size, a missing column or an exhausted budget should
fail in seconds, before the ledger is charged, not after a minute of training. Every
check here reads the tables, the config, the policy, the suite and the ledger; none
trains, none spends privacy. The flow runs them right after validation (so a run
started from the Prefect UI gets them too), and `privgate check` runs them alone.

Findings are errors (the run would fail or be blocked: it does not start), warnings
(the run would start, but a gate would measure less than it seems) and notes. Messages
name files, columns, keys and counts; never a value from the table.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from audits.gradient_canaries import plan, weight_capacity
from audits.suite import needs_reference
from privgate import stages
from privgate.config import PipelineConfig, PrivacyPolicy
from privgate.data.features import build_feature_spec, encode_labels, input_width
from privgate.data.validation import public_domains, suite_columns
from privgate.dp.ledger import PrivacyLedger
from privgate.dp.training import build_network
from privgate.errors import ConfigError
from privgate.home import resolve_path
from privgate.pii.kanon import (
    KAnonymityResult,
    find_k_anonymous_generalization,
    hierarchy_height,
)

Level = Literal["error", "warning", "note"]

# What `privgate init` writes beside every line a person must decide.
REVIEW_MARK = "REVIEW"


@dataclass(frozen=True)
class Finding:
    """One check's outcome: a level, the check's name and a message without data values."""

    level: Level
    check: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    """Every finding of a preflight, and how long it took."""

    findings: tuple[Finding, ...]
    seconds: float

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Return the findings that stop a run."""
        return tuple(f for f in self.findings if f.level == "error")

    @property
    def ok(self) -> bool:
        """Return True when nothing stops the run."""
        return not self.errors

    def failure_message(self) -> str:
        """Return the errors on one line each, for a flow run's message."""
        return "; ".join(f"{f.check}: {f.message}" for f in self.errors)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "findings": [asdict(f) for f in self.findings],
        }

    def to_text(self) -> str:
        """Return the findings as lines, errors first."""
        order = {"error": 0, "warning": 1, "note": 2}
        lines = [
            f"  [{f.level}] {f.check}: {f.message}"
            for f in sorted(self.findings, key=lambda f: order[f.level])
        ]
        verdict = "ready to run" if self.ok else f"{len(self.errors)} error(s): the run would fail"
        return f"check: {verdict} ({self.seconds:.1f} s)\n" + "\n".join(lines)


def preflight(
    tables: stages.Tables,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    *,
    files: tuple[Path, ...] = (),
) -> CheckReport:
    """Run every check that needs no training on the ingested tables.

    Args:
        tables: From `stages.ingest`.
        config: The pipeline config.
        policy: The privacy policy.
        files: Config, policy and suite files to read for unreviewed `REVIEW` marks.
    """
    started = time.perf_counter()
    findings: list[Finding] = []
    findings += _columns(tables, config, policy)
    if not any(f.level == "error" for f in findings):
        domains_ok = _suite(tables, config, findings)
        findings += _labels(tables, config, policy)
        findings += _rows_per_person(tables, config, policy)
        result = _k_anonymity(tables, config, policy, findings)
        findings += _sizes(tables, config)
        if domains_ok and result is not None:
            findings += _audit_power(config, result)
    findings += _budget(tables, config, policy)
    findings += _review_marks(files)
    return CheckReport(tuple(findings), time.perf_counter() - started)


# --------------------------------------------------------------------------- checks


def _columns(tables: stages.Tables, config: PipelineConfig, policy: PrivacyPolicy) -> list[Finding]:
    """Every column the config or the policy names is in both tables (by key)."""
    anonymization = config.anonymization
    named: dict[str, list[str]] = {
        "training.features": list(config.training.features),
        "training.log_scaled": list(config.training.log_scaled),
        "anonymization.quasi_identifiers": list(anonymization.quasi_identifiers),
        "anonymization.columns": list(anonymization.columns),
        "data.string_columns": list(config.data.string_columns),
        "data.person_key": list(config.data.person_key),
    }
    if anonymization.l_diversity and anonymization.l_diversity.sensitive:
        named["anonymization.l_diversity.sensitive"] = [anonymization.l_diversity.sensitive]
    if policy.sensitive_attribute:
        named["policy sensitive_attribute"] = [policy.sensitive_attribute]
    findings = []
    for which, frame in (("training", tables.train), ("test", tables.test)):
        present = set(frame.columns)
        for key, columns in named.items():
            missing = [c for c in columns if c not in present]
            if missing:
                findings.append(
                    Finding("error", "columns", f"{key} names {missing}, not in the {which} table")
                )
    missing_qis = [c for c in policy.quasi_identifiers if c not in tables.train.columns]
    if missing_qis:
        findings.append(
            Finding(
                "warning",
                "columns",
                f"the policy's quasi_identifiers {missing_qis} are not in the training table: "
                "is the policy written for another dataset?",
            )
        )
    dropped = {c for c, action in anonymization.columns.items() if action == "drop"}
    raw = [
        c
        for c in policy.quasi_identifiers
        if c in tables.train.columns
        and c not in anonymization.quasi_identifiers
        and c not in dropped
    ]
    if raw:
        findings.append(
            Finding(
                "warning",
                "columns",
                f"the policy's quasi-identifiers {raw} are neither generalized "
                "(anonymization.quasi_identifiers) nor dropped: k is judged with them as "
                "they are",
            )
        )
    return findings


def _rows_per_person(
    tables: stages.Tables, config: PipelineConfig, policy: PrivacyPolicy
) -> list[Finding]:
    """No person has more training rows than the policy allows (DP protects rows).

    Counted on the raw training table, by the `data.person_key` columns together; rows
    missing a key part are not counted (they name nobody the key can tell apart).
    """
    key = list(config.data.person_key)
    if not key:
        identifiers = sorted(
            c
            for c, action in config.anonymization.columns.items()
            if action in ("pseudonymize", "mask")
        )
        if not identifiers:
            return []
        return [
            Finding(
                "warning",
                "rows_per_person",
                f"the table has identifier columns {identifiers} but data.person_key is not "
                "set: rows per person are not counted, and DP protects rows, not people "
                "(a person with r rows is protected at about r x epsilon)",
            )
        ]
    counts = tables.train[key].dropna().value_counts(sort=False)
    most = int(counts.max()) if len(counts) else 0
    allowed = policy.max_rows_per_person
    if most <= allowed:
        return [
            Finding(
                "note",
                "rows_per_person",
                f"at most {most} training row(s) per person (data.person_key {key}; the "
                f"policy allows {allowed})",
            )
        ]
    over = int((counts > allowed).sum())
    claimed = config.training.dp.target_epsilon if config.training.dp.enabled else None
    group = (
        f" (epsilon {claimed:g} per row protects them at about {most * claimed:g})"
        if (claimed is not None)
        else ""
    )
    return [
        Finding(
            "error",
            "rows_per_person",
            f"{over} person(s) have more than the policy's max_rows_per_person={allowed} "
            f"training rows (data.person_key {key}), up to {most}{group}: DP-SGD protects "
            "rows, not people. Keep one row per person (or the allowed number), or have the "
            "policy's bound reviewed",
        )
    ]


def _suite(tables: stages.Tables, config: PipelineConfig, findings: list[Finding]) -> bool:
    """The suite declares a public domain per feature and names columns the table has."""
    suite = resolve_path(config.data.expectation_suite)
    try:
        domains = public_domains(suite)
        expected = suite_columns(suite)
    except ConfigError as exc:
        findings.append(Finding("error", "suite", str(exc)))
        return False
    undeclared = [f for f in config.training.features if f not in domains]
    if undeclared:
        findings.append(
            Finding(
                "error",
                "suite",
                f"features {undeclared} have no value set or range in {suite.name}: their "
                "encoding needs a public domain",
            )
        )
    absent = sorted(expected - set(tables.train.columns))
    if absent:
        findings.append(
            Finding("error", "suite", f"{suite.name} expects columns {absent} the table lacks")
        )
    return not undeclared


def _labels(tables: stages.Tables, config: PipelineConfig, policy: PrivacyPolicy) -> list[Finding]:
    """Both classes are present, and the utility floor means something on this table."""
    data = config.data
    findings = []
    rates = {}
    for which, frame in (("training", tables.train), ("test", tables.test)):
        labels = encode_labels(frame[data.target], data.positive_labels)
        if len(labels) == 0 or labels.min() == labels.max():
            findings.append(
                Finding(
                    "error",
                    "labels",
                    f"the {which} table holds one class of {data.target!r} only "
                    "(data.target, data.positive_labels)",
                )
            )
        rates[which] = stages.majority_rate(labels)
    majority = rates["test"]
    if majority is None:
        return findings
    findings.append(
        Finding("note", "utility", f"always predicting the majority class scores {majority:.4f}")
    )
    lift = policy.min_accuracy_lift
    floor = max(policy.min_accuracy, majority + lift if lift is not None else 0.0)
    if floor <= majority:
        findings.append(
            Finding(
                "warning",
                "utility",
                f"the utility floor {floor:.4g} is at or below the majority-class rate "
                f"{majority:.4f}: a model that learned nothing passes it; set "
                "min_accuracy_lift in the policy",
            )
        )
    return findings


def _k_anonymity(
    tables: stages.Tables,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    findings: list[Finding],
) -> KAnonymityResult | None:
    """k is reachable within the suppression limit; say what each quasi-identifier costs."""
    anonymization = config.anonymization
    hierarchies = dict(anonymization.quasi_identifiers)
    k = max(anonymization.k, policy.min_k)
    diversity = anonymization.l_diversity
    sensitive = (diversity.sensitive if diversity else None) or config.data.target
    l_target = max(diversity.l if diversity else 1, policy.min_l)

    def search(qis: dict[str, Any]) -> KAnonymityResult:
        return find_k_anonymous_generalization(
            tables.train,
            quasi_identifiers=qis,
            k=k,
            max_suppression=anonymization.max_suppression,
            sensitive=sensitive if l_target > 1 else None,
            l=l_target,
        )

    try:
        result = search(hierarchies)
    except ConfigError as exc:
        findings.append(Finding("error", "k_anonymity", str(exc)))
        return None
    if not hierarchies:
        return result
    reached = result.k_achieved >= k and result.l_achieved >= l_target
    if not reached:
        findings.append(
            Finding(
                "error",
                "k_anonymity",
                f"k={k} (l={l_target}) is not reachable within max_suppression "
                f"{anonymization.max_suppression:g}: even every quasi-identifier at `*` "
                "leaves too few rows; use fewer quasi-identifiers or allow more suppression",
            )
        )
        return result
    useless = [
        qi
        for qi, level in result.levels.items()
        if qi in config.training.features and level == hierarchy_height(hierarchies[qi]) - 1
    ]
    findings.append(
        Finding(
            "note",
            "k_anonymity",
            f"k={k} reached with {result.suppressed_rows} of {result.total_rows} rows "
            f"suppressed, information loss {result.information_loss:.3f}: "
            + ", ".join(f"{qi} {label}" for qi, label in result.level_labels.items()),
        )
    )
    if useless:
        findings.append(
            Finding(
                "warning",
                "k_anonymity",
                f"{useless} generalized to `*`: as features they carry nothing",
            )
        )
    if len(hierarchies) > 1 and result.information_loss > 0:
        costs = {
            qi: search({q: h for q, h in hierarchies.items() if q != qi}).information_loss
            for qi in hierarchies
        }
        costliest = min(costs, key=lambda qi: costs[qi])
        findings.append(
            Finding(
                "note",
                "k_anonymity",
                f"the costliest quasi-identifier is {costliest}: without it the information "
                f"loss falls from {result.information_loss:.3f} to {costs[costliest]:.3f}",
            )
        )
    return result


def _sizes(tables: stages.Tables, config: PipelineConfig) -> list[Finding]:
    """The batch size fits every table the run trains on, delta fits the members."""
    training, audit = config.training, config.audit
    batch = training.batch_size
    kept = math.floor(len(tables.train) * (1 - config.anonymization.max_suppression))
    members = kept - round(kept * training.holdout_fraction)
    test_rows = len(tables.test)
    findings = []

    def too_small(what: str, rows: int) -> None:
        findings.append(
            Finding(
                "error",
                "sizes",
                f"{what}: {rows} rows, fewer than training.batch_size={batch}; lower the "
                "batch size or give more rows",
            )
        )

    if members < batch:
        too_small(
            "the DP model trains on the members (training table less suppression "
            "and training.holdout_fraction)",
            members,
        )
    if needs_reference(audit.attacks) and test_rows // 2 < batch:
        too_small("the audit's reference models train on halves of the test table", test_rows // 2)
    if (audit.canaries or audit.gradient_canaries) and test_rows < batch:
        too_small("the canary audit trains on the test table", test_rows)
    if training.dp.enabled and members > 0 and training.dp.target_delta >= 1 / members:
        findings.append(
            Finding(
                "error",
                "sizes",
                f"training.dp.target_delta {training.dp.target_delta:g} is not below 1/n for "
                f"about {members} members: the privacy_delta gate would block",
            )
        )
    return findings


def _audit_power(config: PipelineConfig, result: KAnonymityResult) -> list[Finding]:
    """The white-box audit can prove the claim with this network's capacity."""
    dp, audit = config.training.dp, config.audit
    if not dp.enabled:
        return []
    if audit.gradient_canaries == 0 or dp.clipping != "bookkeeping":
        why = (
            "audit.gradient_canaries is 0"
            if audit.gradient_canaries == 0
            else f"training.dp.clipping {dp.clipping} has no white-box seam"
        )
        return [
            Finding(
                "warning",
                "audit_power",
                f"{why}: only the black-box control judges audit power, and it rarely proves "
                "the claim (the audit_power gate would be inconclusive)",
            )
        ]
    spec = build_feature_spec(
        features=config.training.features,
        domains=public_domains(resolve_path(config.data.expectation_suite)),
        quasi_identifiers=config.anonymization.quasi_identifiers,
        levels=result.levels,
        log_scaled=config.training.log_scaled,
    )
    network = build_network(
        model=config.training.model,
        input_width=input_width(spec),
        hidden_units=config.training.hidden_units,
    )
    guess_plan = plan(
        dp.target_epsilon,
        canaries=audit.gradient_canaries,
        delta=dp.target_delta,
        confidence=stages.white_box_confidence(config),
        capacity=weight_capacity(network),
    )
    if guess_plan.claim_provable:
        return [
            Finding(
                "note",
                "audit_power",
                f"the white-box audit can prove epsilon {dp.target_epsilon:g} with "
                f"{guess_plan.canaries} canaries and {guess_plan.needed_guesses} correct guesses",
            )
        ]
    return [
        Finding(
            "error",
            "audit_power",
            f"no white-box audit with {guess_plan.canaries} canaries on this network's "
            f"{weight_capacity(network)} weights can prove epsilon {dp.target_epsilon:g}: "
            "the audit_power gate would be inconclusive; claim a smaller epsilon "
            "(training.dp.target_epsilon) or widen the model (training.hidden_units)",
        )
    ]


def _budget(tables: stages.Tables, config: PipelineConfig, policy: PrivacyPolicy) -> list[Finding]:
    """The policy allows what the config plans, and the ledger has room for it."""
    dp = config.training.dp
    findings = []
    if not dp.enabled:
        level: Level = "warning" if policy.allow_non_private else "error"
        findings.append(
            Finding(
                level,
                "budget",
                "training.dp.enabled is false: the model never passes the privacy_budget gate"
                + (
                    ""
                    if policy.allow_non_private
                    else ", and the policy refuses it (allow_non_private: false)"
                ),
            )
        )
        return findings
    if dp.target_epsilon > policy.max_epsilon:
        findings.append(
            Finding(
                "error",
                "budget",
                f"training.dp.target_epsilon {dp.target_epsilon:g} is above the policy's "
                f"max_epsilon {policy.max_epsilon:g}",
            )
        )
    if dp.target_delta > policy.max_delta:
        findings.append(
            Finding(
                "error",
                "budget",
                f"training.dp.target_delta {dp.target_delta:g} is above the policy's "
                f"max_delta {policy.max_delta:g}",
            )
        )
    spent = PrivacyLedger().balance(dataset_sha256=tables.train_sha256, privacy_unit="record")
    left_epsilon = policy.lifetime_epsilon - spent.spent_epsilon
    left_delta = policy.lifetime_delta - spent.spent_delta
    if dp.target_epsilon > left_epsilon + 1e-12 or dp.target_delta > left_delta + 1e-18:
        findings.append(
            Finding(
                "error",
                "budget",
                f"this dataset has epsilon {max(left_epsilon, 0):g}, delta "
                f"{max(left_delta, 0):g} left of its lifetime budget; the run plans "
                f"{dp.target_epsilon:g}, {dp.target_delta:g}",
            )
        )
    else:
        findings.append(
            Finding(
                "note",
                "budget",
                f"ledger: epsilon {spent.spent_epsilon:g} of {policy.lifetime_epsilon:g} spent "
                f"on this dataset; this run plans {dp.target_epsilon:g}",
            )
        )
    return findings


def _review_marks(files: tuple[Path, ...]) -> list[Finding]:
    """Lines `privgate init` marked for a person's decision and nobody has cleared."""
    findings = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        lines = [n for n, line in enumerate(text.splitlines(), 1) if REVIEW_MARK in line]
        if lines:
            shown = ", ".join(map(str, lines[:12])) + (" ..." if len(lines) > 12 else "")
            findings.append(
                Finding(
                    "warning",
                    "review",
                    f"{path.name}: {len(lines)} line(s) marked {REVIEW_MARK} by privgate init "
                    f"(lines {shown}); decide each, then delete the mark",
                )
            )
    return findings
