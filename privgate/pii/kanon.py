"""Full-domain generalization of quasi-identifiers to k-anonymity with least loss.

Each quasi-identifier (QI) has a hierarchy of levels: level 0 is the raw value as text,
the top level is `*`, and each level in between is a function of the one below it, so
two rows equal at one level stay equal at every higher level. A *node* of the
generalization lattice picks one level per QI; full-domain means every row of a column
is generalized to the same level.

A node is *acceptable* when, after suppressing (removing) every row whose equivalence
class over the generalized QIs holds fewer than `k` rows, at most `max_suppression` of
the rows were suppressed. Missing values form their own class at every level below the
top (`*`), so a lone missing value counts as a class of one, never as "anything".

With distinct l-diversity (Machanavajjhala et al. 2007) a class is also suppressed when
it holds fewer than `l` distinct values of a `sensitive` column (missing counts as one
value): k-anonymity alone lets a class whose rows all share one income disclose it.
`l == 1` suppresses nothing more, so the search visits and chooses exactly the nodes it
would without a sensitive column; a column given with `l == 1` is only measured.

Information loss (`information_loss`) is a Loss Metric in the style of Iyengar (2002),
averaged over cells. For QI `j` let `M_j` be the number of distinct raw values in the
table (missing counts as one value). A cell whose generalized value covers `G` of those
raw values loses `(G - 1) / (M_j - 1)`: 0 when kept raw, 1 at `*` (0 throughout when
`M_j == 1`, a constant column having nothing to lose). A suppressed row loses 1 in every
QI, as if fully generalized. The table's loss is the mean over all rows and all QIs,
so it lies in [0, 1].

The search (`find_k_anonymous_generalization`) returns the acceptable node with the
least loss, ties broken by lower total level, then by the lexicographically smaller
tuple of levels (QIs in the order given). It is exact, not greedy: nodes are visited in
ascending order of a lower bound (the loss with nothing suppressed, a sum of one
precomputed term per QI that never exceeds the real loss) and the visit stops once the
bound passes the best loss found. Monotonicity spares most data passes: generalizing
only merges classes, so the suppressed-row count never grows going up. A failing node
therefore fails with all its specializations, and after one fails the search climbs
from it while that proves more still-open nodes failing (a node still unknown is
climbed from before it is counted: a failing generalization proves it failing too). A
node with nothing suppressed has nothing suppressed in any generalization, whose loss is
then exactly its bound. Going down, the suppressed rows only grow and each keeps no more
of its cells, so the loss suppression adds at a node is a floor for every specialization:
a node whose bound plus that floor passes the best loss is skipped without a count.

Monotonicity survives l-diversity. A class of a generalization is the union of classes
of any of its specializations, so its row count is the sum of theirs and its set of
sensitive values the union of theirs: neither shrinks. A row kept at a specialization
(its class has >= `k` rows and >= `l` distinct values) is therefore kept at every
generalization, so the suppressed rows going up are a subset of those below, and the
failing, passing and nothing-suppressed propagation above stays exact.

A count never reads rows. The finest units (the classes with every QI raw, or with a
sensitive column the (class, sensitive value) pairs) are counted once, with their row
counts and their codes at every level. A node is counted from the cached units of an
already-counted specialization when one compresses them (one member and a row count per
unit), so counts high in the lattice touch hundreds of units. Each cached set keeps a
mixed-radix int64 key of its members; raising a QI swaps that QI's digit for its coarser
code, so a node a few levels up is keyed with a term per raised QI, and classes are
counted with `np.bincount` (keys are renumbered first only when their space is sparse).
With a sensitive column the units stay pairs: one member per class would forget which
values its other rows held, and a generalization could not count its distinct values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api.extensions import ExtensionDtype

from privgate.config import DateHierarchy, Hierarchy, IntervalHierarchy, PrefixHierarchy
from privgate.errors import ConfigError

__all__ = [
    "TOP",
    "KAnonymityResult",
    "apply_generalization",
    "describe_level",
    "find_k_anonymous_generalization",
    "generalize_column",
    "hierarchy_height",
    "information_loss",
    "measure_k",
    "measure_l_diversity",
]

TOP = "*"
"""The value every QI takes at its top level."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]
CodeArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]
Dtype = np.dtype[Any] | ExtensionDtype

# The lattice is enumerated as an array; beyond this many nodes that stops being cheap
# and a coarser hierarchy (or fewer QIs) is the better fix than a slower search.
_MAX_LATTICE_NODES = 2_000_000
# Losses are sums of floats; two nodes whose losses differ by less are treated as tied.
_TOLERANCE = 1e-12
# Count keys with a dense bincount while the key space stays this many times the rows.
_DENSE_KEY_FACTOR = 8
# Mixed-radix keys are re-densified before their space could overflow int64.
_KEY_SPACE_LIMIT = 1 << 62
# A roll-up updates the base's key per raised QI up to this many, else recombines.
_RAISED_FOR_DELTA = 3
# Cached classes (for roll-up) may hold at most this many times the table's rows.
_CACHE_ROWS_FACTOR = 16


@dataclass(frozen=True)
class KAnonymityResult:
    """The chosen generalization and what it costs.

    Attributes:
        levels: Chosen level per QI (0 = raw, `hierarchy_height - 1` = `*`).
        level_labels: The same levels in words, e.g. `"interval width 10"`.
        k_target: The `k` that was asked for.
        k_achieved: Smallest equivalence class after suppression; 0 if no row remains.
            When no node is acceptable this is the top node's single class, below `k`.
        suppressed_rows: Rows removed because their class was smaller than `k` (or held
            fewer than `l_target` distinct sensitive values).
        total_rows: Rows in the input table.
        information_loss: Loss of the chosen node, in [0, 1] (see the module docstring).
        nodes_evaluated: Lattice nodes whose classes were counted on the data.
        l_target: The `l` that was asked for (1: no l-diversity).
        l_achieved: Fewest distinct values of `sensitive` in a kept class; 0 if no row
            remains. Without a sensitive column nothing is measured and this is 1 when
            any row remains (every non-empty class is trivially 1-diverse), else 0.
        sensitive: The sensitive column l-diversity was measured on, or None.
    """

    levels: dict[str, int]
    level_labels: dict[str, str]
    k_target: int
    k_achieved: int
    suppressed_rows: int
    total_rows: int
    information_loss: float
    nodes_evaluated: int
    l_target: int
    l_achieved: int
    sensitive: str | None


# --------------------------------------------------------------------------- hierarchies


