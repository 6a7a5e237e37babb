"""`privgate init`: a commented config, policy and suite proposal for a new table.

The scan already knows which columns identify people; `init` turns that into the three
files a run needs, and marks every line a person must decide with `REVIEW`
(`privgate check` lists the marks left).

Domains are public knowledge, not data. A value set read off a private table is itself
a disclosure: a category held by one row names that person. So categorical domains are
released with differential privacy: per column, a count per category with Laplace noise,
and only categories whose noisy count clears a threshold (OpenDP's thresholded key
release, Rogers 2023), at `domain_epsilon` for the whole table, charged to the dataset's
ledger before anything is written. Categories under the threshold are not named;
their rows encode as "none of these" and the suite lets a few of them through
(`mostly`). Numeric ranges are rounded outward to one significant figure: that says the
magnitude, which is not private, but it is read off the data, so it is marked too.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from privgate.config import PiiConfig
from privgate.data.ingest import read_table, sha256_file
from privgate.dp.ledger import PrivacyLedger
from privgate.errors import ConfigError, DataError
from privgate.pii.engine import ColumnFinding, get_engine, scan_table
from privgate.preflight import REVIEW_MARK

# A categorical feature with more released categories than this is no feature (one-hot).
MAX_CATEGORIES = 50
DEFAULT_DOMAIN_EPSILON = 1.0
DEFAULT_DOMAIN_DELTA = 1e-6
DEFAULT_LIFETIME_EPSILON = 10.0
DEFAULT_LIFETIME_DELTA = 1e-4
# Share of rows the suite lets through outside a released value set (unreleased, rare).
VALUE_SET_MOSTLY = 0.95
_DIGITS = re.compile(r"^\d+$")
_DATE_WORDS = ("date", "dob", "birth", "born")
_ZIP_WORDS = ("zip", "postcode", "postal", "plz")


@dataclass
class Proposal:
    """What `init` wrote and what a person must look at."""

    files: dict[str, Path]
    review: list[str] = field(default_factory=list)
    epsilon_charged: float = 0.0
    delta_charged: float = 0.0
    lines_marked: int = 0


def init_project(
    table: Path,
    *,
    target: str,
    out: Path,
    test: Path | None = None,
    test_fraction: float | None = None,
    domain_epsilon: float = DEFAULT_DOMAIN_EPSILON,
    pii: PiiConfig | None = None,
    force: bool = False,
) -> Proposal:
    """Scan `table` and write `out/config.yaml`, `out/policy.yaml` and `out/suite.json`.

    Raises:
        ConfigError: on a bad option or when a file exists (without `force`).
        DataError: when the table cannot be read, lacks the target or the target is not
            binary.
    """
    if test is not None and test_fraction is not None:
        raise ConfigError("give --test or --test-fraction, not both")
    if test is None and test_fraction is None:
        test_fraction = 0.2
    if not 0 < domain_epsilon <= 10:
        raise ConfigError(f"--domain-epsilon must be in (0, 10], got {domain_epsilon}")
    files = {name: out / name for name in ("config.yaml", "policy.yaml", "suite.json")}
    existing = [str(p) for p in files.values() if p.exists()]
    if existing and not force:
        raise ConfigError(f"init would overwrite {existing}; pass --force or choose --out")
    frame = _read(table)
    if target not in frame.columns:
        raise DataError(f"{table}: target column {target!r} (--target) is missing")
    pii = pii or PiiConfig()
    scan = _scan(frame, pii)
    plan = _plan(frame, scan, target=target)
    # Charged before the release runs, like a training: what follows may fail, but
    # the noisy counts were drawn, and anything said about them spends the budget.
    columns = list(dict.fromkeys([*plan.categorical, target]))
    epsilon, delta = release_cost(len(columns), domain_epsilon)
    ledger = PrivacyLedger()
    entry = ledger.reserve(
        dataset_sha256=sha256_file(table),
        privacy_unit="record",
        epsilon=epsilon,
        delta=delta,
        lifetime_epsilon=DEFAULT_LIFETIME_EPSILON,
        lifetime_delta=DEFAULT_LIFETIME_DELTA,
        run_key="privgate-init",
        note=f"init: thresholded category release of {len(columns)} columns",
    )
    released = _release_domains(frame, columns, domain_epsilon)
    ledger.settle(entry.entry_id, epsilon=epsilon, delta=delta)
    labels = released.get(target, {})
    if len(labels) != 2:
        raise DataError(
            f"{table}: target {target!r} (--target) has {len(labels)} value(s) frequent "
            "enough to release, privgate trains binary classifiers; derive a two-valued column"
        )
    positive = min(labels, key=labels.__getitem__)  # the rarer class, usually the event
    out.mkdir(parents=True, exist_ok=True)
    suite = _suite(frame, plan, released, target=target, name=table.stem)
    files["suite.json"].write_text(json.dumps(suite, indent=2) + "\n", encoding="utf-8")
    files["config.yaml"].write_text(
        _config_text(
            table=table,
            test=test,
            test_fraction=test_fraction,
            target=target,
            positive=positive,
            plan=plan,
            suite=files["suite.json"],
            rows=len(frame),
            epsilon=epsilon,
        ),
        encoding="utf-8",
    )
    files["policy.yaml"].write_text(_policy_text(table.stem, plan), encoding="utf-8")
    proposal = Proposal(files, epsilon_charged=epsilon, delta_charged=delta)
    for path in files.values():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if REVIEW_MARK in line:
                proposal.lines_marked += 1
                note = line.split(REVIEW_MARK, 1)[1].lstrip(":").strip().rstrip('",')
                proposal.review.append(f"{path.name}:{number}: {note}")
    return proposal


# --------------------------------------------------------------------------- reading


def _read(table: Path) -> pd.DataFrame:
    """Read the table, keeping digit codes with leading zeros (ZIP, IDs) as text."""
    header = read_table(table)
    as_text = read_table(table, string_columns=[str(c) for c in header.columns])
    codes = [
        str(c)
        for c in header.columns
        if as_text[c].dropna().astype(str).str.match(_DIGITS).all()
        and as_text[c].dropna().astype(str).str.match(r"^0\d").any()
    ]
    return read_table(table, string_columns=codes) if codes else header


def _scan(frame: pd.DataFrame, pii: PiiConfig) -> dict[str, ColumnFinding]:
    engine = get_engine(
        spacy_model=pii.spacy_model,
        language=pii.language,
        score_threshold=pii.score_threshold,
        ner_scope=pii.ner_scope,
        processes=pii.processes,
        strict_phone_validation=pii.strict_phone_validation,
        allow_list=tuple(pii.allow_list),
    )
    report = scan_table(
        frame,
        engine=engine,
        entities=pii.entities,
        direct_entities=pii.direct_identifier_entities,
        sample_rows=pii.sample_rows,
        min_fraction=pii.min_fraction,
        free_text_min_words=pii.free_text_min_words,
    )
    engine.clear_cache()
    return {c.name: c for c in report.columns}


# --------------------------------------------------------------------------- the plan


@dataclass
class _Plan:
    actions: dict[str, tuple[str, str]] = field(default_factory=dict)  # column: action, why
    quasi: dict[str, dict[str, Any]] = field(default_factory=dict)  # column: hierarchy
    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)  # feature ranges
    categorical: list[str] = field(default_factory=list)  # categorical features
    features: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # column: why not a feature
    string_columns: list[str] = field(default_factory=list)
    person_key: list[str] = field(default_factory=list)  # a column naming one person


# Entities whose value names one person: the first such column is proposed as the key.
_PERSON_KEY_ENTITIES = ("US_SSN", "UNIQUE_ID")


def _plan(frame: pd.DataFrame, scan: dict[str, ColumnFinding], *, target: str) -> _Plan:
    pii = PiiConfig()
    plan = _Plan()
    for column in frame.columns:
        name = str(column)
        if name == target:
            continue
        finding = scan[name]
        values = frame[column]
        lowered = name.lower()
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if not numeric and _digit_codes(values):
            plan.string_columns.append(name)
        if finding.kind == "direct_identifier":
            entity = finding.dominant_entity or ""
            plan.actions[name] = (pii.actions.get(entity, "drop"), f"the scan found {entity}")
            if entity in _PERSON_KEY_ENTITIES and not plan.person_key:
                plan.person_key.append(name)
            continue
        if finding.kind == "free_text":
            plan.actions[name] = ("redact", "free text: identifiers become <ENTITY>")
            continue
        is_date = any(w in lowered for w in _DATE_WORDS) or finding.dominant_entity in (
            "DATE_OF_BIRTH",
            "DATE_TIME",
        )
        if is_date and not numeric:
            plan.actions[name] = ("drop", "a date: with ZIP and sex it singles people out")
            continue
        if finding.kind == "quasi_identifier":
            if numeric:
                low, high = _outward(values)
                plan.quasi[name] = {"kind": "interval", "widths": _widths(low, high)}
                plan.numeric[name] = (low, high)
                plan.features.append(name)
            elif any(w in lowered for w in _ZIP_WORDS) or finding.dominant_entity == "US_ZIP_CODE":
                plan.quasi[name] = {"kind": "prefix", "keep": [3, 1]}
                plan.left_out[name] = "a code generalized by prefix: not a feature"
            else:
                plan.quasi[name] = {"kind": "group"}
                plan.categorical.append(name)
                plan.features.append(name)
            continue
        if numeric:
            plan.numeric[name] = _outward(values)
            plan.features.append(name)
        elif values.nunique(dropna=True) <= 4 * MAX_CATEGORIES:
            plan.categorical.append(name)
            plan.features.append(name)
        else:
            plan.left_out[name] = "too many distinct values for a one-hot feature"
    return plan


def _digit_codes(values: pd.Series) -> bool:
    text = values.dropna().astype(str)
    return len(text) > 0 and bool(text.str.match(_DIGITS).all())


def _outward(values: pd.Series) -> tuple[float, float]:
    """Return the column's range rounded outward to one significant figure."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty:
        return 0.0, 1.0

    def down(x: float) -> float:
        if x == 0:
            return 0.0
        step = 10 ** math.floor(math.log10(abs(x)))
        return math.floor(x / step) * step

    def up(x: float) -> float:
        if x == 0:
            return 0.0
        step = 10 ** math.floor(math.log10(abs(x)))
        return math.ceil(x / step) * step

    low, high = down(float(numbers.min())), up(float(numbers.max()))
    return (low, high) if high > low else (low, low + 1.0)


