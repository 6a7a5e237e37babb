"""Check the raw table against its Great Expectations suite, and read its public domains.

The suite does two jobs. It gates the raw table before anything else touches it, and
its value sets and ranges are the *declared public domains* of the model's features:
the encoder reads them from here instead of from the private data, so encoding spends
no privacy budget.

Great Expectations results carry samples of offending values (`partial_unexpected_list`,
`observed_value`, tracebacks quoting cells). A `ValidationReport` keeps only counts and
percentages from a whitelist; an expectation that raised keeps its exception type only.

GX is imported lazily: importing it costs seconds, and `public_domains` (read by the
encoder) needs none of it.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from privgate.errors import ConfigError, DataError

if TYPE_CHECKING:
    import great_expectations as gx

# Set before GX can be imported, and forced rather than defaulted: a setting left on by
# another project must not send telemetry about a private table.
os.environ["GX_ANALYTICS_ENABLED"] = "false"

IN_SET = "expect_column_values_to_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
COLUMNS_MATCH_SET = "expect_table_columns_to_match_set"

# BASIC still fills `partial_unexpected_list`; a count of 0 keeps it empty at the source.
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
_SUITE_KEYS = frozenset({"name", "expectations", "meta", "notes", "id", "suite_parameters"})
_EXPECTATION_KEYS = frozenset({"type", "kwargs", "meta", "notes", "description", "severity", "id"})
# A traceback's exception line reads `package.module.SomeError: message`. Only a name
# shaped like an exception class is kept, so a message line that happens to start with
# `word:` cannot pass a fragment of a cell off as a type.
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*([A-Z]\w*(?:Error|Exception|Failure|Warning|Exit|Interrupt))(?::|$)"
)
_DATASOURCE = "privgate"


@dataclass(frozen=True)
class ExpectationOutcome:
    """The counts one expectation produced, without any value from the table.

    Attributes:
        expectation: Expectation type, e.g. `expect_column_values_to_be_in_set`.
        column: The column it checks, or None for table-level expectations.
        success: Whether it passed.
        element_count: Rows it looked at (column-map expectations only).
        unexpected_count: Rows that broke it.
        unexpected_percent: Share of rows that broke it, in percent.
        raised: Type name of the exception it raised (then it failed), else None.
        missing_columns: Suite columns absent from the table (column-set expectations).
        extra_columns: How many table columns the suite does not name (never their names).
    """

    expectation: str
    column: str | None
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    raised: str | None = None
    missing_columns: tuple[str, ...] = ()
    extra_columns: int = 0

    def describe(self) -> str:
        """Return a one-line account, e.g. `expect_..._in_set(sex): 3 unexpected (0.1%)`."""
        name = f"{self.expectation}({self.column})" if self.column else self.expectation
        if self.success:
            return f"{name}: passed"
        if self.raised:
            return f"{name}: raised {self.raised}"
        if self.missing_columns or self.extra_columns:
            parts = (
                [f"missing columns {list(self.missing_columns)}"] if self.missing_columns else []
            )
            if self.extra_columns:
                parts.append(
                    f"{self.extra_columns} column(s) the suite does not name (names withheld: "
                    "a header is the table's own text)"
                )
            return f"{name}: {'; '.join(parts)}"
        if self.unexpected_count is not None:
            share = _format_percent(self.unexpected_percent)
            return f"{name}: {self.unexpected_count} unexpected" + (f" ({share})" if share else "")
        return f"{name}: failed"


@dataclass(frozen=True)
class ValidationReport:
    """What a suite found in a table: safe to log, publish and store.

    Attributes:
        suite: Suite name.
        success: True only when every expectation in the suite ran and passed.
        evaluated: Expectations evaluated.
        failed: Expectations that failed or raised.
        outcomes: One entry per evaluated expectation.
    """

    suite: str
    success: bool
    evaluated: int
    failed: int
    outcomes: tuple[ExpectationOutcome, ...]

    def failed_summary(self) -> str:
        """Return the failed expectations as one `; `-separated line ("" when none failed)."""
        return "; ".join(o.describe() for o in self.outcomes if not o.success)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready builtins."""
        payload = asdict(self)
        payload["outcomes"] = [
            {**item, "missing_columns": list(item["missing_columns"])}
            for item in payload["outcomes"]
        ]
        return payload


@dataclass(frozen=True)
class ColumnDomain:
    """A feature's declared public domain, read from the suite.

    Attributes:
        kind: `categorical` (from a value set) or `numeric` (from a range).
        values: The allowed categories, in suite order (categorical only).
        min_value: Lower bound, inclusive (numeric only).
        max_value: Upper bound, inclusive (numeric only).
    """

    kind: Literal["categorical", "numeric"]
    values: tuple[str, ...] | None
    min_value: float | None
    max_value: float | None


# --------------------------------------------------------------------------- suite