def hierarchy_height(hierarchy: Hierarchy) -> int:
    """Return the number of levels of a hierarchy, counting raw (0) and `*` (top)."""
    if isinstance(hierarchy, IntervalHierarchy):
        return len(hierarchy.widths) + 2
    if isinstance(hierarchy, PrefixHierarchy):
        return len(hierarchy.keep) + 2
    return len(hierarchy.levels) + 2  # group and date hierarchies


def describe_level(hierarchy: Hierarchy, level: int) -> str:
    """Return a level in words, e.g. `"raw"`, `"prefix 3"`, `"suppressed (*)"`."""
    top = hierarchy_height(hierarchy) - 1
    if level == 0:
        return "raw"
    if level == top:
        return "suppressed (*)"
    if isinstance(hierarchy, IntervalHierarchy):
        return f"interval width {hierarchy.widths[level - 1]}"
    if isinstance(hierarchy, PrefixHierarchy):
        return f"prefix {hierarchy.keep[level - 1]}"
    if isinstance(hierarchy, DateHierarchy):
        return f"date to {hierarchy.levels[level - 1]}"
    return f"group level {level}"


def generalize_column(values: pd.Series, hierarchy: Hierarchy, level: int) -> pd.Series:
    """Generalize a column to one level of its hierarchy.

    Args:
        values: The raw column; its name is used in error messages.
        hierarchy: How the column generalizes.
        level: 0 keeps the raw value (as text); `hierarchy_height - 1` gives `*`.

    Returns:
        An object series of strings on the same index. Missing values stay missing
        (NaN) at every level below the top, and become `*` at the top.

    Raises:
        ConfigError: when the level is out of range, or an interval hierarchy meets a
            non-numeric column.
    """
    column = str(values.name)
    _check_level(column, hierarchy, level)
    _check_hierarchy_fits(column, hierarchy, values)
    if level == hierarchy_height(hierarchy) - 1:
        return pd.Series(TOP, index=values.index, name=values.name, dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    value_codes, labels = _level_codes(column, hierarchy, uniques, values.dtype, level)[level]
    # One slot past the uniques holds the missing marker, so missing rows map to NaN.
    lookup = np.append(labels[value_codes], np.nan).astype(object)
    generalized = lookup[np.where(codes < 0, len(uniques), codes)]
    return pd.Series(generalized, index=values.index, name=values.name, dtype=object)


def _check_level(column: str, hierarchy: Hierarchy, level: int) -> None:
    height = hierarchy_height(hierarchy)
    if not 0 <= level < height:
        raise ConfigError(
            f"level {level} for quasi-identifier {column!r} is outside 0..{height - 1} "
            f"(its {hierarchy.kind} hierarchy has {height} levels including raw and '*')"
        )


def _check_hierarchy_fits(column: str, hierarchy: Hierarchy, values: pd.Series) -> None:
    if isinstance(hierarchy, IntervalHierarchy) and not _is_numeric(values.dtype):
        raise ConfigError(
            f"quasi-identifier {column!r} has an interval hierarchy but holds non-numeric "
            f"data (dtype {values.dtype}); give it a prefix or group hierarchy in "
            "anonymization.quasi_identifiers, or keep it out of data.string_columns"
        )
    if isinstance(hierarchy, PrefixHierarchy) and any(
        later > earlier for earlier, later in zip(hierarchy.keep, hierarchy.keep[1:], strict=False)
    ):
        # A growing prefix would un-generalize, and the search relies on each level
        # merging the classes of the one below.
        raise ConfigError(
            f"quasi-identifier {column!r}: prefix hierarchy 'keep' must not grow from one "
            f"level to the next (got {hierarchy.keep}) in anonymization.quasi_identifiers"
        )


def _is_numeric(dtype: Dtype) -> bool:
    return bool(pd.api.types.is_numeric_dtype(dtype)) and not pd.api.types.is_bool_dtype(dtype)


def _level_codes(
    column: str, hierarchy: Hierarchy, uniques: object, dtype: Dtype, up_to: int
) -> list[tuple[IntArray, ObjectArray]]:
    """Generalize the non-missing unique values of a column to levels 0..`up_to` (< top).

    Returns:
        Per level, the code of each unique value and the label of each code.
    """
    if isinstance(hierarchy, IntervalHierarchy):
        return [
            _factorize_labels(labels)
            for labels in _interval_labels(column, hierarchy, uniques, dtype, up_to)
        ]
    text = np.array([str(value) for value in np.asarray(uniques, dtype=object)], dtype=object)
    codes, labels = _factorize_labels(text)
    levels = [(codes, labels)]
    if isinstance(hierarchy, DateHierarchy):
        # Each level is a function of the date itself, so equal stays equal going up.
        dates = _parse_dates(column, text)
        for step in hierarchy.levels[:up_to]:
            levels.append(_factorize_labels(_date_labels(dates, step)))
        return levels
    steps = hierarchy.keep if isinstance(hierarchy, PrefixHierarchy) else hierarchy.levels
    for step in steps[:up_to]:
        # Each level is computed from the labels of the one below, so equal stays equal
        # going up, and the work shrinks with the number of distinct labels.
        if isinstance(step, int):
            # The mask keeps the length, so "02139" and "0213" stay apart ("0****", "0***").
            coarser = [label[:step] + TOP * (len(label) - step) for label in labels]
        else:
            # A value the config forgot goes to '*': over-generalizing is never less private.
            coarser = [step.get(label, TOP) for label in labels]
        step_codes, labels = _factorize_labels(np.array(coarser, dtype=object))
        codes = step_codes[codes]
        levels.append((codes, labels))
    return levels


def _parse_dates(column: str, text: ObjectArray) -> pd.DatetimeIndex:
    dates = pd.to_datetime(pd.Series(text), format="mixed", errors="coerce")
    unreadable = int(dates.isna().sum())
    if unreadable:
        raise ConfigError(
            f"quasi-identifier {column!r} has a date hierarchy but {unreadable} of its "
            f"{len(text)} distinct values are not dates; clean the column or give it "
            "another hierarchy in anonymization.quasi_identifiers"
        )
    return pd.DatetimeIndex(dates)


def _date_labels(dates: pd.DatetimeIndex, step: str) -> ObjectArray:
    years = dates.year.to_numpy()
    if step == "month":
        labels = [f"{y:04d}-{m:02d}" for y, m in zip(years, dates.month.to_numpy(), strict=True)]
    elif step == "year":
        labels = [f"{y:04d}" for y in years]
    else:
        span = 5 if step == "5 years" else 10
        labels = [f"{y - y % span:04d}-{y - y % span + span - 1:04d}" for y in years]
    return np.array(labels, dtype=object)


def _factorize_labels(labels: ObjectArray) -> tuple[IntArray, ObjectArray]:
    codes, uniques = pd.factorize(labels)
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


def _interval_labels(
    column: str, hierarchy: IntervalHierarchy, uniques: object, dtype: Dtype, up_to: int
) -> list[ObjectArray]:
    numbers: npt.NDArray[np.int64] | npt.NDArray[np.float64]
    if pd.api.types.is_integer_dtype(dtype):
        # Integer arithmetic keeps large values exact; `//` floors negatives correctly.
        numbers = np.asarray(uniques, dtype=np.int64)
        raw = [str(value) for value in numbers.tolist()]
    else:
        numbers = np.asarray(uniques, dtype=np.float64)
        if not np.isfinite(numbers).all():
            raise ConfigError(
                f"quasi-identifier {column!r} holds infinite numbers, which no interval of "
                "its hierarchy can hold; clean the column before anonymization"
            )
        raw = [_format_number(value) for value in numbers.tolist()]
    labels = [np.array(raw, dtype=object)]
    origin = hierarchy.origin
    for width in hierarchy.widths[:up_to]:
        lows = (np.floor_divide(numbers - origin, width) * width + origin).astype(np.int64)
        labels.append(np.array([f"{low}-{low + width - 1}" for low in lows.tolist()], dtype=object))
    return labels


def _format_number(value: float) -> str:
    # Integer-valued floats (an int column that gained a NaN) read as the integers they are.
    return str(int(value)) if value.is_integer() else repr(value)


# --------------------------------------------------------------------------- classes


def measure_k(frame: pd.DataFrame, columns: Sequence[str]) -> int:
    """Return the smallest equivalence-class size over `columns`.

    Missing values form their own class. With no columns the whole table is one class.

    Args:
        frame: The (released) table.
        columns: Columns whose value combinations define the classes.

    Returns:
        The size of the smallest class, or 0 for an empty table.

    Raises:
        ConfigError: when a column is missing from the table.
    """
    _require_columns(frame, columns)
    sizes = _class_sizes(frame, columns)
    return int(sizes.min()) if len(sizes) else 0


def measure_l_diversity(frame: pd.DataFrame, columns: Sequence[str], sensitive: str) -> int:
    """Return the fewest distinct values of `sensitive` in an equivalence class over `columns`.

    Plain pandas, independent of the search's counting code, so that it can check it.
    Missing values (any flavour) form their own class and count as one sensitive value.
    With no columns the whole table is one class.

    Args:
        frame: The (released) table.
        columns: Columns whose value combinations define the classes.
        sensitive: The column whose values must be diverse within each class.

    Returns:
        The smallest distinct-value count over classes, or 0 for an empty table.

    Raises:
        ConfigError: when a column or the sensitive column is missing from the table.
    """
    _require_columns(frame, columns)
    if sensitive not in frame.columns:
        raise ConfigError(
            f"sensitive column {sensitive!r} is not in the table; fix "
            "anonymization.l_diversity.sensitive or the input data"
        )
    if frame.empty:
        return 0
    # Factorized first: nunique would count None, NaN and pd.NA as three values.
    values = pd.Series(pd.factorize(frame[sensitive])[0], index=frame.index)
    if not columns:
        return int(values.nunique())
    keys = [pd.Series(pd.factorize(frame[column])[0], index=frame.index) for column in columns]
    return int(values.groupby(keys, dropna=False, sort=False).nunique().min())


def apply_generalization(
    frame: pd.DataFrame,
    *,
    quasi_identifiers: Mapping[str, Hierarchy],
    levels: Mapping[str, int],
    k: int,
    sensitive: str | None = None,
    l: int = 1,  # noqa: E741 - the l of l-diversity
) -> tuple[pd.DataFrame, int]:
    """Generalize the QIs to the given levels and suppress rows the search suppressed.

    Args:
        frame: The table to release; other columns pass through untouched.
        quasi_identifiers: QI columns and their hierarchies.
        levels: Level per QI, e.g. `KAnonymityResult.levels`.
        k: Rows whose class over the generalized QIs is smaller are removed.
        sensitive: Column whose distinct values per class are counted, e.g.
            `KAnonymityResult.sensitive`; None when `l` is 1.
        l: Rows whose class holds fewer distinct `sensitive` values are removed too.

    Returns:
        The generalized table (QIs as strings, surviving rows keep their index) and
        the number of rows suppressed.

    Raises:
        ConfigError: when a QI column or its level is missing or out of range, or the
            l-diversity settings are invalid (see `find_k_anonymous_generalization`).
    """
    columns = list(quasi_identifiers)
    _require_columns(frame, columns)
    sensitive_codes = _sensitive_codes(frame, columns, sensitive=sensitive, l=l)
    missing_levels = [column for column in columns if column not in levels]
    if missing_levels:
        raise ConfigError(f"no generalization level given for quasi-identifiers {missing_levels}")
    released = frame.copy()
    for column, hierarchy in quasi_identifiers.items():
        released[column] = generalize_column(frame[column], hierarchy, levels[column])
    keep = _kept_rows(released, columns, k=k, sensitive_codes=sensitive_codes, l=l)
    return released.loc[keep], int((~keep).sum())


def information_loss(
    frame: pd.DataFrame,
    *,
    quasi_identifiers: Mapping[str, Hierarchy],
    levels: Mapping[str, int],
    k: int,
    sensitive: str | None = None,
    l: int = 1,  # noqa: E741 - the l of l-diversity
) -> float:
    """Return the information loss of releasing `frame` at `levels` with suppression.

    The Loss Metric of the module docstring: per cell `(G - 1) / (M - 1)`, where `M`
    counts a QI's distinct raw values (missing is one) and `G` those sharing the cell's
    generalized value; 1 in every QI for a row suppressed because its class is smaller
    than `k` (or holds fewer than `l` distinct `sensitive` values); averaged over rows
    and QIs. This direct implementation is the reference the search's vectorized bound
    is tested against.

    Args:
        frame: The raw table.
        quasi_identifiers: QI columns and their hierarchies.
        levels: Level per QI.
        k: Classes smaller than this are suppressed.
        sensitive: Column whose distinct values per class are counted; None when `l`
            is 1.
        l: Classes with fewer distinct `sensitive` values are suppressed too.

    Returns:
        The loss in [0, 1]; 0.0 for an empty table or no QIs.

    Raises:
        ConfigError: when a QI column or its level is missing or out of range, or the
            l-diversity settings are invalid (see `find_k_anonymous_generalization`).
    """
    columns = list(quasi_identifiers)
    _require_columns(frame, columns)
    sensitive_codes = _sensitive_codes(frame, columns, sensitive=sensitive, l=l)
    if frame.empty or not columns:
        return 0.0
    generalized = pd.DataFrame(index=frame.index)
    cell_loss = np.zeros((len(frame), len(columns)))
    for position, (column, hierarchy) in enumerate(quasi_identifiers.items()):
        raw = _with_missing_marker(generalize_column(frame[column], hierarchy, 0))
        grouped = _with_missing_marker(generalize_column(frame[column], hierarchy, levels[column]))
        distinct = raw.nunique()
        if distinct > 1:
            covered = raw.groupby(grouped).transform("nunique").to_numpy(dtype=np.float64)
            cell_loss[:, position] = (covered - 1) / (distinct - 1)
        generalized[column] = grouped
    suppressed = ~_kept_rows(generalized, columns, k=k, sensitive_codes=sensitive_codes, l=l)
    cell_loss[suppressed, :] = 1.0
    return float(cell_loss.mean())


def _with_missing_marker(values: pd.Series) -> pd.Series:
    # groupby and nunique drop NaN; a sentinel no hierarchy produces keeps missing a value.
    return values.astype(object).where(values.notna(), "\x00missing")


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise ConfigError(
            f"quasi-identifier columns {absent} are not in the table; fix "
            "anonymization.quasi_identifiers or the input data"
        )


def _sensitive_codes(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str],
    *,
    sensitive: str | None,
    l: int,  # noqa: E741 - the l of l-diversity
) -> tuple[IntArray, int] | None:
    """Check the l-diversity settings; return the sensitive column's codes, if one is given.

    Returns:
        Per row the code of its sensitive value (missing is one code of its own) and the
        number of codes, or None without a sensitive column.

    Raises:
        ConfigError: when `l` is below 1, or above 1 without a sensitive column; when
            the sensitive column is missing or is a quasi-identifier; when the table
            holds fewer than `l` distinct sensitive values, so no class could have them.
    """
    if l < 1:
        raise ConfigError(f"anonymization.l_diversity.l must be at least 1, got {l}")
    if sensitive is None:
        if l > 1:
            raise ConfigError(
                f"l-diversity with l={l} needs a sensitive column; set "
                "anonymization.l_diversity.sensitive (or data.target, its default)"
            )
        return None
    if sensitive not in frame.columns:
        raise ConfigError(
            f"sensitive column {sensitive!r} (anonymization.l_diversity.sensitive) is not "
            "in the table; name a column of the table, or check that no declared action "
            "in anonymization.columns drops it"
        )
    if sensitive in quasi_identifiers:
        raise ConfigError(
            f"sensitive column {sensitive!r} (anonymization.l_diversity.sensitive) is also "
            "a quasi-identifier; generalizing it would change the values whose diversity "
            "is measured, so remove it from one of anonymization.quasi_identifiers and "
            "anonymization.l_diversity.sensitive"
        )
    codes, values = _dense_codes(frame[sensitive])
    if len(frame) and l > values:
        raise ConfigError(
            f"anonymization.l_diversity.l is {l} but the sensitive column {sensitive!r} "
            f"holds only {values} distinct values (missing counts as one), so no class "
            f"can hold {l}; lower anonymization.l_diversity.l to at most {values}"
        )
    return codes, values


