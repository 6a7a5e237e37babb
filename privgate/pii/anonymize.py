"""Turn a raw table into one fit to train on, by policy.

Every column gets exactly one treatment, decided in this order: the config's declared
action; generalization when it is a declared quasi-identifier; `keep` for the target;
otherwise what the PII scan found (free text is redacted, an identifier column gets the
action configured for its entity, a clean column is kept).

Treatments: drop; mask (every letter and digit becomes `*`, separators stay);
pseudonymize (keyed HMAC-SHA256, so a token cannot be reversed by enumerating SSNs or
phone numbers without the key, yet the same person maps to the same token across runs);
redact (Presidio spans in free text become `<ENTITY_TYPE>`); generalize (full-domain
generalization to k-anonymity, suppressing what cannot be generalized); keep.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from privgate.config import AnonymizationConfig, Hierarchy, PiiConfig
from privgate.errors import ConfigError
from privgate.home import create_private_file, is_private, privgate_home
from privgate.pii.engine import PiiEngine, ScanReport, redact_texts
from privgate.pii.kanon import (
    KAnonymityResult,
    apply_generalization,
    find_k_anonymous_generalization,
)

Action = Literal["drop", "mask", "pseudonymize", "redact", "generalize", "keep"]
# What pseudonymize and mask write: a cell matching one of these holds no identifier.
_TOKEN_OR_MASK = r"tok_[0-9a-f]{20}|[^\w]*"
# Entities whose formatting varies (spaces, dashes) but whose digits name the person.
_DIGIT_ENTITIES = frozenset({"US_SSN", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE"})


@dataclass(frozen=True)
class ColumnTreatment:
    """The treatment of one column and why it was chosen."""

    column: str
    action: Action
    source: Literal["declared", "quasi_identifier", "target", "scan"]
    kind: str
    entity: str | None = None


@dataclass(frozen=True)
class AnonymizationReport:
    """What anonymization did, in aggregates."""

    treatments: tuple[ColumnTreatment, ...]
    kanon: KAnonymityResult
    rows_in: int
    rows_out: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary (no values)."""
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "treatments": [asdict(t) for t in self.treatments],
            "k_anonymity": asdict(self.kanon),
        }


def plan_treatments(
    columns: Collection[str],
    *,
    scan: ScanReport,
    anonymization: AnonymizationConfig,
    pii: PiiConfig,
    target: str,
) -> tuple[ColumnTreatment, ...]:
    """Decide one treatment per column (declared first, then the scan)."""
    plan = []
    for name in columns:
        finding = scan.column(name)
        if name in anonymization.columns:
            treatment = ColumnTreatment(
                name, anonymization.columns[name], "declared", finding.kind, finding.dominant_entity
            )
        elif name in anonymization.quasi_identifiers:
            treatment = ColumnTreatment(name, "generalize", "quasi_identifier", finding.kind)
        elif name == target:
            treatment = ColumnTreatment(name, "keep", "target", finding.kind)
        elif finding.kind == "free_text":
            treatment = ColumnTreatment(name, "redact", "scan", finding.kind)
        elif finding.kind in ("direct_identifier", "quasi_identifier"):
            # An identifier nobody declared: the entity's action, and drop when the
            # policy names none (failing safe loses a column, never a person).
            entity = finding.dominant_entity
            action = pii.actions.get(entity, "drop") if entity else "drop"
            treatment = ColumnTreatment(name, action, "scan", finding.kind, entity)
        else:
            treatment = ColumnTreatment(name, "keep", "scan", finding.kind)
        plan.append(treatment)
    return tuple(plan)