def load_suite(path: Path) -> gx.ExpectationSuite:
    """Load and check an expectation suite from its JSON file.

    Every expectation is built on its own first: `ExpectationSuite` logs and silently
    drops one it cannot build, and a suite that quietly checks less must not pass.

    Args:
        path: Suite JSON (`{"name": ..., "expectations": [{"type": ..., "kwargs": ...}]}`).

    Returns:
        The suite, not attached to any data context.

    Raises:
        ConfigError: When the file is missing or not JSON, lacks a name or expectations,
            or holds an unknown expectation type or invalid arguments.
    """
    import great_expectations as gx
    from great_expectations.exceptions.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    document = _read_suite_document(path)
    expectations = []
    for index, entry in enumerate(document["expectations"], start=1):
        # GX-exported suites carry ids, which GX refuses for a new suite.
        fields = {k: v for k, v in entry.items() if k != "id"}
        try:
            expectations.append(ExpectationConfiguration(**fields).to_domain_obj())
        except ExpectationNotFoundError:
            raise ConfigError(
                f"expectation suite {path}: expectation #{index} has unknown type {entry['type']!r}"
            ) from None
        except Exception as exc:
            raise ConfigError(
                f"expectation suite {path}: expectation #{index} ({entry['type']}) has invalid "
                f"arguments ({type(exc).__name__}); see the GX gallery for its kwargs"
            ) from None
    suite = gx.ExpectationSuite(
        name=document["name"],
        expectations=expectations,
        meta=document.get("meta"),
        notes=document.get("notes"),
    )
    if len(suite.expectations) != len(expectations):
        raise ConfigError(f"expectation suite {path}: GX dropped some expectations")
    return suite


def public_domains(suite_path: Path) -> dict[str, ColumnDomain]:
    """Return each column's declared domain from the suite's value sets and ranges.

    `expect_column_values_to_be_in_set` gives a categorical domain (its `value_set`),
    `expect_column_values_to_be_between` a numeric one (`min_value`..`max_value`).
    A column may have at most one of them, so the domain is never ambiguous.

    Args:
        suite_path: Suite JSON file.

    Returns:
        Column name to domain, for every column the suite declares one for.

    Raises:
        ConfigError: When the suite cannot be read, a value set is not a list of text,
            a range is open or inverted, or a column has two domain expectations.
    """
    document = _read_suite_document(suite_path)
    domains: dict[str, ColumnDomain] = {}
    for entry in document["expectations"]:
        kind = entry["type"]
        if kind not in (IN_SET, BETWEEN):
            continue
        kwargs = entry["kwargs"]
        column = kwargs.get("column")
        where = f"expectation suite {suite_path}: {kind}({column})"
        if not isinstance(column, str):
            raise ConfigError(f"expectation suite {suite_path}: {kind} without a column name")
        if column in domains:
            raise ConfigError(
                f"{where}: column already has a domain; keep one value set or range per column"
            )
        if kind == IN_SET:
            values = kwargs.get("value_set")
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) for v in values)
            ):
                raise ConfigError(f"{where}: value_set must be a non-empty list of strings")
            if len(set(values)) != len(values):
                raise ConfigError(f"{where}: value_set lists a category twice")
            domains[column] = ColumnDomain("categorical", tuple(values), None, None)
        else:
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            if not (_is_number(low) and _is_number(high)):
                raise ConfigError(f"{where}: a public domain needs numeric min_value and max_value")
            if low > high:
                raise ConfigError(f"{where}: min_value is above max_value")
            domains[column] = ColumnDomain("numeric", None, float(low), float(high))
    return domains


def suite_columns(suite_path: Path) -> set[str]:
    """Return every column the suite's expectations name (a column set, or a `column`).

    Raises:
        ConfigError: When the suite cannot be read.
    """
    columns: set[str] = set()
    for entry in _read_suite_document(suite_path)["expectations"]:
        kwargs = entry["kwargs"]
        if entry["type"] == COLUMNS_MATCH_SET:
            columns |= {c for c in kwargs.get("column_set") or () if isinstance(c, str)}
        elif isinstance(kwargs.get("column"), str):
            columns.add(kwargs["column"])
    return columns


def _read_suite_document(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"expectation suite file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(
            f"expectation suite {path} is a directory; expected a JSON file"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"expectation suite {path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"expectation suite {path} cannot be read ({type(exc).__name__})"
        ) from None

    if not isinstance(document, dict):
        raise ConfigError(f"expectation suite {path} must hold a JSON object")
    unknown = sorted(set(document) - _SUITE_KEYS)
    if unknown:
        raise ConfigError(f"expectation suite {path}: unknown top-level keys {unknown}")
    if not isinstance(document.get("name"), str) or not document["name"]:
        raise ConfigError(f"expectation suite {path}: `name` must be a non-empty string")
    entries = document.get("expectations")
    # An empty suite passes every table: refuse it rather than gate nothing.
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"expectation suite {path}: `expectations` must be a non-empty list")
    for index, entry in enumerate(entries, start=1):
        where = f"expectation suite {path}: expectation #{index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object with `type` and `kwargs`")
        if not isinstance(entry.get("type"), str) or not isinstance(entry.get("kwargs"), dict):
            raise ConfigError(f"{where} needs a string `type` and an object `kwargs`")
        extra = sorted(set(entry) - _EXPECTATION_KEYS)
        if extra:
            raise ConfigError(f"{where} ({entry['type']}) has unknown keys {extra}")
    return document