def _kept_rows(
    frame: pd.DataFrame,
    columns: Sequence[str],
    *,
    k: int,
    sensitive_codes: tuple[IntArray, int] | None,
    l: int,  # noqa: E741 - the l of l-diversity
) -> npt.NDArray[np.bool_]:
    """Return which rows survive suppression: class of >= `k` rows, >= `l` sensitive values."""
    if not columns:
        classes: IntArray = np.zeros(len(frame), dtype=np.int64)
        slots = 1
    else:
        key, space = _combine(_dense_codes(frame[column]) for column in columns)
        classes, slots = _densify(key, space)
    keep = np.bincount(classes, minlength=slots)[classes] >= k
    if sensitive_codes is not None and len(frame):
        _, _, distinct = _pair_classes(classes, slots, *sensitive_codes)
        keep &= distinct[classes] >= l
    return keep


def _class_sizes(frame: pd.DataFrame, columns: Sequence[str]) -> IntArray:
    """Return, for each row, the size of its equivalence class over `columns`."""
    if not columns:
        return np.full(len(frame), len(frame), dtype=np.int64)
    key, space = _combine(_dense_codes(frame[column]) for column in columns)
    dense, _ = _densify(key, space)
    return np.bincount(dense)[dense]


def _pair_classes(
    classes: IntArray, slots: int, sensitive: IntArray, values: int
) -> tuple[IntArray, int, IntArray]:
    """Split classes by sensitive value and count the distinct values of each class.

    Args:
        classes: Class code (0..`slots` - 1) of each entry (row or cached member).
        slots: Number of class codes.
        sensitive: Sensitive-value code (0..`values` - 1) of each entry.
        values: Number of sensitive-value codes.

    Returns:
        The (class, sensitive value) pair code of each entry, the number of pair codes,
        and per class code the number of distinct sensitive values among its entries.
    """
    key, space = _combine(((classes, slots), (sensitive, values)))
    pairs, pair_slots = _densify(key, space)
    present = np.zeros(pair_slots, dtype=bool)
    present[pairs] = True
    class_of_pair = np.zeros(pair_slots, dtype=np.int64)
    class_of_pair[pairs] = classes
    distinct = np.bincount(class_of_pair[present], minlength=slots).astype(np.int64)
    return pairs, pair_slots, distinct


