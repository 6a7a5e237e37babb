"""Long texts: analyzed in bounded segments, whole, in time linear in their length.

The 10 MB note that stalled `privgate scan` for more than 300 s came from three
quadratic steps: every capitalized word sliced the whole text before it, merged name
windows handed spaCy the whole text, and every pair of findings was compared. Each is
checked here against the old, quadratic definition on random inputs, then end to end on
real Presidio.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest

from audits.residual_pii import fold
from privgate.pii.engine import (
    _OPENING,
    _SEGMENT_OVERLAP,
    PiiEngine,
    _drop_nested,
    _replace_spans,
    data_like_names,
    name_windows,
    redact_texts,
    segments,
)
from tests.conftest import DIRECT, ENTITIES

WORDS = ["the", "Patient", "Follow-up", "called", "again.", "(", "\n", "Dr", "x" * 30, "ok;"]
REDACT = 0.3  # the pipeline's pii.redact_score_threshold


def _random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).replace(" \n ", "\n")


def _old_preceding(text: str, start: int) -> str:
    return text[:start].rstrip(_OPENING)


@pytest.mark.parametrize("seed", range(5))
def test_when_texts_are_segmented_then_every_short_value_lies_whole_in_one(seed: int) -> None:
    rng = random.Random(seed)
    text = _random_text(rng, 3000) + "y" * 5000 + _random_text(rng, 500)  # a run with no space
    size, overlap = 2000, 200

    parts = segments(text, size=size, overlap=overlap)

    assert parts[0][0] == 0
    assert parts[-1][0] + len(parts[-1][1]) == len(text)
    assert all(text[offset : offset + len(piece)] == piece for offset, piece in parts)
    assert all(len(piece) <= size for _, piece in parts)
    for start in range(0, len(text) - overlap // 2, 37):
        end = start + overlap // 2
        assert any(o <= start and end <= o + len(p) for o, p in parts), (start, end)


def test_when_a_text_is_short_then_it_is_one_segment() -> None:
    assert segments("Maria Lopez called.") == [(0, "Maria Lopez called.")]


@pytest.mark.parametrize("seed", range(5))
def test_when_name_windows_read_back_to_a_sentence_end_then_they_match_the_old_slice(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import privgate.pii.engine as engine

    rng = random.Random(seed)
    text = _random_text(rng, 800)
    fast = name_windows(text, {"patient", "the"})
    monkeypatch.setattr(engine, "_preceding", _old_preceding)

    assert name_windows(text, {"patient", "the"}) == fast


class _Result:
    def __init__(self, start: int, end: int, entity: str, score: float) -> None:
        self.start, self.end, self.entity_type, self.score = start, end, entity, score


def _old_drop_nested(results: list[_Result]) -> list[_Result]:
    return [
        r
        for r in results
        if not any(
            o.entity_type != r.entity_type
            and o.score >= r.score
            and o.start <= r.start
            and r.end <= o.end
            and o.end - o.start > r.end - r.start
            for o in results
        )
    ]


@pytest.mark.parametrize("seed", range(20))
def test_when_nested_findings_are_dropped_then_the_sweep_agrees_with_all_pairs(seed: int) -> None:
    rng = random.Random(seed)
    results = []
    for _ in range(60):
        start = rng.randrange(200)
        results.append(
            _Result(start, start + rng.randrange(1, 40), rng.choice("ABC"), rng.choice([0.4, 0.85]))
        )

    assert _drop_nested(results) == _old_drop_nested(results)


def test_when_spans_are_replaced_in_one_pass_then_overlaps_and_neighbours_merge() -> None:
    text = "Maria Lopez, mail maria@x.org or 617-555-0100 now"

    def at(value: str, entity: str) -> tuple[int, int, str]:
        start = text.index(value)
        return (start, start + len(value), entity)

    spans = [at("Maria", "PERSON"), at("Lopez", "PERSON"), at("maria@x.org", "EMAIL_ADDRESS")]
    spans += [at("x.org", "URL"), at("617-555-0100", "PHONE_NUMBER")]

    assert _replace_spans(text, spans) == "<PERSON>, mail <EMAIL_ADDRESS> or <PHONE_NUMBER> now"


def test_when_a_note_is_long_then_every_identifier_in_it_is_redacted(
    pii_engine: PiiEngine,
) -> None:
    # 400 kB: 20 segments, thousands of findings (past what Presidio's anonymizer gets).
    rng = random.Random(7)
    lines = []
    for i in range(2500):
        lines.append(
            f"Visit {i}: Maria Lopez (maria.lopez{i}@example.org, 617-555-{i % 10000:04d}) "
            f"{_random_text(rng, 12)}"
        )
    note = "\n".join(lines)
    assert len(note) > 300_000

    redacted = redact_texts(
        pd.Series([note]), engine=pii_engine, entities=ENTITIES, score_threshold=REDACT
    )[0]

    folded = fold(redacted)
    assert "lopez" not in folded
    assert "@example" not in folded
    assert "617-555" not in folded
    assert "@" not in redacted
    assert "617-555" not in redacted
    assert redacted.count("<EMAIL_ADDRESS>") > 2000  # some merge into a neighbour's placeholder
    assert len(redacted) < len(note)


def test_when_a_value_straddles_a_segment_cut_then_it_is_found_whole(
    pii_engine: PiiEngine,
) -> None:
    filler = "word " * 4000  # 20,000 characters: the first segment ends inside the email
    for shift in range(0, _SEGMENT_OVERLAP // 2, 50):
        note = filler[: len(filler) - shift] + "write to maria.lopez@example.org today"
        found = pii_engine.analyze([note], entities=["EMAIL_ADDRESS"])[0]

        assert [note[a:b] for a, b, _ in found] == ["maria.lopez@example.org"], shift


def test_when_a_nul_hides_inside_an_identifier_then_both_redactor_and_verifier_read_through(
    pii_engine: PiiEngine,
) -> None:
    note = "Call Jo\x00hn Sm\x00ith at jo\x00hn.smith@exa\x00mple.org or 617-555-0\x00199."

    redacted = redact_texts(
        pd.Series([note]), engine=pii_engine, entities=ENTITIES, score_threshold=REDACT
    )[0]

    assert fold(note) == "call john smith at john.smith@example.org or 617-555-0199."
    assert "smith" not in fold(redacted)
    assert "0199" not in redacted


def test_when_column_names_read_as_a_record_then_their_positions_are_returned(
    pii_engine: PiiEngine,
) -> None:
    header = ["age", "Email Address", "Mother's Maiden Name", "Date of Birth", "Zip Code"]
    record = ["39", "ann@example.org", "371-44-7731", "1980-01-02", "Maria Lopez"]

    assert data_like_names(header, engine=pii_engine, entities=DIRECT) == []
    assert data_like_names(record, engine=pii_engine, entities=DIRECT) == [1, 2, 3, 4]


def test_when_a_name_padded_with_invisible_characters_straddles_a_cut_then_it_is_redacted(
    pii_engine: PiiEngine,
) -> None:
    # Cut first and normalized per segment, the padding (1,050 zero-width spaces) would
    # leave `...Jonat` to one segment and `onathan Smith` to the next.
    padded = "\u200b" * 150
    name = padded.join("Jonathan") + " Smith"
    note = "word " * 3860 + "Spoke with " + name + " about the claim. " + "word " * 400
    assert 19_000 < note.index("J") < 20_000

    redacted = redact_texts(
        pd.Series([note]), engine=pii_engine, entities=ENTITIES, score_threshold=REDACT
    )[0]

    assert "smith" not in fold(redacted)
    assert "jonathan" not in fold(redacted)


def test_when_column_names_are_years_then_they_are_names_not_values(
    pii_engine: PiiEngine,
) -> None:
    assert data_like_names(["region", "2019", "2020"], engine=pii_engine, entities=DIRECT) == []