def _widths(low: float, high: float) -> list[int]:
    """Interval widths 1-2-5 style, about 16 ranges at the finest level, doubling up."""
    target = max((high - low) / 16, 1.0)
    magnitude = 10 ** math.floor(math.log10(target))
    first = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= target)
    first = max(int(first), 1)
    return [first, first * 2, first * 4]


# --------------------------------------------------------------------------- DP domains


def _measurement(columns: int, epsilon: float) -> Any:
    """The per-column OpenDP release: Laplace counts, only those above a threshold."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    scale = columns / epsilon
    per_delta = DEFAULT_DOMAIN_DELTA / columns
    # The threshold that makes a category held by one row appear with probability
    # <= per_delta: a count of 1 plus Laplace noise must climb past it.
    threshold = math.ceil(scale * math.log(1 / (2 * per_delta)) + 1)
    space = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()
    return (
        space
        >> dp.t.then_count_by(TV=int)
        >> dp.m.then_laplace_threshold(scale=scale, threshold=threshold)
    )


def release_cost(columns: int, epsilon: float) -> tuple[float, float]:
    """Return the (epsilon, delta) of releasing `columns` category sets (basic composition).

    One person is one row, so one count per column: OpenDP's privacy map at distance 1.
    """
    spent_epsilon, spent_delta = _measurement(columns, epsilon).map(1)
    return spent_epsilon * columns, spent_delta * columns


def _release_domains(
    frame: pd.DataFrame, columns: list[str], epsilon: float
) -> dict[str, dict[str, int]]:
    """Release each column's frequent categories with their noisy counts (OpenDP)."""
    measurement = _measurement(len(columns), epsilon)
    released = {}
    for column in columns:
        cells = frame[column].dropna().astype(str).str.strip().tolist()
        released[column] = dict(sorted(measurement(cells).items()))
    return released