def _dense_codes(values: pd.Series | ObjectArray) -> tuple[IntArray, int]:
    """Factorize values to codes 0..n-1, missing (any NA flavour) as one code of its own."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = codes.astype(np.int64, copy=False)
    cardinality = len(uniques)
    if (codes < 0).any():
        codes = np.where(codes < 0, cardinality, codes)
        cardinality += 1
    return codes, cardinality


def _combine(parts: Iterable[tuple[CodeArray, int]]) -> tuple[IntArray, int]:
    """Combine code arrays into one mixed-radix int64 key and the size of its space."""
    key: IntArray | None = None
    space = 1
    for codes, cardinality in parts:
        if key is None:
            # A copy: the in-place arithmetic below must not touch the cached codes.
            key, space = codes.astype(np.int64, copy=True), cardinality
            continue
        if space * cardinality >= _KEY_SPACE_LIMIT:
            key, space = _densify(key, space)
        np.multiply(key, cardinality, out=key)
        np.add(key, codes, out=key)
        space *= cardinality
    if key is None:
        raise ValueError("no code arrays to combine")
    return key, space


def _densify(key: IntArray, space: int) -> tuple[IntArray, int]:
    """Return `key` renumbered to 0..n-1 (unchanged when it is dense enough already)."""
    if space <= _DENSE_KEY_FACTOR * max(len(key), 1):
        return key, space
    codes, uniques = pd.factorize(key)
    return codes.astype(np.int64, copy=False), len(uniques)


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class _QiCodes:
    """One QI's precomputed codes and losses at every level."""

    codes: list[npt.NDArray[np.int32]]  # per level: class code of each row
    cardinality: list[int]  # per level: number of codes
    cell_loss: list[FloatArray]  # per level: loss of a cell, by code
    attribute_loss: list[float]  # per level: mean cell loss over rows, nothing suppressed


