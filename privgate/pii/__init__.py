"""Identifiers: the Presidio scan and redaction engine (`engine`), privgate's own
recognizers and name lexicon (`recognizers`, `names`), column treatments and
k-anonymity (`anonymize`, `kanon`).

Before the regroup, `privgate.pii` was the engine's module. Its names are still reached
here, lazily: importing `privgate.pii.kanon` must not load Presidio and spaCy.
"""

from __future__ import annotations

import importlib
from typing import Any

# The public names of the flat `privgate.pii` module, as they were when it moved.
_ENGINE_NAMES = frozenset(
    {
        "ColumnFinding",
        "ColumnKind",
        "NER_ENTITIES",
        "NerScope",
        "PiiEngine",
        "ScanReport",
        "Span",
        "ZERO_WIDTH",
        "count_findings",
        "get_engine",
        "name_windows",
        "normalize_for_detection",
        "redact_texts",
        "scan_column",
        "scan_table",
    }
)


def __getattr__(name: str) -> Any:
    if name in _ENGINE_NAMES:
        return getattr(importlib.import_module("privgate.pii.engine"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