# --------------------------------------------------------------------------- files


def _suite(
    frame: pd.DataFrame,
    plan: _Plan,
    released: dict[str, dict[str, int]],
    *,
    target: str,
    name: str,
) -> dict[str, Any]:
    expectations: list[dict[str, Any]] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": [str(c) for c in frame.columns], "exact_match": True},
        },
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": 1, "max_value": None},
        },
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": target}},
    ]
    review = f"{REVIEW_MARK}: derived from the data"
    for column in [*plan.features, target]:
        if column in plan.numeric:
            low, high = plan.numeric[column]
            expectations.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {
                        "column": column,
                        "min_value": _number(low),
                        "max_value": _number(high),
                    },
                    "meta": {
                        "notes": f"{review} ({column!r}): its range rounded outward to "
                        "one significant figure; put the documented range here"
                    },
                }
            )
        elif released.get(column):
            expectations.append(
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {
                        "column": column,
                        "value_set": list(released[column]),
                        "mostly": 1.0 if column == target else VALUE_SET_MOSTLY,
                    },
                    "meta": {
                        "notes": f"{review} ({column!r}): the categories frequent enough to "
                        "release with differential privacy; rarer ones are not named and "
                        "encode as none of these. Put the documented code list here"
                    },
                }
            )
    return {
        "name": f"{name}_raw",
        "expectations": expectations,
        "meta": {"notes": {"purpose": f"Gate the raw {name} table; written by privgate init."}},
    }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _y(value: Any) -> str:
    """A YAML value (JSON is valid YAML): column names cannot break the file's syntax."""
    return json.dumps(value)