@dataclass(frozen=True)
class _Evaluation:
    suppressed: int
    k_achieved: int
    loss: float  # exact when acceptable and it could win, else its lower bound (the bound)
    l_achieved: int  # measured with a sensitive column, else 1 when any row is kept


@dataclass(frozen=True)
class _Sensitive:
    """The sensitive column as codes, and the `l` its classes must reach."""

    codes: IntArray  # per row: code of its value, missing as one code of its own
    values: int  # number of codes
    l_target: int


@dataclass(frozen=True)
class _Classes:
    """The units of a counted node: one member (a finest unit) and the row count of each.

    A unit is a class, or with a sensitive column a (class, sensitive value) pair.
    `key` encodes each member's codes at `levels` in mixed radix (`strides`, `space`),
    so a generalization's key is this one plus a term per QI it raises; None when the
    radix would overflow.
    """

    members: IntArray
    weights: FloatArray
    levels: tuple[int, ...]
    key: IntArray | None
    strides: tuple[int, ...]
    space: int


def _precompute(column: str, hierarchy: Hierarchy, values: pd.Series) -> _QiCodes:
    top = hierarchy_height(hierarchy) - 1
    raw_codes, uniques = pd.factorize(values, use_na_sentinel=True)
    n_values = len(uniques)
    has_missing = bool((raw_codes < 0).any())
    raw_codes = np.where(raw_codes < 0, n_values, raw_codes)
    value_counts = np.bincount(raw_codes, minlength=n_values + has_missing).astype(np.float64)

    # Work on the (few) distinct values, then index by the per-row codes.
    value_codes: list[IntArray] = []
    cardinality: list[int] = []
    for codes, labels in _level_codes(column, hierarchy, uniques, values.dtype, top - 1):
        # Missing is a class of its own below the top: one more code.
        value_codes.append(np.append(codes, len(labels)) if has_missing else codes)
        cardinality.append(len(labels) + has_missing)
    value_codes.append(np.zeros(n_values + has_missing, dtype=np.int64))
    cardinality.append(1)

    # Distinct raw values are counted as level-0 labels, so 1 and "1" are one value.
    base, distinct = value_codes[0], cardinality[0]
    total_rows = max(int(value_counts.sum()), 1)
    row_codes, cell_loss, attribute_loss = [], [], []
    for codes, count in zip(value_codes, cardinality, strict=True):
        # Every level is a function of level 0, so each raw value has one group here.
        group_of_raw = np.zeros(distinct, dtype=np.int64)
        group_of_raw[base] = codes
        covered = np.bincount(group_of_raw, minlength=count)
        loss = (covered - 1) / (distinct - 1) if distinct > 1 else np.zeros(count)
        row_codes.append(codes[raw_codes].astype(np.int32))
        cell_loss.append(loss.astype(np.float64))
        # Multiply-and-sum, not np.dot: BLAS threads stall on a busy machine for no gain here.
        attribute_loss.append(float((loss[codes] * value_counts).sum()) / total_rows)
    return _QiCodes(row_codes, cardinality, cell_loss, attribute_loss)


