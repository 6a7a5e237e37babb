"""The pipeline's stages as plain functions: one call per box of the pipeline diagram.

`tasks/` wraps each in a Prefect task; `benchmarks/orchestration.py` chains them without
Prefect to measure what orchestration costs. Stage outputs carry data in memory only;
what leaves a stage for reports is aggregates.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audits.canaries import CanaryAudit, canary_audit, make_canaries
from audits.gates import Evidence, GateReport, run_gates
from audits.gradient_canaries import GradientCanaries, plan, weight_capacity, white_box_bound
from audits.membership_inference import balanced_sample, true_label_probability
from audits.plots import plot_roc
from audits.reference_models import Recipe, reference_probabilities
from audits.residual_pii import IdentifierIndex, ResidualReport, verify_residuals
from audits.suite import AuditReport, needs_reference, run_attacks
from privgate.config import PipelineConfig, PrivacyPolicy, TrainingConfig
from privgate.data.features import build_feature_spec, encode, encode_labels, input_width
from privgate.data.ingest import read_table, sha256_file
from privgate.data.validation import (
    ValidationReport,
    public_domains,
    suite_columns,
    validate_table,
)
from privgate.dp.ledger import LedgerEntry, PrivacyLedger
from privgate.dp.training import (
    AuditHooks,
    DpReport,
    TrainedModel,
    accuracy,
    build_network,
    predict_logits,
    train_model,
)
from privgate.errors import (
    ConfigError,
    DataError,
    PolicyRefusedError,
    PrivgateError,
    ValidationFailedError,
)
from privgate.home import PROJECT_ROOT, privgate_home, resolve_path
from privgate.pii import anonymize as anon
from privgate.pii.engine import (
    PiiEngine,
    ScanReport,
    count_findings,
    data_like_names,
    get_engine,
    scan_table,
)
from privgate.pii.kanon import measure_k, measure_l_diversity
from privgate.registry.approval import Decision
from privgate.registry.attestation import sha256_bytes
from privgate.registry.model_card import render_model_card
from privgate.registry.versions import (
    PromotionLock,
    Registration,
    artifact_url,
    log_and_register,
    log_run_file,
    log_run_text,
    record_decision,
)

DATA_GATES = ("residual_pii", "k_anonymity", "l_diversity")


@dataclass(frozen=True)
class Tables:
    """The raw training and evaluation tables, with their content hashes."""

    train: pd.DataFrame
    test: pd.DataFrame
    train_sha256: str
    test_sha256: str


@dataclass(frozen=True)
class Anonymized:
    """The anonymized training table and what was done to it.

    `identifiers` indexes the raw values of the columns treated as direct identifiers,
    for the independent residual check (memory only; None: nothing to check against,
    which fails the residual gate closed).
    """

    frame: pd.DataFrame
    report: anon.AnonymizationReport
    identifiers: IdentifierIndex | None = None


@dataclass(frozen=True)
class Verification:
    """Re-measurement of the anonymized table.

    `residual_findings` is the Presidio re-scan (per column); `independent` the verifier
    that shares no recognizer with the redactor (`audits.residual_pii`): cross-column
    leaks and identifier shapes. None means it could not run, and the gate fails.
    """

    residual_findings: dict[str, int]
    k_measured: int
    # Fewest distinct sensitive values in a class; None when the column is gone.
    l_measured: int | None = None
    independent: ResidualReport | None = None

    @property
    def residual_total(self) -> int | None:
        """Identifier cells found by every verifier (None: the independent one did not run)."""
        if self.independent is None:
            return None
        return (
            sum(self.residual_findings.values())
            + self.independent.leak_total
            + self.independent.shape_total
        )

    def residual_by_verifier(self) -> dict[str, Any]:
        """Return the findings per verifier and per entity or column pair (counts only)."""
        out: dict[str, Any] = {"presidio_rescan": sum(self.residual_findings.values())}
        if self.independent is not None:
            out["cross_column"] = self.independent.leak_total
            out["shapes"] = self.independent.shape_total
            out["cross_column_pairs"] = self.independent.leaks
            out["shape_entities"] = self.independent.shape_entities()
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary (counts and column names only)."""
        return {
            "residual_findings": self.residual_findings,
            "k_measured": self.k_measured,
            "l_measured": self.l_measured,
            "independent": None if self.independent is None else self.independent.to_dict(),
            "residual_total": self.residual_total,
        }


@dataclass
class Trained:
    """A trained model, its encoding and the data the audit needs (memory only)."""

    model: TrainedModel
    feature_spec: dict[str, Any]
    test_accuracy: float
    baseline_accuracy: float | None
    members: tuple[np.ndarray, np.ndarray]
    non_members: tuple[np.ndarray, np.ndarray]
    # The encoded test table: the audit's population (reference models, canary runs).
    population: tuple[np.ndarray, np.ndarray]
    # Accuracy of always predicting the test table's majority class: the floor a model
    # must beat to have learned anything (policy `min_accuracy_lift`).
    majority_rate: float | None = None


def engine_for(config: PipelineConfig) -> PiiEngine:
    """Return the shared Presidio engine for this config."""
    return get_engine(
        spacy_model=config.pii.spacy_model,
        language=config.pii.language,
        score_threshold=config.pii.score_threshold,
        ner_scope=config.pii.ner_scope,
        processes=config.pii.processes,
        strict_phone_validation=config.pii.strict_phone_validation,
        allow_list=tuple(config.pii.allow_list),
    )