def _config_text(
    *,
    table: Path,
    test: Path | None,
    test_fraction: float | None,
    target: str,
    positive: str,
    plan: _Plan,
    suite: Path,
    rows: int,
    epsilon: float,
) -> str:
    test_rows = round(rows * (test_fraction or 0.2))
    members = rows - test_rows
    batch = _batch_size(members=round(members * 0.98 * 0.8), test_rows=test_rows)
    lines = [
        f"# privgate config for {table.name}, written by `privgate init` from a scan of",
        f"# {rows} rows (the category release spent epsilon {epsilon:.3g} of the ledger).",
        "# Lines with a review mark need a person's decision: check each, then delete the mark.",
        "# Every key is documented in privgate/config.py and in the Prefect UI form.",
        "",
        "data:",
        f"  train_path: {_y(str(table.resolve()))}",
    ]
    if test is not None:
        lines.append(f"  test_path: {_y(str(test.resolve()))}")
    else:
        lines.append(
            f"  test_fraction: {test_fraction}   # a seeded split, stratified on the target"
        )
    lines += [
        f"  target: {_y(target)}",
        f"  positive_labels: [{_y(positive)}]   "
        f"# {REVIEW_MARK}: the rarer class; is it the one to predict?",
    ]
    if plan.string_columns:
        lines.append(f"  string_columns: {_y(plan.string_columns)}   # digit codes kept as text")
    if plan.person_key:
        lines.append(
            f"  person_key: {_y(plan.person_key)}   "
            f"# {REVIEW_MARK}: one value per person? rows per person are counted"
        )
    lines += [
        f"  expectation_suite: {_y(str(suite.resolve()))}",
        "",
        "anonymization:",
        "  k: 5",
        "  max_suppression: 0.02",
    ]
    lines.append("  columns:")
    for column, (action, why) in plan.actions.items():
        lines.append(f"    {_y(column)}: {action}   # {why}")
    if not plan.actions:
        lines[-1] = "  columns: {}"
    lines.append("  quasi_identifiers:")
    for column, hierarchy in plan.quasi.items():
        note = {
            "interval": "ranges of these widths, then *",
            "prefix": "keep 3, then 1 leading characters",
            "group": f"{REVIEW_MARK}: raw or *; add `levels:` of groups to keep something between",
        }[hierarchy["kind"]]
        lines.append(f"    {_y(column)}: {_y(hierarchy)}   # {note}")
    if not plan.quasi:
        lines[-1] = (
            f"  quasi_identifiers: {{}}   # {REVIEW_MARK}: the scan named none; "
            "which columns identify in combination?"
        )
    lines += [
        "",
        "training:",
        "  model: mlp",
        "  hidden_units: 64",
        "  epochs: 8",
        f"  batch_size: {batch}   # fits the members and half the test table (privgate check)",
        "  learning_rate: 0.05",
        f"  features: {_y(plan.features)}",
    ]
    for column, why in plan.left_out.items():
        lines.append(f"  # not a feature: {column!r}, {why}")
    lines += [
        "  dp:",
        "    enabled: true",
        "    target_epsilon: 3.0",
        "    target_delta: 1.0e-5",
        "    max_grad_norm: 1.0",
        "    accountant: prv",
        "    clipping: bookkeeping",
        "",
        "registry:",
        f"  experiment: {_y('privgate-' + _slug(table.stem))}",
        "  alias: champion",
        "",
    ]
    return "\n".join(lines)