class _Search:
    """Best-first search of the lattice in ascending lower-bound order.

    Every count runs on units, never on rows: the finest classes (every QI raw, with a
    sensitive column the (class, sensitive value) pairs), computed once with their row
    counts, or the units of an evaluated specialization that compresses them further.
    What a count proves is written into whole boxes of the lattice (a node's
    specializations are the box below it, its generalizations the box above), through
    views of the lattice arrays shaped like the lattice.
    """

    def __init__(
        self,
        qis: list[_QiCodes],
        *,
        rows: int,
        k: int,
        budget: int,
        sensitive: _Sensitive | None = None,
    ) -> None:
        self.qis = qis
        self.rows = rows
        self.k = k
        self.budget = budget
        self.sensitive = sensitive
        self.heights = [len(qi.codes) for qi in qis]
        self.strides_list = [math.prod(self.heights[j + 1 :]) for j in range(len(qis))]
        size = math.prod(self.heights)
        bound = np.zeros(self.heights)
        for j, qi in enumerate(qis):
            shape = [1] * len(qis)
            shape[j] = self.heights[j]
            bound += np.asarray(qi.attribute_loss).reshape(shape)
        self.bound = (bound / len(qis)).reshape(size)
        self.failing = np.zeros(size, dtype=bool)
        self.passing = np.zeros(size, dtype=bool)
        self.unsuppressed = np.zeros(size, dtype=bool)
        # A lower bound on the loss suppression adds (see `_raise_floor`), per node.
        self.extra = np.zeros(size)
        self.evaluations: dict[int, _Evaluation] = {}
        self._exact: set[int] = set()  # evaluated nodes whose loss is exact
        self.best: tuple[float, int, tuple[int, ...]] | None = None
        self.finest = self._finest_units()
        # Units of evaluated nodes that compress the finest ones: a generalization of
        # one is counted from its members (weighted) instead ("roll-up"). Nodes are
        # ranked by units cached, what a roll-up from them costs.
        self._cached: dict[int, _Classes] = {}
        self._cached_nodes = np.empty((0, len(qis)), dtype=np.int16)
        self._cached_units = np.empty(0, dtype=np.int64)
        self._cached_keys: list[int] = []
        self._cache_room = _CACHE_ROWS_FACTOR * rows
        self._step_maps: dict[tuple[int, int, int], IntArray] = {}

    def _finest_units(self) -> _Units:
        """Count the finest units once: one member row and the row count of each."""
        parts = [(qi.codes[0], qi.cardinality[0]) for qi in self.qis]
        if self.sensitive is not None:
            parts.append((self.sensitive.codes, self.sensitive.values))
        key, space = _combine(parts)
        dense, slots = _densify(key, space)
        counts = np.bincount(dense, minlength=slots)
        # Scattering the row numbers backwards leaves each unit its first row.
        first = np.empty(slots, dtype=np.int64)
        first[dense[::-1]] = np.arange(self.rows - 1, -1, -1, dtype=np.int64)
        present = counts > 0
        first, weights = first[present], counts[present].astype(np.float64)
        codes = [[level[first] for level in qi.codes] for qi in self.qis]
        sensitive = None if self.sensitive is None else self.sensitive.codes[first]
        levels = (0,) * len(self.qis)
        members = np.arange(len(first), dtype=np.int64)
        base = self._keyed(members, weights, levels, codes)
        return _Units(codes, sensitive, base)

    def _keyed(
        self,
        members: IntArray,
        weights: FloatArray,
        levels: tuple[int, ...],
        codes: list[list[npt.NDArray[np.int32]]] | None = None,
    ) -> _Classes:
        """Return units with their mixed-radix key at `levels` (None if it would overflow)."""
        codes = self.finest.codes if codes is None else codes
        sizes = [qi.cardinality[level] for qi, level in zip(self.qis, levels, strict=True)]
        if math.prod(sizes) >= _KEY_SPACE_LIMIT:
            return _Classes(members, weights, levels, None, (), 0)
        strides = tuple(math.prod(sizes[j + 1 :]) for j in range(len(sizes)))
        key = np.zeros(len(members), dtype=np.int64)
        for j, (level, stride) in enumerate(zip(levels, strides, strict=True)):
            if sizes[j] > 1:
                key += codes[j][level][members].astype(np.int64) * stride
        return _Classes(members, weights, levels, key, strides, math.prod(sizes))

    def _step_map(self, j: int, low: int, high: int) -> IntArray:
        """Map QI `j`'s codes at level `low` to its codes at level `high` (memoized)."""
        cached = self._step_maps.get((j, low, high))
        if cached is None:
            codes = self.finest.codes[j]
            cached = np.zeros(self.qis[j].cardinality[low], dtype=np.int64)
            cached[codes[low]] = codes[high]
            self._step_maps[j, low, high] = cached
        return cached

    def _index(self, node: tuple[int, ...]) -> int:
        return sum(level * stride for level, stride in zip(node, self.strides_list, strict=True))

    def _below(self, array: npt.NDArray[Any], node: tuple[int, ...]) -> npt.NDArray[Any]:
        """View the box of `array` holding the node's specializations (itself included)."""
        return array.reshape(self.heights)[tuple(slice(0, level + 1) for level in node)]

    def _above(self, array: npt.NDArray[Any], node: tuple[int, ...]) -> npt.NDArray[Any]:
        """View the box of `array` holding the node's generalizations (itself included)."""
        return array.reshape(self.heights)[tuple(slice(level, None) for level in node)]

    def run(self) -> tuple[int, ...] | None:
        """Return the acceptable node of least loss, or None when there is none."""
        nodes = np.indices(self.heights, dtype=np.int16).reshape(len(self.heights), -1)
        heights = nodes.sum(axis=0, dtype=np.int64)
        order = np.lexsort([*reversed(nodes), heights, np.round(self.bound, 12)])
        for index in order.tolist():
            if self.best is not None and self.bound[index] > self.best[0] + _TOLERANCE:
                break
            if self.failing[index] or not self._may_win(index):
                continue
            node = self._node(index)
            if self._climb(node, evaluated=False):
                continue
            if not self._acceptable(node, need_loss=True):
                self._climb(node, evaluated=True)
        return None if self.best is None else self.best[2]

    def _node(self, index: int) -> tuple[int, ...]:
        node = []
        for stride in self.strides_list:
            level, index = divmod(index, stride)
            node.append(level)
        return tuple(node)

    def _may_win(self, index: int) -> bool:
        """Whether the node's loss could still beat or tie the best found so far."""
        if self.best is None:
            return True
        return self.bound[index] + self.extra[index] <= self.best[0] + _TOLERANCE

    def evaluate(self, node: tuple[int, ...], *, exact: bool = True) -> _Evaluation:
        """Count the node's classes and measure all of it: k, l, suppression, loss.

        Without `exact`, an acceptable node whose bound cannot beat the best found so
        far keeps its bound as its loss (a lower bound): the loss suppression adds costs
        a pass over the suppressed rows, and such a node is never offered. Asked again
        with `exact`, it is counted again.
        """
        index = self._index(node)
        known = self.evaluations.get(index)
        if known is not None and (not exact or index in self._exact):
            return known
        count = self._count(node)
        kept = count.counts >= self.k
        if self.sensitive is not None:
            kept &= count.distinct >= self.sensitive.l_target
        k_achieved = int(count.counts[kept].min()) if kept.any() else 0
        if self.sensitive is None:
            l_achieved = int(bool(kept.any()))
        else:
            l_achieved = int(count.distinct[kept].min()) if kept.any() else 0
        loss = float(self.bound[index])
        passing = count.suppressed <= self.budget
        if count.suppressed == 0 or not passing or exact or self._may_win(index):
            self._exact.add(index)
            if passing and count.suppressed:
                loss += self._extra(node, count)
        evaluation = _Evaluation(count.suppressed, k_achieved, loss, l_achieved)
        self.evaluations[index] = evaluation
        if known is None:
            self._record(node, count.suppressed)
        if passing and index in self._exact:
            self._raise_floor(node, loss - float(self.bound[index]))
            self._offer(node, loss)
        return evaluation

    def _count(self, node: tuple[int, ...]) -> _Count:
        """Count the node's classes (and units) from its cheapest cached specialization."""
        base = self._base_for(node)
        finest = self.finest
        members = base.members
        raised = [j for j, level in enumerate(node) if level != base.levels[j]]
        if base.key is not None and len(raised) <= _RAISED_FOR_DELTA:
            # Raising QI j swaps its digit of the base's key for its coarser code; the
            # key stays one-to-one on the node's classes, in the base's (larger) space.
            key = base.key.copy()
            for j in raised:
                old = finest.codes[j][base.levels[j]][members]
                new = self._step_map(j, base.levels[j], node[j])[old]
                key += (new - old) * base.strides[j]
            space = base.space
            radix: IntArray | None = key
        else:
            codes = [finest.codes[j][level][members] for j, level in enumerate(node)]
            sizes = [qi.cardinality[level] for qi, level in zip(self.qis, node, strict=True)]
            key, space = _combine(zip(codes, sizes, strict=True))
            radix = None  # in the node's own radix, or renumbered: not the base's
        dense, slots = _densify(key, space)
        counts = np.bincount(dense, weights=base.weights, minlength=slots)
        if self.sensitive is None:
            small = counts < self.k
            units, unit_counts, distinct = dense, counts, None
        else:
            units, unit_slots, distinct = _pair_classes(
                dense, slots, finest.sensitive[members], self.sensitive.values
            )
            unit_counts = np.bincount(units, weights=base.weights, minlength=unit_slots)
            small = (counts < self.k) | (distinct < self.sensitive.l_target)
        # Empty slots count 0 rows, so summing them in changes nothing.
        suppressed = int(counts[small].sum())
        count = _Count(suppressed, counts, distinct, small, dense, base)
        self._remember_units(node, base, radix, units, unit_counts)
        return count

    def _extra(self, node: tuple[int, ...], count: _Count) -> float:
        """Return the loss suppression adds: 1 per QI where a suppressed row had its cell's."""
        in_small = count.small[count.dense]
        weights = count.base.weights[in_small]
        members = count.base.members[in_small]
        gained = sum(
            float(((1.0 - qi.cell_loss[level][codes[level][members]]) * weights).sum())
            for qi, level, codes in zip(self.qis, node, self.finest.codes, strict=True)
        )
        return gained / (self.rows * len(self.qis))

    def _base_for(self, node: tuple[int, ...]) -> _Classes:
        """Return the cached specialization of `node` with the fewest units."""
        if self._cached_keys:
            below = (self._cached_nodes <= np.asarray(node, dtype=np.int16)).all(axis=1)
            position = int(np.argmin(np.where(below, self._cached_units, self.rows + 1)))
            if below[position]:
                return self._cached[self._cached_keys[position]]
        return self.finest.classes

    def _remember_units(
        self,
        node: tuple[int, ...],
        base: _Classes,
        key: IntArray | None,
        units: IntArray,
        counts: FloatArray,
    ) -> None:
        """Cache one member and the row count of each unit (class or pair) of a node."""
        index = self._index(node)
        if index in self._cached:
            return
        present = np.flatnonzero(counts)
        cached = len(present)
        # Only a real compression pays for its memory, and the cache has a fixed budget.
        if cached * 2 > len(units) or cached > self._cache_room:
            return
        position = np.empty(len(counts), dtype=np.int64)
        position[units] = np.arange(len(units), dtype=np.int64)
        position = position[present]
        members, weights = base.members[position], counts[present]
        own_space = math.prod(
            qi.cardinality[level] for qi, level in zip(self.qis, node, strict=True)
        )
        if key is not None and (
            base.space <= _DENSE_KEY_FACTOR * cached or own_space > _DENSE_KEY_FACTOR * cached
        ):
            classes = _Classes(members, weights, node, key[position], base.strides, base.space)
        else:
            # The inherited key is sparse and the node's own radix is not: re-keyed, a
            # roll-up from here counts with a plain bincount instead of hashing keys.
            classes = self._keyed(members, weights, node)
        self._cached[index] = classes
        self._cached_keys.append(index)
        self._cached_nodes = np.vstack([self._cached_nodes, np.asarray([node], dtype=np.int16)])
        self._cached_units = np.append(self._cached_units, cached)
        self._cache_room -= cached

    def _record(self, node: tuple[int, ...], suppressed: int) -> None:
        if suppressed > self.budget:
            # Generalizing merges classes, so suppression only shrinks going up:
            # every specialization of a failing node fails too.
            self._below(self.failing, node)[...] = True
            return
        self._above(self.passing, node)[...] = True
        if suppressed == 0:
            # ...and a node with nothing suppressed has nothing suppressed above it,
            # so there the loss is exactly the bound, no data pass needed.
            self._above(self.unsuppressed, node)[...] = True

    def _raise_floor(self, node: tuple[int, ...], extra: float) -> None:
        """Record that every specialization of `node` adds at least `extra` by suppression.

        Going down, the suppressed rows only grow (a superset) and each keeps no more of
        its cells than above, so the loss suppression adds never shrinks.
        """
        if extra > 0:
            view = self._below(self.extra, node)
            np.maximum(view, extra, out=view)

    def _offer(self, node: tuple[int, ...], loss: float) -> None:
        candidate = (loss, sum(node), node)
        if self.best is None or _better(candidate, self.best):
            self.best = candidate

    def _acceptable(self, node: tuple[int, ...], *, need_loss: bool) -> bool:
        """Return whether the node is acceptable, from what is known where possible.

        With `need_loss` an acceptable node's exact loss is offered as a candidate.
        """
        index = self._index(node)
        if self.failing[index]:
            return False
        if self.unsuppressed[index]:
            self._offer(node, float(self.bound[index]))
            return True
        if self.passing[index] and not need_loss:
            return True
        return self.evaluate(node, exact=need_loss).suppressed <= self.budget

    def _climb(self, node: tuple[int, ...], *, evaluated: bool) -> bool:
        """Raise a node one level at a time while that proves more nodes failing.

        Each step tries the one-level generalizations in order of how many still-open
        nodes (unknown, could still win) they would add to the failing set, and stops
        when no failing step adds any: climbing further costs data passes and proves
        nothing the search still needs. A node not yet `evaluated` is climbed from
        before it is counted: a failing generalization proves it failing too, and the
        nodes low in the lattice, which hold the most classes, are rarely counted.

        Returns:
            Whether the climb proved `node` failing.
        """
        current = node
        open_nodes = ~self.failing & ~self.passing
        if self.best is not None:
            open_nodes &= self.bound + self.extra <= self.best[0] + _TOLERANCE
        covered = int(self._below(open_nodes, current).sum())
        while True:
            steps = []
            for j in range(len(current)):
                if current[j] + 1 < self.heights[j]:
                    step = (*current[:j], current[j] + 1, *current[j + 1 :])
                    gain = int(self._below(open_nodes, step).sum()) - covered
                    if gain > 0:
                        steps.append((-gain, j, step))
            for negative_gain, _, step in sorted(steps):
                if not self._acceptable(step, need_loss=False):
                    current, covered = step, covered - negative_gain
                    break
            else:
                return evaluated or current != node