def ingest(config: PipelineConfig) -> Tables:
    """Read the training and evaluation tables (a seeded sample when configured).

    Without a test file (`data.test_fraction`), the test table is a seeded split of the
    training file, stratified on the target. The training hash stays the file's: the
    ledger charges the people in the file, whichever part of it a run trains on; the
    test hash is that of the rows split off.
    """
    data = config.data
    train_path = resolve_path(data.train_path)
    train = _read_input(train_path, config, "data.train_path")
    train_sha256 = sha256_file(train_path)
    if data.test_path is not None:
        test_path = resolve_path(data.test_path)
        test = _read_input(test_path, config, "data.test_path")
        _require_target(test, test_path, data.target)
        test_sha256 = sha256_file(test_path)
    _require_target(train, train_path, data.target)
    if data.test_fraction is not None:
        train, test = split_test(train, config)
        test_sha256 = frame_sha256(test)
    if data.sample_rows is not None and data.sample_rows < len(train):
        train = train.sample(n=data.sample_rows, random_state=config.training.seed)
        train = train.reset_index(drop=True)
    return Tables(train, test, train_sha256, test_sha256)


def _read_input(path: Path, config: PipelineConfig, key: str) -> pd.DataFrame:
    try:
        return read_configured(path, config)
    except DataError:
        if not path.exists() and path.is_relative_to(privgate_home() / "demo"):
            raise DataError(
                f"table file not found: {path} ({key}); it is the demo's: "
                "`privgate demo-data` writes it (`make run` does both)"
            ) from None
        raise


def read_configured(
    path: Path, config: PipelineConfig, *, require_string_columns: bool = True
) -> pd.DataFrame:
    """Read a table with the config's text columns, limits, encoding and declared names."""
    return read_table(
        path,
        string_columns=config.data.string_columns,
        require_string_columns=require_string_columns,
        limits=config.data.limits.limits(),
        encoding=config.data.encoding,
        known_columns=declared_columns(config),
    )


def declared_columns(config: PipelineConfig) -> frozenset[str]:
    """Return every column name the config or its suite declares (messages may name them).

    A table's own header is its own text (in a file without a header row, a person's
    data), so errors about a table name other columns by position only.
    """
    data, anonymization = config.data, config.anonymization
    names = {data.target, *data.string_columns, *data.person_key, *anonymization.columns}
    names |= {*anonymization.quasi_identifiers, *config.training.features}
    with contextlib.suppress(PrivgateError):  # an unreadable suite is reported where read
        names |= suite_columns(resolve_path(data.expectation_suite))
    return frozenset(names)


def _require_target(frame: pd.DataFrame, path: Path, target: str) -> None:
    if target not in frame.columns:
        raise DataError(f"{path}: target column {target!r} (data.target) is missing")