def _batch_size(*, members: int, test_rows: int) -> int:
    """The largest power of two <= 512 that fits 1/16 of the members and 1/4 of the test."""
    limit = max(8, min(512, members // 16, test_rows // 4))
    return int(2 ** math.floor(math.log2(limit)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "table"


def _policy_text(stem: str, plan: _Plan) -> str:
    quasi = list(plan.quasi)
    return "\n".join(
        [
            f"# privgate privacy policy for {stem}, written by `privgate init`.",
            "# Reviewed like code, by the people who answer for the data; a run records its hash.",
            "",
            f"registered_model_name: {_y('privgate-' + _slug(stem))}",
            "",
            f"max_epsilon: 3.0   # {REVIEW_MARK}: the privacy budget of one model",
            "max_delta: 1.0e-5",
            f"lifetime_epsilon: {DEFAULT_LIFETIME_EPSILON}   # every DP attempt, init's included",
            f"lifetime_delta: {DEFAULT_LIFETIME_DELTA}",
            "",
            "min_k: 5",
            f"quasi_identifiers: {_y(quasi or ['REPLACE-ME'])}",
            "min_l: 1",
            "",
            "max_residual_pii_findings: 0",
            "residual_pii_entities: [PERSON, EMAIL_ADDRESS, PHONE_NUMBER, US_SSN, CREDIT_CARD,",
            "                        IBAN_CODE, IP_ADDRESS, STREET_ADDRESS, UNIQUE_ID]",
            "residual_pii_score_threshold: 0.4",
            "",
            "# Utility, judged against baselines: beat always predicting the majority class by",
            "# 0.01 and stay within 0.05 of the same model trained without DP.",
            "min_accuracy: 0.0",
            f"min_accuracy_lift: 0.01   # {REVIEW_MARK}: what gain is worth a release?",
            "max_accuracy_cost: 0.05",
            "# The cost needs the non-private baseline (never registered, recorded in the ledger).",
            f"allow_non_private: true   # {REVIEW_MARK}: may a model skip the noise?",
            "# DP protects rows: a person with r rows gets about r x epsilon (data.person_key).",
            "max_rows_per_person: 1",
            "",
            "max_mia_auc: 0.60",
            "max_mia_tpr_at_1pct_fpr: 0.05",
            "min_audit_power_epsilon: null",
            "",
        ]
    )