@dataclass(frozen=True)
class _Units:
    """The finest units, counted once: per QI and level the code of each, their rows."""

    codes: list[list[npt.NDArray[np.int32]]]  # per QI, per level: code of each unit
    sensitive: IntArray | None  # per unit: its sensitive value's code
    classes: _Classes  # member = the unit itself, weight = its rows


@dataclass(frozen=True)
class _Count:
    """One node's classes, counted: what `evaluate` and the suppression loss read."""

    suppressed: int
    counts: FloatArray  # rows per class slot (0 for an empty slot)
    distinct: IntArray | None  # sensitive values per class slot, with a sensitive column
    small: npt.NDArray[np.bool_]  # per class slot: suppressed
    dense: IntArray  # per base member: its class slot
    base: _Classes  # the units counted


def _better(
    candidate: tuple[float, int, tuple[int, ...]], incumbent: tuple[float, int, tuple[int, ...]]
) -> bool:
    if candidate[0] < incumbent[0] - _TOLERANCE:
        return True
    if candidate[0] > incumbent[0] + _TOLERANCE:
        return False
    return candidate[1:] < incumbent[1:]


def find_k_anonymous_generalization(
    frame: pd.DataFrame,
    *,
    quasi_identifiers: Mapping[str, Hierarchy],
    k: int,
    max_suppression: float,
    sensitive: str | None = None,
    l: int = 1,  # noqa: E741 - the l of l-diversity
    levels: Mapping[str, int] | None = None,
) -> KAnonymityResult:
    """Find the full-domain generalization of least information loss that is k-anonymous.

    With `levels` the node is given, not searched (federated silos share one encoding,
    at levels no silo finds too fine): it is evaluated as the search would, so a node
    that is not k-anonymous within the suppression budget reports its real `k_achieved`.

    With `l` > 1 every released class must also be distinct l-diverse: hold at least
    `l` distinct values of the `sensitive` column, missing counting as one value.

    Args:
        frame: The raw table.
        quasi_identifiers: QI columns and their hierarchies, in tie-breaking order.
        k: Every released class must hold at least this many rows.
        max_suppression: Largest share of rows that may be suppressed (removed)
            because their class is smaller than `k` or not l-diverse.
        sensitive: Column whose values each class must hold `l` of; not a QI. Given
            with `l` 1, the search is unchanged and `l_achieved` is still measured.
        l: Every released class must hold at least this many distinct `sensitive`
            values; 1 (the default) asks nothing.

    Returns:
        The chosen levels and their cost. When no node is acceptable (fewer than `k`
        rows in all, beyond the suppression budget) the top node is returned with its
        real, too small `k_achieved` and nothing suppressed, so the k gate fails it.
        An empty table also returns the top node, with `k_achieved` 0.

    Raises:
        ConfigError: when `k` or `max_suppression` is out of range, a QI column is
            missing, an interval hierarchy meets a non-numeric column, or the lattice
            is too large to search; when `l` is below 1, or above 1 without a sensitive
            column, the sensitive column is missing or a QI, or the table holds fewer
            than `l` distinct sensitive values.
    """
    if k < 1:
        raise ConfigError(f"anonymization.k must be at least 1, got {k}")
    if not 0.0 <= max_suppression <= 1.0:
        raise ConfigError(
            f"anonymization.max_suppression must lie in [0, 1], got {max_suppression}"
        )
    columns = list(quasi_identifiers)
    _require_columns(frame, columns)
    sensitive_codes = _sensitive_codes(frame, columns, sensitive=sensitive, l=l)
    for column, hierarchy in quasi_identifiers.items():
        _check_hierarchy_fits(column, hierarchy, frame[column])
    heights = [hierarchy_height(hierarchy) for hierarchy in quasi_identifiers.values()]
    if math.prod(heights) > _MAX_LATTICE_NODES:
        raise ConfigError(
            f"the generalization lattice of {len(columns)} quasi-identifiers has "
            f"{math.prod(heights)} nodes, more than the {_MAX_LATTICE_NODES} searched; "
            "declare fewer quasi-identifiers or fewer levels in anonymization.quasi_identifiers"
        )
    top = tuple(height - 1 for height in heights)
    rows = len(frame)
    # The epsilon keeps e.g. 0.29 * 100 = 28.999... from losing a row of budget.
    budget = math.floor(max_suppression * rows + 1e-9)
    targets = _Targets(k_target=k, l_target=l, sensitive=sensitive)
    if rows == 0:
        return _result(quasi_identifiers, top, targets, _Evaluation(0, 0, 0.0, 0), rows=0)
    # The top node's one class holds every value; _sensitive_codes made sure that is >= l.
    whole_table_l = 1 if sensitive_codes is None else sensitive_codes[1]
    if not columns:
        # One class of every row, nothing to generalize and (by definition) no loss.
        if rows >= k:
            outcome = _Evaluation(0, rows, 0.0, whole_table_l)
        elif rows <= budget:
            outcome = _Evaluation(rows, 0, 0.0, 0)
        else:
            outcome = _Evaluation(0, rows, 0.0, whole_table_l)
        return _result(quasi_identifiers, (), targets, outcome, rows=rows, evaluated=1)

    qis = [
        _precompute(column, hierarchy, frame[column])
        for column, hierarchy in quasi_identifiers.items()
    ]
    search = _Search(
        qis,
        rows=rows,
        k=k,
        budget=budget,
        sensitive=None if sensitive_codes is None else _Sensitive(*sensitive_codes, l_target=l),
    )
    if levels is not None:
        node = tuple(int(levels.get(column, 0)) for column in columns)
        for column, level, height in zip(columns, node, heights, strict=True):
            if not 0 <= level < height:
                raise ConfigError(f"level {level} of quasi-identifier {column!r} is out of range")
        return _result(
            quasi_identifiers, node, targets, search.evaluate(node), rows=rows, evaluated=1
        )
    chosen = search.run()
    if chosen is None:
        # Even the top node fails: its one class of every row is smaller than k and
        # suppressing it would exceed the budget, so report that class as it is.
        honest = _Evaluation(0, rows, float(search.bound[-1]), whole_table_l)
        return _result(
            quasi_identifiers, top, targets, honest, rows=rows, evaluated=len(search.evaluations)
        )
    evaluation = search.evaluate(chosen)
    return _result(
        quasi_identifiers, chosen, targets, evaluation, rows=rows, evaluated=len(search.evaluations)
    )


@dataclass(frozen=True)
class _Targets:
    """What the search was asked for, echoed in the result."""

    k_target: int
    l_target: int
    sensitive: str | None


def _result(
    quasi_identifiers: Mapping[str, Hierarchy],
    node: tuple[int, ...],
    targets: _Targets,
    evaluation: _Evaluation,
    *,
    rows: int,
    evaluated: int = 0,
) -> KAnonymityResult:
    levels = dict(zip(quasi_identifiers, node, strict=True))
    return KAnonymityResult(
        levels=levels,
        level_labels={
            column: describe_level(hierarchy, levels[column])
            for column, hierarchy in quasi_identifiers.items()
        },
        k_target=targets.k_target,
        k_achieved=evaluation.k_achieved,
        suppressed_rows=evaluation.suppressed,
        total_rows=rows,
        information_loss=min(max(evaluation.loss, 0.0), 1.0),
        nodes_evaluated=evaluated,
        l_target=targets.l_target,
        l_achieved=evaluation.l_achieved,
        sensitive=targets.sensitive,
    )