def load_pseudonym_key(env_var: str) -> bytes:
    """Return the HMAC key: from `env_var`, else from a 0600 key file under PRIVGATE_HOME.

    The file is created on first use with 32 random bytes; keep it (or set the variable)
    to map the same person to the same token across runs.
    """
    value = os.environ.get(env_var)
    if value:
        if len(value) < 16:
            raise ConfigError(
                f"the pseudonymization key in ${env_var} has {len(value)} characters; "
                "use at least 16 (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return value.encode()
    path = privgate_home() / "keys" / "pseudonym.key"
    if not path.exists():
        create_private_file(path, secrets.token_bytes(32))
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    if not is_private(path):
        raise ConfigError(
            f"pseudonymization key file {path} is readable by others; run `chmod 600 {path}`"
        )
    key = path.read_bytes()
    if len(key) < 16:
        raise ConfigError(f"pseudonymization key file {path} is shorter than 16 bytes")
    return key


def _normalize(value: str, entity: str | None) -> str:
    text = unicodedata.normalize("NFKC", value).strip().casefold()
    if entity in _DIGIT_ENTITIES:
        digits = "".join(ch for ch in text if ch.isalnum())
        return digits or text
    return text


def _normalize_all(values: pd.Series, entity: str | None) -> pd.Series:
    """`_normalize` on every value, vectorized (the same strings, value for value)."""
    text = values.astype(object)
    wide = ~text.str.isascii()
    if wide.any():
        text = text.copy()
        text[wide] = text[wide].map(lambda v: unicodedata.normalize("NFKC", v))
    text = text.str.strip().str.casefold()
    if entity in _DIGIT_ENTITIES:
        # `[\W_]` is exactly what str.isalnum() rejects.
        kept = text.str.replace(r"[\W_]+", "", regex=True)
        text = kept.where(kept != "", text)
    return text


class HmacSha256:
    """HMAC-SHA256 (RFC 2104) under one key, for millions of short messages.

    Equal to `hmac.digest(key, message, "sha256")`; the keyed inner and outer SHA-256
    states are computed once and copied per message, which is about three times faster
    than building an `hmac` object per value.
    """

    _BLOCK = 64  # SHA-256's block size in bytes

    def __init__(self, key: bytes) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha256(key).digest()
        block = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def hexdigest(self, message: bytes) -> str:
        """Return HMAC-SHA256(key, message) in hex."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def pseudonymize(column: pd.Series, *, key: bytes, entity: str | None) -> pd.Series:
    """Replace each value with `tok_` + 80 bits of HMAC-SHA256(key, normalized value)."""
    present = column.notna()
    codes, values = pd.factorize(column[present].astype(str))
    mac = HmacSha256(key)
    normalized = _normalize_all(pd.Series(values, dtype=object), entity)
    tokens = np.array(
        ["tok_" + mac.hexdigest(value.encode())[:20] for value in normalized.tolist()],
        dtype=object,
    )
    out = column.astype(object).copy()
    out[present] = tokens[codes]
    return out


def mask(column: pd.Series) -> pd.Series:
    """Replace every letter and digit with `*`, keeping separators (format only)."""
    out = column.astype(object).copy()
    present = out.notna()
    out[present] = column[present].astype(str).str.replace(r"\w", "*", regex=True)
    return out


def is_token_or_mask(column: pd.Series) -> bool:
    """Return True when every cell is a pseudonym token or a mask (checked cell by cell)."""
    cells = column.dropna().astype(str)
    return bool(cells.str.fullmatch(_TOKEN_OR_MASK).all())


def anonymize_table(
    frame: pd.DataFrame,
    *,
    plan: tuple[ColumnTreatment, ...],
    anonymization: AnonymizationConfig,
    engine: PiiEngine,
    redact_entities: Collection[str],
    redact_score_threshold: float | None = None,
    key: bytes,
    target: str | None = None,
    levels: Mapping[str, int] | None = None,
) -> tuple[pd.DataFrame, AnonymizationReport]:
    """Apply `plan` to `frame`, then generalize quasi-identifiers to k-anonymity.

    `levels` fixes the generalization instead of searching for it (federated silos).

    With `anonymization.l_diversity` set, every released class must also hold `l`
    distinct values of its sensitive column, `target` (the label column) by default.
    """
    out = frame.copy()
    for treatment in plan:
        name = treatment.column
        if treatment.action == "drop":
            out = out.drop(columns=[name])
        elif treatment.action == "mask":
            out[name] = mask(out[name])
        elif treatment.action == "pseudonymize":
            out[name] = pseudonymize(out[name], key=key, entity=treatment.entity)
        elif treatment.action == "redact":
            out[name] = redact_texts(
                out[name],
                engine=engine,
                entities=redact_entities,
                score_threshold=redact_score_threshold,
            )
    quasi = _present_quasi_identifiers(anonymization.quasi_identifiers, frame.columns)
    diversity = anonymization.l_diversity
    # Diversity is measured on the treated table: it is what gets released.
    sensitive = None if diversity is None else diversity.sensitive or target
    l = 1 if diversity is None else diversity.l  # noqa: E741 - the l of l-diversity
    result = find_k_anonymous_generalization(
        out,
        quasi_identifiers=quasi,
        k=anonymization.k,
        max_suppression=anonymization.max_suppression,
        sensitive=sensitive,
        l=l,
        levels=levels,
    )
    out, _ = apply_generalization(
        out,
        quasi_identifiers=quasi,
        levels=result.levels,
        k=anonymization.k,
        sensitive=sensitive,
        l=l,
    )
    report = AnonymizationReport(
        treatments=plan, kanon=result, rows_in=len(frame), rows_out=len(out)
    )
    return out.reset_index(drop=True), report


def _present_quasi_identifiers(
    declared: Mapping[str, Hierarchy], columns: Collection[str]
) -> dict[str, Hierarchy]:
    missing = [name for name in declared if name not in columns]
    if missing:
        raise ConfigError(
            f"quasi-identifier columns {missing} (anonymization.quasi_identifiers) are not "
            "in the input table"
        )
    return dict(declared)