# --------------------------------------------------------------------------- validation


def validate_table(frame: pd.DataFrame, *, suite_path: Path) -> ValidationReport:
    """Validate a table against an expectation suite and keep only safe counts.

    Each call uses a fresh ephemeral data context (about 25 ms) that is emptied before
    returning: a cached context would keep a reference to the last validated table
    through GX's batch cache. Nothing is persisted and no Data Docs are built.

    Args:
        frame: The table to check.
        suite_path: Suite JSON file.

    Returns:
        The report; `success` is False when any expectation failed or raised, or when
        GX evaluated fewer expectations than the suite holds.

    Raises:
        ConfigError: When the suite cannot be loaded.
        DataError: When the table has duplicate column names, or GX fails as a whole.
    """
    suite = load_suite(suite_path)
    if frame.columns.duplicated().any():
        raise DataError("the table has duplicate column names; GX cannot validate it")
    try:
        result = _run_suite(frame, suite)
    except Exception as exc:
        raise DataError(
            f"validating against expectation suite {suite_path} failed ({type(exc).__name__})"
        ) from None

    outcomes = tuple(_outcome(item) for item in result.results)
    failed = sum(not o.success for o in outcomes)
    expected = len(suite.expectations)
    return ValidationReport(
        suite=suite.name,
        success=bool(result.success) and failed == 0 and len(outcomes) == expected,
        evaluated=len(outcomes),
        failed=failed,
        outcomes=outcomes,
    )


def _run_suite(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX announces at INFO each temporary docs folder it makes (and removes); we build no
    # Data Docs, so that is noise in the run log. That module pins its own logger to INFO.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_pandas(_DATASOURCE)
    try:
        batch_definition = datasource.add_dataframe_asset(
            "table"
        ).add_batch_definition_whole_dataframe("whole_table")
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format=_RESULT_FORMAT)
    finally:
        # GX keeps the context as its current project and the frame in the datasource's
        # batch cache; dropping the datasource lets the table be freed.
        context.data_sources.delete(_DATASOURCE)


def _outcome(item: Any) -> ExpectationOutcome:
    config = item.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column")
    result: Mapping[str, Any] = item.result or {}
    raised = _raised_type(item.exception_info)
    missing: tuple[str, ...] = ()
    extra = 0
    if config.type == COLUMNS_MATCH_SET and not item.success:
        # Only names the suite declared: the table's own extra headers are counted, never
        # repeated.
        declared = set(kwargs.get("column_set") or ())
        reported = (result.get("details") or {}).get("mismatched", {}) or {}
        missing = tuple(sorted(str(c) for c in reported.get("missing", ()) if c in declared))
        extra = len([c for c in reported.get("unexpected", ()) or () if c not in declared])
    return ExpectationOutcome(
        expectation=str(config.type),
        column=column if isinstance(column, str) else None,
        success=bool(item.success) and raised is None,
        element_count=_as_count(result.get("element_count")),
        unexpected_count=_as_count(result.get("unexpected_count")),
        unexpected_percent=_as_percent(result.get("unexpected_percent")),
        raised=raised,
        missing_columns=missing,
        extra_columns=extra,
    )


def _raised_type(info: Any) -> str | None:
    # GX reports either one {raised_exception, exception_traceback, ...} mapping or one
    # such mapping per failed metric.
    if not isinstance(info, Mapping) or not info:
        return None
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("raised_exception"):
            return _exception_type(str(entry.get("exception_traceback") or ""))
    return None


def _exception_type(traceback_text: str) -> str:
    # The exception line follows the last indented frame line; a multi-line message
    # continues below it, so the traceback's last line is not necessarily the one.
    lines = traceback_text.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  ")]
    start = frames[-1] + 1 if frames else 0
    for line in lines[start:]:
        match = _EXCEPTION_LINE.match(line)
        if match:
            return match.group(1)
    return "Exception"


def _as_count(value: Any) -> int | None:
    return int(value) if _is_number(value) else None


def _as_percent(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    # numbers.Real also admits numpy scalars, which GX may hand back.
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _format_percent(value: float | None) -> str:
    if value is None:
        return ""
    # Small shares keep two significant digits so 3 rows in 32k do not read as 0.0%.
    return f"{value:.1f}%" if value >= 0.1 or value == 0 else f"{value:.2g}%"
