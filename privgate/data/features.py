"""Encode feature columns into a matrix from declared public domains.

Vocabularies and numeric ranges come from the expectation suite (the reviewed data
contract), never from the private rows: reading a category list or a maximum off the
training data would leak through the encoding without being charged to epsilon.
The spec is plain JSON, shipped with the registered model so serving encodes the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from privgate.config import Hierarchy
from privgate.errors import ConfigError
from privgate.pii.kanon import generalize_column, hierarchy_height

FeatureSpec = dict[str, Any]
_HIERARCHY = TypeAdapter(Hierarchy)


def build_feature_spec(
    *,
    features: Sequence[str],
    domains: Mapping[str, Any],
    quasi_identifiers: Mapping[str, Hierarchy],
    levels: Mapping[str, int],
    log_scaled: Sequence[str] = (),
) -> FeatureSpec:
    """Return the JSON encoding spec for `features`.

    Raises:
        ConfigError: when a feature has no declared domain in the expectation suite.
    """
    entries = []
    for name in features:
        domain = domains.get(name)
        if domain is None:
            raise ConfigError(
                f"feature {name!r} (training.features) has no declared domain: add an "
                "expect_column_values_to_be_in_set or _between expectation for it"
            )
        # The raw record's type, for the served model's signature.
        entry: dict[str, Any] = {"name": name, "input": _input_type(domain)}
        hierarchy = quasi_identifiers.get(name)
        level = levels.get(name, 0)
        if hierarchy is not None and level > 0:
            entry["generalize"] = {"hierarchy": hierarchy.model_dump(mode="json"), "level": level}
            raw = _domain_values(domain)
            generalized = generalize_column(pd.Series(raw, name=name), hierarchy, level)
            entry |= {"kind": "onehot", "vocabulary": sorted(set(generalized.astype(str)))}
        elif domain.kind == "categorical":
            entry |= {"kind": "onehot", "vocabulary": sorted(str(v) for v in domain.values)}
        else:
            entry |= {
                "kind": "numeric",
                "min": float(domain.min_value),
                "max": float(domain.max_value),
                "log": name in log_scaled,
            }
        entries.append(entry)
    return {"version": 1, "features": entries}


def _input_type(domain: Any) -> str:
    # MLflow will not cast int64 to double ("not safe"): a whole-number domain is long.
    if domain.kind != "numeric":
        return "string"
    whole = float(domain.min_value).is_integer() and float(domain.max_value).is_integer()
    return "long" if whole else "double"


def _domain_values(domain: Any) -> list[Any]:
    if domain.kind == "categorical":
        return list(domain.values)
    lo, hi = math.floor(domain.min_value), math.ceil(domain.max_value)
    if hi - lo > 100_000:
        raise ConfigError("a generalized numeric feature needs a range of <= 100,000 integers")
    return list(range(lo, hi + 1))


def input_width(spec: FeatureSpec) -> int:
    """Return the number of encoded columns."""
    return sum(len(f["vocabulary"]) if f["kind"] == "onehot" else 1 for f in spec["features"])


def encode(frame: pd.DataFrame, spec: FeatureSpec, *, generalized: bool) -> np.ndarray:
    """Encode `frame` into a float32 matrix.

    Args:
        frame: rows holding every feature column.
        spec: from `build_feature_spec`.
        generalized: True when quasi-identifiers are already generalized (the anonymized
            training table); False for raw records (evaluation, serving).

    Raises:
        ConfigError: naming a feature column missing from `frame`.
    """
    missing = [f["name"] for f in spec["features"] if f["name"] not in frame.columns]
    if missing:
        raise ConfigError(f"feature columns {missing} are missing from the input")
    blocks = []
    for feature in spec["features"]:
        column = frame[feature["name"]]
        if feature["kind"] == "numeric":
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            lo, hi = feature["min"], feature["max"]
            values = np.clip(np.nan_to_num(values, nan=lo), lo, hi)
            if feature["log"]:
                values, lo, hi = np.log1p(values - lo), 0.0, math.log1p(hi - lo)
            blocks.append(((values - lo) / ((hi - lo) or 1.0))[:, None])
            continue
        if not generalized and "generalize" in feature:
            hierarchy = _HIERARCHY.validate_python(feature["generalize"]["hierarchy"])
            level = min(feature["generalize"]["level"], hierarchy_height(hierarchy) - 1)
            column = generalize_column(column, hierarchy, level)
        vocabulary = feature["vocabulary"]
        # Out-of-vocabulary values encode as all zeros rather than failing a prediction.
        codes = pd.Categorical(column.astype(str), categories=vocabulary).codes
        onehot = np.zeros((len(frame), len(vocabulary)), dtype=np.float64)
        rows = np.flatnonzero(codes >= 0)
        onehot[rows, codes[rows]] = 1.0
        blocks.append(onehot)
    return np.hstack(blocks).astype(np.float32) if blocks else np.zeros((len(frame), 0), np.float32)


def encode_labels(column: pd.Series, positive_labels: Sequence[str]) -> np.ndarray:
    """Return 1.0 where the label is one of `positive_labels`, else 0.0."""
    return column.astype(str).str.strip().isin(list(positive_labels)).to_numpy(np.float32)