def split_test(frame: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the test table off the training table: seeded, stratified on the target.

    Raises:
        DataError: when a class is too rare to be in both parts.
    """
    from sklearn.model_selection import train_test_split

    data = config.data
    labels = encode_labels(frame[data.target], data.positive_labels)
    counts = np.bincount(labels.astype(np.int64), minlength=2)
    if counts.min() < 2:
        raise DataError(
            f"data.test_fraction: the target {data.target!r} (data.target) has a class "
            f"with {int(counts.min())} row(s); a stratified split needs at least 2 per class "
            "(check data.positive_labels)"
        )
    train, test = train_test_split(
        frame,
        test_size=data.test_fraction,
        random_state=config.training.seed,
        stratify=labels,
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def frame_sha256(frame: pd.DataFrame) -> str:
    """Return a content hash of a table's rows and column names (order included)."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def validate(tables: Tables, config: PipelineConfig) -> ValidationReport:
    """Validate both raw tables against the suite; raise when either fails.

    Raises:
        ValidationFailedError: naming the failed expectations (no values).
    """
    suite = resolve_path(config.data.expectation_suite)
    reports = {
        "training table": validate_table(tables.train, suite_path=suite),
        "test table": validate_table(tables.test, suite_path=suite),
    }
    for which, report in reports.items():
        if not report.success:
            raise ValidationFailedError(
                f"the {which} failed expectation suite {suite.name} "
                f"({report.failed} of {report.evaluated} expectations): {report.failed_summary()}"
            )
    return reports["training table"]


def scan(tables: Tables, config: PipelineConfig) -> ScanReport:
    """Scan the raw training table for PII, column by column."""
    return scan_frame(tables.train, config)


def scan_frame(
    frame: pd.DataFrame, config: PipelineConfig, *, where: str = "the training table"
) -> ScanReport:
    """Scan any table with the pipeline's engine and settings (`privgate scan FILE`).

    Raises:
        DataError: when the column names read as a record (the header row is missing):
            a report of the table would print them.
    """
    pii = config.pii
    engine = engine_for(config)
    data_like = data_like_names(
        list(frame.columns), engine=engine, entities=pii.direct_identifier_entities
    )
    if data_like:
        raise DataError(
            f"{where}: column names at positions {data_like} read as values (numbers, dates or "
            "identifiers), not names: is the header row missing? A table's first row "
            "must name its columns"
        )
    return scan_table(
        frame,
        engine=engine,
        entities=pii.entities,
        direct_entities=pii.direct_identifier_entities,
        quasi_identifiers=list(config.anonymization.quasi_identifiers),
        sample_rows=pii.sample_rows,
        min_fraction=pii.min_fraction,
        free_text_min_words=pii.free_text_min_words,
        seed=config.training.seed,
    )


def anonymize(
    tables: Tables,
    report: ScanReport,
    config: PipelineConfig,
    *,
    levels: Mapping[str, int] | None = None,
) -> Anonymized:
    """Drop, mask, pseudonymize and redact by policy, then generalize to k-anonymity.

    `levels` fixes the generalization (a federated silo's, shared by every silo).
    """
    return anonymize_frame(tables.train, report, config, levels=levels)


def anonymize_frame(
    frame: pd.DataFrame,
    report: ScanReport,
    config: PipelineConfig,
    *,
    levels: Mapping[str, int] | None = None,
) -> Anonymized:
    """Anonymize any table the pipeline's way (`privgate anonymize IN OUT`)."""
    plan = anon.plan_treatments(
        list(frame.columns),
        scan=report,
        anonymization=config.anonymization,
        pii=config.pii,
        target=config.data.target,
    )
    anonymized, result = anon.anonymize_table(
        frame,
        plan=plan,
        anonymization=config.anonymization,
        engine=engine_for(config),
        redact_entities=config.pii.entities,
        redact_score_threshold=config.pii.redact_score_threshold,
        key=anon.load_pseudonym_key(config.anonymization.pseudonym_key_env),
        target=config.data.target,
        levels=levels,
    )
    return Anonymized(
        anonymized, result, IdentifierIndex.from_frame(frame, identifier_columns(plan))
    )


def identifier_columns(plan: tuple[anon.ColumnTreatment, ...]) -> list[str]:
    """Return the columns whose raw values the residual check searches the output for.

    Those the scan called direct identifiers (unless the config keeps them as reviewed),
    and those the config masks or pseudonymizes, an identifier's treatments.
    """
    return [
        t.column
        for t in plan
        if (t.kind == "direct_identifier" and t.action != "keep")
        or t.action in ("mask", "pseudonymize")
    ]


def verify(
    anonymized: Anonymized,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    *,
    keep_cache: bool = False,
) -> Verification:
    """Re-scan every remaining cell for the policy's entities and re-measure k.

    k is measured over the policy's quasi-identifiers wherever they remain, not over the
    ones the config chose to generalize: a config cannot shrink what k is judged on.
    The engine then forgets the texts it analyzed, unless `keep_cache` (a sweep's
    points share one table's texts, and the sweep clears the cache when it ends).
    """
    frame = anonymized.frame
    quasi = [c for c in policy.quasi_identifiers if c in frame.columns]
    generalized = set(config.anonymization.quasi_identifiers) | set(quasi)
    # Every remaining text column is re-scanned, every distinct cell of it; columns whose
    # every cell is provably a token or a mask (a full-match regex per cell) are not sent
    # through Presidio: tens of thousands of unique tokens would cost minutes, find nothing.
    scanned = [
        c
        for c in frame.columns
        if c not in generalized and c != config.data.target and not anon.is_token_or_mask(frame[c])
    ]
    engine = engine_for(config)
    findings = count_findings(
        frame,
        engine=engine,
        entities=policy.residual_pii_entities,
        columns=scanned,
        score_threshold=policy.residual_pii_score_threshold,
        free_text_min_words=config.pii.free_text_min_words,
    )
    # The analysis cache holds raw texts; a long-lived worker must not keep them.
    if not keep_cache:
        engine.clear_cache()
    independent = None
    if anonymized.identifiers is not None:
        independent = verify_residuals(
            frame, index=anonymized.identifiers, skip=[*generalized, config.data.target]
        )
    sensitive = policy.sensitive_attribute or config.data.target
    l_measured = measure_l_diversity(frame, quasi, sensitive) if sensitive in frame else None
    return Verification(findings, measure_k(frame, quasi), l_measured, independent)


def data_evidence(verification: Verification) -> Evidence:
    """Return the evidence the data gates judge."""
    return Evidence(
        residual_pii_findings=verification.residual_total,
        residual_pii_by_verifier=verification.residual_by_verifier(),
        k_achieved=verification.k_measured,
        l_achieved=verification.l_measured,
    )


@dataclass(frozen=True)
class TrainingData:
    """The encoded split: members train, holdout rows are audit non-members, test scores."""

    feature_spec: dict[str, Any]
    members: tuple[np.ndarray, np.ndarray]
    non_members: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def training_data(anonymized: Anonymized, tables: Tables, config: PipelineConfig) -> TrainingData:
    """Encode the anonymized table with the suite's public domains and split it (seeded).

    Raises:
        DataError: when the members hold one class only.
    """
    training = config.training
    domains = public_domains(resolve_path(config.data.expectation_suite))
    spec = build_feature_spec(
        features=training.features,
        domains=domains,
        quasi_identifiers=config.anonymization.quasi_identifiers,
        levels=anonymized.report.kanon.levels,
        log_scaled=training.log_scaled,
    )
    frame = anonymized.frame
    order = np.random.default_rng(training.seed).permutation(len(frame))
    n_holdout = round(len(frame) * training.holdout_fraction)
    holdout, members = frame.iloc[order[:n_holdout]], frame.iloc[order[n_holdout:]]
    target, positive = config.data.target, config.data.positive_labels

    def xy(part: pd.DataFrame, *, generalized: bool) -> tuple[np.ndarray, np.ndarray]:
        return encode(part, spec, generalized=generalized), encode_labels(part[target], positive)

    x_train, y_train = xy(members, generalized=True)
    if len(np.unique(y_train)) < 2:
        raise DataError(f"the training table holds one class only in {target!r} (data.target)")
    return TrainingData(
        feature_spec=spec,
        members=(x_train, y_train),
        non_members=xy(holdout, generalized=True),
        test=xy(tables.test, generalized=False),
    )


def train(
    anonymized: Anonymized,
    tables: Tables,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    *,
    run_key: str,
) -> Trained:
    """Split members from audit non-members, train with DP-SGD, evaluate on the test table.

    A DP run is charged to the privacy ledger before its first step: the raw table's
    content hash keys it, because every anonymization of the same table describes the
    same people. A run the ledger refuses never trains.
    """
    data = training_data(anonymized, tables, config)
    (x_train, y_train), (x_test, y_test) = data.members, data.test
    model = _train_charged(x_train, y_train, tables, config, policy, run_key=run_key)
    baseline_accuracy = None
    if config.training.dp.enabled and _non_private_allowed(
        tables, policy, run_key=run_key, purpose="baseline: what privacy costs, never registered"
    ):
        # The same model, split and data without DP, never registered: what privacy costs.
        baseline = train_model(x_train, y_train, training=non_private(config.training))
        baseline_accuracy = accuracy(baseline.network, x_test, y_test)
    return Trained(
        model=model,
        feature_spec=data.feature_spec,
        test_accuracy=accuracy(model.network, x_test, y_test),
        baseline_accuracy=baseline_accuracy,
        members=data.members,
        non_members=data.non_members,
        population=data.test,
        majority_rate=majority_rate(y_test),
    )


def majority_rate(labels: np.ndarray) -> float | None:
    """Return the accuracy of always predicting the majority class (None: no labels)."""
    if len(labels) == 0:
        return None
    positive = float(np.mean(labels))
    return max(positive, 1.0 - positive)


def _non_private_allowed(
    tables: Tables, policy: PrivacyPolicy, *, run_key: str, purpose: str
) -> bool:
    """Record a non-private training on the dataset in the ledger; return the decision."""
    PrivacyLedger().record_non_private(
        dataset_sha256=tables.train_sha256,
        allowed=policy.allow_non_private,
        purpose=purpose,
        run_key=run_key,
    )
    return policy.allow_non_private


def non_private(training: TrainingConfig) -> TrainingConfig:
    """Return the same training settings with DP off (for baselines, never registered)."""
    return training.model_copy(update={"dp": training.dp.model_copy(update={"enabled": False})})


def reserve_record_budget(
    dataset_sha256: str, config: PipelineConfig, policy: PrivacyPolicy, *, run_key: str, note: str
) -> LedgerEntry:
    """Reserve the config's target (epsilon, delta) on the dataset, within the policy's lifetime.

    Raises:
        PrivacyBudgetExceededError: when the dataset has no budget left.
    """
    dp = config.training.dp
    return PrivacyLedger().reserve(
        dataset_sha256=dataset_sha256,
        privacy_unit="record",
        epsilon=dp.target_epsilon,
        delta=dp.target_delta,
        lifetime_epsilon=policy.lifetime_epsilon,
        lifetime_delta=policy.lifetime_delta,
        run_key=run_key,
        note=note,
    )


def _train_charged(
    x: np.ndarray,
    y: np.ndarray,
    tables: Tables,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    *,
    run_key: str,
) -> TrainedModel:
    dp = config.training.dp
    if not dp.enabled:
        # No DP, no finite epsilon to charge; such a model never passes the budget gate.
        if not _non_private_allowed(
            tables, policy, run_key=run_key, purpose="training.dp.enabled false"
        ):
            raise PolicyRefusedError(
                "the policy refuses training without DP on this dataset "
                "(allow_non_private: false); the refusal is recorded in the ledger"
            )
        return train_model(x, y, training=config.training)
    entry = reserve_record_budget(
        tables.train_sha256,
        config,
        policy,
        run_key=run_key,
        note=f"{config.training.model}, {config.training.epochs} epochs",
    )
    # A run that fails after reserving keeps its debit: it may have taken noisy steps.
    model = train_model(x, y, training=config.training)
    PrivacyLedger().settle(entry.entry_id, epsilon=model.dp.epsilon_spent, delta=model.dp.delta)
    return model


# --------------------------------------------------------------------------- audit
# The audit touches the test table (reference models, canary runs) and synthetic
# canaries, never a member row beyond scoring the released model: nothing is charged to
# the ledger. Like test accuracy, its aggregates are released outside the DP guarantee.


@dataclass(frozen=True)
class AuditRecords:
    """A balanced, seeded sample of members then non-members, with true labels."""

    x: np.ndarray
    y: np.ndarray
    members: int


def audit_records(trained: Trained, config: PipelineConfig) -> AuditRecords:
    """Return the members and non-members every attack scores (deterministic)."""
    (xm, ym), (xn, yn) = trained.members, trained.non_members
    mi, ni = balanced_sample(
        len(xm), len(xn), limit=config.audit.max_records, seed=config.training.seed
    )
    return AuditRecords(np.concatenate([xm[mi], xn[ni]]), np.concatenate([ym[mi], yn[ni]]), len(mi))


def reference_group_sizes(config: PipelineConfig) -> list[int]:
    """Return how many reference models each parallel group trains (empty: none needed)."""
    audit = config.audit
    if not needs_reference(audit.attacks):
        return []
    parts = np.array_split(np.arange(audit.reference_models), audit.reference_groups)
    return [len(part) for part in parts]


def reference_recipe(config: PipelineConfig, dp: DpReport, *, rows: int) -> Recipe:
    """Return the target's recipe for a reference model trained on `rows` rows.

    Same model, optimizer settings, expected batch size, epochs and, with DP, the
    target's noise multiplier and clipping norm.
    """
    training = config.training
    return Recipe(
        hidden_units=0 if training.model == "logistic" else training.hidden_units,
        activation="quadratic" if training.model == "mlp_poly" else "relu",
        learning_rate=training.learning_rate,
        batch_size=training.batch_size,
        steps=max(1, round(training.epochs * rows / training.batch_size)),
        noise_multiplier=dp.noise_multiplier if dp.enabled else 0.0,
        max_grad_norm=dp.max_grad_norm if dp.enabled else math.inf,
    )


def reference_predictions(trained: Trained, config: PipelineConfig, *, group: int) -> np.ndarray:
    """Train reference group `group` on random halves of the test table; score the records.

    Returns the group's true-label probabilities on `audit_records`, (models, n).

    Raises:
        ConfigError: when half the test table is smaller than the batch size.
    """
    sizes = reference_group_sizes(config)
    population = trained.population
    rows = len(population[0]) // 2
    if rows < config.training.batch_size:
        raise ConfigError(
            f"the audit's reference models train on halves of the test table "
            f"(data.test_path): {rows} rows, fewer than training.batch_size="
            f"{config.training.batch_size}"
        )
    records = audit_records(trained, config)
    return reference_probabilities(
        population,
        (records.x, records.y),
        reference_recipe(config, trained.model.dp, rows=rows),
        models=sizes[group],
        seed=config.training.seed * 1_000 + group,
    )


def canary_run(trained: Trained, config: PipelineConfig, *, private: bool) -> CanaryAudit | None:
    """Run the one-run canary audits on the test table; `private=False` is the control.

    One training run of the production code carries both audits: the black-box one's
    input canaries (synthetic records added to the population) and the white-box one's
    gradient canaries (clipped and summed with every batch, `audits.gradient_canaries`).
    Each canary set's inclusion is drawn independently of the other's, so each audit's
    test holds with the other's canaries as part of the data. The control is the same
    recipe with the noise off (the white-box audit needs book-keeping clipping; without
    it, or for a model trained without DP, the control trains without DP and only the
    black-box audit runs).

    Returns None when there is nothing to run: no canaries of either kind, or the DP run
    of a model trained without DP (no claim to check).
    """
    audit = config.audit
    dp = config.training.dp
    if private and not dp.enabled:
        return None
    white = audit.gradient_canaries > 0 and dp.enabled and dp.clipping == "bookkeeping"
    if audit.canaries == 0 and not white:
        return None
    training = config.training if private or white else non_private(config.training)
    # The DP run's draws are secret and fresh, so nobody can search for a draw that
    # passes; the control's are seeded, so the audit's power is a property of the recipe
    # and reproducible.
    seed = secrets.randbits(63) if private else config.training.seed + 1
    delta = dp.target_delta
    confidence = per_statement_confidence(config)
    white_level = white_box_confidence(config)
    gradient = None
    guess_plan = None
    if white:
        # The guesses and canaries a proof of the claim needs, for the control too: its
        # job is to show this audit could prove the claim. Calibration makes the run
        # claim at most the target epsilon, so the plan is made for the target.
        network = build_network(
            model=config.training.model,
            input_width=input_width(trained.feature_spec),
            hidden_units=config.training.hidden_units,
        )
        guess_plan = plan(
            dp.target_epsilon,
            canaries=audit.gradient_canaries,
            delta=delta,
            confidence=white_level,
            capacity=weight_capacity(network),
        )
        gradient = GradientCanaries(
            network, guess_plan.canaries, max_grad_norm=dp.max_grad_norm, seed=seed
        )
    hooks = AuditHooks(canaries=gradient, noise=private) if white else None
    claimed: list[float] = []

    def train_run(x: np.ndarray, y: np.ndarray) -> tuple[Any, float]:
        model = train_model(x, y, training=training, audit=hooks)
        claimed.append(model.dp.epsilon_spent)
        return model.network, model.dp.epsilon_spent

    started = time.perf_counter()
    if audit.canaries:
        result = canary_audit(
            trained.population,
            make_canaries(trained.feature_spec, audit.canaries, seed=config.training.seed),
            train_run,
            private=private,
            delta=delta,
            confidence=confidence,
            seed=seed + 1,
        )
    else:
        train_run(*trained.population)
        result = CanaryAudit(
            bound=None,
            claimed_epsilon=claimed[0],
            private=private,
            rows_trained=len(trained.population[0]),
            seconds=0.0,
        )
    if gradient is None or guess_plan is None:
        return result
    white_box = white_box_bound(
        gradient,
        guess_plan,
        claimed_epsilon=claimed[0],
        noise=private,
        delta=delta,
        confidence=white_level,
    )
    return replace(result, white_box=white_box, seconds=time.perf_counter() - started)


def per_statement_confidence(config: PipelineConfig) -> float:
    """Return each black-box bound's confidence, so that all bounds hold together.

    The gate takes the largest of one bound per attack, the black-box canary audit's and
    the white-box one's: a weighted Bonferroni split of the error keeps that maximum
    valid. The white-box audit, the rigorous test, gets half the error when it runs
    (`white_box_confidence`); the other statements share the rest.
    """
    audit = config.audit
    error = 1.0 - audit.confidence
    if audit.gradient_canaries:
        error /= 2
    statements = len(audit.attacks) + (1 if audit.canaries else 0)
    return 1.0 - error / max(statements, 1)


def white_box_confidence(config: PipelineConfig) -> float:
    """Return the white-box audit's confidence: half the audit's error is its own."""
    return 1.0 - (1.0 - config.audit.confidence) / 2


def audit(
    trained: Trained,
    config: PipelineConfig,
    *,
    reference_parts: list[np.ndarray],
    canary: CanaryAudit | None,
    control: CanaryAudit | None,
    seconds: float = 0.0,
) -> AuditReport:
    """Run the configured attacks with the given reference models and canary runs."""
    records = audit_records(trained, config)
    target_p = target_probabilities(trained, records)
    dp = trained.model.dp
    return run_attacks(
        target_p,
        np.concatenate(reference_parts) if reference_parts else None,
        members=records.members,
        attacks=config.audit.attacks,
        claimed_epsilon=dp.epsilon_spent,
        delta=dp.delta if dp.enabled else config.training.dp.target_delta,
        confidence=per_statement_confidence(config),
        canary=canary,
        control=control,
        seconds=seconds,
    )


def target_probabilities(trained: Trained, records: AuditRecords) -> np.ndarray:
    """Return the released model's probability of each audited record's true label."""
    return true_label_probability(predict_logits(trained.model.network, records.x), records.y)


def run_audit(trained: Trained, config: PipelineConfig) -> AuditReport:
    """Run the whole audit in this process: reference groups, canary run and control."""
    started = time.perf_counter()
    parts = [
        reference_predictions(trained, config, group=g)
        for g in range(len(reference_group_sizes(config)))
    ]
    canary = canary_run(trained, config, private=True)
    control = canary_run(trained, config, private=False)
    return audit(
        trained,
        config,
        reference_parts=parts,
        canary=canary,
        control=control,
        seconds=time.perf_counter() - started,
    )


def judge(
    verification: Verification,
    trained: Trained,
    report: AuditReport,
    policy: PrivacyPolicy,
) -> GateReport:
    """Run every gate on everything the run measured."""
    dp = trained.model.dp
    evidence = Evidence(
        residual_pii_findings=verification.residual_total,
        residual_pii_by_verifier=verification.residual_by_verifier(),
        k_achieved=verification.k_measured,
        l_achieved=verification.l_measured,
        epsilon=dp.epsilon_spent,  # the larger of the two accountants
        delta=dp.delta,
        n_train=trained.model.n_train,
        accuracy=trained.test_accuracy,
        majority_rate=trained.majority_rate,
        baseline_accuracy=trained.baseline_accuracy,
        **audit_evidence(report),
    )
    return run_gates(evidence, policy)


def audit_evidence(report: AuditReport) -> dict[str, Any]:
    """Return the Evidence fields the audit gates judge (the strongest attack's)."""
    bound, claim = report.closest_to_refuting_claim
    return {
        "mia_auc": report.mia_auc,
        "mia_tpr_at_1pct_fpr": report.mia_tpr_at_1pct_fpr,
        "strongest_attack": report.strongest.attack,
        "empirical_epsilon_lower_bound": bound,
        "claimed_epsilon": claim,
        "dp_violations": len(report.violations),
        "audit_power_epsilon": report.control_epsilon_lower_bound,
        "white_box_plan": report.white_box_plan,
    }


def judge_data(verification: Verification, policy: PrivacyPolicy) -> GateReport:
    """Run the gates that must pass before anything is trained."""
    return run_gates(data_evidence(verification), policy, DATA_GATES)


def model_spec(trained: Trained, config: PipelineConfig) -> dict[str, Any]:
    """Return what serving needs to rebuild the network and encode raw records.

    An HE-ready model's spec also holds its encrypted-vs-plain agreement on the test
    table (`privgate.encrypted.evidence`), signed with the model's files.
    """
    spec = {
        "model": config.training.model,
        "hidden_units": config.training.hidden_units,
        "input_width": input_width(trained.feature_spec),
        "feature_spec": trained.feature_spec,
    }
    from privgate.encrypted.evidence import measure_agreement

    encrypted = measure_agreement(
        trained.model.network, config.training.model, trained.population[0]
    )
    if encrypted is not None:
        spec["encrypted_inference"] = encrypted
    return spec


def summary_metrics(
    trained: Trained,
    report: AuditReport,
    verification: Verification,
    anonymized: Anonymized,
) -> dict[str, float]:
    """Return the run's aggregate metrics, for MLflow."""
    kanon = anonymized.report.kanon
    return {
        "accuracy": trained.test_accuracy,
        "baseline_accuracy": math.nan
        if trained.baseline_accuracy is None
        else trained.baseline_accuracy,
        "majority_rate": math.nan if trained.majority_rate is None else trained.majority_rate,
        "epsilon": trained.model.dp.epsilon,
        "epsilon_spent": trained.model.dp.epsilon_spent,
        "mia_auc": report.mia_auc,
        "mia_tpr_at_1pct_fpr": report.mia_tpr_at_1pct_fpr,
        "mia_tpr_at_0_1pct_fpr": report.mia_tpr_at_0_1pct_fpr,
        "mia_attacker_advantage": report.strongest.attacker_advantage,
        "empirical_epsilon_lower_bound": report.empirical_epsilon_lower_bound,
        "audit_power_epsilon": math.nan
        if report.control_epsilon_lower_bound is None
        else report.control_epsilon_lower_bound,
        "audit_seconds": report.seconds,
        "k_achieved": float(verification.k_measured),
        "suppressed_rows": float(kanon.suppressed_rows),
        "information_loss": kanon.information_loss,
        "residual_pii_findings": math.nan
        if verification.residual_total is None
        else float(verification.residual_total),
        "n_train": float(trained.model.n_train),
        "training_seconds": trained.model.seconds,
    }


def report_payloads(**parts: Any) -> dict[str, Any]:
    """Return JSON-ready dicts of stage reports (dataclasses or objects with to_dict)."""
    out = {}
    for name, part in parts.items():
        out[name] = part.to_dict() if hasattr(part, "to_dict") else asdict(part)
    return out


@dataclass
class RunEvidence:
    """Everything a run measured, gathered for the registry (reports hold no values)."""

    tables: Tables
    validation: ValidationReport
    scan: ScanReport
    anonymized: Anonymized
    verification: Verification
    trained: Trained
    audit: AuditReport


def register(
    evidence: RunEvidence,
    gates: GateReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    *,
    run_key: str,
    promotion_lock: PromotionLock | None = None,
) -> Registration:
    """Log the run, register the model version once, sign and promote it if approved.

    `run_key` names the pipeline run (Prefect's flow-run id): a retried registration
    finds its version instead of making a second one. `promotion_lock` serializes the
    alias moves of one model (see `privgate.registry.versions.log_and_register`).
    """
    trained = evidence.trained
    params = {
        **trained.model.dp.mlflow_params(),
        "training.model": config.training.model,
        "training.epochs": str(config.training.epochs),
        "training.batch_size": str(config.training.batch_size),
        "training.learning_rate": str(config.training.learning_rate),
        "anonymization.k": str(config.anonymization.k),
        "anonymization.levels": json.dumps(evidence.anonymized.report.kanon.levels, sort_keys=True),
    }
    lineage = {
        "privgate.lineage.train_sha256": evidence.tables.train_sha256,
        "privgate.lineage.test_sha256": evidence.tables.test_sha256,
        "privgate.lineage.test_split": _test_split(config),
        "privgate.lineage.config_sha256": config.sha256(),
        "privgate.lineage.policy_sha256": policy.sha256(),
        "privgate.lineage.code_version": code_version(),
    }
    reports = report_payloads(
        validation_report=evidence.validation,
        pii_scan=evidence.scan,
        anonymization_report=evidence.anonymized.report,
        verification=evidence.verification,
    )
    spec = model_spec(trained, config)
    registration = log_and_register(
        model_name=policy.registered_model_name,
        alias=config.registry.alias,
        experiment=config.registry.experiment,
        network=trained.model.network,
        model_spec=spec,
        params=params,
        metrics={
            k: v
            for k, v in summary_metrics(
                trained, evidence.audit, evidence.verification, evidence.anonymized
            ).items()
            if math.isfinite(v)
        },
        tags=lineage,
        gate_tags={r.name: r.status for r in gates.results},
        gate_report_json=gate_report_json(gates),
        approved=gates.passed,
        hold_for_approval=policy.approval.required,
        epsilon=trained.model.dp.epsilon_spent,
        delta=trained.model.dp.delta,
        policy_sha256=policy.sha256(),
        json_artifacts={f"{name}.json": payload for name, payload in reports.items()}
        | {
            "config.json": config.model_dump(mode="json"),
            "audit/audit_report.json": evidence.audit.to_dict(),
        },
        text_artifacts={
            "gate_report.md": gates.to_markdown(),
            "audit/audit_report.md": evidence.audit.to_markdown(),
        },
        run_key=run_key,
        promotion_lock=promotion_lock,
    )
    facts = model_card_facts(evidence, gates, config, registration, lineage)
    facts["training"]["encrypted_inference"] = spec.get("encrypted_inference")
    if registration.pending_approval:
        facts["approval"] = {"status": "pending", "approvers": policy.approval.approvers}
    with tempfile.TemporaryDirectory() as tmp:
        roc = plot_roc(evidence.audit.attacks, Path(tmp) / "roc.png")
        log_run_file(registration.run_id, roc, "model_card")
        log_run_file(registration.run_id, roc, "reports/audit")
    _log_card(registration, facts)
    return replace(registration, card_facts=facts)


def _log_card(registration: Registration, facts: dict[str, Any]) -> None:
    card_md, card_html = render_model_card(facts)
    log_run_text(registration.run_id, card_md, f"model_card/v{registration.version}.md")
    log_run_text(registration.run_id, card_html, f"model_card/v{registration.version}.html")


def gate_report_json(gates: GateReport) -> str:
    """Return the gate report exactly as it is registered (and its SHA-256 approved)."""
    return json.dumps(gates.to_dict(), sort_keys=True, indent=2)


def approval_request(
    evidence: RunEvidence,
    gates: GateReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    registration: Registration,
) -> tuple[str, str]:
    """Return the Markdown an approver is shown, and the evidence digest they approve.

    The digest is the SHA-256 of the gate report registered with the version: the
    decision is bound to it (`privgate.registry.approval.refusal`).
    """
    digest = sha256_bytes(gate_report_json(gates).encode())
    trained, audit = evidence.trained, evidence.audit
    dp = trained.model.dp
    kanon = evidence.anonymized.report.kanon
    cost = (
        "not measured (no non-private baseline)"
        if trained.baseline_accuracy is None
        else f"{trained.baseline_accuracy - trained.test_accuracy:+.4f} "
        f"(non-private baseline {trained.baseline_accuracy:.4f})"
    )
    card = artifact_url(registration.run_id, f"model_card/v{registration.version}.html")
    rows = "\n".join(
        f"| {r.name} | {r.status} | {_shown(r.value)} | {r.comparison} {_shown(r.threshold)} |"
        for r in gates.results
    )
    lines = [
        f"## Approve {registration.model_name} version {registration.version}?",
        "",
        "Every privacy gate passed. The alias moves only if a listed approver approves "
        f"this evidence within {policy.approval.timeout}.",
        "",
        "| gate | status | value | rule |",
        "|---|---|---|---|",
        rows,
        "",
        f"- **epsilon** {dp.epsilon_spent:.4g} at delta {dp.delta:.1e} "
        f"({dp.accountant}, {dp.steps} steps)",
        f"- **k** {evidence.verification.k_measured} (target {kanon.k_target}), "
        f"{kanon.suppressed_rows} rows suppressed",
        f"- **audit** strongest attack {audit.strongest.attack}: AUC {audit.mia_auc:.3f}, "
        f"TPR at 1% FPR {audit.mia_tpr_at_1pct_fpr:.3f}, empirical epsilon lower bound "
        f"{audit.empirical_epsilon_lower_bound:.3f}",
        f"- **accuracy** {trained.test_accuracy:.4f}; utility cost vs non-private: {cost}",
        f"- **model card**: {card}",
        f"- **run**: {registration.run_id}",
        "",
        f"**Evidence SHA-256** (the gate report): `{digest}`. The form's evidence field "
        "holds it; a decision for any other digest is refused.",
        "",
        f"Approvers: {', '.join(policy.approval.approvers)}.",
    ]
    return "\n".join(lines), digest


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def finish_approval(
    evidence: RunEvidence,
    gates: GateReport,
    config: PipelineConfig,
    policy: PrivacyPolicy,
    registration: Registration,
    *,
    decision: Decision | None,
    refusal: str | None,
    promotion_lock: PromotionLock | None = None,
) -> Registration:
    """Record the approver's decision (or why there is none) and re-render the card.

    An approval of this evidence signs the version with the decision and moves the
    alias; a rejection, a timeout or a refusal tags it rejected with the reason.
    """
    approval = decision.to_dict() if decision is not None else None
    promoted = record_decision(
        model_name=registration.model_name,
        version=registration.version,
        alias=config.registry.alias,
        approval=approval,
        refusal=refusal,
        gate_report_json=gate_report_json(gates),
        epsilon=evidence.trained.model.dp.epsilon_spent,
        delta=evidence.trained.model.dp.delta,
        policy_sha256=policy.sha256(),
        promotion_lock=promotion_lock,
    )
    done = replace(registration, promoted=promoted, pending_approval=False)
    facts = copy.deepcopy(dict(registration.card_facts or {}))
    approved = approval is not None and approval.get("decision") == "approve" and not refusal
    status = "approved" if approved else "rejected"
    facts["model"] = {**facts.get("model", {}), "status": status}
    facts["approval"] = {
        "status": status,
        **(approval or {}),
        "refusal": refusal,
    }
    _log_card(done, facts)
    return done


def _bound_of(report: AuditReport, kind: str) -> float | None:
    """Return the named canary audit's epsilon lower bound on the DP run, if it ran."""
    pair = report.canary_bounds.get(kind)
    return None if pair is None else pair[0]


def card_model_facts(registration: Registration, *, approved: bool) -> dict[str, Any]:
    """Return the card's `model` section: name, version, run, status, time."""
    return {
        "name": registration.model_name,
        "version": registration.version,
        "run_id": registration.run_id,
        "status": "approved" if approved else "rejected",
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }


def model_card_facts(
    evidence: RunEvidence,
    gates: GateReport,
    config: PipelineConfig,
    registration: Registration,
    lineage: dict[str, str],
) -> dict[str, Any]:
    """Return the aggregates a model card is rendered from (no values)."""
    trained, report = evidence.trained, evidence.anonymized.report
    findings = {c.name: c for c in evidence.scan.columns}
    dp = asdict(trained.model.dp)
    kanon = report.kanon
    return {
        "model": card_model_facts(registration, approved=gates.passed),
        "data": {
            "rows_in": report.rows_in,
            "rows_out": report.rows_out,
            "columns": [
                {
                    "name": t.column,
                    "kind": t.kind,
                    "entities": findings[t.column].entities if t.column in findings else {},
                    "action": t.action,
                    "source": t.source,
                }
                for t in report.treatments
            ],
            "k_target": kanon.k_target,
            "k_achieved": evidence.verification.k_measured,
            "l_achieved": evidence.verification.l_measured,
            "suppressed_rows": kanon.suppressed_rows,
            "information_loss": kanon.information_loss,
            "levels": kanon.level_labels,
        },
        "training": {
            "model": config.training.model,
            "epochs": config.training.epochs,
            "batch_size": config.training.batch_size,
            "dp": {**dp, "epsilon": dp["epsilon"] if math.isfinite(dp["epsilon"]) else None},
        },
        "audit": {
            **evidence.audit.strongest.to_dict(),
            "attacks": [a.to_dict() for a in evidence.audit.attacks],
            "empirical_epsilon_lower_bound": evidence.audit.empirical_epsilon_lower_bound,
            "claimed_epsilon": evidence.audit.to_dict()["claimed_epsilon"],
            "audit_power_epsilon": evidence.audit.control_epsilon_lower_bound,
            "white_box_epsilon_lower_bound": _bound_of(evidence.audit, "white_box"),
            "black_box_canary_epsilon_lower_bound": _bound_of(evidence.audit, "black_box"),
            "roc_plot": "roc.png",  # beside the card in model_card/
        },
        "utility": {
            "accuracy": trained.test_accuracy,
            "baseline_accuracy": trained.baseline_accuracy,
            "majority_rate": trained.majority_rate,
        },
        "gates": gates.to_dict()["gates"],
        "lineage": {k.removeprefix("privgate.lineage."): v for k, v in lineage.items()},
        "notes": [
            "Epsilon and delta cover the model weights (DP-SGD with Poisson sampling, noise "
            "from secret seeds). Accuracy, k, suppression, the generalization levels chosen "
            "from the data and the audit metrics are released outside that guarantee.",
            "Utility is measured on the held-out test table; the baseline, when the "
            "policy allows non-private training, is the same model trained without DP on "
            "the same split, and is not registered.",
            "The audit attacks this model with reference models trained on the test file. "
            "Its canary audit trains a sibling model with the same code and settings on the "
            "test file plus synthetic canaries: it audits the training mechanism, is never "
            "released, and no canary enters this model's training data.",
        ],
    }


def _test_split(config: PipelineConfig) -> str:
    data = config.data
    if data.test_fraction is None:
        return "test file (data.test_path)"
    return (
        f"split off the training file: test_fraction={data.test_fraction}, "
        f"seed={config.training.seed}, stratified on {data.target}"
    )


def code_version() -> str:
    """Return `<package version>+<git commit>` (the commit when run from a checkout)."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("privgate")
    except PackageNotFoundError:
        package = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return package
    return f"{package}+{commit}"
